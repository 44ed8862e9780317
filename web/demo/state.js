// What the chat knows, without any DOM: the rooms this user is in, each room's timeline,
// who is online and who is typing. The page (app.js) feeds it the client's events and
// draws it (view.js).

/** How long a "typing" lasts without news: a peer that vanished mid-word stops typing. */
const TYPING_TTL_MS = 6000;
/** A "typing" shows only once it has lasted this long: a hello (hello.js) is a typing that
 * stops at once, and must not flash "is typing" on the newcomer's page. */
export const TYPING_SHOWN_AFTER_MS = 300;

export class ChatState {
  constructor(me) {
    this.me = me;
    /** name -> room; Map keeps the order rooms were joined in, the sidebar's order. */
    this.rooms = new Map();
    this.selected = "general";
    /** Users believed online: nothing lists them, so they are learned as they show up. */
    this.online = new Set([me]);
  }

  /** The hub says who we are (`welcome`): with a token, not the name we asked for. */
  identify(me) {
    if (me === this.me) return;
    this.online.delete(this.me);
    this.me = me;
    this.online.add(me);
  }

  room(name) {
    let room = this.rooms.get(name);
    if (!room) {
      room = {
        name,
        joined: false,
        count: 0,
        unread: 0,
        /** Chat messages, publications and notices, in the order they came. */
        timeline: [],
        /** The last offset seen, to tell how many messages a recovery brought back. */
        lastOffset: undefined,
        /** user -> {since, until}: when their typing began, and when it expires */
        typing: new Map(),
      };
      this.rooms.set(name, room);
    }
    return room;
  }

  /** Returns whether the room is new here (not a rejoin after a reconnect). */
  joined(name, count) {
    const room = this.room(name);
    const first = !room.joined;
    room.joined = true;
    room.count = count;
    return first;
  }

  left(name) {
    this.rooms.delete(name);
    if (this.selected === name) this.selected = this.rooms.keys().next().value ?? "general";
  }

  setCount(name, count) {
    const room = this.rooms.get(name);
    if (room && typeof count === "number") room.count = count;
  }

  select(name) {
    this.selected = name;
    this.room(name).unread = 0;
  }

  /** A chat_message or a publication: appended to its room's timeline. */
  add(m) {
    const room = this.room(m.room);
    const publication = m.type === "publication";
    const item = {
      kind: publication ? "publication" : "message",
      user: publication ? authorOf(m.data) : m.user_id,
      text: publication ? textOf(m.data) : (m.message ?? JSON.stringify(m.data)),
      time: m.time,
      offset: m.offset,
      own: !publication && m.user_id === this.me,
    };
    room.timeline.push(item);
    if (typeof m.offset === "number") room.lastOffset = m.offset;
    if (!publication) {
      this.seen(m.user_id);
      room.typing.delete(m.user_id);
    }
    if (m.room !== this.selected) room.unread += 1;
    return item;
  }

  /** A line in a room's timeline that is not a message: a recovery, a gap. */
  notice(name, kind, text) {
    const item = { kind: "notice", notice: kind, text };
    this.room(name).timeline.push(item);
    return item;
  }

  typing(name, user, on) {
    const room = this.rooms.get(name);
    if (!room || user === this.me) return;
    if (!on) {
      room.typing.delete(user);
      return;
    }
    const now = Date.now();
    const since = room.typing.get(user)?.since ?? now;
    room.typing.set(user, { since, until: now + TYPING_TTL_MS });
  }

  /** Who is typing in the selected room now. */
  typists() {
    const room = this.rooms.get(this.selected);
    if (!room) return [];
    const now = Date.now();
    const who = [];
    for (const [user, { since, until }] of room.typing) {
      if (until < now) room.typing.delete(user);
      else if (now - since >= TYPING_SHOWN_AFTER_MS) who.push(user);
    }
    return who;
  }

  seen(user) {
    if (user) this.online.add(user);
  }

  offline(user) {
    if (user === this.me) return;
    this.online.delete(user);
    for (const room of this.rooms.values()) room.typing.delete(user);
  }

  /** After a reconnect nothing is known of others: they say hello again (hello.js). */
  forgetOthers() {
    this.online = new Set([this.me]);
    for (const room of this.rooms.values()) room.typing.clear();
  }
}

/** A publication's author: API bodies may name one (`user_id`, `user`, `from`). */
function authorOf(data) {
  if (data && typeof data === "object") {
    for (const key of ["user_id", "user", "from"]) {
      if (typeof data[key] === "string") return data[key];
    }
  }
  return "server";
}

function textOf(data) {
  if (typeof data === "string") return data;
  if (data && typeof data === "object") {
    for (const key of ["message", "text"]) {
      if (typeof data[key] === "string") return data[key];
    }
  }
  return JSON.stringify(data);
}
