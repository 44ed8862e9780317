// The rooms card: every room with its member count, refreshed every few seconds; clicking
// one opens it in the room card (room.js).

import { api } from "./api.js";
import { $, count, h, say } from "./dom.js";

export class RoomList {
  constructor(onSelect) {
    this.onSelect = onSelect;
    this.selected = null;
  }

  async refresh() {
    let answer;
    try {
      answer = await api.rooms();
    } catch (e) {
      say($("rooms-error"), e.message);
      return;
    }
    say($("rooms-error"), null);
    this.show(answer.rooms);
  }

  select(name) {
    this.selected = name;
    for (const row of $("rooms").rows) row.classList.toggle("selected", row.dataset.room === name);
    this.onSelect(name);
  }

  show(rooms) {
    $("rooms-note").textContent = `${rooms.length}`;
    $("rooms").replaceChildren(
      ...rooms.map((room) =>
        h(
          "tr",
          {
            "data-testid": `room-${room.name}`,
            "data-room": room.name,
            "data-members": room.members,
            class: room.name === this.selected ? "selected" : "",
            tabindex: 0,
            onclick: () => this.select(room.name),
            onkeydown: (e) => e.key === "Enter" && this.select(room.name),
          },
          h("td", {}, h("code", {}, room.name)),
          h("td", { class: "num" }, count(room.members)),
          h("td", {}, room.persistent ? h("span", { class: "tag", title: "kept when empty" }, "kept") : ""),
        ),
      ),
    );
  }
}
