// A Node `ws` client with its default permessage-deflate, for tests/interop.rs.
//
// Usage: node deflate_client.mjs WS_URL. It prints one JSON object per line (see
// conversation.mjs) and exits 0 once the conversation is over.
import WebSocket from "ws";

import { converse } from "./conversation.mjs";

const ws = new WebSocket(process.argv[2], { maxPayload: 4 * 1024 * 1024 });
ws.on("error", (e) => {
  console.error(String(e));
  process.exit(1);
});
converse(ws, "node ", console.log, () => process.exit(0));
