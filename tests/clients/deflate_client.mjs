// A Node `ws` client with its default permessage-deflate, for tests/interop.rs.
//
// Usage: node deflate_client.mjs WS_URL. It prints one JSON object per line: what it
// negotiated and joined ("ready"), then every message it receives until it has its own
// two chat messages back and one broadcast of type "quotes"; then it exits 0.
import WebSocket from "ws";

const ws = new WebSocket(process.argv[2], { maxPayload: 4 * 1024 * 1024 });
const received = [];
let own = 0;
let broadcasts = 0;
ws.on("message", (data) => {
  const message = JSON.parse(data.toString());
  received.push(message);
  if (received.length === 2) {
    ws.send(JSON.stringify({ type: "message", room: "general", message: "node ".repeat(5000) }));
    ws.send(JSON.stringify({ type: "message", room: "general", message: "small" }));
    const extensions = ws.extensions.split(",").map((e) => e.split(";")[0].trim());
    const ready = { ready: true, extensions, welcome: received[0].type, joined: received[1].type };
    console.log(JSON.stringify(ready));
    return;
  }
  if (received.length < 2) return;
  if (message.type === "chat_message") own += 1;
  if (message.type === "quotes") broadcasts += 1;
  console.log(JSON.stringify({ got: message }));
  if (own >= 2 && broadcasts >= 1) ws.close();
});
ws.on("close", () => process.exit(0));
ws.on("error", (e) => {
  console.error(String(e));
  process.exit(1);
});
