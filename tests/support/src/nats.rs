//! A real `nats-server` (Debian's package) on a free loopback port, for the cluster's
//! tests. It can be stopped and started again on the same port, as an outage.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::binary::free_port;

/// A running `nats-server`, killed when dropped.
pub struct Nats {
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
        let port = free_port();
        let store = std::env::temp_dir().join(format!("neonex-nats-{port}-{}", std::process::id()));
        let mut nats = Nats {
            port,
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

    /// Starts the server again on the same port (and the same JetStream store).
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "nats-server runs already");
        let child = Command::new(binary())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run nats-server (apt-get install nats-server): {e}")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen in 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
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
