// The demo chat (/demo) in real headless Chromium (Debian's, through puppeteer-core), on a
// real two-node cluster: nats-server with JetStream, neonex nodes A and B with history.
// Run by tests/browser_demo.rs; NEONEX_BIN names the neonex binary, SCREENSHOT_DIR where
// the screenshots go.
//
// Cases, one after the other on the same pages (ann and bob, both on node A):
//   chat       each sees the other online; typing shows; messages cross, own ones marked
//   prompt     a third page asks for a name, sees ann and bob online and is seen; when it
//              closes, the others see it go offline
//   restart    node A is killed, 3 messages are published through node B meanwhile, A comes
//              back on its port: both pages reconnect by themselves and show the 3, in
//              order, once, under a "recovered" notice
//   rooms      ann joins a room by name and leaves it; a message in another room shows
//              on bob's page as unread there
//   screenshot both pages at 1280x800, after a few more messages
//
// Prints one JSON object on its last line: {ok, cases: [{name, ok, ms, ...}], error?}.
// Exits 0 only if every case passed. Everything it started is killed on every way out.
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import puppeteer from "puppeteer-core";

import { clusterOf, killAll, logs, startNats, startNode } from "./hub_processes.mjs";

const WHOLE_RUN_MS = 55_000;
const WAIT_MS = 10_000;
const ROOM = "general";
const NODE_ENV = {
  NEONEX_HISTORY_SIZE: "100",
  NEONEX_ADMIN_DEMO: "true",
  NEONEX_CLUSTER_NODE_TIMEOUT: "2s",
};

/** Published through node B while the pages' node A is down. */
const MISSED = ["Deploy finished: v2.4.1 is live", "Build #812 passed", "Incident closed: latency is back to normal"];
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || "screenshots";
const summary = { ok: false, cases: [] };
let browser;
const pages = {};

const $ = (id) => `[data-testid="${id}"]`;

async function main() {
  const nats = await startNats();
  const env = { ...NODE_ENV, NEONEX_CLUSTER_NATS_URL: nats.url };
  let a = await startNode("a", env);
  const b = await startNode("b", env);
  await clusterOf([a, b], 2);
  await served(a, "/demo", "admin.demo on, and web/demo/index.html");
  await served(a, "/demo/neonex-client.js", "clients/js/src/neonex-client.js");

  browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    // This script closes the browser itself on a signal, after reporting.
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  pages.ann = await open("ann", a);
  pages.bob = await open("bob", a);

  await run("chat", () => chat(pages.ann, pages.bob));
  await run("prompt", () => prompt(a));
  await run("restart", async () => {
    const result = await restart(a, b, env);
    a = result.node;
    return result.report;
  });
  await run("rooms", () => rooms(pages.ann, pages.bob));
  await run("screenshot", () => screenshots());
  summary.ok = summary.cases.every((c) => c.ok);
}

async function served(node, path, what) {
  const response = await fetch(`${node.base}${path}`);
  check(response.status === 200, `${path} answers ${response.status}: the hub serves it from ${what}`);
}

/** A page of the demo as `user` on `node`, in a browser context of its own. */
async function open(user, node) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.user = user;
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(String(e)));
  await recordFrames(page);
  await page.setViewport({ width: 1280, height: 800 });
  await page.goto(`${node.base}/demo?user=${user}`);
  await page.waitForSelector(`${$("status")}[data-status="connected"]`);
  await page.waitForSelector(`${$("room")}[data-room="random"]`);
  return page;
}

async function run(name, body) {
  const started = Date.now();
  const entry = { name, ok: false };
  summary.cases.push(entry);
  Object.assign(entry, await body());
  entry.ok = true;
  entry.ms = Date.now() - started;
  log(`${name}: ok in ${entry.ms} ms`);
}

async function chat(ann, bob) {
  const t0 = Date.now();
  const at = {};
  await sees(ann, "bob");
  await sees(bob, "ann");
  at.online = Date.now() - t0;

  await ann.type($("composer-input"), "hello bob", { delay: 15 });
  await typingShows(bob, "ann is typing…");
  at.typing = Date.now() - t0;
  await ann.keyboard.press("Enter");
  await hasMessage(bob, "ann", "hello bob");
  await hasMessage(ann, "ann", "hello bob");
  await typingShows(bob, "");
  at.message = Date.now() - t0;

  await bob.type($("composer-input"), "hi ann! all good?", { delay: 15 });
  await typingShows(ann, "bob is typing…");
  await bob.click($("send-button"));
  await hasMessage(ann, "bob", "hi ann! all good?");
  await hasMessage(bob, "bob", "hi ann! all good?");
  at.reply = Date.now() - t0;

  for (const page of [ann, bob]) {
    const items = await timeline(page);
    const own = items.filter((m) => m.own).map((m) => m.user);
    const mine = own.length === 1 && own[0] === page.user;
    check(mine, `${page.user}: exactly its own message marked own: ${JSON.stringify(items)}`);
  }
  const count = `${$("room")}[data-room="${ROOM}"] ${$("room-count")}`;
  const counts = await ann.$$eval(count, (e) => e.map((x) => x.textContent));
  check(counts[0] === "2", `ann's #${ROOM} counts 2 members: ${counts}`);
  return { at };
}

async function prompt(node) {
  const context = await browser.createBrowserContext();
  const cat = await context.newPage();
  cat.setDefaultTimeout(WAIT_MS);
  await cat.goto(`${node.base}/demo`);
  await cat.waitForSelector($("name-input"), { visible: true });
  await cat.type($("name-input"), "cat");
  await cat.keyboard.press("Enter");
  await cat.waitForSelector(`${$("status")}[data-status="connected"]`);
  const url = new URL(cat.url());
  check(url.searchParams.get("user") === "cat", `the name goes into the page's URL: ${url}`);
  for (const [page, user] of [[cat, "ann"], [cat, "bob"], [pages.ann, "cat"], [pages.bob, "cat"]]) await sees(page, user);
  await context.close();
  for (const page of Object.values(pages)) {
    await page.waitForSelector(`${$("online-user")}[data-user="cat"]`, { hidden: true });
  }
  return {};
}

async function restart(a, b, env) {
  const t0 = Date.now();
  const at = {};
  const before = {};
  for (const [user, page] of Object.entries(pages)) before[user] = await timeline(page);

  await a.kill();
  for (const page of Object.values(pages)) {
    await page.waitForSelector(`${$("status")}:not([data-status="connected"])`);
  }
  at.disconnected = Date.now() - t0;

  const offsets = [];
  for (const message of MISSED) {
    const response = await fetch(`${b.base}/api/rooms/${ROOM}/publish`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ from: "ci-bot", message }),
    });
    const body = await response.json();
    const positioned = response.status === 200 && typeof body.offset === "number";
    check(positioned, `publish through B: ${response.status} ${JSON.stringify(body)}`);
    offsets.push(body.offset);
  }
  check(offsets[1] === offsets[0] + 1 && offsets[2] === offsets[1] + 1, `consecutive offsets from B: ${offsets}`);
  at.published = Date.now() - t0;

  const node = await startNode("a-again", env, a.port);
  at.restarted = Date.now() - t0;

  const report = {};
  for (const [user, page] of Object.entries(pages)) {
    await page.waitForSelector(`${$("status")}[data-status="connected"]`);
    const notice = await page.waitForSelector($("notice"));
    const kind = await notice.evaluate((e) => `${e.dataset.kind}: ${e.textContent}`);
    check(kind.startsWith("recovered"), `${user}: the rejoin recovered: ${kind}`);
    await page.waitForFunction(
      (last) => [...document.querySelectorAll('[data-testid="message"]')].some((m) => m.textContent.includes(last)),
      {},
      MISSED[2],
    );
    const after = await timeline(page);
    const notices = after.filter((m) => m.kind === "notice");
    const added = after.slice(before[user].length).filter((m) => m.kind !== "notice");
    report[user] = { notices: notices.map((n) => n.text), added: added.map((m) => m.text) };
    check(
      notices.length === 1 && notices[0].notice === "recovered" && notices[0].text.includes("3 missed messages recovered"),
      `${user}: one notice that 3 messages were recovered: ${JSON.stringify(notices)}`,
    );
    const kept = JSON.stringify(after.slice(0, before[user].length)) === JSON.stringify(before[user]);
    check(kept, `${user}: the timeline before the restart is kept`);
    check(
      JSON.stringify(added.map((m) => [m.kind, m.user, m.text, m.offset])) ===
        JSON.stringify(MISSED.map((text, i) => ["publication", "ci-bot", text, String(offsets[i])])),
      `${user}: the 3 missed messages, in order, once, with their offsets: ${JSON.stringify(added)}`,
    );
  }
  at.recovered = Date.now() - t0;
  // Who is online was forgotten with the connection, and is learned again.
  await sees(pages.ann, "bob");
  await sees(pages.bob, "ann");
  at.online = Date.now() - t0;
  return { node, report: { at, offsets, pages: report } };
}

async function rooms(ann, bob) {
  const room = (name) => `${$("room")}[data-room="${name}"]`;
  await ann.type($("join-input"), "design");
  await ann.keyboard.press("Enter");
  await ann.waitForSelector(`${room("design")}.selected`);
  await ann.waitForFunction(() => document.querySelector('[data-testid="room-title"]').textContent === "design");
  await ann.click($("leave-button"));
  await ann.waitForSelector(room("design"), { hidden: true });
  await ann.waitForSelector(`${room(ROOM)}.selected`);

  await ann.click(room("random"));
  await ann.type($("composer-input"), "Lunch at noon, anyone?");
  await ann.keyboard.press("Enter");
  await hasMessage(ann, "ann", "Lunch at noon, anyone?");
  const unread = `${room("random")} ${$("room-unread")}`;
  await bob.waitForFunction((sel) => document.querySelector(sel)?.textContent === "1", {}, unread);
  const shown = (await timeline(bob)).map((m) => m.text);
  check(!shown.includes("Lunch at noon, anyone?"), `bob's #${ROOM} shows no message of #random: ${shown}`);
  await ann.click(room(ROOM));
  await ann.waitForSelector(`${room(ROOM)}.selected`);
  return {};
}

async function screenshots() {
  const { ann, bob } = pages;
  await ann.type($("composer-input"), "Back again, and nothing lost.", { delay: 10 });
  await ann.keyboard.press("Enter");
  await hasMessage(bob, "ann", "Back again, and nothing lost.");
  await bob.type($("composer-input"), "Same here: all three arrived, in order.", { delay: 10 });
  await bob.keyboard.press("Enter");
  await hasMessage(ann, "bob", "Same here: all three arrived, in order.");
  // ann starts a reply she does not send: bob's page shows it being typed.
  await ann.type($("composer-input"), "Ship it", { delay: 10 });
  await typingShows(bob, "ann is typing…");

  // Many messages later, nothing missed came twice (a late duplicate would be here now).
  for (const [user, page] of Object.entries(pages)) {
    const texts = (await timeline(page)).map((m) => m.text);
    for (const text of MISSED) {
      const times = texts.filter((t) => t === text).length;
      check(times === 1, `${user}: "${text}" shown ${times} times`);
    }
  }

  const dir = SCREENSHOT_DIR;
  mkdirSync(dir, { recursive: true });
  const files = [];
  for (const [user, page] of Object.entries(pages)) {
    const path = join(dir, `demo-${user}.png`);
    await page.screenshot({ path });
    files.push(path);
  }
  return { files };
}

// ---- reading the page ----

/** Keeps the page's last WebSocket frames, both ways, for a failure report. */
async function recordFrames(page) {
  page.frames = [];
  const cdp = await page.createCDPSession();
  await cdp.send("Network.enable");
  const keep = (way) => (e) => {
    page.frames.push(`${way} ${e.response.payloadData}`);
    if (page.frames.length > 60) page.frames.shift();
  };
  cdp.on("Network.webSocketFrameSent", keep(">"));
  cdp.on("Network.webSocketFrameReceived", keep("<"));
  cdp.on("Network.webSocketClosed", () => page.frames.push("closed"));
  cdp.on("Network.webSocketCreated", (e) => page.frames.push(`open ${e.url}`));
}

async function sees(page, user) {
  await page.waitForSelector(`${$("online-user")}[data-user="${user}"]`);
}

async function typingShows(page, text) {
  await page.waitForFunction((t) => document.querySelector('[data-testid="typing"]').textContent === t, {}, text);
}

async function hasMessage(page, user, text) {
  await page.waitForFunction(
    (u, t) =>
      [...document.querySelectorAll('[data-testid="message"]')].some(
        (m) => m.dataset.user === u && m.querySelector('[data-testid="message-text"]').textContent === t,
      ),
    {},
    user,
    text,
  );
}

/** The selected room's timeline as shown. */
function timeline(page) {
  return page.$$eval('[data-testid="messages"] > li:not(.empty)', (items) =>
    items.map((li) => ({
      kind: li.dataset.kind === "publication" ? "publication" : li.dataset.testid === "notice" ? "notice" : "message",
      notice: li.dataset.testid === "notice" ? li.dataset.kind : undefined,
      user: li.dataset.user,
      own: li.dataset.own === "true",
      offset: li.dataset.offset,
      text: li.querySelector('[data-testid="message-text"]')?.textContent ?? li.textContent,
    })),
  );
}

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

function log(line) {
  process.stderr.write(`demo_pages: ${line}\n`);
}

// ---- every way out kills everything ----

async function cleanUp() {
  if (browser) await browser.close().catch(() => {});
  await killAll();
}

let finishing = false;

async function finish(error) {
  // The first way out reports; what fails while it cleans up is its consequence.
  if (finishing) return;
  finishing = true;
  clearTimeout(watchdog);
  for (const [user, page] of Object.entries(pages)) {
    if (page.errors.length) {
      summary.ok = false;
      error ??= new Error(`${user}'s page threw: ${page.errors.join("; ")}`);
    }
  }
  if (error) {
    summary.ok = false;
    summary.error = String(error?.stack || error);
    await failureShots();
    process.stderr.write(`${summary.error}\n${logs()}\n`);
  }
  await cleanUp();
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  process.exit(summary.ok ? 0 : 1);
}

/** What the pages showed when it failed: screenshots beside the others, and the text. */
async function failureShots() {
  const dir = SCREENSHOT_DIR;
  mkdirSync(dir, { recursive: true });
  for (const [user, page] of Object.entries(pages)) {
    await page.screenshot({ path: join(dir, `demo-failed-${user}.png`) }).catch(() => {});
    const status = await page.$eval($("status"), (e) => e.dataset.status).catch(() => "?");
    const items = await timeline(page).catch((e) => String(e));
    process.stderr.write(`${user}'s page: ${status}, timeline ${JSON.stringify(items)}\n`);
    process.stderr.write(`${user}'s last frames:\n  ${page.frames.join("\n  ")}\n`);
  }
}

const watchdog = setTimeout(() => finish(new Error(`the run took more than ${WHOLE_RUN_MS} ms`)), WHOLE_RUN_MS);
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => finish(new Error(`got ${signal}`)));
for (const user of ["ann", "bob"]) rmSync(join(SCREENSHOT_DIR, `demo-failed-${user}.png`), { force: true });
main().then(() => finish(), finish);
