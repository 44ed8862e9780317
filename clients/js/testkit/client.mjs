// Clients for the tests: the real neonex-client over the `ws` package, with quick timings,
// and ways to wait for its events (never fixed sleeps).

import WebSocket from "ws";
import { NeonexClient } from "../src/neonex-client.js";

const open = new Set();

/** A client of `url` as `user`; closed by closeAll(). */
export function makeClient(url, user, options = {}) {
  const client = new NeonexClient(url, {
    user,
    WebSocket,
    minReconnectDelay: 50,
    maxReconnectDelay: 200,
    shutdownReconnectDelay: 300,
    timeout: 5000,
    ...options,
  });
  open.add(client);
  return client;
}

export function closeAll() {
  for (const client of open) client.close();
  open.clear();
}

/** The next `name` event whose payload passes `match`, within `ms`. */
export function next(client, name, match = () => true, ms = 8000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no "${name}" event within ${ms} ms`));
    }, ms);
    const off = client.on(name, (payload) => {
      if (!match(payload)) return;
      clearTimeout(timer);
      off();
      resolve(payload);
    });
  });
}

/** Every `name` event from now on, in an array that grows. */
export function record(client, name) {
  const seen = [];
  client.on(name, (payload) => seen.push(payload));
  return seen;
}

/** Waits until `array` has at least `n` items. */
export async function atLeast(array, n, ms = 8000, what = "items") {
  const deadline = Date.now() + ms;
  while (array.length < n) {
    if (Date.now() > deadline) throw new Error(`got ${array.length} of ${n} ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return array;
}
