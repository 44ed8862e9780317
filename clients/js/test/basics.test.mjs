// Join, publish, leave, typing, rpc and the errors a request can end with, against a real hub.

import assert from "node:assert/strict";
import http from "node:http";
import { after, before, test } from "node:test";
import { NeonexError } from "../src/neonex-client.js";
import { closeAll, makeClient, next, record } from "../testkit/client.mjs";
import { startHub } from "../testkit/hub.mjs";

let hub;
let backend;

before(async () => {
  // A backend for rpc (proxy.rpc_url): answers {sum} for "add", 403 for anything else.
  backend = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const { method, data } = JSON.parse(body);
      res.setHeader("content-type", "application/json");
      if (method !== "add") {
        res.statusCode = 403;
        res.end("{}");
        return;
      }
      res.end(JSON.stringify({ data: { sum: data.a + data.b } }));
    });
  });
  await new Promise((resolve) => backend.listen(0, "127.0.0.1", resolve));
  const { port } = backend.address();
  hub = await startHub({ env: { NEONEX_PROXY_RPC_URL: `http://127.0.0.1:${port}/rpc` } });
});

after(async () => {
  closeAll();
  await hub?.kill();
  backend?.close();
});

test("connect, join, publish, leave round trip", async () => {
  const ann = makeClient(hub.ws, "ann");
  const bob = makeClient(hub.ws, "bob");
  const statuses = record(ann, "status");
  const welcome = await ann.connect();
  assert.equal(welcome.userId, "ann");
  assert.equal(ann.userId, "ann");
  assert.match(ann.connectionId, /^\d+-\d+$/);
  assert.deepEqual(statuses.map((s) => s.status), ["connecting", "connected"]);
  await bob.connect();

  const joined = await ann.join("lobby");
  assert.deepEqual(joined, { room: "lobby", count: 1 });
  await bob.join("lobby");
  const bobHears = next(bob, "message", (m) => m.room === "lobby");
  const echo = await ann.publish("lobby", { message: "hi", data: { n: 1 } });
  assert.equal(echo.type, "chat_message");
  assert.equal(echo.user_id, "ann");
  assert.deepEqual(echo.data, { n: 1 });
  const heard = await bobHears;
  assert.equal(heard.message, "hi");

  const text = await ann.publish("lobby", "plain text");
  assert.equal(text.message, "plain text");

  const bobSeesLeave = next(bob, "user_left", (m) => m.room === "lobby" && m.user_id === "ann");
  assert.deepEqual(await ann.leave("lobby"), { room: "lobby", count: 1 });
  await bobSeesLeave;
  assert.deepEqual(ann.rooms, []);

  ann.close();
  assert.equal(ann.status, "closed");
  assert.deepEqual(statuses.map((s) => s.status), ["connecting", "connected", "closed"]);
  await assert.rejects(ann.publish("lobby", "after close"), { code: "closed" });
});

test("a server error rejects the request that caused it", async () => {
  const ann = makeClient(hub.ws, "ann-errors");
  await ann.connect();
  const err = await ann.publish("nowhere-joined", "hi").catch((e) => e);
  assert.ok(err instanceof NeonexError);
  assert.equal(err.code, "room_not_found");
  // `random` exists from the start, and ann is not in it.
  await assert.rejects(ann.publish("random", "hi"), { name: "NeonexError", code: "not_in_room" });
  await assert.rejects(ann.leave("random"), { code: "not_in_room" });
  await assert.rejects(ann.join("bad room name!"), { code: "bad_request" });
  // The connection is fine afterwards.
  await ann.join("lobby2");
  assert.equal((await ann.publish("lobby2", "ok")).message, "ok");
});

test("a request with no answer times out", async () => {
  const ann = makeClient(hub.ws, "ann-timeout", { pingInterval: 60000 });
  await ann.connect();
  await ann.join("frozen");
  await hub.pause(); // nothing answers
  try {
    const started = Date.now();
    await assert.rejects(ann.publish("frozen", "hello?", { timeout: 200 }), { code: "timeout" });
    assert.ok(Date.now() - started >= 195);
  } finally {
    hub.resume();
  }
  // The late echo does not disturb later requests.
  assert.equal((await ann.publish("frozen", "again")).message, "again");
});

test("rpc resolves with the backend's data and rejects with its code", async () => {
  const ann = makeClient(hub.ws, "ann-rpc");
  await ann.connect();
  assert.deepEqual(await ann.rpc("add", { a: 2, b: 3 }), { sum: 5 });
  const [x, y] = await Promise.all([ann.rpc("add", { a: 1, b: 1 }), ann.rpc("add", { a: 5, b: 5 })]);
  assert.deepEqual([x, y], [{ sum: 2 }, { sum: 10 }]);
  await assert.rejects(ann.rpc("secret", {}), { code: "forbidden" });
});

test("typing is throttled and stops by itself", async () => {
  const options = { typingInterval: 300, typingTimeout: 250 };
  const ann = makeClient(hub.ws, "ann-types", options);
  const bob = makeClient(hub.ws, "bob-watches");
  await ann.connect();
  await bob.connect();
  await ann.join("typing-room");
  await bob.join("typing-room");
  const seen = record(bob, "typing");
  const stopped = next(bob, "typing", (m) => m.typing === false);
  for (let i = 0; i < 10; i++) ann.typing("typing-room");
  await stopped; // after typingTimeout without a call
  assert.deepEqual(
    seen.map((m) => [m.user_id, m.typing]),
    [
      ["ann-types", true],
      ["ann-types", false],
    ],
  );
  const again = next(bob, "typing", (m) => m.typing === true);
  ann.typing("typing-room");
  await again;
  const stop = next(bob, "typing", (m) => m.typing === false);
  ann.stopTyping("typing-room");
  await stop;
});
