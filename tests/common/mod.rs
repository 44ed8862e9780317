//! Shared helpers for the integration tests: a hub on an ephemeral port, a WebSocket
//! client over tokio-tungstenite, a raw TCP client that speaks WebSocket by hand (for the
//! frames tungstenite refuses to send), and waits with timeouts.
//!
//! Every wait in here has a deadline and fails the test with a message naming what was
//! awaited; nothing synchronises by sleeping a fixed time.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use neonex::{ConnectionId, ConnectionInfo, Hub, HubConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Default wait for anything a test expects to arrive.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The `Sec-WebSocket-Key` of RFC 6455 section 1.3, and its accept value.
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

// ---------------------------------------------------------------------------------------
// Hub
// ---------------------------------------------------------------------------------------

/// The configuration most tests use: two shards (so cross-shard paths are exercised on
/// any machine) and a short shutdown drain.
pub fn config() -> HubConfig {
    HubConfig {
        shards: 2,
        shutdown_timeout: Duration::from_secs(2),
        ..HubConfig::default()
    }
}

/// Rate limits high enough for tests that flood on purpose.
pub fn flood_limits() -> neonex::config::LimitsConfig {
    neonex::config::LimitsConfig {
        messages_per_second: 1_000_000,
        burst: 1_000_000,
        ..Default::default()
    }
}

/// A hub listening on an ephemeral loopback port. Dropping it shuts the hub down on a
/// detached thread, so a test never blocks on the drain of its own clients.
pub struct TestHub {
    pub hub: Hub,
    pub addr: SocketAddr,
}

impl TestHub {
    pub fn start(config: HubConfig) -> TestHub {
        let hub = Hub::new(config).expect("the hub starts");
        let addr = hub.listen("127.0.0.1:0").expect("the hub listens");
        TestHub { hub, addr }
    }

    pub fn default_hub() -> TestHub {
        TestHub::start(config())
    }

    /// `ws://addr/ws?user=USER`, or without `user` when `None`.
    pub fn url(&self, user: Option<&str>) -> String {
        ws_url(self.addr, user)
    }

    /// Connects as `user`, reads the welcome and the `joined` of every auto-joined room.
    pub async fn connect(&self, user: &str) -> Client {
        Client::connect(self.addr, Some(user), &self.hub.config().rooms.autojoin).await
    }

    /// Connects without a `user` parameter.
    pub async fn connect_anonymous(&self) -> Client {
        Client::connect(self.addr, None, &self.hub.config().rooms.autojoin).await
    }

    /// Connects as `user` until the connection lands on `shard`. Connections that land on
    /// another shard are closed again, and the hub is given time to forget them (they
    /// leave `user_joined`/`user_left`/`presence` notices behind on the other clients,
    /// which tests skip by filtering on type, room and user).
    pub async fn connect_on_shard(&self, user: &str, shard: usize) -> Client {
        for _ in 0..64 {
            let client = self.connect(user).await;
            if client.id.shard() == shard {
                return client;
            }
            let id = client.id;
            client.close().await;
            self.wait_gone(id).await;
        }
        panic!("64 connections in a row for {user:?} missed shard {shard}");
    }

    /// `Hub::connection`, which waits for the owning shard, off the runtime.
    pub async fn connection(&self, id: ConnectionId) -> Option<ConnectionInfo> {
        self.blocking(move |hub| hub.connection(id)).await
    }

    /// Waits until the hub no longer knows connection `id`.
    pub async fn wait_gone(&self, id: ConnectionId) {
        let deadline = Instant::now() + TIMEOUT;
        while self.connection(id).await.is_some() {
            assert!(
                Instant::now() < deadline,
                "timed out after {TIMEOUT:?} waiting for connection {id} to be gone"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the hub counts exactly `n` open connections.
    pub async fn wait_connections(&self, n: usize) {
        let hub = self.hub.clone();
        let mut last = 0;
        let ok = wait_until_ok(TIMEOUT, || {
            last = hub.connection_count();
            last == n
        })
        .await;
        assert!(ok, "connection_count stayed at {last}, expected {n}");
    }

    /// Runs a hub call that may block (join_room, leave_room, close) off the runtime.
    pub async fn blocking<R, F>(&self, f: F) -> R
    where
        F: FnOnce(Hub) -> R + Send + 'static,
        R: Send + 'static,
    {
        let hub = self.hub.clone();
        tokio::task::spawn_blocking(move || f(hub))
            .await
            .expect("the blocking hub call panicked")
    }

    /// Broadcasts a unique marker through the hub and has every client read up to it.
    /// Returns, per client, the messages that arrived before the marker. Messages a shard
    /// published before this call reach the clients before the marker.
    pub async fn barrier(&self, clients: &mut [&mut Client]) -> Vec<Vec<Value>> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let marker = json!({"type": "test_barrier", "n": n});
        let hub = self.hub.clone();
        let m = marker.clone();
        tokio::task::spawn_blocking(move || hub.broadcast_json(&m))
            .await
            .unwrap()
            .expect("barrier broadcast");
        let mut seen = Vec::new();
        for client in clients.iter_mut() {
            seen.push(client.read_until_value(&marker).await);
        }
        seen
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        let hub = self.hub.clone();
        std::thread::spawn(move || hub.close());
    }
}

pub fn ws_url(addr: SocketAddr, user: Option<&str>) -> String {
    match user {
        Some(user) => format!("ws://{addr}/ws?user={user}"),
        None => format!("ws://{addr}/ws"),
    }
}

/// This process's resident set size, in KiB: the hub under test runs in it.
pub fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line in /proc/self/status")
}

/// Sends `value` as a text message on the write half of a client, within [`TIMEOUT`]
/// (a hub that stops reading shows up as a timeout, not a hang).
pub async fn send_json_within<S>(sink: &mut S, value: &Value) -> Result<(), String>
where
    S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    match tokio::time::timeout(TIMEOUT, sink.send(Message::text(value.to_string()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("sending failed: {e}")),
        Err(_) => Err("sending timed out".to_owned()),
    }
}

/// The next `chat_message` for `room` on the read half of a client, skipping every other
/// message. The error says what came instead: a close, an error, the end of the stream,
/// or nothing for `timeout`.
pub async fn next_chat_message<S>(
    stream: &mut S,
    room: &str,
    timeout: Duration,
) -> Result<Value, String>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message = match tokio::time::timeout(timeout, stream.next()).await {
            Err(_) => return Err(format!("nothing for {timeout:?}")),
            Ok(None) => return Err("the stream ended".to_owned()),
            Ok(Some(Err(e))) => return Err(format!("error: {e}")),
            Ok(Some(Ok(m))) => m,
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Close(frame) => return Err(format!("closed ({frame:?})")),
            _ => continue,
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if v["type"] == "chat_message" && v["room"] == room {
            return Ok(v);
        }
    }
}

/// Polls `f` every few milliseconds until it is true or `timeout` passes; panics naming
/// `what` on timeout.
pub async fn wait_until(what: &str, timeout: Duration, f: impl FnMut() -> bool) {
    assert!(
        wait_until_ok(timeout, f).await,
        "timed out after {timeout:?} waiting for {what}"
    );
}

/// Polls `f` until it is true (returns true) or `timeout` passes (returns false).
pub async fn wait_until_ok(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs a blocking closure on the blocking pool.
pub async fn blocking<R, F>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking task panicked")
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Asserts `time` is an integer within a few seconds of now.
pub fn assert_time_now(msg: &Value) {
    let time = msg["time"]
        .as_i64()
        .unwrap_or_else(|| panic!("`time` is not an integer in {msg}"));
    assert!(
        (time - now_secs()).abs() <= 5,
        "`time` {time} is not near now ({}) in {msg}",
        now_secs()
    );
}

// ---------------------------------------------------------------------------------------
// WebSocket client (tokio-tungstenite)
// ---------------------------------------------------------------------------------------

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A protocol client. Reading skips ping and pong frames (tungstenite answers pings by
/// itself while reading).
pub struct Client {
    pub ws: Ws,
    /// From the welcome.
    pub id: ConnectionId,
    /// From the welcome.
    pub user: String,
    pub welcome: Value,
    /// The `joined` messages of the auto-joined rooms, in order.
    pub autojoined: Vec<Value>,
}

impl Client {
    /// Connects, reads the welcome and one `joined` per room of `autojoin`.
    pub async fn connect(addr: SocketAddr, user: Option<&str>, autojoin: &[String]) -> Client {
        Client::open(ws_url(addr, user).into_client_request().unwrap(), autojoin).await
    }

    /// Connects with a prepared upgrade request (extra headers, a token in the query).
    pub async fn open(request: Request, autojoin: &[String]) -> Client {
        let url = request.uri().to_string();
        let (ws, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request))
            .await
            .unwrap_or_else(|_| panic!("connecting to {url} timed out"))
            .unwrap_or_else(|e| panic!("connecting to {url} failed: {e}"));
        let mut client = Client {
            ws,
            id: "0-0".parse().unwrap(),
            user: String::new(),
            welcome: Value::Null,
            autojoined: Vec::new(),
        };
        let welcome = client.recv_json().await;
        assert_eq!(
            welcome["type"], "welcome",
            "first message on {url} is not the welcome: {welcome}"
        );
        client.id = welcome["connection_id"]
            .as_str()
            .unwrap_or_else(|| panic!("welcome without string connection_id: {welcome}"))
            .parse()
            .unwrap_or_else(|_| panic!("connection_id is not <shard>-<seq>: {welcome}"));
        client.user = welcome["user_id"]
            .as_str()
            .unwrap_or_else(|| panic!("welcome without string user_id: {welcome}"))
            .to_owned();
        client.welcome = welcome;
        for room in autojoin {
            let joined = client.recv_json().await;
            assert_eq!(
                (joined["type"].as_str(), joined["room"].as_str()),
                (Some("joined"), Some(room.as_str())),
                "{}: expected `joined` for auto-joined room {room} right after the welcome, got {joined}",
                client.id
            );
            client.autojoined.push(joined);
        }
        client
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        tokio::time::timeout(TIMEOUT, self.ws.send(Message::text(text)))
            .await
            .unwrap_or_else(|_| panic!("{}: sending timed out", self.id))
            .unwrap_or_else(|e| panic!("{}: sending failed: {e}", self.id));
    }

    pub async fn send(&mut self, message: Message) {
        tokio::time::timeout(TIMEOUT, self.ws.send(message))
            .await
            .unwrap_or_else(|_| panic!("{}: sending timed out", self.id))
            .unwrap_or_else(|e| panic!("{}: sending failed: {e}", self.id));
    }

    /// The next frame that is not a ping or pong, or `None` at the end of the stream
    /// (or a transport error), within `timeout`. Panics on timeout.
    pub async fn recv_message_within(&mut self, timeout: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!(
                    "{} ({}): nothing arrived within {timeout:?}",
                    self.id, self.user
                ),
                Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(message))) => return Some(message),
            }
        }
    }

    /// Like [`Client::recv_message_within`] but returns `Err(())` on timeout.
    pub async fn try_recv_message(&mut self, timeout: Duration) -> Result<Option<Message>, ()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Err(()),
                Ok(None) | Ok(Some(Err(_))) => return Ok(None),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(message))) => return Ok(Some(message)),
            }
        }
    }

    /// The next text message, parsed as JSON (default timeout). Panics on anything else.
    pub async fn recv_json(&mut self) -> Value {
        self.recv_json_within(TIMEOUT).await
    }

    pub async fn recv_json_within(&mut self, timeout: Duration) -> Value {
        match self.recv_message_within(timeout).await {
            Some(Message::Text(text)) => serde_json::from_str(&text).unwrap_or_else(|e| {
                panic!(
                    "{}: server sent text that is not JSON ({e}): {text}",
                    self.id
                )
            }),
            other => panic!(
                "{} ({}): expected a JSON text message, got {other:?}",
                self.id, self.user
            ),
        }
    }

    /// Reads until a message of type `kind` arrives; returns it.
    pub async fn expect_type(&mut self, kind: &str) -> Value {
        self.expect(&format!("type {kind:?}"), |m| m["type"] == kind)
            .await
    }

    /// Reads until a message satisfying `pred` arrives (within the default timeout
    /// overall); returns it. The failure message lists what arrived instead.
    pub async fn expect(&mut self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let message = match self.try_recv_message(left).await {
                Ok(m) => m,
                Err(()) => panic!(
                    "{} ({}): no message with {what} within {TIMEOUT:?}; got instead: {skipped:?}",
                    self.id, self.user
                ),
            };
            match message {
                Some(Message::Text(text)) => {
                    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
                        panic!(
                            "{}: server sent text that is not JSON ({e}): {text}",
                            self.id
                        )
                    });
                    if pred(&value) {
                        return value;
                    }
                    skipped.push(value);
                }
                other => panic!(
                    "{} ({}): waiting for {what}, got {other:?} after {skipped:?}",
                    self.id, self.user
                ),
            }
        }
    }

    /// Reads until a message equal to `value`; returns everything before it.
    pub async fn read_until_value(&mut self, value: &Value) -> Vec<Value> {
        let mut before = Vec::new();
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.try_recv_message(left).await {
                Ok(Some(Message::Text(text))) => {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    if &v == value {
                        return before;
                    }
                    before.push(v);
                }
                other => panic!(
                    "{} ({}): waiting for {value}, got {other:?} after {before:?}",
                    self.id, self.user
                ),
            }
        }
    }

    /// Sends `ping` and reads until the `pong`: proof the connection still works.
    /// Returns what arrived before the pong.
    pub async fn ping_pong(&mut self) -> Vec<Value> {
        self.send_json(&json!({"type": "ping"})).await;
        let mut before = Vec::new();
        loop {
            let m = self.recv_json().await;
            if m["type"] == "pong" {
                assert_eq!(m, json!({"type": "pong"}), "pong has extra fields");
                return before;
            }
            before.push(m);
        }
    }

    /// Joins `room` by protocol message and reads until its `joined`; returns the count.
    pub async fn join(&mut self, room: &str) -> u64 {
        self.send_json(&json!({"type": "join_room", "room": room}))
            .await;
        let joined = self
            .expect(&format!("joined {room}"), |m| {
                m["type"] == "joined" && m["room"] == room
            })
            .await;
        joined["count"]
            .as_u64()
            .unwrap_or_else(|| panic!("joined without integer count: {joined}"))
    }

    /// Leaves `room` and returns the `left` answer.
    pub async fn leave(&mut self, room: &str) -> Value {
        self.send_json(&json!({"type": "leave_room", "room": room}))
            .await;
        self.expect(&format!("left {room}"), |m| {
            m["type"] == "left" && m["room"] == room
        })
        .await
    }

    /// Sends a chat message with text to `room`.
    pub async fn say(&mut self, room: &str, text: &str) {
        self.send_json(&json!({"type": "message", "room": room, "message": text}))
            .await;
    }

    /// Reads until a close frame; returns its code and reason. Text messages before it are
    /// skipped. Panics if the stream ends without a close frame.
    pub async fn expect_close(&mut self) -> (u16, String) {
        let mut skipped = Vec::new();
        loop {
            match self.recv_message_within(TIMEOUT).await {
                Some(Message::Close(Some(CloseFrame { code, reason }))) => {
                    return (u16::from(code), reason.to_string())
                }
                Some(Message::Close(None)) => panic!("{}: close frame without a code", self.id),
                Some(other) => skipped.push(other),
                None => panic!(
                    "{}: the stream ended without a close frame (after {skipped:?})",
                    self.id
                ),
            }
        }
    }

    /// After a close from the server: lets tungstenite answer it, reads to the end of the
    /// stream, and drops the connection.
    pub async fn finish_close(mut self) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while let Ok(Some(_)) = tokio::time::timeout_at(deadline, self.ws.next()).await {}
    }

    /// Closes normally (1000) and waits for the server's answer.
    pub async fn close(self) {
        self.close_with(1000, "bye").await;
    }

    /// Closes with `code` and returns the code the server answered with, if any.
    pub async fn close_with(mut self, code: u16, reason: &str) -> Option<u16> {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(TIMEOUT, self.ws.close(Some(frame))).await;
        loop {
            match self.try_recv_message(TIMEOUT).await {
                Ok(Some(Message::Close(frame))) => {
                    let echoed = frame.map(|f| u16::from(f.code));
                    // Let tungstenite finish the closing handshake.
                    let _ = tokio::time::timeout(TIMEOUT, self.ws.next()).await;
                    return echoed;
                }
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(()) => panic!("{}: no answer to our close within {TIMEOUT:?}", self.id),
            }
        }
    }
}

/// Opens connections until there are at least `min` and at least one on each of the
/// hub's shards; users are `{prefix}{i}`. All are kept.
pub async fn connect_spread(hub: &TestHub, prefix: &str, min: usize) -> Vec<Client> {
    let shards = hub.hub.shard_count();
    let mut clients: Vec<Client> = Vec::new();
    for i in 0..64 {
        let covered = (0..shards).all(|s| clients.iter().any(|c| c.id.shard() == s));
        if clients.len() >= min && covered {
            return clients;
        }
        clients.push(hub.connect(&format!("{prefix}{i}")).await);
    }
    panic!("64 connections did not cover all {shards} shards");
}

// ---------------------------------------------------------------------------------------
// Raw TCP client
// ---------------------------------------------------------------------------------------

/// Builds a WebSocket frame as RFC 6455 section 5.2 lays it out, with the shortest length
/// encoding. `rsv` holds the three reserved bits in the low bits (RSV1 = 4). With `mask`,
/// the payload is masked with it.
pub fn frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push((u8::from(fin) << 7) | ((rsv & 7) << 4) | (opcode & 0x0f));
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A final, masked frame, as a client must send.
pub fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(true, 0, opcode, payload, Some(MASK))
}

/// A masked text frame holding `value` as JSON.
pub fn masked_json(value: &Value) -> Vec<u8> {
    masked(0x1, value.to_string().as_bytes())
}

/// The payload of a close frame: `code` and `reason`, which may be any bytes.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    payload
}

/// A masked close frame with `code`.
pub fn masked_close(code: u16, reason: &str) -> Vec<u8> {
    masked(0x8, &close_payload(code, reason.as_bytes()))
}

/// The HTTP upgrade request for `target` (path and query).
pub fn upgrade_request(target: &str) -> String {
    upgrade_request_with(target, "")
}

/// The HTTP upgrade request for `target`, with extra `headers` (each ending in CRLF).
pub fn upgrade_request_with(target: &str, headers: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    )
}

/// A frame the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 0x8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }

    pub fn close_reason(&self) -> String {
        String::from_utf8_lossy(self.payload.get(2..).unwrap_or_default()).into_owned()
    }

    pub fn json(&self) -> Value {
        assert_eq!(self.opcode, 0x1, "not a text frame: {self:?}");
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("text frame is not JSON ({e}): {self:?}"))
    }
}

/// How reading a raw connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// A close frame with this code (None: empty close payload) and reason.
    Close(Option<u16>, String),
    /// End of stream without a close frame.
    Eof,
    /// The connection was reset (or another read error).
    Reset(String),
}

/// An HTTP response head and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Calls the hub's HTTP API: `method` on `target` with extra `headers` (each ending in
/// CRLF) and a body.
pub async fn http_call(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &str,
    body: &str,
) -> HttpResponse {
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    );
    RawClient::http(addr, &request).await
}

impl HttpResponse {
    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {self:?}"))
    }

    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// A TCP connection driven by hand.
pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// Frames read, in order, for diagnostics.
    pub seen: Vec<Frame>,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await;
        RawClient::over(
            stream
                .expect("TCP connect timed out")
                .expect("TCP connect failed"),
        )
    }

    /// Connects with a small receive buffer (set before connecting, so the window is
    /// small from the start).
    pub async fn connect_with_rcvbuf(addr: SocketAddr, rcvbuf: u32) -> RawClient {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(rcvbuf).unwrap();
        let stream = tokio::time::timeout(TIMEOUT, socket.connect(addr)).await;
        RawClient::over(
            stream
                .expect("TCP connect timed out")
                .expect("TCP connect failed"),
        )
    }

    /// Connects from `source`, another address of the loopback range (127.0.0.2, ...), so
    /// the hub sees a peer other than 127.0.0.1.
    pub async fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> RawClient {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        let stream = tokio::time::timeout(TIMEOUT, socket.connect(addr)).await;
        RawClient::over(
            stream
                .expect("TCP connect timed out")
                .expect("TCP connect failed"),
        )
    }

    fn over(stream: TcpStream) -> RawClient {
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            buf: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// Connects and upgrades `target`; panics unless the answer is 101 with the right
    /// accept key.
    pub async fn upgraded(addr: SocketAddr, target: &str) -> RawClient {
        let mut raw = RawClient::connect(addr).await;
        raw.upgrade(target).await;
        raw
    }

    /// Sends the upgrade request for `target` and checks the 101 answer.
    pub async fn upgrade(&mut self, target: &str) {
        self.write(upgrade_request(target).as_bytes()).await;
        let head = self.read_head().await;
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "upgrade of {target} answered: {head}"
        );
        assert!(
            head.contains(WS_ACCEPT),
            "101 without the right Sec-WebSocket-Accept: {head}"
        );
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        tokio::time::timeout(TIMEOUT, self.stream.write_all(bytes))
            .await
            .expect("raw write timed out")
            .expect("raw write failed");
    }

    /// Writes, ignoring errors (the server may already have closed).
    pub async fn write_lenient(&mut self, bytes: &[u8]) {
        let _ = tokio::time::timeout(TIMEOUT, self.stream.write_all(bytes)).await;
    }

    /// Reads more bytes into the buffer. Ok(0) at end of stream.
    async fn fill(&mut self, deadline: tokio::time::Instant) -> Result<usize, String> {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Err(_) => Err("timeout".to_owned()),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
        }
    }

    /// Reads an HTTP response head (through the blank line); leaves the rest buffered.
    pub async fn read_head(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end + 4]).into_owned();
                self.buf.drain(..end + 4);
                return head;
            }
            match self.fill(deadline).await {
                Ok(0) => panic!(
                    "connection ended before a complete HTTP head: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(_) => {}
                Err(e) => panic!(
                    "no complete HTTP head ({e}); got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// Sends `request` and reads the response (body by Content-Length).
    pub async fn http(addr: SocketAddr, request: &str) -> HttpResponse {
        RawClient::connect(addr).await.exchange(request).await
    }

    /// Sends `request` on this connection and reads the response (body by
    /// Content-Length); after a 101 the connection goes on with frames.
    pub async fn exchange(&mut self, request: &str) -> HttpResponse {
        let raw = self;
        raw.write(request.as_bytes()).await;
        let head = raw.read_head().await;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        let mut response = HttpResponse {
            status,
            head,
            body: String::new(),
        };
        let length: usize = response
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while raw.buf.len() < length {
            match raw.fill(deadline).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => panic!("reading the body: {e}"),
            }
        }
        // After a 101 what follows is frames, left buffered for `next_frame`.
        if status != 101 {
            response.body = String::from_utf8_lossy(&std::mem::take(&mut raw.buf)).into_owned();
        }
        response
    }

    /// The next frame, or how the stream ended. Panics on timeout.
    pub async fn next_frame(&mut self, timeout: Duration) -> Result<Frame, End> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                self.seen.push(frame.clone());
                return Ok(frame);
            }
            match self.fill(deadline).await {
                Ok(0) => return Err(End::Eof),
                Ok(_) => {}
                Err(e) if e == "timeout" => panic!(
                    "raw client: no complete frame within {timeout:?} (buffered {} bytes; frames so far {:?})",
                    self.buf.len(),
                    summarize(&self.seen)
                ),
                Err(e) => return Err(End::Reset(e)),
            }
        }
    }

    /// The next text frame as JSON, skipping pings. Panics on anything else.
    pub async fn recv_json(&mut self) -> Value {
        loop {
            match self.next_frame(TIMEOUT).await {
                Ok(f) if f.opcode == 0x9 || f.opcode == 0xA => continue,
                Ok(f) if f.opcode == 0x1 => return f.json(),
                other => panic!("raw client: expected a text frame, got {other:?}"),
            }
        }
    }

    /// Reads frames until a close frame or the end of the stream (within `timeout`).
    pub async fn read_to_end(&mut self, timeout: Duration) -> End {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame(left).await {
                Ok(f) if f.opcode == 0x8 => return End::Close(f.close_code(), f.close_reason()),
                Ok(_) => continue,
                Err(end) => return end,
            }
        }
    }

    /// Reads everything up to the end of the stream: the bytes not yet consumed (already
    /// buffered or newly arrived) and how the stream ended (`End::Eof` or `End::Reset`).
    /// `Err` if the stream is still open after `timeout`.
    pub async fn read_until_eof(&mut self, timeout: Duration) -> Result<(Vec<u8>, End), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.fill(deadline).await {
                Ok(0) => return Ok((std::mem::take(&mut self.buf), End::Eof)),
                Ok(_) => {}
                Err(e) if e == "timeout" => {
                    return Err(format!(
                        "the stream is still open after {timeout:?} ({} bytes unread)",
                        self.buf.len()
                    ))
                }
                Err(e) => return Ok((std::mem::take(&mut self.buf), End::Reset(e))),
            }
        }
    }

    /// Reads until a close frame and returns its code; panics if the stream ends first.
    pub async fn expect_close_code(&mut self) -> u16 {
        match self.read_to_end(TIMEOUT).await {
            End::Close(Some(code), _) => code,
            other => panic!(
                "expected a close frame with a code, got {other:?} after frames {:?}",
                summarize(&self.seen)
            ),
        }
    }
}

fn summarize(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| match f.opcode {
            0x1 => String::from_utf8_lossy(&f.payload)
                .chars()
                .take(120)
                .collect(),
            0x8 => format!("close {:?} {:?}", f.close_code(), f.close_reason()),
            op => format!("opcode {op:#x} ({} bytes)", f.payload.len()),
        })
        .collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses one frame from the front of `buf`: the frame and the bytes it took.
pub fn parse_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    let rsv = (buf[0] >> 4) & 7;
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            (
                u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                10,
            )
        }
        n => (n as usize, 2),
    };
    let key = if masked {
        if buf.len() < at + 4 {
            return None;
        }
        let key = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        Some(key)
    } else {
        None
    };
    if buf.len() < at + len {
        return None;
    }
    let mut payload = buf[at..at + len].to_vec();
    if let Some(key) = key {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Some((
        Frame {
            fin,
            rsv,
            opcode,
            masked,
            payload,
        },
        at + len,
    ))
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The real `neonex serve` binary, run on a free loopback port. Its log (stdout and
/// stderr) is collected for tests to read; it is killed when dropped.
pub struct Server {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// Starts `neonex serve --listen 127.0.0.1:PORT` plus `args`, with `env`, and waits
    /// until it answers `/health`.
    pub async fn spawn(args: &[&str], env: &[(&str, &str)]) -> (Server, SocketAddr) {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_neonex"));
        command
            .args(["serve", "--listen", &addr.to_string()])
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().expect("spawn neonex");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let mut server = Server { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("neonex exited before serving ({status}): {}", server.log());
            }
            if let Ok(Ok(mut stream)) =
                tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await
            {
                let _ = stream
                    .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                    .await;
                let mut buf = vec![0u8; 256];
                if let Ok(Ok(n)) = tokio::time::timeout(TIMEOUT, stream.read(&mut buf)).await {
                    if buf[..n].starts_with(b"HTTP/1.1 200") {
                        break;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "neonex did not serve /health in 10 s: {}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let addr = server.addr;
        (server, addr)
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
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_neonex"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
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
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
            panic!("neonex {args:?} {env:?} was still running after 20 s");
        }
    };
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
