//! The real `neonex` executable: served on a free loopback port, or run to completion.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::wait::TIMEOUT;

/// The `neonex` executable of this build. Cargo builds a package's binaries into
/// `target/<profile>/` before it runs the package's integration tests, which run from
/// `target/<profile>/deps/`. (`env!("CARGO_BIN_EXE_neonex")` would name it only inside
/// neonex's own test crates, and cargo sets it at run time only from 1.94 on.)
fn neonex_binary() -> PathBuf {
    let binary = profile_dir().join(format!("neonex{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "no neonex binary at {}: integration tests of neonex, run by cargo, have one",
        binary.display()
    );
    binary
}

/// `target/<profile>/` of this build: integration tests run from its `deps/`.
fn profile_dir() -> PathBuf {
    let test = std::env::current_exe().expect("the path of the running test");
    test.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in target/<profile>/deps", test.display()))
        .to_path_buf()
}

/// The target directory of this build, wherever `CARGO_TARGET_DIR` put it: the place
/// for what a test writes and keeps for a person to read.
pub fn target_dir() -> PathBuf {
    let profile = profile_dir();
    profile
        .parent()
        .unwrap_or_else(|| panic!("{} has no parent", profile.display()))
        .to_path_buf()
}

/// The example `name` of this build (`target/<profile>/examples/name`), built by cargo
/// with the running test's profile: `cargo test --test NAME` builds no example, and one
/// left by an earlier build may be stale.
pub fn example_binary(name: &str) -> PathBuf {
    let profile = profile_dir();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(&workspace)
        .args(["build", "--quiet", "-p", "neonex", "--example", name]);
    if profile.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build --example");
    assert!(
        status.success(),
        "cargo build --example {name} failed ({status})"
    );
    let binary = profile
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "cargo build --example {name} made no {}",
        binary.display()
    );
    binary
}

/// The load generator of this build (`target/<profile>/loadgen`, package
/// `neonex-loadgen`), built by cargo with the running test's profile, as
/// [`example_binary`] builds examples: no test of neonex makes cargo build it.
pub fn loadgen_binary() -> PathBuf {
    let profile = profile_dir();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build.current_dir(&workspace).args([
        "build",
        "--quiet",
        "-p",
        "neonex-loadgen",
        "--bin",
        "loadgen",
    ]);
    if profile.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build -p neonex-loadgen");
    assert!(
        status.success(),
        "cargo build -p neonex-loadgen failed ({status})"
    );
    let binary = profile.join(format!("loadgen{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "cargo build -p neonex-loadgen made no {}",
        binary.display()
    );
    binary
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// How often a server is started on a fresh port when another process took the one
/// [`free_port`] found free before the server could bind it.
const PORT_ATTEMPTS: usize = 5;

/// How a start ended.
#[derive(PartialEq)]
enum Start {
    Serving,
    /// The server refused its port: another process listens there.
    PortTaken,
}

/// The real `neonex serve` binary, run on a free loopback port. Its log (stdout and
/// stderr) is collected for tests to read; it is killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `neonex serve --listen 127.0.0.1:PORT` plus `args`, with `env`, and waits
    /// until it answers `/health`.
    pub async fn spawn(args: &[&str], env: &[(&str, &str)]) -> (Server, SocketAddr) {
        for _ in 0..PORT_ATTEMPTS {
            let mut server = Server::start(args, env);
            if server.wait_healthy().await == Start::Serving {
                let addr = server.addr;
                return (server, addr);
            }
        }
        panic!("neonex found its port taken {PORT_ATTEMPTS} times");
    }

    /// Starts the server as [`Server::spawn`] does and waits until it logs that it
    /// serves: for a listener that plain `/health` cannot reach (TLS).
    pub async fn spawn_logged(args: &[&str], env: &[(&str, &str)]) -> (Server, SocketAddr) {
        for _ in 0..PORT_ATTEMPTS {
            let mut server = Server::start(args, env);
            if server.wait_logged().await == Start::Serving {
                let addr = server.addr;
                return (server, addr);
            }
        }
        panic!("neonex found its port taken {PORT_ATTEMPTS} times");
    }

    async fn wait_logged(&mut self) -> Start {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains("neonex is serving") {
            if self.exited_before_serving() {
                return Start::PortTaken;
            }
            assert!(
                Instant::now() < deadline,
                "neonex did not log that it serves in 10 s: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Start::Serving
    }

    /// Whether the server exited because its port was taken; a server that exited for
    /// any other reason fails the test.
    fn exited_before_serving(&mut self) -> bool {
        let Ok(Some(status)) = self.child.try_wait() else {
            return false;
        };
        // The reader threads may not have collected the last lines yet.
        std::thread::sleep(Duration::from_millis(50));
        let log = self.log();
        if status.code() == Some(2) && log.contains("cannot listen") {
            return true;
        }
        panic!("neonex exited before serving ({status}): {log}");
    }

    fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut child = Command::new(neonex_binary())
            .args(["serve", "--listen", &addr.to_string()])
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn neonex");
        let log = Arc::new(Mutex::new(String::new()));
        let stdout = child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>);
        let stderr = child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>);
        for pipe in [stdout, stderr].into_iter().flatten() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        Server { child, addr, log }
    }

    /// Polls `/health` until it answers 200; panics if the server exits first (unless
    /// for its port) or takes more than 10 s.
    async fn wait_healthy(&mut self) -> Start {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.exited_before_serving() {
                return Start::PortTaken;
            }
            if let Ok(Ok(mut stream)) =
                tokio::time::timeout(TIMEOUT, TcpStream::connect(self.addr)).await
            {
                let _ = stream
                    .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                    .await;
                let mut buf = vec![0u8; 256];
                if let Ok(Ok(n)) = tokio::time::timeout(TIMEOUT, stream.read(&mut buf)).await {
                    if buf[..n].starts_with(b"HTTP/1.1 200") {
                        return Start::Serving;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "neonex did not serve /health in 10 s: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a log line satisfies `pred`, and returns it.
    pub async fn wait_for_log(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(line) = self.log().lines().find(|l| pred(l)) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no log line {what} within {TIMEOUT:?}; the log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `neonex` with `args` and `env` to completion: exit code, stdout, stderr.
pub fn run_neonex(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let child = Command::new(neonex_binary())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run neonex");
    // A run expected to end (a refused setting, `neonex config`) that serves instead must
    // fail the test, not hang it.
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let output = match finished.recv_timeout(Duration::from_secs(20)) {
        Ok(output) => output.expect("run neonex"),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("neonex {args:?} {env:?} was still running after 20 s");
        }
    };
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
