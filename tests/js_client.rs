//! The JavaScript client (`clients/js`, npm package `neonex-client`) against this build of
//! the hub: runs its `node --test` suite, whose helpers start this very binary (through
//! `NEONEX_BIN`) and `nats-server` on free loopback ports, in Node and in headless Chromium.
//!
//! Needs `npm ci` in `clients/js` (`ws` and `puppeteer-core`, development packages only),
//! Debian's `nats-server` and `chromium` (or `NATS_SERVER`, `CHROMIUM` naming others).

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole suite takes seconds; this only bounds a hang.
const DEADLINE: Duration = Duration::from_secs(240);

#[test]
fn the_javascript_client_passes_its_tests() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/js");
    assert!(
        dir.join("node_modules/ws").exists() && dir.join("node_modules/puppeteer-core").exists(),
        "the JavaScript client's packages are missing: run `npm ci` in clients/js"
    );
    let mut child = Command::new("node")
        // Bounds each test, so that node itself ends, and kills its hubs, on a hang.
        .args(["--test", "--test-timeout=60000", "test/"])
        .current_dir(&dir)
        .env("NEONEX_BIN", env!("CARGO_BIN_EXE_neonex"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            // SIGTERM first: node's exit handlers kill the hubs it started.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            std::thread::sleep(Duration::from_secs(2));
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    match status {
        Some(status) if status.success() => println!("{out}"),
        Some(status) => panic!("node --test failed ({status}):\n{out}\n{err}"),
        None => panic!("node --test still ran after {DEADLINE:?}:\n{out}\n{err}"),
    }
}
