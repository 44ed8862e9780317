// A live gap: in a conflated room (rooms.conflate), a client whose socket stops taking data
// gets the newest messages instead of every one, so its offsets skip: `gap` says so.

import assert from "node:assert/strict";
import net from "node:net";
import { after, test } from "node:test";
import { closeAll, makeClient, next, record } from "../testkit/client.mjs";
import { startHub } from "../testkit/hub.mjs";

let hub;
let proxy;

after(async () => {
  closeAll();
  proxy?.close();
  await hub?.kill();
});

/** A TCP relay to `port` that can stop reading from the hub, as a stalled network would. */
async function relay(port) {
  const upstreams = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1");
    upstreams.add(upstream);
    client.on("data", (d) => upstream.write(d));
    upstream.on("data", (d) => client.write(d));
    const end = () => {
      client.destroy();
      upstream.destroy();
      upstreams.delete(upstream);
    };
    client.on("close", end);
    upstream.on("close", end);
    client.on("error", end);
    upstream.on("error", end);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `ws://127.0.0.1:${server.address().port}/ws`,
    hold: () => upstreams.forEach((u) => u.pause()),
    release: () => upstreams.forEach((u) => u.resume()),
    close: () => {
      upstreams.forEach((u) => u.destroy());
      server.close();
    },
  };
}

test("offsets that skip in a conflated room are reported as a gap", async () => {
  hub = await startHub({
    env: {
      NEONEX_HISTORY_SIZE: "1000",
      NEONEX_ROOMS_CONFLATE: "ticker",
      NEONEX_HUB_MAX_MESSAGE_SIZE: "128KiB",
      NEONEX_HUB_SEND_QUEUE_BYTES: "256KiB",
    },
  });
  proxy = await relay(hub.port);
  const ann = makeClient(proxy.url, "ann-slow");
  await ann.connect();
  await ann.join("ticker");
  const ticks = record(ann, "publication");
  const gaps = record(ann, "gap");

  const count = 60;
  const pad = "x".repeat(100 * 1024);
  proxy.hold();
  try {
    for (let n = 1; n <= count; n++) await hub.publish("ticker", { n, pad });
  } finally {
    proxy.release();
  }
  await next(ann, "publication", (m) => m.data.n === count, 15000);

  assert.ok(gaps.length > 0, "some ticks were skipped");
  const offsets = ticks.map((m) => m.offset);
  assert.ok(
    offsets.every((o, i) => i === 0 || o > offsets[i - 1]),
    `offsets only grow: ${offsets}`,
  );
  for (const gap of gaps) {
    assert.equal(gap.room, "ticker");
    assert.ok(gap.got > gap.expected, JSON.stringify(gap));
    const i = offsets.indexOf(gap.got);
    assert.ok(i > 0 && offsets[i - 1] === gap.expected - 1, `gap ${JSON.stringify(gap)} in ${offsets}`);
  }
  assert.equal(gaps.length, offsets.filter((o, i) => i > 0 && o !== offsets[i - 1] + 1).length);
  assert.ok(ticks.some((m) => m.conflated === true));

  // Caught up: the next one is live, in sequence, no gap.
  const seen = gaps.length;
  const live = next(ann, "publication", (m) => m.data.n === count + 1);
  await hub.publish("ticker", { n: count + 1 });
  assert.equal((await live).offset, count + 1);
  assert.equal(gaps.length, seen);
});
