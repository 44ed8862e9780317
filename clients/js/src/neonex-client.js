// neonex-client: a WebSocket client for the neonex hub (protocol v1.1).
// One ES module, no dependencies: browsers use their WebSocket, Node passes `ws`.
// The wire protocol is in the hub's README ("Protocol", "Recovery").

const DEFAULTS = {
  protocols: ["neonex.v1"],
  minReconnectDelay: 500,
  maxReconnectDelay: 20000,
  shutdownReconnectDelay: 5000,
  connectTimeout: 10000,
  timeout: 10000,
  pingInterval: 20000,
  pongTimeout: 10000,
  maxQueue: 256,
  typingInterval: 2000,
  typingTimeout: 3000,
};

// Which requests a server error code can answer. The protocol has no request ids
// (except for rpc), so an error goes to the oldest request that could have caused it.
const CAUSES = {
  not_in_room: ["publish", "typing", "leave"],
  room_not_found: ["publish", "typing", "join"],
  limit_exceeded: ["join"],
  forbidden: ["join", "publish"],
  unknown_type: ["rpc"],
  bad_request: ["join", "leave", "publish", "rpc"],
  rate_limited: ["join", "leave", "publish", "rpc"],
  unavailable: ["join", "leave", "publish", "rpc"],
};

/** A failed request: `code` is the server's error code or a client one. */
export class NeonexError extends Error {
  constructor(code, message, details = {}) {
    super(message || code);
    this.name = "NeonexError";
    this.code = code;
    Object.assign(this, details);
  }
}

export class NeonexClient {
  constructor(url, options = {}) {
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this.WebSocket !== "function") {
      throw new TypeError("neonex-client: no WebSocket; pass one as the `WebSocket` option (Node: ws)");
    }
    this.status = "disconnected";
    this.connectionId = null;
    this.userId = null;

    this._listeners = new Map();
    this._ws = null;
    this._generation = 0; // bumps with every socket, so stale callbacks do nothing
    this._failures = 0; // consecutive attempts without a welcome
    this._timer = null; // reconnect or connect-timeout timer
    this._shutdown = false; // server_shutdown seen on this socket
    this._waiters = []; // connect() promises

    this._wanted = new Set(); // rooms the app joined: rejoined after every reconnect
    this._unwanted = new Set(); // rooms the app left: left again if the server autojoins them
    this._streams = new Map(); // room -> {epoch, offset}: the last positioned message seen
    this._inRooms = new Set(); // rooms this socket is in
    this._autojoined = new Set(); // rooms the server joined by itself on the last socket
    this._awaitingAutojoin = new Set(); // autojoins not yet announced on this socket
    this._recovering = new Map(); // room -> {retried}: rejoin with recover under way

    this._queue = []; // requests waiting for a connection
    this._inflight = []; // requests sent on this socket, oldest first
    this._nextRpcId = 1;

    this._heardAt = 0;
    this._pingSentAt = 0;
    this._liveness = null;
    this._typing = new Map(); // room -> {sentAt, idle}
  }

  // ---- events ----

  /** Adds a listener; returns a function that removes it. */
  on(name, fn) {
    if (!this._listeners.has(name)) this._listeners.set(name, new Set());
    this._listeners.get(name).add(fn);
    return () => this.off(name, fn);
  }

  off(name, fn) {
    this._listeners.get(name)?.delete(fn);
  }

  /** Like on(), for the next event only. */
  once(name, fn) {
    const off = this.on(name, (payload) => {
      off();
      fn(payload);
    });
    return off;
  }

  _emit(name, payload) {
    for (const fn of [...(this._listeners.get(name) || [])]) {
      try {
        fn(payload);
      } catch (e) {
        // A listener's bug must not break the client's state machine.
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }

  _setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this._emit("status", { status });
  }

  // ---- connecting ----

  /** Resolves at the first welcome; the client reconnects by itself afterwards. */
  connect() {
    if (this.status === "connected") return Promise.resolve(this._welcomeInfo());
    const promise = new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
    if (this.status === "disconnected" && !this._timer && !this._ws) this._attempt(0);
    if (this.status === "closed") {
      this.status = "disconnected";
      this._failures = 0;
      this._attempt(0);
    }
    return promise;
  }

  /** Stops everything: no reconnect, every pending request fails with `closed`. */
  close() {
    if (this.status === "closed") return;
    const wasOpen = this._ws !== null;
    this._generation++;
    clearTimeout(this._timer);
    this._timer = null;
    this._stopLiveness();
    this._stopAllTyping(false);
    if (this._ws) {
      const ws = this._ws;
      this._ws = null;
      detach(ws);
      try {
        ws.close(1000, "client closed");
      } catch {
        // already closing
      }
    }
    const err = () => new NeonexError("closed", "the client was closed");
    for (const req of [...this._queue, ...this._inflight, ...(this._orphans || [])]) this._settle(req, err());
    this._queue = [];
    this._inflight = [];
    this._orphans = [];
    for (const w of this._waiters.splice(0)) w.reject(err());
    this._inRooms.clear();
    this._recovering.clear();
    this.connectionId = null;
    if (wasOpen) this._emit("disconnected", { code: 1000, reason: "client closed", reconnect: false, delay: null });
    this._setStatus("closed");
  }

  async _attempt(delay) {
    const generation = ++this._generation;
    this._timer = null;
    this._setStatus("connecting");
    this._emit("connecting", { attempt: this._failures, delay });
    let url;
    try {
      url = await this._buildUrl();
    } catch (e) {
      if (generation === this._generation) this._lost(0, `getToken failed: ${e?.message || e}`);
      return;
    }
    if (generation !== this._generation) return;
    let ws;
    try {
      ws = new this.WebSocket(url, this.options.protocols);
    } catch (e) {
      this._lost(0, `cannot open: ${e?.message || e}`);
      return;
    }
    this._ws = ws;
    this._shutdown = false;
    // Covers a TCP connect that hangs, and a socket that opens but never says welcome.
    this._timer = setTimeout(() => this._drop(1006, "connect timeout"), this.options.connectTimeout);
    ws.onmessage = (event) => {
      if (generation === this._generation) this._receive(event.data);
    };
    ws.onclose = (event) => {
      if (generation === this._generation) this._lost(event.code, event.reason);
    };
    // onerror is always followed by onclose.
    ws.onerror = () => {};
  }

  async _buildUrl() {
    const o = this.options;
    const base = globalThis.location?.href;
    const url = base ? new URL(this.url, base) : new URL(this.url);
    if (url.protocol === "http:") url.protocol = "ws:";
    if (url.protocol === "https:") url.protocol = "wss:";
    const token = o.getToken ? await o.getToken() : o.token;
    if (token != null) url.searchParams.set("token", token);
    if (o.user != null) url.searchParams.set("user", o.user);
    return url.toString();
  }

  /** Gives up on the current socket at once (a dead peer may never finish a close). */
  _drop(code, reason) {
    const ws = this._ws;
    if (ws) {
      detach(ws);
      try {
        if (typeof ws.terminate === "function") ws.terminate();
        else ws.close(4000, reason);
      } catch {
        // already gone
      }
    }
    this._lost(code, reason);
  }

  _lost(code, reason) {
    this._generation++;
    this._ws = null;
    clearTimeout(this._timer);
    this._stopLiveness();
    this._stopAllTyping(true);
    this._failures++;
    this._inRooms.clear();
    this._recovering.clear();
    this._orphanInflight();
    let delay = backoff(this.options, this._failures - 1);
    if (this._shutdown) {
      // Everyone reconnects after a restart: spread them over [S, 1.5 S].
      delay = Math.max(delay, this.options.shutdownReconnectDelay * (1 + Math.random() * 0.5));
    }
    this._setStatus("disconnected");
    this._emit("disconnected", { code, reason: reason || "", reconnect: true, delay });
    this._timer = setTimeout(() => this._attempt(delay), delay);
  }

  /** Requests sent on a lost socket: joins go again (as rejoins), the rest settle. */
  _orphanInflight() {
    const keep = [];
    for (const req of this._inflight) {
      if (req.done) continue;
      if (req.kind === "join") {
        req.sent = false;
        keep.push(req);
      } else if (req.kind === "leave") {
        // The room is not rejoined, so after the reconnect the connection is out of it.
        this._settle(req, null, { room: req.room, count: null });
      } else if (req.kind === "publish" && this._streams.get(req.room)?.epoch) {
        // Recovery may replay its echo; otherwise the timeout answers.
        req.sent = false;
        req.awaitingReplay = true;
        keep.push(req);
      } else if (req.kind !== "typing") {
        this._settle(req, new NeonexError("disconnected", "the connection was lost before the answer"));
      }
    }
    this._inflight = [];
    this._orphans = [...(this._orphans || []), ...keep];
  }

  _welcomeInfo() {
    return { connectionId: this.connectionId, userId: this.userId, data: this._welcomeData };
  }

  // ---- receiving ----

  _receive(raw) {
    this._heardAt = Date.now();
    let m;
    try {
      m = JSON.parse(typeof raw === "string" ? raw : String(raw));
    } catch {
      return;
    }
    if (!m || typeof m.type !== "string") return;
    this._emit("server_message", m);
    switch (m.type) {
      case "welcome":
        return this._onWelcome(m);
      case "joined":
        return this._onJoined(m);
      case "left":
        return this._onLeft(m);
      case "chat_message":
        return this._onPositioned(m, "message");
      case "publication":
        return this._onPositioned(m, "publication");
      case "error":
        return this._onError(m);
      case "rpc_result":
      case "rpc_error":
        return this._onRpc(m);
      case "server_shutdown":
        this._shutdown = true;
        return this._emit("server_shutdown", m);
      case "pong":
        return this._pruneTyping(this._pingSeq);
      case "typing":
      case "presence":
      case "user_joined":
      case "user_left":
        return this._emit(m.type, m);
      default:
        return undefined;
    }
  }

  _onWelcome(m) {
    clearTimeout(this._timer);
    this._timer = null;
    this.connectionId = m.connection_id;
    this.userId = m.user_id;
    this._welcomeData = m.data;
    this._failures = 0;
    this._seq = this._seq || 0;
    this._awaitingAutojoin = new Set(this._autojoined);
    this._startLiveness();

    // Rejoins first (each reusing an app join that was queued or cut off), then the queue.
    const orphans = this._orphans || [];
    this._orphans = [];
    const joins = [...orphans, ...this._queue].filter((r) => r.kind === "join" && !r.done);
    for (const room of this._wanted) {
      const req =
        joins.find((r) => r.room === room) ||
        this._request("join", room, { internal: true, frame: { type: "join_room", room } });
      this._queue = this._queue.filter((r) => r !== req);
      const at = this._streams.get(room);
      if (at?.epoch) {
        this._recovering.set(room, { retried: this._autojoined.has(room) });
        // The server put us in its autojoined rooms already, where a recover is refused.
        if (this._autojoined.has(room)) this._send(this._leaveRequest(room, true));
        req.frame = { type: "join_room", room, recover: { offset: at.offset, epoch: at.epoch } };
      }
      this._send(req);
    }
    for (const req of orphans) {
      if (req.kind === "publish") this._inflight.push(req); // its echo may be replayed
      else if (!req.sent) this._settle(req, new NeonexError("disconnected", "left before the join was answered"));
    }
    const queued = this._queue;
    this._queue = [];
    for (const req of queued) if (!req.done) this._send(req);

    this._setStatus("connected");
    const info = this._welcomeInfo();
    for (const w of this._waiters.splice(0)) w.resolve(info);
    this._emit("connected", info);
  }

  _onJoined(m) {
    const room = m.room;
    // The hub answers a join with `recover` with `recovered`, always; a joined without it
    // answers a plain join, or is an autojoin.
    const asked = (r) => r.kind === "join" && r.room === room && r.sent && ("recover" in r.frame) === ("recovered" in m);
    const requested = !(m.recovered === undefined && this._awaitingAutojoin.delete(room));
    const req = requested ? this._take(asked) : null;
    this._inRooms.add(room);
    if (!req) {
      // The server joined us by itself (rooms.autojoin or the connect hook).
      this._autojoined.add(room);
      if (this._unwanted.has(room)) {
        this._send(this._leaveRequest(room, true));
        return;
      }
    }
    const recovering = this._recovering.get(room);
    if (recovering && m.recovered !== undefined) {
      if (m.recovered === false && !m.epoch && !recovering.retried) {
        // Refused because an autojoin came first (a refusal without `epoch` means "already
        // in", whichever order the two joined arrive in): leave and ask again. No loss: the
        // replay starts after the offset we kept, and nothing was shown meanwhile.
        recovering.retried = true;
        const at = this._streams.get(room);
        this._send(this._leaveRequest(room, true));
        const again = this._request("join", room, { internal: true });
        again.frame = { type: "join_room", room, recover: { offset: at.offset, epoch: at.epoch } };
        again.carries = req;
        this._send(again);
        return;
      }
      this._recovering.delete(room);
      if (m.recovered === false && m.epoch) this._streams.set(room, { epoch: m.epoch, offset: m.offset });
      const at = this._streams.get(room);
      this._emit("recovered", { room, recovered: m.recovered, epoch: at?.epoch, offset: m.offset ?? at?.offset });
    } else if (m.epoch && !recovering) {
      // Never backwards in one epoch: a late autojoin's joined may follow a recovery.
      const seen = this._streams.get(room);
      const offset = seen?.epoch === m.epoch ? Math.max(seen.offset, m.offset) : m.offset;
      this._streams.set(room, { epoch: m.epoch, offset });
    }
    const at = this._streams.get(room);
    const result = { room, count: m.count };
    if (at?.epoch) Object.assign(result, { epoch: at.epoch, offset: m.offset ?? at.offset });
    if (m.recovered !== undefined) result.recovered = m.recovered;
    let target = req;
    while (target?.carries) target = target.carries;
    if (target && !target.done) this._settle(target, null, result);
    if (!recovering || m.recovered !== undefined) this._emit("joined", m);
  }

  _onLeft(m) {
    const room = m.room;
    const req = this._take((r) => r.kind === "leave" && r.room === room && r.sent);
    this._inRooms.delete(room);
    if (req?.internal) return;
    if (!req) {
      // Removed by the server (room deleted, kicked): do not rejoin it.
      this._wanted.delete(room);
    }
    this._streams.delete(room);
    if (req) this._settle(req, null, { room, count: m.count });
    this._emit("left", m);
  }

  _onPositioned(m, event) {
    const room = m.room;
    if (this._unwanted.has(room)) return; // an autojoin the app had left
    if (typeof m.offset === "number") {
      if (this._recovering.has(room)) return; // the recovery replays it in order
      const at = this._streams.get(room);
      if (at) {
        if (m.offset <= at.offset) return; // already delivered before a reconnect
        if (m.offset > at.offset + 1) this._emit("gap", { room, expected: at.offset + 1, got: m.offset });
        at.offset = m.offset;
      } else {
        this._streams.set(room, { epoch: undefined, offset: m.offset });
      }
    }
    if (m.type === "chat_message" && m.user_id === this.userId) this._matchEcho(m);
    this._emit(event, m);
  }

  _matchEcho(m) {
    const dataJson = m.data === undefined ? undefined : JSON.stringify(m.data);
    const mine = (r) => r.kind === "publish" && r.room === m.room && (r.sent || r.awaitingReplay);
    const req =
      this._take((r) => mine(r) && r.message === m.message && r.dataJson === dataJson) ||
      this._take((r) => mine(r) && r.message !== undefined && r.message === m.message);
    if (req) this._settle(req, null, m);
  }

  _onRpc(m) {
    const req = this._take((r) => r.kind === "rpc" && r.rpcId === m.id);
    if (!req) return;
    if (m.type === "rpc_result") this._settle(req, null, m.data);
    else this._settle(req, new NeonexError(m.code, `rpc ${req.method} failed: ${m.code}`, { method: req.method }));
  }

  _onError(m) {
    const kinds = CAUSES[m.code] || [];
    const req = this._take((r) => r.sent && kinds.includes(r.kind));
    const err = new NeonexError(m.code, m.error, req ? { room: req.room, request: req.kind } : {});
    let target = req;
    while (target?.carries) target = target.carries;
    if (target && !target.internal && target.kind !== "typing") {
      this._settle(target, err);
      return;
    }
    if (req?.internal && req.kind === "leave") return; // an autojoin that did not happen
    if (req?.internal && req.kind === "join") {
      if (["rate_limited", "unavailable"].includes(m.code)) {
        // A passing refusal (say a hundred rooms rejoined at once): ask again in a second.
        const { room, frame } = req;
        const generation = this._generation;
        setTimeout(() => {
          if (generation !== this._generation || !this._wanted.has(room)) return;
          const recovering = this._recovering.get(room);
          if (recovering) recovering.retried = false;
          this._send(this._request("join", room, { internal: true, frame }));
        }, 1000);
      } else {
        // Refused for good (forbidden, over a limit, ...): stop rejoining it.
        this._recovering.delete(req.room);
        this._wanted.delete(req.room);
      }
    }
    this._emit("error", err);
  }

  // ---- requests ----

  _request(kind, room, extra = {}) {
    return { kind, room, sent: false, done: false, seq: (this._seq = (this._seq || 0) + 1), ...extra };
  }

  _leaveRequest(room, internal) {
    return this._request("leave", room, { internal, frame: { type: "leave_room", room } });
  }

  /** Sends now, or queues while not connected; resolves with the server's answer. */
  _call(req, timeout) {
    return new Promise((resolve, reject) => {
      if (this.status === "closed") {
        reject(new NeonexError("closed", "the client was closed"));
        return;
      }
      req.resolve = resolve;
      req.reject = reject;
      const ms = timeout ?? this.options.timeout;
      req.timer = setTimeout(() => {
        this._queue = this._queue.filter((r) => r !== req);
        this._inflight = this._inflight.filter((r) => r !== req);
        if (this._orphans) this._orphans = this._orphans.filter((r) => r !== req);
        this._settle(req, new NeonexError("timeout", `${req.kind} timed out after ${ms} ms`, { room: req.room }));
      }, ms);
      if (this.status === "connected") {
        this._send(req);
      } else if (this._queue.length >= this.options.maxQueue) {
        this._settle(req, new NeonexError("queue_full", `more than ${this.options.maxQueue} requests wait for a connection`));
      } else {
        this._queue.push(req);
      }
    });
  }

  _send(req) {
    req.sent = true;
    if (req.kind !== "typing" || req.track) this._inflight.push(req);
    this._ws.send(JSON.stringify(req.frame));
  }

  /** Removes and returns the oldest request in flight that matches. */
  _take(match) {
    const i = this._inflight.findIndex((r) => !r.done && match(r));
    if (i < 0) return null;
    const [req] = this._inflight.splice(i, 1);
    if (req.kind !== "typing") this._pruneTyping(req.seq);
    return req;
  }

  _settle(req, err, value) {
    if (req.done) return;
    req.done = true;
    clearTimeout(req.timer);
    // A join that failed is not rejoined later.
    if (err && req.kind === "join" && err.code !== "closed") this._wanted.delete(req.room);
    if (err) req.reject?.(err);
    else req.resolve?.(value);
  }

  /** Joins `room` and keeps it joined across reconnects (recovering what was missed). */
  join(room, { timeout } = {}) {
    this._wanted.add(room);
    this._unwanted.delete(room);
    const req = this._request("join", room, { frame: { type: "join_room", room } });
    return this._call(req, timeout);
  }

  leave(room, { timeout } = {}) {
    this._wanted.delete(room);
    this._unwanted.add(room);
    const queuedJoin = this._queue.some((r) => r.kind === "join" && r.room === room);
    if (this.status !== "connected" && !queuedJoin) {
      // The room will not be rejoined (and an autojoin is left at once): nothing to leave.
      this._streams.delete(room);
      return Promise.resolve({ room, count: null });
    }
    return this._call(this._leaveRequest(room, false), timeout);
  }

  /** publish(room, "text") or publish(room, {message, data}); resolves with the echo. */
  publish(room, content, { timeout } = {}) {
    const body = typeof content === "string" ? { message: content } : { ...content };
    const frame = { type: "message", room };
    if (body.message !== undefined) frame.message = body.message;
    if (body.data !== undefined) frame.data = body.data;
    const req = this._request("publish", room, {
      frame,
      message: frame.message,
      dataJson: frame.data === undefined ? undefined : JSON.stringify(frame.data),
    });
    return this._call(req, timeout);
  }

  /** Asks the backend (proxy.rpc_url); resolves with its `data`. */
  rpc(method, data, { timeout } = {}) {
    const rpcId = this._nextRpcId++;
    const frame = { type: "rpc", id: rpcId, method };
    if (data !== undefined) frame.data = data;
    return this._call(this._request("rpc", null, { frame, rpcId, method }), timeout);
  }

  // ---- typing ----

  /** Says "typing" at most once per typingInterval, and "stopped" after typingTimeout idle. */
  typing(room) {
    if (this.status !== "connected") return;
    const now = Date.now();
    let state = this._typing.get(room);
    if (!state) {
      state = { sentAt: -Infinity, idle: null };
      this._typing.set(room, state);
    }
    if (now - state.sentAt >= this.options.typingInterval) {
      state.sentAt = now;
      this._sendTyping(room, true);
    }
    clearTimeout(state.idle);
    state.idle = setTimeout(() => this.stopTyping(room), this.options.typingTimeout);
  }

  stopTyping(room) {
    const state = this._typing.get(room);
    if (!state) return;
    clearTimeout(state.idle);
    this._typing.delete(room);
    if (this.status === "connected") this._sendTyping(room, false);
  }

  _sendTyping(room, on) {
    // Only typing for a room we are not in can be refused (not_in_room): remember those
    // briefly so the error does not land on a later publish.
    const req = this._request("typing", room, { frame: { type: "typing", room, data: on } });
    req.track = !this._inRooms.has(room);
    this._send(req);
  }

  /** Typing sent before `seq` cannot be answered any more once a later message was. */
  _pruneTyping(seq) {
    if (seq === undefined) return;
    this._inflight = this._inflight.filter((r) => r.kind !== "typing" || r.seq > seq);
  }

  _stopAllTyping() {
    for (const state of this._typing.values()) clearTimeout(state.idle);
    this._typing.clear();
  }

  // ---- liveness ----

  _startLiveness() {
    this._heardAt = Date.now();
    this._pingSentAt = 0;
    this._armLiveness(this.options.pingInterval);
  }

  _armLiveness(ms) {
    clearTimeout(this._liveness);
    this._liveness = setTimeout(() => this._checkLiveness(), ms);
  }

  _checkLiveness() {
    const now = Date.now();
    const { pingInterval, pongTimeout } = this.options;
    if (this._pingSentAt) {
      if (this._heardAt >= this._pingSentAt) {
        this._pingSentAt = 0;
      } else if (now - this._pingSentAt >= pongTimeout) {
        this._drop(1006, "pong timeout");
        return;
      } else {
        this._armLiveness(this._pingSentAt + pongTimeout - now);
        return;
      }
    }
    const quiet = now - this._heardAt;
    if (quiet < pingInterval) {
      this._armLiveness(pingInterval - quiet);
      return;
    }
    this._pingSentAt = now;
    this._pingSeq = this._seq;
    this._ws.send(JSON.stringify({ type: "ping" }));
    this._armLiveness(pongTimeout);
  }

  _stopLiveness() {
    clearTimeout(this._liveness);
    this._liveness = null;
  }

  /** Rooms the app joined (and that are rejoined after reconnects). */
  get rooms() {
    return [...this._wanted];
  }
}

/** min(max, min * 2^n), scaled by a random factor in [0.5, 1] so clients spread out. */
function backoff({ minReconnectDelay: min, maxReconnectDelay: max }, n) {
  return Math.min(max, min * 2 ** n) * (0.5 + Math.random() * 0.5);
}

function detach(ws) {
  ws.onopen = ws.onmessage = ws.onclose = null;
  ws.onerror = () => {}; // a late error must not become an unhandled 'error' event
}
