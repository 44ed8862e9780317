// Real processes for the tests: a neonex binary (env NEONEX_BIN) and nats-server, each on a
// free loopback port, always killed at the end. Lives outside test/ so that
// `node --test test/` does not take it for a test file.

import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

const children = new Set();
const cleanup = () => {
  for (const child of children) child.kill("SIGKILL");
};
process.on("exit", cleanup);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    cleanup();
    process.exit(130);
  });
}

export function neonexBin() {
  const bin = process.env.NEONEX_BIN;
  if (!bin) throw new Error("set NEONEX_BIN to a neonex binary (cargo build; target/debug/neonex)");
  return bin;
}

/** A port nothing listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The client port nats-server `pid` wrote to its ports file in `dir`, once it has. */
export function natsPort(dir, pid) {
  const file = readdirSync(dir).find((name) => name.endsWith(`_${pid}.ports`));
  if (!file) return undefined;
  const url = JSON.parse(readFileSync(path.join(dir, file), "utf8")).nats?.[0];
  return url && Number(url.slice(url.lastIndexOf(":") + 1));
}

/** Polls `check` until it returns a truthy value, for at most `ms`. */
export async function until(check, ms = 10000, what = "condition") {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value) return value;
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${typeof what === "function" ? what() : what}`);
    }
    await sleep(25);
  }
}

function run(command, args, env) {
  // neonex reads every NEONEX_* variable as a setting, and NEONEX_BIN is none.
  const { NEONEX_BIN: _, ...inherited } = process.env;
  const child = spawn(command, args, {
    env: { ...inherited, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let log = "";
  const keep = (chunk) => {
    log = (log + chunk).slice(-20000);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const exited = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
  });
  return { child, exited, log: () => log };
}

/**
 * Starts `neonex serve` on 127.0.0.1:port (a free one unless given) with `env` settings
 * (e.g. {NEONEX_HISTORY_SIZE: "100"}); resolves once /health answers.
 */
export async function startHub({ port, env = {} } = {}) {
  if (port !== undefined) return launchHub(port, env);
  // Another test can take a free port before this hub binds it; the hub then refuses it.
  for (let attempt = 1; ; attempt++) {
    try {
      return await launchHub(await freePort(), env);
    } catch (e) {
      if (!(e instanceof PortTaken) || attempt === 5) throw e;
    }
  }
}

class PortTaken extends Error {}

async function launchHub(port, env) {
  const proc = run(neonexBin(), ["serve", "--listen", `127.0.0.1:${port}`], {
    NEONEX_SHARDS: "2",
    NEONEX_SHUTDOWN_TIMEOUT: "2s",
    ...env,
  });
  const base = `http://127.0.0.1:${port}`;
  const hub = {
    port,
    base,
    ws: `ws://127.0.0.1:${port}/ws`,
    log: proc.log,
    async api(method, pathname, body) {
      const res = await fetch(base + pathname, {
        method,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`${method} ${pathname}: ${res.status} ${text}`);
      return text ? JSON.parse(text) : null;
    },
    publish(room, body) {
      return hub.api("POST", `/api/rooms/${room}/publish`, body);
    },
    kick(user) {
      return hub.api("DELETE", `/api/users/${user}/connections`);
    },
    async members(room) {
      return (await hub.api("GET", `/api/rooms/${room}/members`)).members;
    },
    /** kill -9: no goodbye. */
    async kill() {
      proc.child.kill("SIGKILL");
      await proc.exited;
    },
    /** Graceful: server_shutdown, then close 1001. */
    async stop() {
      proc.child.kill("SIGTERM");
      await proc.exited;
    },
    /** SIGSTOP, resolved once every thread has stopped: nothing answers any more. */
    async pause() {
      proc.child.kill("SIGSTOP");
      const tasks = `/proc/${proc.child.pid}/task`;
      await until(
        async () => readdirSync(tasks).every((t) => /^\d+ \(.*\) [Tt] /.test(readFileSync(`${tasks}/${t}/stat`, "utf8"))),
        5000,
        "the hub to stop",
      );
    },
    resume: () => proc.child.kill("SIGCONT"),
  };
  const died = proc.exited.then(({ code, signal }) => {
    const Failure = code === 2 && proc.log().includes("cannot listen") ? PortTaken : Error;
    throw new Failure(`neonex exited (${code ?? signal}) on start:\n${proc.log()}`);
  });
  await Promise.race([
    died,
    until(async () => (await fetch(`${base}/health`)).ok, 15000, () => `neonex on port ${port}\n${proc.log()}`),
  ]);
  died.catch(() => {}); // a later exit is the test's business (kill, stop)
  return hub;
}

/** nats-server with JetStream in a fresh directory; resolves once it takes connections. */
export async function startNats() {
  const dir = mkdtempSync(path.join(os.tmpdir(), "neonex-js-nats-"));
  const bin = process.env.NATS_SERVER || "nats-server";
  const env = { PATH: `${process.env.PATH}:/usr/sbin:/usr/local/sbin` };
  // nats-server chooses a free port itself and names it in a file once it listens, so
  // a port taken by another test in between can never be mistaken for this server's.
  const proc = run(bin, ["-js", "-sd", dir, "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", dir], env);
  const died = proc.exited.then(({ code, signal }) => {
    throw new Error(`nats-server exited (${code ?? signal}) on start:\n${proc.log()}`);
  });
  const port = await Promise.race([died, until(async () => natsPort(dir, proc.child.pid), 10000, () => `nats-server to listen\n${proc.log()}`)]);
  died.catch(() => {});
  return {
    url: `nats://127.0.0.1:${port}`,
    async kill() {
      proc.child.kill("SIGKILL");
      await proc.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
