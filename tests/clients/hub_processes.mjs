// Real processes for the browser tests: a `nats-server` with JetStream and `neonex serve`
// nodes on it, on free loopback ports. Each keeps its output for the failure report, and
// every one started is killed by killAll(), which the scripts call on every way out.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const running = new Set();
const started = [];
const scratch = [];

/** A free TCP port on loopback (bound, then released). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Polls `probe` every 50 ms until it returns a truthy value, or fails after `ms`. */
export async function until(what, probe, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`no ${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

class Proc {
  constructor(name, program, args, env) {
    this.name = name;
    this.log = "";
    // neonex refuses NEONEX_* variables it does not know, such as the one naming itself.
    const { NEONEX_BIN: _, ...inherited } = process.env;
    this.child = spawn(program, args, { env: { ...inherited, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    this.exited = new Promise((resolve) => this.child.on("exit", (code, signal) => resolve({ code, signal })));
    this.child.on("error", (e) => {
      this.log += `cannot run ${program}: ${e.message}\n`;
    });
    for (const pipe of [this.child.stdout, this.child.stderr]) {
      pipe.on("data", (chunk) => {
        this.log = (this.log + chunk).slice(-20_000);
      });
    }
    running.add(this);
    started.push(this);
    this.exited.then(() => running.delete(this));
  }

  /** SIGKILL, as a crash: no goodbye to clients or to the cluster. */
  async kill() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    await this.exited;
  }
}

/**
 * `nats-server` with JetStream in a fresh directory; resolves once it accepts. It chooses
 * a free port itself and names it in a file once it listens, so that a port another
 * process took in between is never mistaken for this server's.
 */
export async function startNats() {
  const store = mkdtempSync(join(tmpdir(), "neonex-demo-nats-"));
  scratch.push(store);
  const debian = "/usr/sbin/nats-server";
  const program = process.env.NATS_SERVER || (existsSync(debian) ? debian : "nats-server");
  const nats = new Proc("nats", program, ["-a", "127.0.0.1", "-p", "-1", "-js", "-sd", store, "--ports_file_dir", store], {});
  const port = await until("nats-server listening", async () => {
    const file = readdirSync(store).find((name) => name.endsWith(`_${nats.child.pid}.ports`));
    const url = file && JSON.parse(readFileSync(join(store, file), "utf8")).nats?.[0];
    return url && Number(url.slice(url.lastIndexOf(":") + 1));
  });
  nats.url = `nats://127.0.0.1:${port}`;
  await until(`nats-server on ${port}`, () => connects(port));
  return nats;
}

function connects(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1", () => {
      socket.destroy();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
  });
}

/**
 * `neonex serve` on `port` (a free one if not given) with `env`; resolves once `/stats`
 * says it is connected to NATS.
 */
export async function startNode(name, env, port) {
  port ??= await freePort();
  const binary = process.env.NEONEX_BIN;
  if (!binary) throw new Error("NEONEX_BIN names no neonex binary");
  const node = new Proc(name, binary, ["serve", "--listen", `127.0.0.1:${port}`, "--shards", "2"], {
    RUST_LOG: "",
    NEONEX_CLUSTER_NODE_ID: name,
    ...env,
  });
  node.port = port;
  node.base = `http://127.0.0.1:${port}`;
  const connected = until(`${name} connected to NATS`, async () => {
    const stats = await (await fetch(`${node.base}/stats`)).json();
    return stats.cluster?.nats === "connected";
  });
  const died = node.exited.then(({ code, signal }) => {
    throw new Error(`${name} exited (${code ?? signal}) before it served: ${node.log}`);
  });
  await Promise.race([connected, died]);
  return node;
}

/** Waits until each node counts `n` live nodes in the cluster. */
export function clusterOf(nodes, n) {
  const nodesSeen = async (node) => (await (await fetch(`${node.base}/stats`)).json()).cluster?.nodes;
  return Promise.all(nodes.map((node) => until(`${n} nodes seen by ${node.name}`, async () => (await nodesSeen(node)) === n)));
}

/** The last lines each process printed, for a failure report. */
export function logs() {
  return started.map((p) => `--- ${p.name}\n${p.log.split("\n").slice(-30).join("\n")}`).join("\n");
}

export async function killAll() {
  await Promise.all([...running].map((p) => p.kill()));
  for (const dir of scratch.splice(0)) rmSync(dir, { recursive: true, force: true });
}
