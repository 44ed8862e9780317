//! The hub protocols the load generator speaks. A scenario talks to a hub only through
//! [`HubProtocol`]: how to name a connection's user, how to join a room and publish to it, and
//! how to recognise what the server sends. Adding another hub means adding a module here and a
//! variant to [`ProtocolKind`].

pub mod neonex;

use crate::target::Target;

/// Which protocol to speak (`--protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtocolKind {
    /// neonex protocol v1 (JSON text frames, `?user=` query parameter).
    Neonex,
}

impl ProtocolKind {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            ProtocolKind::Neonex => "neonex",
        }
    }
}

/// What a server text message means to a scenario.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A chat message delivered to a room member. `message` starts at the first byte of the
    /// message text (as it appears on the wire, still JSON-escaped) and may run past its end:
    /// scenarios parse their stamp from the front. `None` when the message had no text.
    Chat {
        /// The message text and whatever follows it in the frame.
        message: Option<&'a [u8]>,
    },
    /// The server confirms that this connection joined `room`.
    Joined {
        /// The room.
        room: String,
    },
    /// The server refused a request; the whole message, for the report.
    Error {
        /// The raw message.
        text: &'a [u8],
    },
    /// Anything else (presence, join notices, welcome, ...): ignored, counted as noise.
    Other,
}

/// A hub's wire protocol, as far as the load generator needs it.
pub trait HubProtocol: Send + Sync + 'static {
    /// The upgrade request target (path and query) for a connection of user `user`.
    fn request_target(&self, target: &Target, user: &str) -> String;
    /// Appends the text message that joins `room` to `out`.
    fn encode_join(&self, room: &str, out: &mut Vec<u8>);
    /// Appends the text message that publishes `message` to `room` to `out`.
    fn encode_publish(&self, room: &str, message: &str, out: &mut Vec<u8>);
    /// Classifies one server text message. This is on the hot path (once per delivery):
    /// it must not parse whole messages that are chat deliveries.
    fn classify<'a>(&self, text: &'a [u8]) -> Incoming<'a>;
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
