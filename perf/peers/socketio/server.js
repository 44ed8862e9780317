// Peer hub for the neonex benchmarks: Socket.IO 4 with rooms, WebSocket transport only.
//
// Events (the loadgen's `--protocol socketio` speaks Engine.IO v4 / Socket.IO v5 framing over
// a raw WebSocket at /socket.io/?EIO=4&transport=websocket):
//   client -> server  "join" ROOM       join; answered with "joined" ROOM
//                     "leave" ROOM      leave; answered with "left" ROOM
//                     "pub" ROOM TEXT   io.to(ROOM).emit("msg", TEXT): every member, sender included
//   server -> client  "msg" TEXT        one Engine.IO packet (one WebSocket message) each
//
// Usage: node server.js PORT   (listens on 127.0.0.1:PORT, runs in the foreground)
"use strict";

const http = require("http");
const { Server } = require("socket.io");

// engine.io uses `ws`, which uses bufferutil when it can load it; make sure this run does.
require("bufferutil");

const port = Number(process.argv[2] || 3000);
const ROOM_RE = /^[A-Za-z0-9_.:@-]{1,128}$/;

const httpServer = http.createServer((req, res) => {
  res.writeHead(404).end();
});

const io = new Server(httpServer, {
  transports: ["websocket"],
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
  maxHttpBufferSize: 512 * 1024,
  // Socket.IO's defaults, spelled out: the client must answer a ping ("2") within 20 s.
  pingInterval: 25_000,
  pingTimeout: 20_000,
});

io.on("connection", (socket) => {
  socket.on("join", (room) => {
    if (typeof room !== "string" || !ROOM_RE.test(room)) return socket.emit("error_msg", "bad_request");
    socket.join(room);
    socket.emit("joined", room);
  });
  socket.on("leave", (room) => {
    socket.leave(room);
    socket.emit("left", room);
  });
  socket.on("pub", (room, msg) => {
    // The adapter encodes the packet once and writes it to every socket in the room.
    io.to(room).emit("msg", msg);
  });
});

httpServer.listen({ host: "127.0.0.1", port, backlog: 4096 }, () => {
  const v = require("socket.io/package.json").version;
  console.error(`socketio: listening on 127.0.0.1:${port} (socket.io ${v}, pid ${process.pid})`);
});

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => process.exit(0));
}
