//! The demo chat at `/demo`, in real headless Chromium on a real two-node cluster:
//! `tests/clients/demo_pages.mjs` starts nats-server, the neonex nodes and the browser,
//! drives two pages (ann and bob) through a chat, a third page that asks for a name, a
//! crash and restart of their node (the messages published meanwhile come back, once, in
//! order) and rooms, and writes screenshots to `target/screenshots/demo-ann.png` and
//! `demo-bob.png`. This test runs it and reads the summary it prints.
//!
//! It needs what `.ci/run` installs: `npm ci` in `tests/clients`, Debian's `chromium` (or
//! `CHROMIUM` naming another build; none is ever downloaded) and `nats-server`.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use neonex_testkit::binary::target_dir;
use serde_json::Value;

/// The script bounds itself at 55 s; this is only for a script that hangs regardless.
const RUN_BOUND: Duration = Duration::from_secs(90);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check_prerequisites() {
    let clients = root().join("tests/clients");
    assert!(
        clients.join("node_modules/puppeteer-core").exists(),
        "the test clients' packages are missing: run `npm ci --no-audit --no-fund` in tests/clients"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: `apt-get install chromium` (or set CHROMIUM)"
    );
    let nats = Path::new("/usr/sbin/nats-server").exists()
        || Command::new("nats-server")
            .arg("--version")
            .output()
            .is_ok();
    assert!(nats, "no nats-server: `apt-get install nats-server`");
}

/// Stops the script and all it started: SIGTERM lets it close the browser and kill its
/// servers; SIGKILL to its process group is for a script that does not listen.
fn stop(pid: u32) {
    let group = format!("-{pid}");
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    std::thread::sleep(Duration::from_secs(5));
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
}

#[test]
fn the_demo_chat_works_in_chromium_across_a_node_restart() {
    check_prerequisites();
    let screenshots = target_dir().join("screenshots");
    let mut child = Command::new("node")
        .arg(root().join("tests/clients/demo_pages.mjs"))
        .env("NEONEX_BIN", env!("CARGO_BIN_EXE_neonex"))
        .env("SCREENSHOT_DIR", &screenshots)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node: {e}"));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let lines: Vec<String> = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect();
        let _ = tx.send(lines);
    });
    let lines = match rx.recv_timeout(RUN_BOUND) {
        Ok(lines) => lines,
        Err(_) => {
            stop(child.id());
            panic!("demo_pages.mjs was still running after {RUN_BOUND:?}");
        }
    };
    let status = child.wait().unwrap();
    let last = lines.last().cloned().unwrap_or_default();
    let summary: Value = serde_json::from_str(&last).unwrap_or_else(|e| {
        panic!("demo_pages.mjs ({status}) printed no summary ({e}): {lines:?}")
    });
    assert!(
        status.success() && summary["ok"] == true,
        "demo_pages.mjs exited with {status}: {summary:#}"
    );

    let cases: Vec<&str> = summary["cases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["ok"] == true)
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        cases,
        ["chat", "prompt", "restart", "rooms", "screenshot"],
        "{summary:#}"
    );
    let restart = summary["cases"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "restart")
        .expect("the restart case");
    for user in ["ann", "bob"] {
        let recovered = &restart["pages"][user];
        assert_eq!(
            recovered["added"].as_array().map(Vec::len),
            Some(3),
            "{user}: {recovered}"
        );
        let png = std::fs::read(screenshots.join(format!("demo-{user}.png")))
            .unwrap_or_else(|e| panic!("{user}'s screenshot: {e}"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{user}: not a PNG");
        // The IHDR chunk: width and height, big-endian, at bytes 16..24.
        let size = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
        assert_eq!((size(16), size(20)), (1280, 800), "{user}'s screenshot");
    }
}
