// Small helpers for building the page: elements, messages shown and hidden, numbers.

export const $ = (id) => document.getElementById(id);

// An element with attributes (`on*` functions become listeners) and children (text or nodes).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined));
  return el;
}

// Shows `text` in `el`, or hides `el` when there is nothing to say.
export function say(el, text, kind) {
  el.textContent = text ?? "";
  el.hidden = !text;
  if (kind) el.dataset.kind = kind;
  else delete el.dataset.kind;
}

const whole = new Intl.NumberFormat("en-US");
const rate = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

export const count = (n) => whole.format(n ?? 0);
export const perSecond = (n) => rate.format(n ?? 0);
export const micros = (n) => (n >= 10_000 ? `${rate.format(n / 1000)} ms` : `${whole.format(n ?? 0)} µs`);

export function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n ?? 0;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? rate.format(value) : value} ${units[unit]}`;
}

export const clock = (unixSeconds) => new Date(unixSeconds * 1000).toLocaleTimeString();
