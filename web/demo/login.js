// The name this page chats as: `?user=NAME` in the page's URL, or asked for. The name
// goes into the URL, so that a reload comes back as the same user. With `?token=JWT` the
// token names the user, and nothing is asked.

/** What the hub takes for a user id (PROTOCOL.md): 1 to 128 bytes. */
function valid(name) {
  const bytes = new TextEncoder().encode(name).length;
  return bytes >= 1 && bytes <= 128;
}

/** Resolves with the user's name, once known ("" when a token names the user). */
export function askName(params) {
  const given = params.get("user")?.trim();
  if (given && valid(given)) return Promise.resolve(given);
  if (params.get("token")) return Promise.resolve("");
  const form = document.querySelector('[data-testid="login"]');
  const input = form.querySelector('[data-testid="name-input"]');
  form.hidden = false;
  input.focus();
  return new Promise((resolve) => {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const name = input.value.trim();
      if (!valid(name)) {
        input.setCustomValidity("1 to 128 bytes, please");
        input.reportValidity();
        return;
      }
      form.hidden = true;
      params.set("user", name);
      history.replaceState(null, "", `${location.pathname}?${params}`);
      resolve(name);
    });
    input.addEventListener("input", () => input.setCustomValidity(""));
  });
}
