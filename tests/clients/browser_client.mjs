// Headless Chromium (Debian's, driven by puppeteer-core) as a WebSocket client with the
// browser's own permessage-deflate, for tests/interop.rs.
//
// Usage: node browser_client.mjs WS_URL. Inside a blank page the browser has the
// conversation of conversation.mjs; what the page logs is printed, one JSON object per
// line, and the script exits 0 once the conversation is over.
import puppeteer from "puppeteer-core";

import { converse } from "./conversation.mjs";

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  page.on("console", (line) => console.log(line.text()));
  await page.evaluate(
    (url, source) =>
      new Promise((resolve, reject) => {
        const converse = new Function(`return ${source}`)();
        const ws = new WebSocket(url);
        ws.onerror = () => reject(new Error("websocket error"));
        converse(ws, "chromium ", console.log, resolve);
      }),
    process.argv[2],
    converse.toString(),
  );
} finally {
  await browser.close();
}
