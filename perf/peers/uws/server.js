// Peer hub for the neonex benchmarks: uWebSockets.js with its native pub/sub.
//
// Protocol (the loadgen's `--protocol uws`, shared with the ws and gorilla peers), text frames:
//   client -> server  {"join":"ROOM"}             subscribe; answered with {"joined":"ROOM"}
//                     {"leave":"ROOM"}            unsubscribe; answered with {"left":"ROOM"}
//                     {"pub":"ROOM","msg":"TEXT"} TEXT goes to every member of ROOM, sender included
//   server -> client  the raw TEXT of each published message, one WebSocket message each;
//                     {"error":"..."} for a request it does not understand
//
// Usage: node server.js PORT   (listens on 127.0.0.1:PORT, runs in the foreground)
//
// UWS_COMPRESSION=shared|dedicated turns permessage-deflate on with uWS.SHARED_COMPRESSOR or
// uWS.DEDICATED_COMPRESSOR (unset or "off": no compression). Publishing stays
// app.publish(room, msg), which compresses for each subscriber: uWebSockets' documented way.
"use strict";

const path = require("path");

// Load the native addon itself: the package's wrapper silently falls back to a slow pure
// Node implementation when the binary does not load, which would not be uWebSockets.
const binary = path.join(
  path.dirname(require.resolve("uWebSockets.js/package.json")),
  "binaries",
  `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`,
);
const uWS = require(binary);

const port = Number(process.argv[2] || 3000);

const COMPRESSION_MODES = {
  off: uWS.DISABLED,
  shared: uWS.SHARED_COMPRESSOR,
  dedicated: uWS.DEDICATED_COMPRESSOR,
};
const compressionName = process.env.UWS_COMPRESSION || "off";
const compression = COMPRESSION_MODES[compressionName];
if (compression === undefined) {
  console.error(`uws: UWS_COMPRESSION must be off, shared or dedicated, not ${compressionName}`);
  process.exit(2);
}
// Without this flag publish sends plain frames even to connections that negotiated deflate.
const compress = compression !== uWS.DISABLED;
const decoder = new TextDecoder();

const ROOM_RE = /^[A-Za-z0-9_.:@-]{1,128}$/;

const app = uWS.App();

app.ws("/*", {
  compression,
  maxPayloadLength: 512 * 1024,
  // Same bound as neonex's per-connection send queue (4 MiB); a subscriber that falls
  // further behind is closed, as neonex closes a slow consumer.
  maxBackpressure: 4 * 1024 * 1024,
  closeOnBackpressureLimit: true,
  idleTimeout: 120,
  sendPingsAutomatically: true,

  message: (ws, message, isBinary) => {
    let req;
    try {
      req = JSON.parse(decoder.decode(message));
    } catch {
      ws.send('{"error":"invalid_message"}', false);
      return;
    }
    if (typeof req.pub === "string") {
      // Every subscriber of the topic, the sender included when subscribed.
      app.publish(req.pub, String(req.msg), false, compress);
    } else if (typeof req.join === "string" && ROOM_RE.test(req.join)) {
      ws.subscribe(req.join);
      ws.send(JSON.stringify({ joined: req.join }), false);
    } else if (typeof req.leave === "string") {
      ws.unsubscribe(req.leave);
      ws.send(JSON.stringify({ left: req.leave }), false);
    } else {
      ws.send('{"error":"bad_request"}', false);
    }
  },
});

app.any("/*", (res) => {
  res.writeStatus("426 Upgrade Required").end();
});

app.listen("127.0.0.1", port, (token) => {
  if (!token) {
    console.error(`uws: cannot listen on 127.0.0.1:${port}`);
    process.exit(1);
  }
  console.error(
    `uws: listening on 127.0.0.1:${port} (uWebSockets.js native, compression ${compressionName}, pid ${process.pid})`,
  );
});

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => process.exit(0));
}
