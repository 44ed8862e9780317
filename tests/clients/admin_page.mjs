// The admin dashboard in headless Chromium (Debian's, driven by puppeteer-core), against
// real hubs and real WebSocket clients, for tests/browser_admin.rs.
//
// Environment: NEONEX_URL (a hub with NEONEX_KEY as its api.key, history on),
// NEONEX_OPEN_URL (a hub without a key), NEONEX_SCREENSHOT (where to write a 1280x800
// screenshot), CHROMIUM (default /usr/bin/chromium).
//
// It prints one JSON object per case, what it saw, for the Rust test to judge; it exits
// non-zero if a step cannot be carried out at all (an element never shows up).
import puppeteer from "puppeteer-core";
import WebSocket from "ws";

const { NEONEX_URL: URL, NEONEX_KEY: KEY, NEONEX_OPEN_URL: OPEN_URL, NEONEX_SCREENSHOT } = process.env;
const STEP = 8000; // the longest wait for any one thing to show

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const report = (name, seen) => console.log(JSON.stringify({ case: name, ...seen }));

// Waits until `probe()` returns something truthy; returns it, or undefined after `ms`.
async function until(probe, ms = STEP) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value || Date.now() > end) return value || undefined;
    await sleep(25);
  }
}

async function get(base, path, key) {
  const response = await fetch(base + path, { headers: key ? { Authorization: `Bearer ${key}` } : {} });
  return { status: response.status, body: await response.json().catch(() => null) };
}

// A WebSocket client of user `user`, keeping everything it receives and how it closed.
async function connect(base, user) {
  const ws = new WebSocket(`${base.replace(/^http/, "ws")}/ws?user=${user}`);
  const client = { user, ws, got: [], closed: null };
  ws.on("message", (data) => client.got.push(JSON.parse(data)));
  ws.on("close", (code, reason) => (client.closed = { code, reason: reason.toString() }));
  client.find = (pred) => client.got.find(pred);
  client.send = (message) => ws.send(JSON.stringify(message));
  const welcome = await until(() => client.find((m) => m.type === "welcome"));
  if (!welcome) throw new Error(`${user}: no welcome`);
  client.id = welcome.connection_id;
  return client;
}

async function join(client, room) {
  client.send({ type: "join_room", room });
  if (!(await until(() => client.find((m) => m.type === "joined" && m.room === room)))) {
    throw new Error(`${client.user}: not joined to ${room}`);
  }
}

const testid = (id) => `[data-testid="${id}"]`;
const text = (page, id) => page.$eval(testid(id), (el) => el.textContent.trim());
const visible = (page, id) =>
  page.$eval(testid(id), (el) => el.checkVisibility()).catch(() => false);

// Replaces what a field holds with `value`, typed as a person would.
async function typeInto(page, id, value) {
  await page.click(testid(id), { clickCount: 3 });
  await page.keyboard.down("Control");
  await page.keyboard.press("a");
  await page.keyboard.up("Control");
  await page.keyboard.press("Backspace");
  await page.type(testid(id), value);
}

const TILES = ["connections", "users", "rooms"];

// The figures the tiles show, as numbers.
function tiles(page) {
  return page.evaluate(
    (names) =>
      Object.fromEntries(
        names.map((n) => [n, Number(document.querySelector(`[data-testid="stat-${n}"]`).textContent.replace(/,/g, ""))]),
      ),
    TILES,
  );
}

// The connection ids the selected room's card lists, sorted.
const memberIds = (page) =>
  page.$$eval("[data-testid=members] li[data-testid^=member-] code", (ids) => ids.map((id) => id.textContent).sort());

const statFigures = (s) => ({ connections: s.total_connections, users: s.unique_users, rooms: s.rooms });
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// What `probe()` sees once it equals `want`, or what it last saw after STEP.
async function settled(probe, want) {
  let seen;
  await until(async () => same((seen = await probe()), want));
  return seen;
}

// The rooms list as the page shows it: name -> members.
function pageRooms(page) {
  return page.$$eval("[data-testid=rooms] tbody tr", (rows) =>
    Object.fromEntries(rows.map((r) => [r.dataset.room, Number(r.cells[1].textContent.replace(/,/g, ""))])),
  );
}

async function signIn(page) {
  await page.goto(`${URL}/admin`);
  await page.waitForSelector(testid("login-form"), { visible: true });
  const before = { login_shown: true, dashboard_hidden: !(await visible(page, "stat-connections")) };

  await page.type(testid("login-key"), "not-the-key");
  await page.click(testid("login-submit"));
  await page.waitForSelector(testid("login-error"), { visible: true });
  const wrong = { error: await text(page, "login-error"), still_login: await visible(page, "login-form") };

  await typeInto(page, "login-key", KEY);
  await page.click(testid("login-submit"));
  await page.waitForFunction(() => document.querySelector('[data-testid="stat-connections"]').textContent !== "–");
  const right = {
    login_hidden: !(await visible(page, "login-form")),
    logout_shown: await visible(page, "logout"),
    key_kept: await page.evaluate(() => sessionStorage.getItem("neonex.admin.key")),
  };

  // The key lasts for the tab's session: a reload goes straight to the dashboard.
  await page.reload();
  await page.waitForFunction(() => document.querySelector('[data-testid="stat-connections"]').textContent !== "–");
  const reloaded = { login_shown: await visible(page, "login-form") };
  report("login", { before, wrong, right, reloaded });
}

// The tiles against /stats, and the rooms list against /api/rooms, once each settles.
async function liveFigures(page, clients) {
  const stats = statFigures((await get(URL, "/stats")).body);
  const shown = await settled(() => tiles(page), stats);
  const statsAfter = statFigures((await get(URL, "/stats")).body);

  const api = Object.fromEntries((await get(URL, "/api/rooms", KEY)).body.rooms.map((r) => [r.name, r.members]));
  const rooms = await settled(() => pageRooms(page), api);

  await page.click(testid("room-lobby"));
  const lobby = clients.filter((c) => c.inLobby).map((c) => c.id);
  const members = await settled(() => memberIds(page), lobby.slice().sort());
  const ids = Object.fromEntries(clients.map((c) => [c.user, c.id]));
  report("figures", { tiles: shown, stats, stats_after: statsAfter, rooms_page: rooms, rooms_api: api, members, ids });
}

// The demo chat of user `user` in a page of its own, in `room`.
async function demoIn(user, room) {
  const demo = await (await browser.createBrowserContext()).newPage();
  demo.setDefaultTimeout(STEP);
  await demo.goto(`${URL}/demo?user=${user}`);
  await demo.waitForSelector(`${testid("status")}[data-status="connected"]`);
  await demo.type(testid("join-input"), room);
  await demo.keyboard.press("Enter");
  await demo.waitForSelector(`${testid("room")}[data-room="${room}"].selected`);
  return demo;
}

// What the demo page shows of the messages of its selected room.
const demoMessages = (demo) =>
  demo.$$eval(testid("message"), (items) => items.map((m) => m.textContent));

// Publishes from the dashboard to lobby, after a text that is not JSON (never sent); a
// `ws` client and a demo chat page in lobby receive it.
async function publish(page, receiver) {
  const demo = await demoIn("dora", "lobby");
  await page.bringToFront();
  let posts = 0;
  page.on("request", (r) => r.method() === "POST" && r.url().endsWith("/publish") && posts++);
  await typeInto(page, "publish-body", '{"text": oops}');
  await page.click(testid("publish-submit"));
  await page.waitForSelector(testid("publish-result"), { visible: true });
  const refused = await text(page, "publish-result");

  const data = { text: "hello from the dashboard", n: 7, tags: ["a", "b"] };
  await typeInto(page, "publish-body", JSON.stringify(data));
  await page.click(testid("publish-submit"));
  await page.waitForFunction(() => document.querySelector('[data-testid="publish-result"]').textContent.startsWith("Queued"));
  const answer = await text(page, "publish-result");
  const received = await until(() => receiver.find((m) => m.type === "publication"));
  const demoShown = await until(async () => {
    const shown = await demoMessages(demo);
    return shown.some((m) => m.includes("hello from the dashboard")) && shown;
  });
  await demo.close();
  const history = await until(async () => {
    const top = await page.$eval("[data-testid=history] li", (li) => li.textContent).catch(() => "");
    return top.includes("hello from the dashboard") && top;
  });
  report("publish", {
    refused,
    sent: data,
    answer,
    received: received ?? null,
    publications: receiver.got.filter((m) => m.type === "publication").length,
    posts,
    history_top: history ?? null,
    demo_shown: demoShown ?? null,
  });
}

// Disconnects bob with the form, then one of ann's connections with its member button.
async function disconnect(page, [ann, bob, cid]) {
  await typeInto(page, "disconnect-user", "bob");
  await page.click(testid("disconnect-submit"));
  await page.waitForSelector(testid("disconnect-result"), { visible: true });
  const answer = await text(page, "disconnect-result");
  await until(() => bob.closed);
  await sleep(300); // time enough for a wrong close of the others to show
  const afterUser = { bob: bob.closed, ann: ann.closed, cid: cid.closed };

  const lobbyAfterBob = await settled(() => memberIds(page), [ann.id]);
  await page.click(testid(`kick-${ann.id}`));
  await page.waitForSelector(testid("members-result"), { visible: true });
  const kicked = await text(page, "members-result");
  await until(() => ann.closed);
  await sleep(300);
  const afterKick = { ann: ann.closed, cid: cid.closed };
  const stats = statFigures((await get(URL, "/stats")).body);
  report("disconnect", { answer, after_user: afterUser, lobby_after_bob: lobbyAfterBob, kicked, after_kick: afterKick, stats });
}

async function signOut(page) {
  await page.click(testid("logout"));
  await page.waitForSelector(testid("login-form"), { visible: true });
  report("logout", {
    login_shown: true,
    key_kept: await page.evaluate(() => sessionStorage.getItem("neonex.admin.key")),
  });
}

// A hub without api.key: loopback callers get the dashboard with no sign-in.
async function openHub(page) {
  const stats = statFigures((await get(OPEN_URL, "/stats")).body);
  await page.goto(`${OPEN_URL}/admin`);
  await page.waitForFunction(() => document.querySelector('[data-testid="stat-connections"]').textContent !== "–");
  report("open", {
    login_shown: await visible(page, "login-form"),
    logout_shown: await visible(page, "logout"),
    tiles: await tiles(page),
    stats,
    rooms_page: await until(async () => {
      const listed = await pageRooms(page);
      return Object.keys(listed).length && listed;
    }),
  });
}

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const clients = [];
let chatter;
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(STEP);
  await page.setViewport({ width: 1280, height: 800 });
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));

  await signIn(page);

  for (const user of ["ann", "bob", "cid"]) clients.push(await connect(URL, user));
  for (const c of clients.slice(0, 2)) {
    await join(c, "lobby");
    c.inLobby = true;
  }
  // Some traffic in general, so the charts have something to draw.
  chatter = setInterval(() => clients[2].send({ type: "message", room: "general", message: "tick" }), 200);

  await liveFigures(page, clients);
  await publish(page, clients[0]);
  await sleep(1500); // a few more samples on the charts
  if (NEONEX_SCREENSHOT) await page.screenshot({ path: NEONEX_SCREENSHOT });
  clearInterval(chatter);
  await disconnect(page, clients);
  await signOut(page);
  await openHub(await browser.newPage());
} finally {
  clearInterval(chatter);
  for (const c of clients) c.ws.terminate();
  await browser.close();
}
