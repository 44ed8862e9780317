//! TLS on the listener (`tls.cert`, `tls.key`), over real sockets: `wss://` clients of
//! either TLS version chat as plain ones do; a client that does not speak TLS, or stalls
//! in its handshake, is dropped without troubling the others; SIGHUP gives new
//! connections the files' new certificate while open ones carry on; and files that
//! cannot serve stop `neonex serve` at start, naming the key.
//!
//! Certificates are made by each test, at run time, with rcgen.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use neonex::{HubConfig, TlsConfig};
use neonex_testkit::binary::{run_neonex, Server};
use neonex_testkit::hub::{config, flood_limits, TestHub};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const TIMEOUT: Duration = Duration::from_secs(10);

type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// A self-signed certificate for `localhost` and its key, as PEM, and the certificate's
/// DER to trust it and to tell it apart.
struct Identity {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Identity {
    fn new() -> Identity {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        Identity {
            cert_pem: cert.pem(),
            key_pem: signing_key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

/// A directory of the test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("neonex-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `text` to `name` in one step (a rename), as a deployment replaces a file.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        let fresh = self.0.join(format!(".{name}.new"));
        std::fs::write(&fresh, text).unwrap();
        std::fs::rename(&fresh, &path).unwrap();
        path
    }

    /// Writes the identity's certificate and key; returns their paths.
    fn install(&self, identity: &Identity) -> (PathBuf, PathBuf) {
        (
            self.write("cert.pem", &identity.cert_pem),
            self.write("key.pem", &identity.key_pem),
        )
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tls_hub(dir: &TempDir, identity: &Identity, tweak: impl FnOnce(&mut HubConfig)) -> TestHub {
    let (cert, key) = dir.install(identity);
    let mut config = HubConfig {
        tls: TlsConfig {
            cert: Some(cert),
            key: Some(key),
        },
        ..config()
    };
    tweak(&mut config);
    TestHub::start(config)
}

static BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A client that trusts `trusted` alone, speaks `versions`, and offers ALPN `http/1.1`
/// as browsers do for WebSockets.
fn client_config(
    trusted: &Identity,
    versions: &[&'static SupportedProtocolVersion],
) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(trusted.der.clone()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// A `wss://` client, past its welcome and the auto-joined `general`.
struct Client {
    ws: Wss,
    user: String,
}

impl Client {
    async fn connect(addr: SocketAddr, connector: &TlsConnector, user: &str) -> Client {
        let (ws, _) = wss(addr, connector, user).await.unwrap();
        let mut client = Client {
            ws,
            user: user.to_owned(),
        };
        let welcome = client.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert_eq!(welcome["user_id"], user, "{welcome}");
        let joined = client.recv().await;
        assert_eq!(joined["type"], "joined", "{joined}");
        client
    }

    /// The certificate the server showed this client.
    fn server_certificate(&self) -> Vec<u8> {
        let (_, session) = self.ws.get_ref().get_ref();
        session.peer_certificates().unwrap()[0].to_vec()
    }

    async fn recv(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{}: nothing within {TIMEOUT:?}", self.user))
                .unwrap_or_else(|| panic!("{}: the stream ended", self.user))
                .unwrap_or_else(|e| panic!("{}: {e}", self.user));
            if let Message::Text(text) = message {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    /// Reads until a `chat_message` in `general`; returns its text.
    async fn next_chat(&mut self) -> String {
        loop {
            let message = self.recv().await;
            if message["type"] == "chat_message" {
                return message["message"].as_str().unwrap().to_owned();
            }
        }
    }

    async fn say(&mut self, text: &str) {
        let message = json!({"type": "message", "room": "general", "message": text});
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }

    /// `self` says `text` and `other` hears it (and so does `self`, a member of the
    /// room too).
    async fn say_to(&mut self, other: &mut Client, text: &str) {
        self.say(text).await;
        assert_eq!(
            other.next_chat().await,
            text,
            "{} to {}",
            self.user,
            other.user
        );
        assert_eq!(self.next_chat().await, text, "{}'s own", self.user);
    }
}

/// Opens a `wss://` WebSocket to the hub as `user`.
async fn wss(
    addr: SocketAddr,
    connector: &TlsConnector,
    user: &str,
) -> Result<
    (
        Wss,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    String,
> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_owned())?
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let url = format!("wss://localhost:{}/ws?user={user}", addr.port());
    tokio::time::timeout(TIMEOUT, tokio_tungstenite::client_async(url, tls))
        .await
        .map_err(|_| "upgrade timed out".to_owned())?
        .map_err(|e| format!("upgrade: {e}"))
}

#[tokio::test]
async fn wss_clients_chat_over_tls() {
    let (dir, identity) = (TempDir::new(), Identity::new());
    let hub = tls_hub(&dir, &identity, |config| config.limits = flood_limits());
    let connector = client_config(&identity, BOTH);
    let mut alice = Client::connect(hub.addr, &connector, "alice").await;
    let mut bob = Client::connect(hub.addr, &connector, "bob").await;
    let (_, session) = alice.ws.get_ref().get_ref();
    assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    alice.say_to(&mut bob, "hello over tls").await;
    bob.say_to(&mut alice, "hello back").await;
    // Larger than a TLS record (16 KiB) and than the session's sealed bytes, both ways.
    let big = "x".repeat(100 * 1024);
    alice.say_to(&mut bob, &big).await;
    bob.say_to(&mut alice, &big).await;
    // A burst of messages, sealed together in few records.
    for i in 0..200 {
        alice.say(&format!("burst {i}")).await;
    }
    for i in 0..200 {
        assert_eq!(bob.next_chat().await, format!("burst {i}"));
        assert_eq!(alice.next_chat().await, format!("burst {i}"));
    }
    // The hub ends the session with close_notify: the client sees a clean end after the
    // close frame, where a bare cut would be a truncation error.
    alice.ws.close(None).await.unwrap();
    loop {
        match tokio::time::timeout(TIMEOUT, alice.ws.next())
            .await
            .unwrap()
        {
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("the session did not end cleanly: {e}"),
            None => break,
        }
    }
}

#[tokio::test]
async fn tls_1_2_only_and_tls_1_3_only_clients_both_chat() {
    let (dir, identity) = (TempDir::new(), Identity::new());
    let hub = tls_hub(&dir, &identity, |_| {});
    let mut clients = Vec::new();
    for (user, version, expected) in [
        (
            "old",
            &rustls::version::TLS12,
            rustls::ProtocolVersion::TLSv1_2,
        ),
        (
            "new",
            &rustls::version::TLS13,
            rustls::ProtocolVersion::TLSv1_3,
        ),
    ] {
        let connector = client_config(&identity, &[version]);
        let client = Client::connect(hub.addr, &connector, user).await;
        let (_, session) = client.ws.get_ref().get_ref();
        assert_eq!(session.protocol_version(), Some(expected), "{user}");
        clients.push(client);
    }
    let (old, new) = clients.split_at_mut(1);
    old[0].say_to(&mut new[0], "from 1.2").await;
    new[0].say_to(&mut old[0], "from 1.3").await;
}

#[tokio::test]
async fn a_plain_client_at_a_tls_listener_fails_and_others_carry_on() {
    let (dir, identity) = (TempDir::new(), Identity::new());
    let hub = tls_hub(&dir, &identity, |_| {});
    let connector = client_config(&identity, BOTH);
    let mut alice = Client::connect(hub.addr, &connector, "alice").await;
    let mut bob = Client::connect(hub.addr, &connector, "bob").await;

    let plain = tokio::time::timeout(
        TIMEOUT,
        tokio_tungstenite::connect_async(format!("ws://{}/ws?user=plain", hub.addr)),
    )
    .await
    .expect("a plain client is answered at once, not left hanging");
    assert!(
        plain.is_err(),
        "a ws:// upgrade succeeded on a TLS listener"
    );

    // What the hub sends a plain HTTP request: at most a TLS alert, then the end.
    let mut raw = TcpStream::connect(hub.addr).await.unwrap();
    raw.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(TIMEOUT, raw.read_to_end(&mut answer))
        .await
        .expect("the connection is closed at once")
        .ok();
    assert!(!answer.starts_with(b"HTTP"), "answered in plain text");
    assert!(answer.len() < 64, "{answer:?}");

    alice.say_to(&mut bob, "still here").await;
    let mut carol = Client::connect(hub.addr, &connector, "carol").await;
    bob.say_to(&mut carol, "and a newcomer").await;
    assert_eq!(alice.next_chat().await, "and a newcomer");
}

#[tokio::test]
async fn plain_http_calls_are_answered_over_tls_and_end_with_close_notify() {
    let (dir, identity) = (TempDir::new(), Identity::new());
    let hub = tls_hub(&dir, &identity, |_| {});
    let tcp = TcpStream::connect(hub.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let connector = client_config(&identity, BOTH);
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // tokio-rustls reports an end without close_notify as an error.
    let mut answer = Vec::new();
    tokio::time::timeout(TIMEOUT, tls.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(r#"{"status":"ok"}"#), "{answer}");
}

#[tokio::test]
async fn a_client_stalled_in_its_tls_handshake_is_dropped_at_the_deadline() {
    let (dir, identity) = (TempDir::new(), Identity::new());
    let timeout = Duration::from_millis(600);
    let hub = tls_hub(&dir, &identity, |config| config.handshake_timeout = timeout);
    // Half of a real ClientHello.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let mut session = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    session.write_tls(&mut hello).unwrap();
    let mut stalled = TcpStream::connect(hub.addr).await.unwrap();
    let opened = Instant::now();
    stalled.write_all(&hello[..hello.len() / 2]).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(TIMEOUT, stalled.read_to_end(&mut rest))
        .await
        .expect("the stalled client is dropped")
        .ok();
    let lasted = opened.elapsed();
    assert!(rest.is_empty(), "{rest:?}");
    assert!(lasted >= timeout - Duration::from_millis(50), "{lasted:?}");
    assert!(lasted < timeout * 4, "{lasted:?}");
    // Others are served meanwhile and after.
    let connector = client_config(&identity, BOTH);
    let mut alice = Client::connect(hub.addr, &connector, "alice").await;
    let mut bob = Client::connect(hub.addr, &connector, "bob").await;
    alice.say_to(&mut bob, "unbothered").await;
}

fn tls_env<'a>(cert: &'a Path, key: &'a Path) -> [(&'static str, &'a str); 2] {
    [
        ("NEONEX_TLS_CERT", cert.to_str().unwrap()),
        ("NEONEX_TLS_KEY", key.to_str().unwrap()),
    ]
}

fn hang_up(server: &Server) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sighup_gives_new_connections_the_new_certificate() {
    let dir = TempDir::new();
    let (a, b) = (Identity::new(), Identity::new());
    let (cert, key) = dir.install(&a);
    let (server, addr) = Server::spawn_logged(&["--shards", "2"], &tls_env(&cert, &key)).await;
    let mut first = Client::connect(addr, &client_config(&a, BOTH), "first").await;
    assert_eq!(first.server_certificate(), a.der);

    dir.install(&b);
    hang_up(&server);
    server
        .wait_for_log("TLS reloaded", |l| {
            l.contains("TLS certificate and key reloaded")
        })
        .await;
    let mut second = Client::connect(addr, &client_config(&b, BOTH), "second").await;
    assert_eq!(second.server_certificate(), b.der);
    let refused = wss(addr, &client_config(&a, BOTH), "stale").await;
    assert!(refused.is_err(), "the old certificate is still served");
    first.say_to(&mut second, "from before the reload").await;
    second.say_to(&mut first, "from after it").await;
    // `first` was quiet while the others joined: only chat is read past here.

    // A broken file is refused, and the certificate in use stays.
    dir.write("cert.pem", "not a certificate");
    hang_up(&server);
    let line = server
        .wait_for_log("TLS reload failed", |l| l.contains("TLS reload failed"))
        .await;
    assert!(line.contains("tls.cert"), "{line}");
    let mut third = Client::connect(addr, &client_config(&b, BOTH), "third").await;
    assert_eq!(third.server_certificate(), b.der);
    first.say_to(&mut third, "all still here").await;
    assert_eq!(second.next_chat().await, "all still here");
}

/// `neonex serve` with `env` exits 2, and its error names `key`; returns the error.
fn refused(env: &[(&str, &str)], key: &str) -> String {
    let (code, _, err) = run_neonex(&["serve", "--listen", "127.0.0.1:0"], env);
    assert_eq!(code, 2, "{env:?}: {err}");
    assert!(err.contains(key), "{env:?}: {err}");
    err
}

#[test]
fn tls_files_that_cannot_serve_stop_the_server_naming_the_key() {
    let dir = TempDir::new();
    let (a, b) = (Identity::new(), Identity::new());
    let (cert, key) = dir.install(&a);
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let other_key = dir.write("other-key.pem", &b.key_pem);
    let empty = dir.write("empty.pem", "");
    let missing = dir.0.join("missing.pem");
    let (empty, missing) = (empty.to_str().unwrap(), missing.to_str().unwrap());

    let err = refused(&[("NEONEX_TLS_CERT", cert)], "tls.key");
    assert!(err.contains("go together"), "{err}");
    refused(&[("NEONEX_TLS_KEY", key)], "tls.cert");
    let err = refused(&tls_env(Path::new(missing), Path::new(key)), "tls.cert");
    assert!(err.contains("cannot read"), "{err}");
    let err = refused(&tls_env(Path::new(empty), Path::new(key)), "tls.cert");
    assert!(err.contains("no certificate"), "{err}");
    // A key file holding a certificate holds no key.
    let err = refused(&tls_env(Path::new(cert), Path::new(cert)), "tls.key");
    assert!(err.contains("no private key"), "{err}");
    let err = refused(&tls_env(Path::new(cert), &other_key), "tls.key");
    assert!(err.contains("does not match"), "{err}");
}

/// The server's resident memory (VmRSS), in KiB.
fn rss_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// What one idle connection costs the server, plain and over TLS: `n` clients (2000, or
/// `NEONEX_IDLE_CONNECTIONS`) connect to the real binary, and its resident memory is read
/// before and once they have settled. Prints the figures the README gives.
/// `cargo test --test tls -- --ignored --nocapture idle_memory`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it by name"]
async fn idle_memory_per_connection() {
    let n: usize = std::env::var("NEONEX_IDLE_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = TempDir::new();
    let identity = Identity::new();
    let (cert, key) = dir.install(&identity);
    let connector = client_config(&identity, BOTH);
    let settle = Duration::from_secs(3);
    let mut figures = Vec::new();
    for tls in [false, true] {
        let env: &[(&str, &str)] = if tls { &tls_env(&cert, &key) } else { &[] };
        let args = ["--shards", "2"];
        let (server, addr) = match tls {
            true => Server::spawn_logged(&args, env).await,
            false => Server::spawn(&args, env).await,
        };
        tokio::time::sleep(settle).await;
        let before = rss_kib(&server);
        let mut open = Vec::with_capacity(n);
        for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
            let batch = chunk.iter().map(|i| {
                let connector = connector.clone();
                async move {
                    let user = format!("u{i}");
                    if tls {
                        Box::new(Client::connect(addr, &connector, &user).await.ws)
                            as Box<dyn std::any::Any + Send>
                    } else {
                        let url = format!("ws://{addr}/ws?user={user}");
                        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
                        for _ in 0..2 {
                            ws.next().await.unwrap().unwrap();
                        }
                        Box::new(ws)
                    }
                }
            });
            open.extend(futures_util::future::join_all(batch).await);
        }
        // Past two housekeeping ticks, idle queues have given their memory back.
        tokio::time::sleep(settle).await;
        let after = rss_kib(&server);
        let per = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
        let kind = if tls { "wss" } else { "ws" };
        println!(
            "{kind}: {n} idle connections, RSS {before} KiB -> {after} KiB: {per:.0} bytes each"
        );
        figures.push(per);
        drop(open);
        drop(server);
    }
    println!(
        "TLS adds {:.0} bytes per idle connection",
        figures[1] - figures[0]
    );
}
