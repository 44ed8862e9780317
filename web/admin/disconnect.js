// The "disconnect a user" form: closes every connection of a user, wherever it is.

import { api } from "./api.js";
import { $, say } from "./dom.js";

export function disconnectForm(afterwards) {
  $("disconnect-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const user = $("disconnect-user").value.trim();
    try {
      const answer = await api.disconnectUser(user);
      const what = answer.disconnected ? `${answer.disconnected} connection(s) of ${user} closed.` : `${user} has no connection.`;
      say($("disconnect-result"), what, "ok");
    } catch (e) {
      say($("disconnect-result"), e.message, "error");
    }
    afterwards();
  });
}
