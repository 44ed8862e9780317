//! The simple JSON room protocol of the peer hubs in perf/peers/uws, perf/peers/ws and
//! perf/peers/gorilla (`--protocol uws|ws|gorilla`). Text frames:
//!
//! | direction | message | meaning |
//! | --- | --- | --- |
//! | client → server | `{"join":"ROOM"}` | join; answered with `{"joined":"ROOM"}` |
//! | client → server | `{"leave":"ROOM"}` | leave; answered with `{"left":"ROOM"}` |
//! | client → server | `{"pub":"ROOM","msg":"TEXT"}` | TEXT goes to every member, sender included |
//! | server → client | TEXT | a published message, raw, one WebSocket message each |
//! | server → client | `{"error":"..."}` | a request the server did not understand |
//!
//! The stamp `SEQ:SEND_NS` starts each message text, so a server message that does not start
//! with `{` is a delivery.

use super::{push_json_string, HubProtocol, Incoming};
use crate::target::Target;

/// The simple JSON room protocol (uws, ws and gorilla peers).
#[derive(Debug, Clone, Default)]
pub struct Simple;

#[derive(serde::Deserialize)]
struct Control {
    joined: Option<String>,
    left: Option<String>,
    error: Option<serde_json::Value>,
}

impl HubProtocol for Simple {
    fn request_target(&self, target: &Target, _user: &str, _room: &str) -> String {
        match &target.query {
            Some(q) => format!("{}?{q}", target.path),
            None => target.path.clone(),
        }
    }

    fn encode_join(&self, room: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"join":"#);
        push_json_string(out, room);
        out.push(b'}');
    }

    fn encode_leave(&self, room: &str, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(br#"{"leave":"#);
        push_json_string(out, room);
        out.push(b'}');
        true
    }

    fn encode_publish(&self, room: &str, message: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"pub":"#);
        push_json_string(out, room);
        out.extend_from_slice(br#","msg":"#);
        push_json_string(out, message);
        out.push(b'}');
    }

    fn classify<'a>(&self, text: &'a [u8]) -> Incoming<'a> {
        if text.first() != Some(&b'{') {
            return Incoming::Chat {
                message: Some(text),
            };
        }
        match serde_json::from_slice::<Control>(text) {
            Ok(Control {
                joined: Some(room), ..
            }) => Incoming::Joined { room },
            Ok(Control {
                left: Some(room), ..
            }) => Incoming::Left { room },
            Ok(Control { error: Some(_), .. }) => Incoming::Error { text },
            _ => Incoming::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_and_encodes() {
        let p = Simple;
        assert_eq!(
            p.classify(b"12:345 xx"),
            Incoming::Chat {
                message: Some(&b"12:345 xx"[..])
            }
        );
        assert_eq!(
            p.classify(br#"{"joined":"bench"}"#),
            Incoming::Joined {
                room: "bench".into()
            }
        );
        assert_eq!(
            p.classify(br#"{"left":"bench"}"#),
            Incoming::Left {
                room: "bench".into()
            }
        );
        let err = br#"{"error":"bad_request"}"#;
        assert_eq!(p.classify(err), Incoming::Error { text: err });
        assert_eq!(p.classify(br#"{"x":1}"#), Incoming::Other);
        let mut out = Vec::new();
        p.encode_publish("bench", "1:2 \"q\"", &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["pub"], "bench");
        assert_eq!(v["msg"], "1:2 \"q\"");
        out.clear();
        p.encode_join("bench", &mut out);
        assert_eq!(out, br#"{"join":"bench"}"#);
        let t = crate::target::parse("ws://127.0.0.1:3000/ws?a=b").unwrap();
        assert_eq!(p.request_target(&t, "u", "bench"), "/ws?a=b");
    }
}
