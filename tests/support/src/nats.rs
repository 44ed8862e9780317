//! A real `nats-server` (Debian's package) on a loopback port of its own choosing, for
//! the cluster's tests. It can be stopped and started again on the same port, as an
//! outage.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `nats-server`, killed when dropped.
pub struct Nats {
    /// Its client port: 0 until it first listens.
    pub port: u16,
    /// Where JetStream keeps its streams.
    store: PathBuf,
    /// The user and password clients need, if any.
    credentials: Option<(String, String)>,
    child: Option<Child>,
}

impl Nats {
    /// Starts `nats-server` with JetStream on a free port and waits until it accepts.
    pub fn start() -> Nats {
        Nats::start_with(None)
    }

    /// Starts `nats-server` as [`Nats::start`] does, letting in only `user` with
    /// `password`.
    pub fn start_with_password(user: &str, password: &str) -> Nats {
        Nats::start_with(Some((user.to_owned(), password.to_owned())))
    }

    fn start_with(credentials: Option<(String, String)>) -> Nats {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let store = std::env::temp_dir().join(format!("neonex-nats-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&store);
        let mut nats = Nats {
            port: 0,
            store,
            credentials,
            child: None,
        };
        nats.resume();
        nats
    }

    /// `nats://127.0.0.1:PORT`, with the credentials if it needs them.
    pub fn url(&self) -> String {
        match &self.credentials {
            Some((user, password)) => format!("nats://{user}:{password}@127.0.0.1:{}", self.port),
            None => format!("nats://127.0.0.1:{}", self.port),
        }
    }

    /// Kills the server: an outage.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server without closing its sockets (SIGSTOP): a NATS that reads nothing.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("nats-server runs").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Starts the server again on the same port (and the same JetStream store); the
    /// first start lets it choose a free port.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "nats-server runs already");
        // A port found free and then handed to nats-server can be taken by another test
        // in between, and a check that something accepts there would then pass on the
        // other test's server. nats-server writes the ports it listens on to a file named
        // after its pid, once it listens: only that file says this one does.
        let ports_dir = self.store.join("ports");
        std::fs::create_dir_all(&ports_dir).expect("a directory for the ports file");
        let port = if self.port == 0 {
            "-1".to_owned()
        } else {
            self.port.to_string()
        };
        let mut child = Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
            .arg(&self.store)
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run nats-server (apt-get install nats-server): {e}")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        let listening = loop {
            if let Some(port) = listening_port(&ports_dir, child.id()) {
                break port;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("nats-server -p {port} exited before it listened ({status})");
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen in 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.port = listening;
        self.child = Some(child);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not accept in 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The client port in the ports file of nats-server `pid`, once it has written it:
/// `{"nats":["nats://127.0.0.1:PORT"]}`.
fn listening_port(dir: &Path, pid: u32) -> Option<u16> {
    let suffix = format!("_{pid}.ports");
    let file = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .find(|entry| entry.file_name().to_string_lossy().ends_with(&suffix))?;
    let ports: serde_json::Value =
        serde_json::from_slice(&std::fs::read(file.path()).ok()?).ok()?;
    let url = ports["nats"][0].as_str()?;
    url.rsplit(':').next()?.parse().ok()
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// `nats-server` on the PATH, or where Debian puts it.
fn binary() -> PathBuf {
    let debian = PathBuf::from("/usr/sbin/nats-server");
    if debian.is_file() {
        debian
    } else {
        PathBuf::from("nats-server")
    }
}
