// The demo chat: a neonex-client connection, the chat's state and the page, wired
// together. Page parameters: `?user=NAME` (else a prompt), `?ws=URL` (else this host's /ws),
// `?token=JWT` for a hub that wants one.
import { NeonexClient } from "/demo/neonex-client.js";
import { Greeter } from "/demo/hello.js";
import { askName } from "/demo/login.js";
import { ChatState, TYPING_SHOWN_AFTER_MS } from "/demo/state.js";
import { ChatView } from "/demo/view.js";

/** Rooms the chat opens with. The hub joins `general` by itself, but only rooms joined
 * through the client are rejoined with recovery after a reconnect. */
const START_ROOMS = ["general", "random"];
const ROOM_NAME = /^[A-Za-z0-9_.:@-]{1,128}$/;

const params = new URLSearchParams(location.search);
askName(params).then(start);

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return params.get("ws") || `${scheme}//${location.host}/ws`;
}

function start(user) {
  document.querySelector('[data-testid="app"]').hidden = false;
  const state = new ChatState(user);
  const view = new ChatView(document);
  // A demo should come back quickly after a server restart: 5 s at most between tries.
  const client = new NeonexClient(socketUrl(), {
    user: user || undefined,
    token: params.get("token") || undefined,
    minReconnectDelay: 500,
    maxReconnectDelay: 5000,
  });
  window.neonexDemo = { client, state };

  const draw = () => {
    view.showRooms(state);
    view.showOnline(state);
    view.showHeader(state);
    view.showTyping(state);
  };
  const drawSelected = () => {
    draw();
    view.showTimeline(state);
  };
  const inTimeline = (room, item) => {
    if (room === state.selected) view.append(item);
    draw();
  };

  const greeter = new Greeter(client, user);

  let connectedBefore = false;
  client.on("status", ({ status }) => view.showStatus(status));
  client.on("connected", ({ userId }) => {
    state.identify(userId);
    greeter.me = userId;
    view.showMe(userId);
    if (connectedBefore) {
      state.forgetOthers();
      greeter.forget();
    }
    connectedBefore = true;
    draw();
  });
  client.on("joined", (m) => {
    const first = state.joined(m.room, m.count);
    greeter.joined(m.room, m.count);
    if (first && m.room === state.selected) drawSelected();
    else draw();
  });
  client.on("left", (m) => {
    state.left(m.room);
    drawSelected();
  });
  client.on("user_joined", (m) => {
    state.setCount(m.room, m.count);
    state.seen(m.user_id);
    greeter.userJoined(m.room, m.user_id);
    draw();
  });
  client.on("user_left", (m) => {
    state.setCount(m.room, m.count);
    draw();
  });
  client.on("presence", (m) => {
    if (m.status === "online") state.seen(m.user_id);
    else state.offline(m.user_id);
    draw();
  });
  client.on("typing", (m) => {
    state.seen(m.user_id);
    if (!m.typing) greeter.heard(m.room, m.user_id);
    state.typing(m.room, m.user_id, m.typing);
    draw();
    if (m.typing) setTimeout(draw, TYPING_SHOWN_AFTER_MS + 20);
  });
  const add = (m) => inTimeline(m.room, state.add(m));
  client.on("message", add);
  client.on("publication", add);
  client.on("recovered", (r) => {
    const room = state.room(r.room);
    const [kind, text] = recoveryNotice(r, room.lastOffset);
    inTimeline(r.room, state.notice(r.room, kind, text));
  });
  client.on("gap", (g) => {
    const text = `Messages ${g.expected}–${g.got - 1} of #${g.room} were missed`;
    inTimeline(g.room, state.notice(g.room, "gap", text));
  });
  setInterval(() => view.showTyping(state), 1000);

  wireControls(client, state, drawSelected);
  if (user) view.showMe(user);
  drawSelected();
  client.connect().then(() => {
    for (const room of START_ROOMS) client.join(room).catch(() => {});
  });
}

/** The notice for a room rejoined after a reconnect: what came back, or what may not have. */
function recoveryNotice({ recovered, offset }, lastSeen) {
  const missed = typeof offset === "number" && typeof lastSeen === "number" ? offset - lastSeen : undefined;
  if (recovered) {
    if (!missed) return ["recovered", "Reconnected: nothing was missed"];
    return ["recovered", `Reconnected: ${missed} missed ${missed === 1 ? "message" : "messages"} recovered`];
  }
  return ["not-recovered", "Reconnected: messages sent while you were away could not be recovered"];
}

function wireControls(client, state, drawSelected) {
  const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
  const input = $("composer-input");
  const error = $("composer-error");
  const fail = (e) => {
    error.textContent = `Not sent: ${e.code ?? e.message}`;
  };

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    const room = state.selected;
    input.value = "";
    error.textContent = "";
    client.stopTyping(room);
    client.publish(room, text).catch(fail);
  });
  input.addEventListener("input", () => {
    if (input.value) client.typing(state.selected);
  });

  $("rooms").addEventListener("click", (event) => {
    const li = event.target.closest('[data-testid="room"]');
    if (!li) return;
    state.select(li.dataset.room);
    drawSelected();
    input.focus();
  });

  const joinInput = $("join-input");
  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = joinInput.value.trim().replace(/^#/, "");
    if (!ROOM_NAME.test(name)) {
      joinInput.setCustomValidity("Letters, digits and _ . : @ - only");
      joinInput.reportValidity();
      return;
    }
    joinInput.value = "";
    client
      .join(name)
      .then(() => {
        state.select(name);
        drawSelected();
      })
      .catch(fail);
  });
  joinInput.addEventListener("input", () => joinInput.setCustomValidity(""));

  $("leave-button").addEventListener("click", () => {
    client.leave(state.selected).catch(fail);
  });
}
