// Recovery across a node restart in a cluster: history lives in NATS JetStream, so what was
// published through another node while the client's node was down is replayed to it.

import assert from "node:assert/strict";
import { after, test } from "node:test";
import { atLeast, closeAll, makeClient, next, record } from "../testkit/client.mjs";
import { startHub, startNats, until } from "../testkit/hub.mjs";

const running = [];

after(async () => {
  closeAll();
  for (const p of running.reverse()) await p.kill();
});

async function node(nats, port) {
  const hub = await startHub({
    port,
    env: {
      NEONEX_HISTORY_SIZE: "100",
      NEONEX_CLUSTER_NATS_URL: nats.url,
      NEONEX_CLUSTER_NODE_TIMEOUT: "2s",
    },
  });
  running.push(hub);
  return hub;
}

async function clusterOf(hub, nodes) {
  await until(async () => (await hub.api("GET", "/stats")).cluster?.nodes === nodes, 15000, `${nodes} nodes`);
}

test("a client recovers, after its node restarts, what another node published meanwhile", async () => {
  const nats = await startNats();
  running.push(nats);
  const one = await node(nats);
  const two = await node(nats);
  await clusterOf(one, 2);
  await clusterOf(two, 2);

  const ann = makeClient(one.ws, "ann-cluster");
  await ann.connect();
  await ann.join("lobby");
  await ann.join("general");
  const seen = [];
  ann.on("publication", (m) => seen.push([m.room, m.offset, m.data.n]));
  const gaps = record(ann, "gap");
  await two.publish("lobby", { n: 0 });
  await two.publish("general", { n: 0 });
  await atLeast(seen, 2);

  const gone = next(ann, "disconnected");
  await one.kill();
  await gone;
  for (const n of [1, 2, 3]) await two.publish("lobby", { n });
  await two.publish("general", { n: 1 });

  const recovered = record(ann, "recovered");
  await node(nats, one.port);
  await atLeast(recovered, 2, 15000);
  assert.deepEqual(
    recovered.map((r) => [r.room, r.recovered]).sort(),
    [
      ["general", true],
      ["lobby", true],
    ],
  );
  await atLeast(seen, 6);
  const lobby = seen.filter(([room]) => room === "lobby").map(([, offset, n]) => [offset, n]);
  assert.deepEqual(lobby, [
    [1, 0],
    [2, 1],
    [3, 2],
    [4, 3],
  ]);
  const general = seen.filter(([room]) => room === "general").map(([, , n]) => n);
  assert.deepEqual(general, [0, 1]);
  assert.deepEqual(gaps, []);
});
