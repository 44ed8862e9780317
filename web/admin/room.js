// The room card: the selected room's members (connection ids, each with a disconnect
// button), the tail of its history, and a form that publishes JSON to it.

import { api } from "./api.js";
import { $, clock, h, say } from "./dom.js";

const TAIL = 50;

export class RoomView {
  constructor() {
    this.name = null;
    $("publish-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.publish();
    });
  }

  open(name) {
    this.name = name;
    $("room").hidden = false;
    $("room-name").textContent = name;
    $("members").replaceChildren();
    $("history").replaceChildren();
    say($("publish-result"), null);
    say($("members-result"), null);
    return this.refresh();
  }

  async refresh() {
    const name = this.name;
    if (!name) return;
    const [members, history] = await Promise.allSettled([api.members(name), this.tail(name)]);
    if (name !== this.name) return; // another room was opened meanwhile
    const failed = [members, history].find((r) => r.status === "rejected" && r.reason.code !== "history_off");
    say($("room-error"), failed?.reason.message);
    if (members.status === "fulfilled") this.showMembers(members.value.members);
    if (history.status === "fulfilled") this.showHistory(history.value);
    else if (history.reason.code === "history_off") {
      $("history").replaceChildren();
      say($("history-note"), "History is off on this hub (history.size is 0): nothing is kept.");
    }
  }

  // The last TAIL held messages: the first call learns the room's top offset.
  async tail(name) {
    const top = (await api.history(name, 0, 1)).offset;
    return api.history(name, Math.max(0, top - TAIL), TAIL);
  }

  showMembers(ids) {
    $("members").replaceChildren(
      ...ids.map((id) =>
        h(
          "li",
          { "data-testid": `member-${id}` },
          h("code", {}, id),
          h("button", { class: "small danger", "data-testid": `kick-${id}`, onclick: () => this.kick(id) }, "disconnect"),
        ),
      ),
    );
    if (!ids.length) $("members").append(h("li", { class: "muted" }, "no members"));
  }

  showHistory(page) {
    const items = page.messages
      .slice()
      .reverse()
      .map((m) =>
        h(
          "li",
          { "data-offset": m.offset },
          h("span", { class: "offset" }, `#${m.offset}`),
          h("span", { class: "time" }, m.time ? clock(m.time) : ""),
          h("span", { class: "who" }, m.type === "publication" ? "API" : m.user_id ?? m.type),
          h("code", { class: "body" }, describe(m)),
        ),
      );
    $("history").replaceChildren(...items);
    say($("history-note"), items.length ? null : `No message held (epoch ${page.epoch}).`);
  }

  async kick(id) {
    try {
      const answer = await api.disconnectConnection(id);
      say($("members-result"), `Connection ${id} disconnected (${answer.disconnected}).`, "ok");
    } catch (e) {
      say($("members-result"), e.message, "error");
    }
    this.refresh();
  }

  async publish() {
    const text = $("publish-body").value.trim();
    try {
      JSON.parse(text);
    } catch (e) {
      say($("publish-result"), `Not JSON, nothing sent: ${e.message}`, "error");
      return;
    }
    try {
      const answer = await api.publish(this.name, text);
      const offset = answer.offset === undefined ? "" : `, offset ${answer.offset}`;
      say($("publish-result"), `Queued for ${answer.queued} connection(s)${offset}.`, "ok");
    } catch (e) {
      say($("publish-result"), e.message, "error");
    }
    this.refresh();
  }
}

// A message as one line: its text and/or data.
function describe(message) {
  const parts = [];
  if (message.message !== undefined) parts.push(message.message);
  if (message.data !== undefined) parts.push(JSON.stringify(message.data));
  return parts.join("  ");
}
