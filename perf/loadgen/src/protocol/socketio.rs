//! Socket.IO 4 over a raw WebSocket (`--protocol socketio`, perf/peers/socketio): Engine.IO v4
//! packets, Socket.IO v5 packets inside, default namespace, WebSocket transport only.
//!
//! * The upgrade goes to `PATH?EIO=4&transport=websocket` (PATH from the URL, normally
//!   `/socket.io/`); the server first sends the Engine.IO open packet `0{"sid":...}`.
//! * The client connects to the namespace with `40`; the server answers `40{"sid":...}`
//!   ([`Incoming::Ready`]). Only then may it emit: packets for a namespace that is not
//!   connected yet are dropped.
//! * Events are `42["name",args...]`: the client emits `join`/`leave` with the room and
//!   `pub` with the room and the text; the server emits `joined`/`left` with the room and
//!   `msg` with the text, one Engine.IO packet (one WebSocket message) per event.
//! * The server pings with `2` every `pingInterval`; the client answers `3`.

use memchr::memmem;

use super::{push_json_string, HubProtocol, Incoming};
use crate::target::Target;

/// The Socket.IO protocol.
#[derive(Debug, Clone, Default)]
pub struct SocketIo;

const MSG_PREFIX: &[u8] = br#"42["msg","#;
const JOINED_PREFIX: &[u8] = br#"42["joined","#;
const LEFT_PREFIX: &[u8] = br#"42["left","#;
const ERROR_PREFIX: &[u8] = br#"42["error_msg""#;

/// The event's first argument when it is a plain string (`42["ev","ROOM"]`).
fn first_string_arg(rest: &[u8]) -> Option<String> {
    let end = memmem::find(rest, b"\"")?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

impl HubProtocol for SocketIo {
    fn request_target(&self, target: &Target, _user: &str, _room: &str) -> String {
        let mut s = target.path.clone();
        s.push_str("?EIO=4&transport=websocket");
        if let Some(q) = &target.query {
            s.push('&');
            s.push_str(q);
        }
        s
    }

    fn hello(&self) -> Option<&'static [u8]> {
        Some(b"40")
    }

    fn encode_join(&self, room: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"42["join","#);
        push_json_string(out, room);
        out.push(b']');
    }

    fn encode_leave(&self, room: &str, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(br#"42["leave","#);
        push_json_string(out, room);
        out.push(b']');
        true
    }

    fn encode_publish(&self, room: &str, message: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"42["pub","#);
        push_json_string(out, room);
        out.push(b',');
        push_json_string(out, message);
        out.push(b']');
    }

    fn classify<'a>(&self, text: &'a [u8]) -> Incoming<'a> {
        if let Some(rest) = text.strip_prefix(MSG_PREFIX) {
            return Incoming::Chat {
                message: rest.strip_prefix(b"\""),
            };
        }
        match text {
            b"2" => return Incoming::Reply(b"3"),
            [b'4', b'0', ..] => return Incoming::Ready,
            [b'4', b'4', ..] | [b'4', b'1', ..] | [b'1', ..] => return Incoming::Error { text },
            _ => {}
        }
        if let Some(rest) = text.strip_prefix(JOINED_PREFIX) {
            return match rest.strip_prefix(b"\"").and_then(first_string_arg) {
                Some(room) => Incoming::Joined { room },
                None => Incoming::Other,
            };
        }
        if let Some(rest) = text.strip_prefix(LEFT_PREFIX) {
            return match rest.strip_prefix(b"\"").and_then(first_string_arg) {
                Some(room) => Incoming::Left { room },
                None => Incoming::Other,
            };
        }
        if text.starts_with(ERROR_PREFIX) {
            return Incoming::Error { text };
        }
        Incoming::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_and_encodes() {
        let p = SocketIo;
        assert_eq!(
            p.classify(br#"42["msg","12:345 xx"]"#),
            Incoming::Chat {
                message: Some(&br#"12:345 xx"]"#[..])
            }
        );
        assert_eq!(
            p.classify(br#"42["joined","bench"]"#),
            Incoming::Joined {
                room: "bench".into()
            }
        );
        assert_eq!(
            p.classify(br#"42["left","bench"]"#),
            Incoming::Left {
                room: "bench".into()
            }
        );
        assert_eq!(p.classify(b"2"), Incoming::Reply(b"3"));
        assert_eq!(p.classify(br#"40{"sid":"abc"}"#), Incoming::Ready);
        assert_eq!(
            p.classify(br#"0{"sid":"x","upgrades":[],"pingInterval":25000}"#),
            Incoming::Other
        );
        let err = br#"44{"message":"no"}"#;
        assert_eq!(p.classify(err), Incoming::Error { text: err });
        let mut out = Vec::new();
        p.encode_publish("bench", "1:2 x", &mut out);
        assert_eq!(out, br#"42["pub","bench","1:2 x"]"#);
        out.clear();
        p.encode_join("bench", &mut out);
        assert_eq!(out, br#"42["join","bench"]"#);
        let t = crate::target::parse("ws://127.0.0.1:3000/socket.io/").unwrap();
        assert_eq!(
            p.request_target(&t, "u", "bench"),
            "/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(p.hello(), Some(&b"40"[..]));
    }
}
