// Recovery with history on: a client that loses its connection gets exactly what it missed,
// in order, in rooms it joined and in the autojoined `general`; and learns when it cannot.

import assert from "node:assert/strict";
import http from "node:http";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { atLeast, closeAll, makeClient, next, record } from "../testkit/client.mjs";
import { startHub } from "../testkit/hub.mjs";

const HISTORY = { NEONEX_HISTORY_SIZE: "100" };
let hub;

before(async () => {
  hub = await startHub({ env: HISTORY });
});

after(async () => {
  closeAll();
  await hub?.kill();
});

/** A getToken that holds every connect attempt while the gate is shut. */
function gated() {
  let opened = Promise.resolve();
  let open = () => {};
  return {
    getToken: async () => {
      await opened;
      return "unused"; // without a JWT secret the hub takes ?user=
    },
    shut() {
      opened = new Promise((resolve) => (open = resolve));
    },
    open: () => open(),
  };
}

/** What a message event shows of a positioned message. */
const brief = (m) => [m.room, m.offset, m.message ?? m.data.n];

test("missed messages are replayed in order, in a joined room and in autojoined general", async () => {
  const gate = gated();
  const ann = makeClient(hub.ws, "ann", { getToken: gate.getToken });
  const bob = makeClient(hub.ws, "bob");
  await ann.connect();
  await bob.connect();
  await ann.join("lobby");
  await ann.join("general"); // autojoined already: now also app-joined, so recovered
  await bob.join("lobby");

  const seen = [];
  ann.on("message", (m) => seen.push(brief(m)));
  ann.on("publication", (m) => seen.push(brief(m)));
  const gaps = record(ann, "gap");
  await hub.publish("lobby", { n: "before" });
  await bob.publish("general", "before");
  await atLeast(seen, 2);

  gate.shut();
  const gone = next(ann, "disconnected");
  await hub.kick("ann");
  assert.equal((await gone).code, 1008);

  for (const n of [1, 2, 3]) await hub.publish("lobby", { n });
  await bob.publish("general", "missed 1");
  await bob.publish("lobby", "missed chat");
  await bob.publish("general", "missed 2");
  const recovered = record(ann, "recovered");
  const connected = next(ann, "connected");
  gate.open();
  await connected;
  await atLeast(recovered, 2);
  const live = next(ann, "message", (m) => m.message === "live");
  await bob.publish("lobby", "live");
  await live;

  assert.deepEqual(
    recovered.map(({ room, recovered: ok }) => [room, ok]).sort(),
    [
      ["general", true],
      ["lobby", true],
    ],
  );
  const lobby = seen.filter(([room]) => room === "lobby");
  const general = seen.filter(([room]) => room === "general");
  assert.deepEqual(lobby, [
    ["lobby", 1, "before"],
    ["lobby", 2, 1],
    ["lobby", 3, 2],
    ["lobby", 4, 3],
    ["lobby", 5, "missed chat"],
    ["lobby", 6, "live"],
  ]);
  assert.deepEqual(general.map(([, , text]) => text), ["before", "missed 1", "missed 2"]);
  const offsets = general.map(([, offset]) => offset);
  assert.deepEqual(
    offsets,
    offsets.map((_, i) => offsets[0] + i),
  );
  assert.deepEqual(gaps, []);
});

test("the hub refuses to recover a room it autojoined; leaving first makes it replay", async () => {
  // The server behaviour the client works around (README "Recovery and autojoined rooms").
  const open = async () => {
    const ws = new WebSocket(`${hub.ws}?user=raw`);
    const inbox = [];
    const waiting = [];
    ws.on("message", (data) => {
      const m = JSON.parse(data);
      const i = waiting.findIndex((w) => w.match(m));
      if (i >= 0) waiting.splice(i, 1)[0].resolve(m);
      else inbox.push(m);
    });
    const take = (match) => {
      const i = inbox.findIndex(match);
      if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0]);
      return new Promise((resolve) => waiting.push({ match, resolve }));
    };
    return { ws, take };
  };
  const first = await open();
  const joined = await first.take((m) => m.type === "joined" && m.room === "general");
  first.ws.close();
  await hub.publish("general", { n: "while away" });

  const second = await open();
  const auto = await second.take((m) => m.type === "joined" && m.room === "general");
  assert.equal(auto.recovered, undefined);
  const recover = { offset: joined.offset, epoch: joined.epoch };
  second.ws.send(JSON.stringify({ type: "join_room", room: "general", recover }));
  const refused = await second.take((m) => m.type === "joined" && m.recovered !== undefined);
  assert.equal(refused.recovered, false);

  second.ws.send(JSON.stringify({ type: "leave_room", room: "general" }));
  second.ws.send(JSON.stringify({ type: "join_room", room: "general", recover }));
  const granted = await second.take((m) => m.type === "joined" && m.recovered !== undefined);
  assert.equal(granted.recovered, true);
  const replayed = await second.take((m) => m.type === "publication");
  assert.deepEqual([replayed.offset, replayed.data], [joined.offset + 1, { n: "while away" }]);
  second.ws.close();
});

test("after a restart (new epoch) the client reports recovered:false and carries on", async () => {
  const own = await startHub({ env: HISTORY });
  try {
    const ann = makeClient(own.ws, "ann-epoch");
    await ann.connect();
    await ann.join("lobby");
    await ann.join("general");
    const first = next(ann, "publication");
    await own.publish("lobby", { n: 1 });
    const before = await first;
    assert.equal(before.offset, 1);

    const recovered = record(ann, "recovered");
    const gaps = record(ann, "gap");
    await own.kill();
    const again = await startHub({ port: own.port, env: HISTORY });
    own.kill = again.kill; // the restarted one is killed at the end
    await atLeast(recovered, 2, 15000);
    const outcome = Object.fromEntries(recovered.map((r) => [r.room, r]));
    assert.equal(outcome.lobby.recovered, false);
    assert.equal(outcome.general.recovered, false);
    assert.notEqual(outcome.lobby.epoch, undefined);

    const second = next(ann, "publication");
    await again.publish("lobby", { n: 2 });
    const after = await second;
    assert.deepEqual([after.offset, after.data], [outcome.lobby.offset + 1, { n: 2 }]);
    assert.deepEqual(gaps, []);
  } finally {
    await own.kill();
  }
});

test("a room the hub autojoins unexpectedly is still recovered (leave, then join again)", async () => {
  // The backend's connect hook puts the second connection, not the first, in `hooked`: the
  // client's recover is refused, as the room is joined already, and it asks again.
  let connections = 0;
  const backend = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      connections++;
      const rooms = connections === 1 ? [] : ["hooked"];
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ user_id: "ann-hooked", rooms }));
    });
  });
  await new Promise((resolve) => backend.listen(0, "127.0.0.1", resolve));
  const own = await startHub({
    env: { ...HISTORY, NEONEX_PROXY_CONNECT_URL: `http://127.0.0.1:${backend.address().port}/connect` },
  });
  try {
    await own.api("PUT", "/api/rooms/hooked"); // stays while empty
    const gate = gated();
    const ann = makeClient(own.ws, undefined, { getToken: gate.getToken });
    await ann.connect();
    assert.equal(ann.userId, "ann-hooked");
    await ann.join("hooked");
    const seen = record(ann, "publication");
    const first = next(ann, "publication");
    await own.publish("hooked", { n: 1 });
    await first;

    gate.shut();
    const gone = next(ann, "disconnected");
    await own.kick("ann-hooked");
    await gone;
    await own.publish("hooked", { n: 2 });
    await own.publish("hooked", { n: 3 });
    const answers = record(ann, "server_message");
    const recovered = next(ann, "recovered");
    gate.open();
    const outcome = await recovered;
    assert.deepEqual([outcome.room, outcome.recovered], ["hooked", true]);
    const joins = answers.filter((m) => m.type === "joined" && m.room === "hooked");
    // The autojoin's own joined may come before or after the refusal, or not at all when the
    // leave overtook it (the room's home is another shard).
    assert.deepEqual(
      joins.filter((m) => "recovered" in m).map((m) => m.recovered),
      [false, true],
      "refused, then granted",
    );
    const live = next(ann, "publication", (m) => m.data.n === 4);
    await own.publish("hooked", { n: 4 });
    await live;
    assert.deepEqual(
      seen.map((m) => [m.offset, m.data.n]),
      [
        [1, 1],
        [2, 2],
        [3, 3],
        [4, 4],
      ],
    );
    assert.equal(connections, 2);
  } finally {
    await own.kill();
    backend.close();
  }
});
