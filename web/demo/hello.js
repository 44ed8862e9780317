// Who else is here: the protocol tells a room's members of a newcomer (`user_joined`), but
// lists no one to the newcomer. So a page says hello when it joins a room, and the pages
// already there answer; each hello marks its sender online on the pages that hear it.
//
// A hello is a typing that stops at once: ephemeral, stored nowhere, and too short to show
// "is typing" (state.js shows a typing only once it has lasted a moment).
//
// A page answers at most two hellos of a user per room (since that user's `user_joined`):
// that ends the exchange, since answers are hellos too. Two, not one, because a newcomer
// may say hello too early to hear the answer: a room the hub joins it to by itself and the
// page joins too is answered with two `joined`, and the first can come before the hub
// delivers the room's messages to it.

const MOST_ANSWERS = 2;

export class Greeter {
  constructor(client, me) {
    this.client = client;
    this.me = me;
    /** "room user" -> hellos of that user answered since it joined */
    this.answered = new Map();
  }

  /** We are in `room` now: hello, if anyone else is. */
  joined(room, count) {
    if (count > 1) this.hello(room);
  }

  /** `user` came into `room`: its hellos are answered again. */
  userJoined(room, user) {
    this.answered.delete(`${room} ${user}`);
  }

  /** A typing that stopped: perhaps a hello, answered. */
  heard(room, user) {
    const key = `${room} ${user}`;
    const count = this.answered.get(key) ?? 0;
    if (user === this.me || count >= MOST_ANSWERS) return;
    this.answered.set(key, count + 1);
    this.hello(room);
  }

  /** After a reconnect everyone is a stranger again. */
  forget() {
    this.answered.clear();
  }

  hello(room) {
    this.client.typing(room);
    this.client.stopTyping(room);
  }
}
