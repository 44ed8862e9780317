//! The admin dashboard at `/admin`, as a person uses it: headless Chromium (Debian's,
//! driven by puppeteer-core from `tests/clients/admin_page.mjs`) against the real
//! `neonex` binary, with real WebSocket clients connected. The script signs in, compares
//! the page with `/stats` and `/api/rooms`, publishes to a room and disconnects users from
//! the page, and prints what it saw, one JSON object per case, for this test to judge.
//!
//! It needs what `.ci/run` installs: `npm ci` in tests/clients, and Debian's `chromium`
//! (or `CHROMIUM` naming another build; none is ever downloaded).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use neonex_testkit::binary::{target_dir, Server};
use neonex_testkit::http::http_call;
use serde_json::{json, Value};

const KEY: &str = "admin-test-key";

/// The script's bound: it takes about 10 s on an idle machine.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// The cases the script printed, by name, and all it printed (for failure messages).
struct Seen {
    cases: HashMap<String, Value>,
    output: String,
}

impl Seen {
    fn case(&self, name: &str) -> &Value {
        self.cases
            .get(name)
            .unwrap_or_else(|| panic!("the script printed no case {name:?}:\n{}", self.output))
    }
}

/// Runs `admin_page.mjs` with `env` to its end (killed after SCRIPT_TIMEOUT).
fn run_script(env: &[(&str, String)]) -> Seen {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: `apt-get install chromium` (or set CHROMIUM)"
    );
    let clients = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    assert!(
        clients.join("node_modules/ws").exists()
            && clients.join("node_modules/puppeteer-core").exists(),
        "the test clients' packages are missing: run `npm ci` in tests/clients"
    );
    let mut child = Command::new("node")
        .arg(clients.join("admin_page.mjs"))
        .env("CHROMIUM", &chromium)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node: {e}"));
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let lines = lines.join().unwrap();
    let output = format!("{}\n{}", lines.join("\n"), errors.join().unwrap());
    match status {
        None => panic!("admin_page.mjs still ran after {SCRIPT_TIMEOUT:?}:\n{output}"),
        Some(s) => assert!(s.success(), "admin_page.mjs exited with {s}:\n{output}"),
    }
    let cases = lines
        .iter()
        .map(|line| {
            let case: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{output}"));
            (case["case"].as_str().unwrap_or_default().to_owned(), case)
        })
        .collect();
    Seen { cases, output }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_signs_in_shows_the_hub_live_and_acts_on_it() {
    let keyed_env = [
        ("NEONEX_API_KEY", KEY),
        ("NEONEX_HISTORY_SIZE", "100"),
        ("NEONEX_ADMIN_DEMO", "true"),
    ];
    let (_keyed, keyed) = Server::spawn(&[], &keyed_env).await;
    let (_open, open) = Server::spawn(&[], &[]).await;
    let screenshots = target_dir().join("screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let screenshot = screenshots.join("admin.png");
    let _ = std::fs::remove_file(&screenshot);
    let env = vec![
        ("NEONEX_URL", format!("http://{keyed}")),
        ("NEONEX_KEY", KEY.to_owned()),
        ("NEONEX_OPEN_URL", format!("http://{open}")),
        ("NEONEX_SCREENSHOT", screenshot.display().to_string()),
    ];
    let seen = tokio::task::spawn_blocking(move || run_script(&env))
        .await
        .unwrap();
    signing_in(&seen);
    live_figures(&seen);
    publishing(&seen);
    disconnecting(&seen);
    without_a_key(&seen);
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
}

/// The form first, a wrong key refused, the right one kept for the tab until logout.
fn signing_in(seen: &Seen) {
    let (login, out) = (seen.case("login"), &seen.output);
    assert_eq!(
        login["before"],
        json!({"login_shown": true, "dashboard_hidden": true}),
        "{out}"
    );
    assert_eq!(login["wrong"]["still_login"], true, "{out}");
    assert_eq!(
        login["wrong"]["error"], "Wrong key: the hub refused it.",
        "{out}"
    );
    assert_eq!(
        login["right"],
        json!({"login_hidden": true, "logout_shown": true, "key_kept": KEY}),
        "{out}"
    );
    assert_eq!(login["reloaded"]["login_shown"], false, "{out}");
    assert_eq!(
        seen.case("logout"),
        &json!({"case": "logout", "login_shown": true, "key_kept": null}),
        "{out}"
    );
}

/// Three clients, ann and bob also in lobby: the tiles as /stats has them, the rooms
/// as /api/rooms has them, lobby's members.
fn live_figures(seen: &Seen) {
    let (figures, out) = (seen.case("figures"), &seen.output);
    let expected = json!({"connections": 3, "users": 3, "rooms": 3});
    assert_eq!(figures["stats"], expected, "{out}");
    assert_eq!(
        figures["tiles"], figures["stats"],
        "tiles against /stats: {out}"
    );
    assert_eq!(figures["stats_after"], figures["stats"], "{out}");
    let rooms = json!({"general": 3, "lobby": 2, "random": 0});
    assert_eq!(figures["rooms_api"], rooms, "{out}");
    assert_eq!(figures["rooms_page"], rooms, "{out}");
    // Listed in connection id order: by node, shard, then number (9 before 10).
    let mut lobby: Vec<neonex::ConnectionId> = ["ann", "bob"]
        .iter()
        .map(|user| id(seen, user).parse().expect("a connection id"))
        .collect();
    lobby.sort();
    let lobby: Vec<String> = lobby.iter().map(ToString::to_string).collect();
    assert_eq!(figures["members"], json!(lobby), "{out}");
}

/// Text that is not JSON never leaves the page; JSON reaches the room's members as a
/// publication, positioned, and shows in the room's history.
fn publishing(seen: &Seen) {
    let (publish, out) = (seen.case("publish"), &seen.output);
    assert!(
        publish["refused"]
            .as_str()
            .is_some_and(|r| r.starts_with("Not JSON, nothing sent")),
        "{out}"
    );
    assert_eq!(publish["posts"], 1, "only the JSON was sent: {out}");
    let received = &publish["received"];
    assert_eq!(received["type"], "publication", "{out}");
    assert_eq!(received["room"], "lobby", "{out}");
    assert_eq!(received["data"], publish["sent"], "{out}");
    assert_eq!(received["offset"], 1, "{out}");
    assert_eq!(publish["publications"], 1, "{out}");
    // ann and bob by `ws`, dora in the demo chat.
    assert_eq!(
        publish["answer"], "Queued for 3 connection(s), offset 1.",
        "{out}"
    );
    let demo = publish["demo_shown"].as_array();
    assert!(
        demo.is_some_and(|shown| shown
            .iter()
            .filter(|m| m
                .as_str()
                .is_some_and(|m| m.contains("hello from the dashboard")))
            .count()
            == 1),
        "the demo page shows the publication once: {out}"
    );
    assert!(
        publish["history_top"]
            .as_str()
            .is_some_and(|h| h.starts_with("#1") && h.contains("hello from the dashboard")),
        "{out}"
    );
}

/// Bob by name, then ann's connection from lobby's member list: each closed with 1008,
/// the others left open.
fn disconnecting(seen: &Seen) {
    let (disconnect, out) = (seen.case("disconnect"), &seen.output);
    assert_eq!(
        disconnect["answer"], "1 connection(s) of bob closed.",
        "{out}"
    );
    let policy = json!({"code": 1008, "reason": "disconnected"});
    assert_eq!(
        disconnect["after_user"],
        json!({"bob": policy, "ann": null, "cid": null}),
        "{out}"
    );
    assert_eq!(
        disconnect["lobby_after_bob"],
        json!([id(seen, "ann")]),
        "{out}"
    );
    assert_eq!(
        disconnect["after_kick"],
        json!({"ann": policy, "cid": null}),
        "{out}"
    );
    assert_eq!(disconnect["stats"]["connections"], 1, "{out}");
}

/// Without api.key, a loopback browser gets the dashboard with no sign-in.
fn without_a_key(seen: &Seen) {
    let (open, out) = (seen.case("open"), &seen.output);
    assert_eq!(open["login_shown"], false, "{out}");
    assert_eq!(open["logout_shown"], false, "{out}");
    assert_eq!(open["tiles"], open["stats"], "{out}");
    assert_eq!(
        open["rooms_page"],
        json!({"general": 0, "random": 0}),
        "{out}"
    );
}

/// The connection id of the script's client `user`.
fn id<'a>(seen: &'a Seen, user: &str) -> &'a str {
    seen.case("figures")["ids"][user]
        .as_str()
        .unwrap_or_else(|| panic!("no id of {user}: {}", seen.output))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_turned_off_is_not_found() {
    let (_server, addr) = Server::spawn(&[], &[("NEONEX_ADMIN_ENABLED", "false")]).await;
    for path in ["/admin", "/admin/", "/admin/admin.js"] {
        let response = http_call(addr, "GET", path, "", "").await;
        assert_eq!(response.status, 404, "{path}: {response:?}");
    }
    let api = http_call(addr, "GET", "/api/rooms", "", "").await;
    assert_eq!(api.status, 200, "the API stays: {api:?}");
}
