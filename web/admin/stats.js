// The figures of one /stats sample: the number tiles, the per-shard table and the cluster.

import { $, bytes, count, h, micros, perSecond } from "./dom.js";

function tile(testid, value, text) {
  const el = document.querySelector(`[data-testid="${testid}"]`);
  el.textContent = text;
  el.dataset.value = value;
}

export function showTiles(stats) {
  tile("stat-connections", stats.total_connections, count(stats.total_connections));
  tile("stat-users", stats.unique_users, count(stats.unique_users));
  tile("stat-rooms", stats.rooms, count(stats.rooms));
  tile("stat-in", stats.messages_in_per_sec, perSecond(stats.messages_in_per_sec));
  tile("stat-out", stats.deliveries_per_sec, perSecond(stats.deliveries_per_sec));
  tile("stat-p50", stats.fanout_latency_us.p50, micros(stats.fanout_latency_us.p50));
  tile("stat-p99", stats.fanout_latency_us.p99, micros(stats.fanout_latency_us.p99));
}

export function showShards(stats) {
  $("shards").replaceChildren(
    ...stats.shards.map((shard, i) =>
      h(
        "tr",
        { "data-testid": `shard-${i}` },
        h("td", {}, String(i)),
        h("td", {}, count(shard.connections)),
        h("td", {}, perSecond(shard.messages_in_per_sec)),
        h("td", {}, perSecond(shard.deliveries_per_sec)),
        h("td", {}, bytes(shard.bytes_in)),
        h("td", {}, bytes(shard.bytes_out)),
        h("td", { class: shard.slow_consumers ? "warn" : "" }, count(shard.slow_consumers)),
      ),
    ),
  );
}

// The node's part in a cluster; the card stays hidden on a single node.
export function showCluster(stats) {
  const cluster = stats.cluster;
  $("cluster").hidden = !cluster;
  $("node").textContent = cluster ? `node ${cluster.node_id}` : "";
  // In a cluster the tiles and charts are this node's; the card below has the whole.
  $("tiles").classList.toggle("node-only", Boolean(cluster));
  if (!cluster) return;
  const figures = [
    ["Node", cluster.node_id],
    ["Nodes", count(cluster.nodes)],
    ["Peers", cluster.peers.length ? cluster.peers.join(", ") : "none"],
    ["NATS", h("span", { class: `state ${cluster.nats}` }, cluster.nats)],
    ["Connections (cluster)", count(cluster.connections)],
    ["Users (cluster)", count(cluster.users)],
    ["Rooms (cluster)", count(cluster.rooms)],
  ];
  $("cluster-figures").replaceChildren(...figures.flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]));
  const members = $("cluster-members");
  members.hidden = !Array.isArray(cluster.members);
  if (members.hidden) return;
  members.tBodies[0].replaceChildren(
    ...cluster.members.map((node) =>
      h(
        "tr",
        { class: node.node_id === cluster.node_id ? "self" : "" },
        h("td", {}, node.node_id),
        h("td", {}, count(node.connections)),
        h("td", {}, count(node.users)),
        h("td", {}, count(node.rooms)),
      ),
    ),
  );
}
