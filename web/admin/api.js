// The hub's HTTP calls as the dashboard makes them: /api/* with the API key once one is
// given, and the open /stats. Every failure is an ApiError whose message can be shown as is.

const KEY = "neonex.admin.key";

export class ApiError extends Error {
  constructor(status, code, text) {
    super(status ? `HTTP ${status} ${code}: ${text}` : text);
    this.status = status; // 0 when the hub could not be reached
    this.code = code;
  }
}

// The key lives for the tab's session only: closing the tab forgets it.
export const key = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

let refused = () => {};

// Called when the hub refuses the key in use, so the page can ask for it again.
export function onUnauthorized(handler) {
  refused = handler;
}

async function call(method, path, { body, withKey = key.get(), probing = false } = {}) {
  const headers = {};
  if (withKey) headers.Authorization = `Bearer ${withKey}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body, cache: "no-store" });
  } catch (e) {
    throw new ApiError(0, "unreachable", `${method} ${path}: the hub cannot be reached (${e.message})`);
  }
  const text = await response.text();
  let json;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    const code = json?.code ?? "error";
    const error = new ApiError(response.status, code, json?.error ?? (text || response.statusText));
    if (response.status === 401 && !probing) refused(error);
    throw error;
  }
  return json;
}

const room = (name) => `/api/rooms/${encodeURIComponent(name)}`;

export const api = {
  // Tries a key (or none) without keeping it: how the page learns what the hub asks for.
  probe: (withKey) => call("GET", "/api/rooms", { withKey, probing: true }),
  stats: () => call("GET", "/stats"),
  rooms: () => call("GET", "/api/rooms"),
  members: (name) => call("GET", `${room(name)}/members`),
  history: (name, since, limit) => call("GET", `${room(name)}/history?since=${since}&limit=${limit}`),
  publish: (name, json) => call("POST", `${room(name)}/publish`, { body: json }),
  disconnectConnection: (id) => call("DELETE", `/api/connections/${encodeURIComponent(id)}`),
  disconnectUser: (user) => call("DELETE", `/api/users/${encodeURIComponent(user)}/connections`),
};
