//! A protocol client over tokio-tungstenite, and reads and writes on the halves of a
//! split connection.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use neonex::ConnectionId;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::wait::TIMEOUT;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// `ws://addr/ws?user=USER`, or without `user` when `None`.
pub fn ws_url(addr: SocketAddr, user: Option<&str>) -> String {
    match user {
        Some(user) => format!("ws://{addr}/ws?user={user}"),
        None => format!("ws://{addr}/ws"),
    }
}

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
    /// What arrived between the welcome and the last auto-joined room's `joined` (a
    /// broadcast to everyone, such as another user's presence), read before the socket.
    early: VecDeque<Message>,
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
            early: VecDeque::new(),
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
        // Read past on the socket here, and kept for the test's reads after the connect.
        let mut early = VecDeque::new();
        for room in autojoin {
            // An auto-join can be held (placed through JetStream in a cluster), and what
            // goes to every connection may come first.
            let joined = loop {
                let message = client.recv_json().await;
                if message["type"] == "joined" {
                    break message;
                }
                assert!(
                    early.len() < 64,
                    "{}: no `joined` for auto-joined room {room} after {early:?}",
                    client.id,
                );
                early.push_back(Message::text(message.to_string()));
            };
            assert_eq!(
                (joined["type"].as_str(), joined["room"].as_str()),
                (Some("joined"), Some(room.as_str())),
                "{}: expected `joined` for auto-joined room {room} right after the welcome, got {joined}",
                client.id
            );
            client.autojoined.push(joined);
        }
        client.early = early;
        client
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send(Message::text(text)).await;
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
        self.try_recv_message(timeout).await.unwrap_or_else(|()| {
            panic!(
                "{} ({}): nothing arrived within {timeout:?}",
                self.id, self.user
            )
        })
    }

    /// Like [`Client::recv_message_within`] but returns `Err(())` on timeout.
    pub async fn try_recv_message(&mut self, timeout: Duration) -> Result<Option<Message>, ()> {
        if let Some(message) = self.early.pop_front() {
            return Ok(Some(message));
        }
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
            Some(Message::Text(text)) => self.parse_json(&text),
            other => panic!(
                "{} ({}): expected a JSON text message, got {other:?}",
                self.id, self.user
            ),
        }
    }

    /// Text the server sent, as JSON; anything else fails the test.
    fn parse_json(&self, text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| {
            panic!(
                "{}: server sent text that is not JSON ({e}): {text}",
                self.id
            )
        })
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
                    let value = self.parse_json(&text);
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
                    let v = self.parse_json(&text);
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

/// Sends `value` as a text message on the write half of a client, within [`TIMEOUT`]
/// (a hub that stops reading shows up as a timeout, not a hang).
pub async fn send_json_within<S>(sink: &mut S, value: &Value) -> Result<(), String>
where
    S: Sink<Message, Error = Error> + Unpin,
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
    S: Stream<Item = Result<Message, Error>> + Unpin,
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
