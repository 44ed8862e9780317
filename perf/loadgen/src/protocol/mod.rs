//! The hub protocols the load generator speaks. A scenario talks to a hub only through
//! [`HubProtocol`]: how to name a connection's user, how to join a room and publish to it, and
//! how to recognise what the server sends. Adding another hub means adding a module here, a
//! variant to [`ProtocolKind`] and an arm to [`with_protocol!`](crate::with_protocol).

pub mod nchan;
pub mod neonex;
pub mod simple;
pub mod socketio;

use crate::target::Target;

/// Which protocol to speak (`--protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtocolKind {
    /// neonex protocol v1 (JSON text frames, `?user=` query parameter).
    Neonex,
    /// perf/peers/uws: uWebSockets.js pub/sub, the simple JSON room protocol.
    Uws,
    /// perf/peers/ws: Node `ws`, the simple JSON room protocol.
    Ws,
    /// perf/peers/gorilla: gorilla/websocket hub, the simple JSON room protocol.
    Gorilla,
    /// perf/peers/socketio: Socket.IO 4 (Engine.IO v4 / Socket.IO v5 over a raw WebSocket).
    Socketio,
    /// perf/peers/nchan: nginx + nchan (WebSocket subscribers, HTTP POST publisher).
    Nchan,
}

impl ProtocolKind {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            ProtocolKind::Neonex => "neonex",
            ProtocolKind::Uws => "uws",
            ProtocolKind::Ws => "ws",
            ProtocolKind::Gorilla => "gorilla",
            ProtocolKind::Socketio => "socketio",
            ProtocolKind::Nchan => "nchan",
        }
    }

    /// The URL used when `--url` is not given.
    pub fn default_url(self) -> &'static str {
        match self {
            ProtocolKind::Socketio => "ws://127.0.0.1:3000/socket.io/",
            ProtocolKind::Nchan => "ws://127.0.0.1:3000/sub",
            _ => "ws://127.0.0.1:3000/ws",
        }
    }
}

/// Runs `$f(args..., proto)` with the protocol value for `$kind`: scenarios are generic over
/// [`HubProtocol`], so that classifying a delivery is a direct call.
#[macro_export]
macro_rules! with_protocol {
    ($kind:expr, $f:ident ( $($arg:expr),* )) => {
        match $kind {
            $crate::protocol::ProtocolKind::Neonex => {
                $f($($arg,)* $crate::protocol::neonex::Neonex::default())
            }
            $crate::protocol::ProtocolKind::Uws
            | $crate::protocol::ProtocolKind::Ws
            | $crate::protocol::ProtocolKind::Gorilla => {
                $f($($arg,)* $crate::protocol::simple::Simple::default())
            }
            $crate::protocol::ProtocolKind::Socketio => {
                $f($($arg,)* $crate::protocol::socketio::SocketIo::default())
            }
            $crate::protocol::ProtocolKind::Nchan => {
                $f($($arg,)* $crate::protocol::nchan::Nchan::default())
            }
        }
    };
}

/// What a server text message means to a scenario.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A chat message delivered to a room member. `message` starts at the first byte of the
    /// message text (as it appears on the wire, possibly still JSON-escaped) and may run past
    /// its end: scenarios parse their stamp from the front. `None` when the message had no text.
    Chat {
        /// The message text and whatever follows it in the frame.
        message: Option<&'a [u8]>,
    },
    /// The server confirms that this connection joined `room`.
    Joined {
        /// The room.
        room: String,
    },
    /// The server confirms that this connection left `room`.
    Left {
        /// The room.
        room: String,
    },
    /// The protocol's own handshake after the upgrade is complete (see
    /// [`HubProtocol::hello`]); the connection may now join.
    Ready,
    /// A protocol-level keep-alive the client must answer with this text message
    /// (Engine.IO's ping `2`, answered with `3`). Not counted as a notice.
    Reply(&'static [u8]),
    /// The server refused a request; the whole message, for the report.
    Error {
        /// The raw message.
        text: &'a [u8],
    },
    /// Anything else (presence, join notices, welcome, ...): ignored, counted as noise.
    Other,
}

/// What a `joined` says about the room's stream when the hub keeps history (neonex 1.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct JoinedStream {
    /// The room.
    pub room: String,
    /// Present when the join asked to recover: whether every missed message follows.
    #[serde(default)]
    pub recovered: Option<bool>,
    /// The room's stream; absent when the hub keeps no history.
    #[serde(default)]
    pub epoch: Option<String>,
    /// The room's top offset when the join took effect.
    #[serde(default)]
    pub offset: Option<u64>,
}

/// How a protocol publishes (see [`HubProtocol::publish_path`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishVia {
    /// A text message on the publisher's WebSocket ([`HubProtocol::encode_publish`]).
    WebSocket,
    /// An HTTP/1.1 `POST` of the raw message text to this path, on a keep-alive connection of
    /// its own (nchan).
    HttpPost(String),
}

/// A hub's wire protocol, as far as the load generator needs it.
pub trait HubProtocol: Send + Sync + 'static {
    /// The upgrade request target (path and query) for a connection of user `user` that is
    /// going to be in `room` (some hubs name the room in the URL).
    fn request_target(&self, target: &Target, user: &str, room: &str) -> String;
    /// A text message to send right after the upgrade, before joining. When there is one,
    /// the join is sent only once the server answered with [`Incoming::Ready`].
    fn hello(&self) -> Option<&'static [u8]> {
        None
    }
    /// True when the upgrade itself joins the room (the room is in the URL): no join
    /// message is sent and the connection counts as joined once upgraded.
    fn joins_on_upgrade(&self) -> bool {
        false
    }
    /// Appends the text message that joins `room` to `out`.
    fn encode_join(&self, room: &str, out: &mut Vec<u8>);
    /// Appends the text message that leaves `room` to `out`; false when the protocol has no
    /// such message (leaving is closing the connection).
    fn encode_leave(&self, room: &str, out: &mut Vec<u8>) -> bool;
    /// How messages are published to `room`.
    fn publish_via(&self, _target: &Target, _room: &str) -> PublishVia {
        PublishVia::WebSocket
    }
    /// Appends the text message that publishes `message` to `room` to `out`.
    fn encode_publish(&self, room: &str, message: &str, out: &mut Vec<u8>);
    /// Classifies one server text message. This is on the hot path (once per delivery):
    /// it must not parse whole messages that are chat deliveries.
    fn classify<'a>(&self, text: &'a [u8]) -> Incoming<'a>;
    /// The `offset` of a chat message (`text` classified as [`Incoming::Chat`]), if it has
    /// one. Called only by runs that check offsets.
    fn chat_offset(&self, _text: &[u8]) -> Option<u64> {
        None
    }
    /// What a message classified as [`Incoming::Joined`] says about the room's stream.
    fn joined_stream(&self, _text: &[u8]) -> Option<JoinedStream> {
        None
    }
    /// Appends the text message that joins `room` and asks to recover everything after
    /// `offset` of `epoch` to `out`; false when the protocol cannot.
    fn encode_join_recover(
        &self,
        _room: &str,
        _offset: u64,
        _epoch: &str,
        _out: &mut Vec<u8>,
    ) -> bool {
        false
    }
}

/// Appends `user` to `s` percent-encoded for a query string.
pub fn push_query_value(s: &mut String, value: &str) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Appends `s` as a JSON string literal.
pub fn push_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1F => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escape() {
        let mut out = Vec::new();
        push_json_string(&mut out, "a\"b\\c\n");
        assert_eq!(out, br#""a\"b\\c\u000a""#);
        let parsed: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed, "a\"b\\c\n");
    }
}
