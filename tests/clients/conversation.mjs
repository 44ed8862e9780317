// The conversation every JavaScript test client has with the hub, for tests/interop.rs:
// after `welcome` and `joined`, send a large and a small chat message (the large one
// `word` repeated), report what was negotiated ("ready"), then report every message until
// both come back and one broadcast of type "quotes" has arrived, and close.
//
// Self-contained (no imports, nothing from its module), so the browser client can hand its
// source to a page.
export function converse(ws, word, log, done) {
  const received = [];
  let own = 0;
  let broadcasts = 0;
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data.toString());
    received.push(message);
    if (received.length === 2) {
      ws.send(JSON.stringify({ type: "message", room: "general", message: word.repeat(4000) }));
      ws.send(JSON.stringify({ type: "message", room: "general", message: "small" }));
      const extensions = ws.extensions.split(",").map((e) => e.split(";")[0].trim());
      log(JSON.stringify({ ready: true, extensions, welcome: received[0].type, joined: received[1].type }));
      return;
    }
    if (received.length < 2) return;
    if (message.type === "chat_message") own += 1;
    if (message.type === "quotes") broadcasts += 1;
    log(JSON.stringify({ got: message }));
    if (own >= 2 && broadcasts >= 1) {
      ws.close();
      done();
    }
  };
}
