//! Real clients that compress by default talk to a hub with `compression.enabled`:
//! Python's `websockets`, Node's `ws` and headless Chromium, each run as a child process
//! from `tests/clients/`. Each negotiates permessage-deflate, sends a large and a small chat
//! message (the large one compressed by the client library), gets both back, and gets a
//! compressed broadcast the test publishes, decoded to the same text.
//!
//! They need what `.ci/run` installs: `websockets` in `target/ci-venv` (or a `python3`
//! that has it, through `NEONEX_TEST_PYTHON`), `npm ci` in `tests/clients`, and Debian's
//! `chromium` (or `CHROMIUM` naming another build; none is ever downloaded).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use neonex::config::CompressionConfig;
use neonex::{HubConfig, PresenceScope};
use neonex_testkit::hub::{config, flood_limits, TestHub};
use neonex_testkit::wait::TIMEOUT;
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("NEONEX_TEST_PYTHON") {
        return python.into();
    }
    let venv = root().join("target/ci-venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with `websockets`: run `python3 -m venv target/ci-venv && target/ci-venv/bin/pip install websockets==15.0.1` (or set NEONEX_TEST_PYTHON)"
    );
    venv
}

/// Node and one of the scripts of `tests/clients`, whose packages must be installed.
fn node(script: &str) -> (PathBuf, PathBuf) {
    let clients = root().join("tests/clients");
    assert!(
        clients.join("node_modules/ws").exists()
            && clients.join("node_modules/puppeteer-core").exists(),
        "the test clients' packages are missing: run `npm ci` in tests/clients"
    );
    ("node".into(), clients.join(script))
}

/// Runs `program script url`, hands each line it prints to the test, and broadcasts a
/// large document once it says it is ready. Returns the lines.
async fn run_client(program: &Path, script: &Path) -> Vec<Value> {
    let mut config = HubConfig {
        compression: CompressionConfig {
            enabled: true,
            min_size: 512,
        },
        limits: flood_limits(),
        presence: PresenceScope::Off,
        ..config()
    };
    config.rooms.notify_join_leave = false;
    let hub = TestHub::start(config);
    let mut child = Command::new(program)
        .arg(script)
        .arg(hub.url(Some("interop")))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program:?}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let document =
        json!({"type": "quotes", "rows": vec![json!({"symbol": "ACME", "bid": 101.25}); 200]});
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT * 3;
    while let Ok(line) =
        rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
    {
        let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if value["ready"] == true {
            let (h, text) = (hub.hub.clone(), document.to_string());
            hub.blocking(move |_| h.broadcast_to_room("general", &text).unwrap())
                .await;
        }
        lines.push(value);
    }
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{program:?} exited with {status}; printed {lines:?}"
    );
    let compression = hub.hub.stats().compression;
    assert!(compression.compressions >= 2, "{compression:?}");
    let received: Vec<&Value> = lines.iter().filter_map(|l| l.get("got")).collect();
    let quotes = received
        .iter()
        .find(|m| m["type"] == "quotes")
        .expect("the broadcast");
    assert_eq!(**quotes, document);
    lines
}

fn check(lines: &[Value], big: &str) {
    let ready = &lines[0];
    assert_eq!(
        ready["extensions"],
        json!(["permessage-deflate"]),
        "{ready}"
    );
    assert_eq!(
        (ready["welcome"].as_str(), ready["joined"].as_str()),
        (Some("welcome"), Some("joined"))
    );
    let chat: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.get("got"))
        .filter(|m| m["type"] == "chat_message")
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(chat, [big, "small"]);
}

#[tokio::test]
async fn python_websockets_compresses_both_ways() {
    let script = root().join("tests/clients/deflate_client.py");
    let lines = run_client(&python(), &script).await;
    check(&lines, &"python ".repeat(4000));
}

#[tokio::test]
async fn node_ws_compresses_both_ways() {
    let (node, script) = node("deflate_client.mjs");
    let lines = run_client(&node, &script).await;
    check(&lines, &"node ".repeat(4000));
}

#[tokio::test]
async fn headless_chromium_compresses_both_ways() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: `apt-get install chromium` (or set CHROMIUM)"
    );
    let (node, script) = node("browser_client.mjs");
    let lines = run_client(&node, &script).await;
    check(&lines, &"chromium ".repeat(4000));
}
