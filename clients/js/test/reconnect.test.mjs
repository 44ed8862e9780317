// Reconnecting: after the hub dies and comes back, after a graceful shutdown, after a silent
// hub (liveness), with jittered exponential backoff, and the send queue meanwhile.

import assert from "node:assert/strict";
import { after, test } from "node:test";
import { closeAll, makeClient, next, record } from "../testkit/client.mjs";
import { freePort, sleep, startHub, until } from "../testkit/hub.mjs";

const hubs = [];
async function hub(options) {
  const h = await startHub(options);
  hubs.push(h);
  return h;
}

after(async () => {
  closeAll();
  await Promise.all(hubs.map((h) => h.kill()));
});

test("after the hub is killed and started again, the client reconnects and rejoins", async () => {
  const first = await hub();
  const ann = makeClient(first.ws, "ann");
  const bob = makeClient(first.ws, "bob");
  await ann.connect();
  await ann.join("lobby");
  const statuses = record(ann, "status");
  const disconnected = next(ann, "disconnected");
  await first.kill();
  const gone = await disconnected;
  assert.equal(gone.reconnect, true);
  assert.ok(gone.delay >= 25 && gone.delay <= 50, `first delay ${gone.delay} within [min/2, min]`);

  const connected = next(ann, "connected", () => true, 15000);
  const rejoined = next(ann, "joined", (m) => m.room === "lobby", 15000);
  const second = await hub({ port: first.port });
  await connected;
  await rejoined;
  assert.deepEqual(await second.members("lobby"), [ann.connectionId]);
  // Failed attempts while the port was closed: connecting -> disconnected, again and again.
  const order = statuses.map((s) => s.status);
  assert.equal(order[0], "disconnected");
  assert.equal(order.at(-1), "connected");
  for (let i = 1; i < order.length; i++) {
    const allowed = { disconnected: ["connecting"], connecting: ["disconnected", "connected"] };
    assert.ok(allowed[order[i - 1]].includes(order[i]), `status ${order[i - 1]} -> ${order[i]}`);
  }

  await bob.connect();
  await bob.join("lobby");
  const heard = next(ann, "message", (m) => m.room === "lobby");
  await bob.publish("lobby", "welcome back");
  assert.equal((await heard).message, "welcome back");
});

test("an autojoined room the app left stays left after a reconnect", async () => {
  const h = await hub();
  const ann = makeClient(h.ws, "ann-leaves");
  await ann.connect();
  await ann.leave("general");
  const rejoined = next(ann, "connected");
  const gone = next(ann, "disconnected");
  await h.kick("ann-leaves");
  await gone;
  await rejoined;
  const heard = record(ann, "publication");
  await ann.join("after");
  // In order behind the autojoin and the client's leave: once this is answered, the leave is too.
  await ann.publish("after", "sync");
  assert.ok(!(await h.members("general")).includes(ann.connectionId));
  await h.publish("general", { n: 1 });
  const probe = next(ann, "publication", (m) => m.room === "after");
  await h.publish("after", { n: 2 });
  await probe;
  assert.deepEqual(
    heard.map((m) => m.room),
    ["after"],
  );
});

test("rejoins the hub refuses for now (rate_limited) are asked again", async () => {
  const h = await hub({ env: { NEONEX_LIMITS_MESSAGES_PER_SECOND: "5", NEONEX_LIMITS_BURST: "5" } });
  const ann = makeClient(h.ws, "ann-many");
  await ann.connect();
  const rooms = ["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8"];
  for (const room of rooms) {
    for (;;) {
      const refused = await ann.join(room).then(() => null, (e) => e);
      if (!refused) break;
      assert.equal(refused.code, "rate_limited");
      await sleep(250); // the bucket refills with time only
    }
  }
  const errors = record(ann, "error");
  const gone = next(ann, "disconnected");
  await h.kick("ann-many"); // the new connection's bucket holds 5 of the 8 rejoins
  await gone;
  await next(ann, "connected");
  const member = async () => {
    const lists = await Promise.all(rooms.map((room) => h.members(room).catch(() => [])));
    return lists.every((ids) => ids.includes(ann.connectionId));
  };
  await until(member, 8000, "every room rejoined");
  assert.ok(errors.length > 0 && errors.every((e) => e.code === "rate_limited" && e.request === "join"));
  assert.deepEqual(ann.rooms, rooms);
});

test("server_shutdown: the event, then a reconnect no sooner than shutdownReconnectDelay", async () => {
  const first = await hub();
  const ann = makeClient(first.ws, "ann-shutdown", { shutdownReconnectDelay: 400 });
  await ann.connect();
  const shutdown = next(ann, "server_shutdown");
  const disconnected = next(ann, "disconnected");
  const stopping = first.stop();
  await shutdown;
  const gone = await disconnected;
  assert.equal(gone.code, 1001);
  assert.ok(gone.delay >= 400 && gone.delay <= 600, `delay ${gone.delay}`);
  const since = Date.now();
  await stopping;
  const connecting = next(ann, "connecting", () => true, 5000);
  const connected = next(ann, "connected", () => true, 15000);
  await hub({ port: first.port });
  await connecting;
  assert.ok(Date.now() - since >= 390, "waited the shutdown delay");
  await connected;
});

test("a hub that stops answering is dropped after pingInterval + pongTimeout", async () => {
  const h = await hub();
  const ann = makeClient(h.ws, "ann-live", { pingInterval: 150, pongTimeout: 150 });
  await ann.connect();
  const pings = record(ann, "server_message");
  // A quiet but healthy connection: pings are answered, the connection stays.
  await next(ann, "server_message", (m) => m.type === "pong");
  assert.equal(ann.status, "connected");
  assert.ok(pings.some((m) => m.type === "pong"));

  const dropped = next(ann, "disconnected");
  const since = Date.now();
  await h.pause();
  try {
    const gone = await dropped;
    assert.equal(gone.reason, "pong timeout");
    assert.ok(Date.now() - since <= 1000, "dropped within ping interval + pong timeout");
  } finally {
    h.resume();
  }
  await next(ann, "connected");
});

test("backoff: delays double from min to max, each scaled by [0.5, 1]", async () => {
  const port = await freePort(); // nothing listens here
  const min = 40;
  const max = 320;
  const ann = makeClient(`ws://127.0.0.1:${port}/ws`, "ann-backoff", {
    minReconnectDelay: min,
    maxReconnectDelay: max,
  });
  const attempts = [];
  ann.on("connecting", (e) => attempts.push({ ...e, at: performance.now() }));
  ann.connect().catch(() => {});
  while (attempts.length < 9) await next(ann, "connecting");
  ann.close();
  assert.deepEqual(
    attempts.map((a) => a.attempt),
    [0, 1, 2, 3, 4, 5, 6, 7, 8],
  );
  for (let i = 1; i < attempts.length; i++) {
    const expected = Math.min(max, min * 2 ** (i - 1));
    const { delay } = attempts[i];
    assert.ok(delay >= expected * 0.5 && delay <= expected, `delay ${delay} for ${expected}`);
    const waited = attempts[i].at - attempts[i - 1].at;
    assert.ok(waited >= delay - 2, `waited ${waited} >= ${delay}`);
    // The slack covers a refused connect and a busy machine's late timers.
    assert.ok(waited <= expected + 150, `waited ${waited} for ${expected}`);
    assert.ok(waited <= max + 150, `waited ${waited}, above max`);
  }
});

test("a failing getToken counts as a failed attempt", async () => {
  const h = await hub();
  let calls = 0;
  const ann = makeClient(h.ws, "ann-token", {
    getToken: async () => {
      calls++;
      if (calls < 3) throw new Error("auth backend down");
      return "any"; // without a JWT secret the hub ignores it and takes ?user=
    },
  });
  const gone = record(ann, "disconnected");
  await ann.connect();
  assert.equal(calls, 3);
  assert.deepEqual(
    gone.map((d) => d.reason),
    ["getToken failed: auth backend down", "getToken failed: auth backend down"],
  );
  assert.equal(ann.userId, "ann-token");
});

test("while disconnected, requests queue up to maxQueue and go out in order", async () => {
  const port = await freePort();
  const url = `ws://127.0.0.1:${port}/ws`;
  const ann = makeClient(url, "ann-queue", { maxQueue: 4 });
  const seen = record(ann, "message");
  const connected = ann.connect();
  const join = ann.join("queued");
  const published = [ann.publish("queued", "1"), ann.publish("queued", "2"), ann.publish("queued", "3")];
  await assert.rejects(ann.publish("queued", "4"), { code: "queue_full" });
  // Typing is never queued, and does not count.
  ann.typing("queued");
  const late = ann.publish("queued", "late", { timeout: 100 }).catch((e) => e);
  // Its timeout runs in the queue (it could not enter: full) -> queue_full at once.
  assert.equal((await late).code, "queue_full");

  const h = await hub({ port });
  await connected;
  assert.deepEqual(await join, { room: "queued", count: 1 });
  const echoes = await Promise.all(published);
  assert.deepEqual(
    echoes.map((m) => m.message),
    ["1", "2", "3"],
  );
  assert.deepEqual(
    seen.map((m) => m.message),
    ["1", "2", "3"],
  );
});

test("queued requests time out while they wait", async () => {
  const port = await freePort();
  const ann = makeClient(`ws://127.0.0.1:${port}/ws`, "ann-queue-timeout");
  ann.connect().catch(() => {});
  const started = Date.now();
  await assert.rejects(ann.publish("r", "x", { timeout: 150 }), { code: "timeout" });
  assert.ok(Date.now() - started >= 145);
  ann.close();
  await assert.rejects(ann.join("r"), { code: "closed" });
});
