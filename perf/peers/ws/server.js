// Peer hub for the neonex benchmarks: Node `ws` (with bufferutil), a room as a Set of sockets.
//
// Protocol (the loadgen's `--protocol ws`, shared with the uws and gorilla peers), text frames:
//   client -> server  {"join":"ROOM"}             join; answered with {"joined":"ROOM"}
//                     {"leave":"ROOM"}            leave; answered with {"left":"ROOM"}
//                     {"pub":"ROOM","msg":"TEXT"} TEXT goes to every member of ROOM, sender included
//   server -> client  the raw TEXT of each published message, one WebSocket message each;
//                     {"error":"..."} for a request it does not understand
//
// Usage: node server.js PORT   (listens on 127.0.0.1:PORT, runs in the foreground)
"use strict";

const { WebSocketServer, WebSocket } = require("ws");

// ws uses bufferutil for masking when it can load it; make sure this run does.
require("bufferutil");

const port = Number(process.argv[2] || 3000);

const ROOM_RE = /^[A-Za-z0-9_.:@-]{1,128}$/;
// Same bound as neonex's per-connection send queue: a member with more than this queued
// (not yet taken by its socket) is closed as a slow consumer.
const MAX_BUFFERED = 4 * 1024 * 1024;
// Heartbeat as in ws's README and neonex's defaults: ping every 54 s, drop a silent peer.
const PING_INTERVAL_MS = 54_000;

/** @type {Map<string, Set<WebSocket>>} */
const rooms = new Map();

const wss = new WebSocketServer({
  host: "127.0.0.1",
  port,
  perMessageDeflate: false,
  maxPayload: 512 * 1024,
  clientTracking: true,
  backlog: 4096,
});

function leave(ws, name) {
  const room = rooms.get(name);
  if (room && room.delete(ws) && room.size === 0) rooms.delete(name);
  ws.rooms.delete(name);
}

wss.on("connection", (ws) => {
  ws.rooms = new Set();
  ws.isAlive = true;
  ws.on("pong", () => {
    ws.isAlive = true;
  });
  ws.on("message", (data, isBinary) => {
    ws.isAlive = true;
    let req;
    try {
      req = JSON.parse(data.toString());
    } catch {
      ws.send('{"error":"invalid_message"}');
      return;
    }
    if (typeof req.pub === "string") {
      const room = rooms.get(req.pub);
      if (!room) return;
      // Encode once; every member gets the same bytes as a text frame.
      const msg = Buffer.from(String(req.msg));
      for (const member of room) {
        if (member.readyState !== WebSocket.OPEN) continue;
        if (member.bufferedAmount > MAX_BUFFERED) {
          member.close(1008, "slow consumer");
          continue;
        }
        member.send(msg, { binary: false, compress: false });
      }
    } else if (typeof req.join === "string" && ROOM_RE.test(req.join)) {
      let room = rooms.get(req.join);
      if (!room) rooms.set(req.join, (room = new Set()));
      room.add(ws);
      ws.rooms.add(req.join);
      ws.send(JSON.stringify({ joined: req.join }));
    } else if (typeof req.leave === "string") {
      leave(ws, req.leave);
      ws.send(JSON.stringify({ left: req.leave }));
    } else {
      ws.send('{"error":"bad_request"}');
    }
  });
  ws.on("close", () => {
    for (const name of [...ws.rooms]) leave(ws, name);
  });
  ws.on("error", () => {});
});

const heartbeat = setInterval(() => {
  for (const ws of wss.clients) {
    if (!ws.isAlive) {
      ws.terminate();
      continue;
    }
    ws.isAlive = false;
    ws.ping();
  }
}, PING_INTERVAL_MS);

wss.on("listening", () => {
  console.error(`ws: listening on 127.0.0.1:${port} (ws ${require("ws/package.json").version}, pid ${process.pid})`);
});
wss.on("close", () => clearInterval(heartbeat));

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => process.exit(0));
}
