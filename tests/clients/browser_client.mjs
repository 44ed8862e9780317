// Headless Chromium (Debian's, driven by puppeteer-core) as a WebSocket client with the
// browser's own permessage-deflate, for tests/interop.rs.
//
// Usage: node browser_client.mjs WS_URL. Inside a blank page the browser connects, sends
// a large and a small chat message, and reports, one JSON object per line on standard
// output, what it negotiated ("ready") and every message it receives until it has its
// own two back and one broadcast of type "quotes"; then it exits 0.
import puppeteer from "puppeteer-core";

const url = process.argv[2];
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  page.on("console", (line) => console.log(line.text()));
  await page.evaluate(
    (url) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(url);
        const received = [];
        let own = 0;
        let broadcasts = 0;
        ws.onerror = () => reject(new Error("websocket error"));
        ws.onmessage = (event) => {
          const message = JSON.parse(event.data);
          received.push(message);
          if (received.length === 2) {
            ws.send(JSON.stringify({ type: "message", room: "general", message: "chromium ".repeat(4000) }));
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
          if (own >= 2 && broadcasts >= 1) {
            ws.close();
            resolve();
          }
        };
      }),
    url,
  );
} finally {
  await browser.close();
}
