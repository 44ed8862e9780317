// Draws a ChatState into the page. Lists are small, so each is redrawn whole when it
// changes; only the timeline grows item by item, to keep its scroll position.

const STATUS_TEXT = {
  connecting: "connecting…",
  connected: "connected",
  disconnected: "disconnected",
  closed: "closed",
};

export class ChatView {
  constructor(root) {
    const $ = (id) => root.querySelector(`[data-testid="${id}"]`);
    this.status = $("status");
    this.me = $("me");
    this.rooms = $("rooms");
    this.online = $("online");
    this.onlineCount = $("online-count");
    this.title = $("room-title");
    this.members = $("room-members");
    this.leave = $("leave-button");
    this.messages = $("messages");
    this.typing = $("typing");
    this.input = $("composer-input");
  }

  showStatus(status) {
    this.status.dataset.status = status;
    this.status.querySelector(".label").textContent = STATUS_TEXT[status] ?? status;
  }

  showMe(user) {
    this.me.textContent = user;
    this.me.prepend(avatar(user, "small"));
  }

  showRooms(state) {
    sync(this.rooms, [...state.rooms.values()], (room) => room.name, {
      make: (room) => {
        const li = el("li", { className: "room", dataset: { testid: "room", room: room.name } });
        li.append(
          el("span", { className: "hash", textContent: "#" }),
          el("span", { className: "room-name", textContent: room.name }),
          el("span", { className: "unread", dataset: { testid: "room-unread" } }),
          el("span", { className: "count", title: "connections in the room", dataset: { testid: "room-count" } }),
        );
        return li;
      },
      update: (li, room) => {
        li.classList.toggle("selected", room.name === state.selected);
        const unread = li.querySelector(".unread");
        unread.textContent = String(room.unread);
        unread.hidden = room.unread === 0;
        li.querySelector(".count").textContent = String(room.count);
      },
    });
  }

  showOnline(state) {
    const users = [...state.online].sort((a, b) => (a === state.me ? -1 : b === state.me ? 1 : a.localeCompare(b)));
    this.onlineCount.textContent = String(users.length);
    sync(this.online, users, (user) => user, {
      make: (user) => {
        const li = el("li", { className: "person", dataset: { testid: "online-user", user } });
        li.append(avatar(user, "small"), el("span", { className: "person-name", textContent: user }));
        if (user === state.me) li.append(el("span", { className: "tag", textContent: "you" }));
        return li;
      },
      update: () => {},
    });
  }

  /** The selected room's name and member count. */
  showHeader(state) {
    const room = state.rooms.get(state.selected);
    this.title.textContent = state.selected;
    this.members.textContent = room ? `${room.count} ${room.count === 1 ? "member" : "members"}` : "";
    this.leave.disabled = !room;
    this.input.placeholder = `Message #${state.selected}`;
  }

  /** The selected room's timeline, drawn anew: when another room is selected. */
  showTimeline(state) {
    const room = state.rooms.get(state.selected);
    this.messages.replaceChildren(...(room ? room.timeline.map(item) : []));
    if (room && room.timeline.length === 0) this.messages.append(empty(state.selected));
    this.scrollDown(true);
  }

  /** Appends `it` to the timeline on screen (the caller knows it is the selected room's). */
  append(it) {
    this.messages.querySelector(".empty")?.remove();
    const stick = this.nearBottom();
    this.messages.append(item(it));
    this.scrollDown(stick);
  }

  showTyping(state) {
    const who = state.typists();
    let text = "";
    if (who.length === 1) text = `${who[0]} is typing…`;
    else if (who.length === 2) text = `${who[0]} and ${who[1]} are typing…`;
    else if (who.length > 2) text = `${who.length} people are typing…`;
    this.typing.textContent = text;
    this.typing.dataset.users = who.join(",");
  }

  nearBottom() {
    const m = this.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
  }

  scrollDown(really) {
    if (really) this.messages.scrollTop = this.messages.scrollHeight;
  }
}

/**
 * Makes `list`'s children show `items` in order, one element per key: elements of kept
 * items stay the same nodes (a click that is under way still lands), the others come and go.
 */
function sync(list, items, keyOf, { make, update }) {
  const old = new Map([...list.children].map((node) => [node.dataset.key, node]));
  const nodes = items.map((it) => {
    const key = keyOf(it);
    let node = old.get(key);
    old.delete(key);
    if (!node) {
      node = make(it);
      node.dataset.key = key;
    }
    update(node, it);
    return node;
  });
  for (const node of old.values()) node.remove();
  nodes.forEach((node, i) => {
    if (list.children[i] !== node) list.insertBefore(node, list.children[i] ?? null);
  });
}

function item(it) {
  if (it.kind === "notice") {
    return el("li", {
      className: `notice ${it.notice}`,
      textContent: it.text,
      dataset: { testid: "notice", kind: it.notice },
    });
  }
  const li = el("li", {
    className: `message ${it.kind}${it.own ? " own" : ""}`,
    dataset: { testid: "message", user: it.user, own: String(it.own), kind: it.kind },
  });
  if (it.offset !== undefined) li.dataset.offset = String(it.offset);
  const head = el("div", { className: "meta" });
  head.append(
    el("span", { className: "author", textContent: it.own ? "you" : it.user, dataset: { testid: "message-user" } }),
    el("time", { textContent: clock(it.time), dataset: { testid: "message-time" } }),
  );
  if (it.kind === "publication") head.append(el("span", { className: "tag", textContent: "API" }));
  const bubble = el("div", { className: "bubble" });
  bubble.append(head, el("div", { className: "text", textContent: it.text, dataset: { testid: "message-text" } }));
  li.append(avatar(it.user), bubble);
  return li;
}

function empty(room) {
  return el("li", { className: "empty", textContent: `No messages in #${room} yet. Say hello!` });
}

function clock(seconds) {
  const date = typeof seconds === "number" ? new Date(seconds * 1000) : new Date();
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** A round badge with the user's initial, in a colour of their own. */
function avatar(user, size = "") {
  const hue = [...user].reduce((h, c) => (h * 31 + c.codePointAt(0)) % 360, 7);
  return el("span", {
    className: `avatar ${size}`,
    textContent: [...user][0]?.toUpperCase() ?? "?",
    style: `--hue: ${hue}`,
    ariaHidden: "true",
  });
}

function el(tag, props = {}) {
  const node = document.createElement(tag);
  const { dataset, style, ...rest } = props;
  Object.assign(node, rest);
  if (dataset) Object.assign(node.dataset, dataset);
  if (style) node.style.cssText = style;
  return node;
}
