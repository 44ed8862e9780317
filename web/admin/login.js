// The sign-in form: asks for the API key until the hub takes one, and keeps it for the
// tab's session.

import { api, key } from "./api.js";
import { $, say } from "./dom.js";

// Shows the form (with `reason`, if any) and resolves once a key is accepted.
export function askForKey(reason) {
  $("dashboard").hidden = true;
  $("login").hidden = false;
  $("live").textContent = "";
  say($("login-error"), reason);
  $("login-key").value = "";
  $("login-key").focus();
  return new Promise((accepted) => {
    $("login-form").onsubmit = async (e) => {
      e.preventDefault();
      const typed = $("login-key").value;
      try {
        await api.probe(typed);
      } catch (e) {
        say($("login-error"), e.status === 401 ? "Wrong key: the hub refused it." : e.message);
        return;
      }
      key.set(typed);
      $("login").hidden = true;
      accepted();
    };
  });
}
