// The dashboard's start: find out whether the hub wants a key, sign in if so, then keep
// the figures live (/stats every second, the rooms every few seconds).

import { api, key, onUnauthorized } from "./api.js";
import { LiveCharts } from "./charts.js";
import { disconnectForm } from "./disconnect.js";
import { $, clock, say } from "./dom.js";
import { askForKey } from "./login.js";
import { RoomView } from "./room.js";
import { RoomList } from "./rooms.js";
import { showCluster, showShards, showTiles } from "./stats.js";

const STATS_EVERY = 1000;
const ROOMS_EVERY = 3000;
const RETRY_EVERY = 5000;

let paused = false;

// Resolves with "open" (the hub takes calls without a key: loopback, no api.key) or
// "key" (signed in). Anything else the hub answers is shown, and asked again later.
async function access() {
  for (;;) {
    const saved = key.get();
    try {
      await api.probe(saved);
      say($("fault"), null);
      return saved ? "key" : "open";
    } catch (e) {
      if (e.status === 401) {
        key.clear();
        await askForKey(saved ? "The saved key was refused: sign in again." : null);
        return "key";
      }
      say($("fault"), e.message);
      await new Promise((r) => setTimeout(r, RETRY_EVERY));
    }
  }
}

// Runs `task` now and then every `ms` after it finishes, skipping turns while paused.
function every(ms, task) {
  const turn = async () => {
    if (!paused) await task();
    setTimeout(turn, ms);
  };
  turn();
}

function start(mode) {
  $("dashboard").hidden = false;
  $("logout").hidden = mode !== "key";
  $("live").dataset.mode = mode;

  const charts = new LiveCharts();
  const room = new RoomView();
  const rooms = new RoomList((name) => room.open(name));
  disconnectForm(() => Promise.all([rooms.refresh(), room.refresh()]));

  every(STATS_EVERY, async () => {
    try {
      const stats = await api.stats();
      showTiles(stats);
      showShards(stats);
      showCluster(stats);
      charts.push(stats);
      say($("fault"), null);
      $("live").textContent = `live · ${clock(Date.now() / 1000)}`;
      $("live").dataset.state = "ok";
    } catch (e) {
      say($("fault"), e.message);
      $("live").textContent = "no stats";
      $("live").dataset.state = "error";
    }
  });
  every(ROOMS_EVERY, () => Promise.all([rooms.refresh(), room.refresh()]));
}

$("logout").addEventListener("click", () => {
  key.clear();
  location.reload();
});

// A key refused mid-session (changed on the hub): pause, ask again, go on.
onUnauthorized(async () => {
  if (paused) return;
  paused = true;
  key.clear();
  await askForKey("The hub refused the key: sign in again.");
  $("dashboard").hidden = false;
  paused = false;
});

start(await access());
