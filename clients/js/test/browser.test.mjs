// The same module in a browser: headless Chromium (Debian's, driven by puppeteer-core; never
// a downloaded one) imports it from the hub itself, at /demo/neonex-client.js where the demo
// page finds it (admin.demo), and uses the browser's own WebSocket.

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import puppeteer from "puppeteer-core";
import { startHub } from "../testkit/hub.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SOURCE = new URL("../src/neonex-client.js", import.meta.url);

let hub;
let browser;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM)`);
  hub = await startHub({ env: { NEONEX_HISTORY_SIZE: "100", NEONEX_ADMIN_DEMO: "true" } });
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
});

after(async () => {
  await browser?.close();
  await hub?.kill();
});

test("the hub serves this very file at /demo/neonex-client.js, as JavaScript", async () => {
  const res = await fetch(`${hub.base}/demo/neonex-client.js`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^text\/javascript/);
  assert.equal(await res.text(), readFileSync(SOURCE, "utf8"));
});

test("in Chromium: connect, join, publish, and recover after a kick", async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await hub.api("PUT", "/api/rooms/web"); // kept while its only member is away
  await page.goto(`${hub.base}/demo/neonex-client.js`); // any page of the hub's origin
  const first = await page.evaluate(async (ws) => {
    const { NeonexClient } = await import("/demo/neonex-client.js");
    const client = new NeonexClient(ws, { user: "chromium", minReconnectDelay: 50, maxReconnectDelay: 100 });
    window.client = client;
    window.seen = [];
    client.on("publication", (m) => window.seen.push(m.data.n));
    client.on("recovered", (r) => window.seen.push(`recovered ${r.room} ${r.recovered}`));
    const welcome = await client.connect();
    const joined = await client.join("web");
    const echo = await client.publish("web", { message: "hi", data: { from: "page" } });
    return { welcome, joined, echo };
  }, hub.ws);
  assert.equal(first.welcome.userId, "chromium");
  assert.deepEqual([first.joined.room, first.joined.offset], ["web", 0]);
  assert.deepEqual([first.echo.message, first.echo.data, first.echo.offset], ["hi", { from: "page" }, 1]);

  // Away: what is published meanwhile arrives after the reconnect, exactly once.
  await hub.publish("web", { n: 1 });
  await page.waitForFunction(() => window.seen.includes(1), { timeout: 8000 });
  await page.evaluate(() => {
    window.away = new Promise((resolve) => window.client.once("disconnected", resolve));
  });
  await hub.kick("chromium");
  await page.evaluate(() => window.away);
  await hub.publish("web", { n: 2 });
  await hub.publish("web", { n: 3 });
  await page.waitForFunction(() => window.seen.includes(3), { timeout: 8000 });
  const seen = await page.evaluate(() => window.seen);
  // The reconnect may beat the publications: then they arrive live, not replayed.
  assert.deepEqual(
    seen.filter((x) => typeof x === "number"),
    [1, 2, 3],
  );
  assert.ok(seen.includes("recovered web true"), JSON.stringify(seen));
  assert.deepEqual(errors, []);
  await page.evaluate(() => window.client.close());
});
