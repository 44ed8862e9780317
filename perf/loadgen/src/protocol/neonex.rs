//! neonex protocol v1 (see the project's PROTOCOL.md): JSON text frames, the user named by
//! the `user` query parameter, `join_room` / `message` requests, and `chat_message`,
//! `joined`, `error` and other notices from the server.

use memchr::memmem;

use super::{push_json_string, push_query_value, HubProtocol, Incoming, JoinedStream};
use crate::target::Target;

/// The neonex protocol.
#[derive(Debug, Clone)]
pub struct Neonex {
    type_key: memmem::Finder<'static>,
    message_key: memmem::Finder<'static>,
    offset_key: memmem::FinderRev<'static>,
}

impl Default for Neonex {
    fn default() -> Self {
        Self {
            type_key: memmem::Finder::new(TYPE_KEY),
            message_key: memmem::Finder::new(MESSAGE_KEY),
            offset_key: memmem::FinderRev::new(OFFSET_KEY),
        }
    }
}

const TYPE_FIRST: &[u8] = br#"{"type":""#;
const TYPE_KEY: &[u8] = br#""type":""#;
const MESSAGE_KEY: &[u8] = br#""message":""#;
const OFFSET_KEY: &[u8] = br#""offset":"#;
/// The server writes `offset` last (or before `conflated`): search this tail first.
const OFFSET_TAIL: usize = 64;

#[derive(serde::Deserialize)]
struct RoomOf {
    room: String,
}

impl Neonex {
    /// The value of the `type` field and the index just past it. The server writes `type`
    /// first; other orders are found by search.
    fn message_type<'a>(&self, text: &'a [u8]) -> Option<(&'a [u8], usize)> {
        let start = if text.starts_with(TYPE_FIRST) {
            TYPE_FIRST.len()
        } else {
            self.type_key.find(text)? + TYPE_KEY.len()
        };
        let len = memchr::memchr(b'"', &text[start..])?;
        Some((&text[start..start + len], start + len + 1))
    }
}

impl HubProtocol for Neonex {
    fn request_target(&self, target: &Target, user: &str, _room: &str) -> String {
        let mut s = target.path.clone();
        s.push('?');
        if let Some(q) = &target.query {
            s.push_str(q);
            s.push('&');
        }
        s.push_str("user=");
        push_query_value(&mut s, user);
        s
    }

    fn encode_join(&self, room: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"type":"join_room","room":"#);
        push_json_string(out, room);
        out.push(b'}');
    }

    fn encode_leave(&self, room: &str, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(br#"{"type":"leave_room","room":"#);
        push_json_string(out, room);
        out.push(b'}');
        true
    }

    fn encode_publish(&self, room: &str, message: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"type":"message","room":"#);
        push_json_string(out, room);
        out.extend_from_slice(br#","message":"#);
        push_json_string(out, message);
        out.push(b'}');
    }

    fn classify<'a>(&self, text: &'a [u8]) -> Incoming<'a> {
        let Some((ty, after)) = self.message_type(text) else {
            return Incoming::Other;
        };
        match ty {
            b"chat_message" => Incoming::Chat {
                message: self
                    .message_key
                    .find(&text[after..])
                    .map(|i| &text[after + i + MESSAGE_KEY.len()..]),
            },
            b"joined" => match serde_json::from_slice::<RoomOf>(text) {
                Ok(j) => Incoming::Joined { room: j.room },
                Err(_) => Incoming::Other,
            },
            b"left" => match serde_json::from_slice::<RoomOf>(text) {
                Ok(j) => Incoming::Left { room: j.room },
                Err(_) => Incoming::Other,
            },
            b"error" => Incoming::Error { text },
            _ => Incoming::Other,
        }
    }

    /// The last `"offset":` key of the message: the server writes the top-level one last,
    /// after any `data` the sender attached (which might hold an `offset` key of its own);
    /// inside the text of `message` a quote is always escaped, so the key cannot appear there.
    fn chat_offset(&self, text: &[u8]) -> Option<u64> {
        let tail = text.len().saturating_sub(OFFSET_TAIL);
        let at = match self.offset_key.rfind(&text[tail..]) {
            Some(i) => tail + i,
            None => self.offset_key.rfind(text)?,
        } + OFFSET_KEY.len();
        let digits = text[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 19 {
            return None;
        }
        std::str::from_utf8(&text[at..at + digits])
            .ok()?
            .parse()
            .ok()
    }

    fn joined_stream(&self, text: &[u8]) -> Option<JoinedStream> {
        serde_json::from_slice(text).ok()
    }

    fn encode_join_recover(&self, room: &str, offset: u64, epoch: &str, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(br#"{"type":"join_room","room":"#);
        push_json_string(out, room);
        out.extend_from_slice(br#","recover":{"offset":"#);
        out.extend_from_slice(offset.to_string().as_bytes());
        out.extend_from_slice(br#","epoch":"#);
        push_json_string(out, epoch);
        out.extend_from_slice(b"}}");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_server_messages() {
        let p = Neonex::default();
        let chat = br#"{"type":"chat_message","room":"bench","user_id":"lg-pub","message":"12:345 xx","time":1700000000}"#;
        assert_eq!(
            p.classify(chat),
            Incoming::Chat {
                message: Some(&br#"12:345 xx","time":1700000000}"#[..])
            }
        );
        let reordered = br#"{"room":"bench","type":"chat_message","message":"7:8","user_id":"u"}"#;
        assert_eq!(
            p.classify(reordered),
            Incoming::Chat {
                message: Some(&br#"7:8","user_id":"u"}"#[..])
            }
        );
        let data_only =
            br#"{"type":"chat_message","room":"g","user_id":"u","data":{"k":1},"time":9}"#;
        assert_eq!(p.classify(data_only), Incoming::Chat { message: None });
        assert_eq!(
            p.classify(br#"{"type":"joined","room":"bench","count":3}"#),
            Incoming::Joined {
                room: "bench".into()
            }
        );
        assert_eq!(
            p.classify(br#"{"type":"left","room":"bench","count":2}"#),
            Incoming::Left {
                room: "bench".into()
            }
        );
        let err = br#"{"type":"error","code":"not_in_room","error":"Not in room"}"#;
        assert_eq!(p.classify(err), Incoming::Error { text: err });
        for other in [
            &br#"{"type":"presence","user_id":"u","status":"online","time":5}"#[..],
            br#"{"type":"user_joined","room":"bench","user_id":"u","count":2}"#,
            br#"{"type":"welcome","connection_id":"1-7","user_id":"u"}"#,
            b"not json",
        ] {
            assert_eq!(p.classify(other), Incoming::Other);
        }
    }

    /// A connection id is `<shard>-<seq>` on one node and `<node>-<shard>-<seq>` in a
    /// cluster. The load generator reads no id: a `welcome` of either form is a notice
    /// like any other, and chat messages (which carry no id) are found the same way.
    #[test]
    fn welcome_of_a_single_node_or_a_cluster() {
        let p = Neonex::default();
        for welcome in [
            &br#"{"type":"welcome","connection_id":"0-1","user_id":"lg-s1"}"#[..],
            br#"{"type":"welcome","connection_id":"40673-1-42","user_id":"lg-s1"}"#,
            br#"{"type":"welcome","connection_id":"65535-1023-274877906943","user_id":"u"}"#,
        ] {
            assert_eq!(p.classify(welcome), Incoming::Other);
        }
        let chat = br#"{"type":"chat_message","room":"bench","user_id":"lg-pub","message":"3:9 x","time":1}"#;
        assert_eq!(
            p.classify(chat),
            Incoming::Chat {
                message: Some(&br#"3:9 x","time":1}"#[..])
            }
        );
    }

    #[test]
    fn parses_history_fields() {
        let p = Neonex::default();
        let chat = br#"{"type":"chat_message","room":"bench","user_id":"lg-pub","message":"12:345 xx","time":1700000000,"offset":17}"#;
        assert_eq!(p.chat_offset(chat), Some(17));
        // The sender's data may hold an "offset" key; the server's own comes last.
        let data = br#"{"type":"chat_message","room":"g","user_id":"u","data":{"offset":3},"time":9,"offset":4}"#;
        assert_eq!(p.chat_offset(data), Some(4));
        let conflated = br#"{"type":"chat_message","room":"g","user_id":"u","message":"a","time":9,"offset":40,"conflated":true}"#;
        assert_eq!(p.chat_offset(conflated), Some(40));
        // A quoted "offset": inside the text is escaped, so not a key.
        let quoted = br#"{"type":"chat_message","room":"g","user_id":"u","message":"\"offset\":5","time":9}"#;
        assert_eq!(p.chat_offset(quoted), None);
        assert_eq!(
            p.chat_offset(br#"{"type":"chat_message","room":"g","message":"x","time":9}"#),
            None
        );
        // A long message: the key is found past the 64-byte tail too.
        let long = format!(
            r#"{{"type":"chat_message","room":"g","offset":99,"message":"{}","time":9}}"#,
            "x".repeat(200)
        );
        assert_eq!(p.chat_offset(long.as_bytes()), Some(99));
        let j =
            br#"{"type":"joined","room":"g","count":2,"recovered":true,"epoch":"e1","offset":9}"#;
        assert_eq!(p.classify(j), Incoming::Joined { room: "g".into() });
        assert_eq!(
            p.joined_stream(j),
            Some(JoinedStream {
                room: "g".into(),
                recovered: Some(true),
                epoch: Some("e1".into()),
                offset: Some(9),
            })
        );
        let plain = p
            .joined_stream(br#"{"type":"joined","room":"g","count":2}"#)
            .unwrap();
        assert_eq!(
            (plain.recovered, plain.epoch, plain.offset),
            (None, None, None)
        );
        let refused = p
            .joined_stream(br#"{"type":"joined","room":"g","count":2,"recovered":false,"epoch":"e2","offset":90}"#)
            .unwrap();
        assert_eq!(refused.recovered, Some(false));
    }

    #[test]
    fn encodes_requests() {
        let p = Neonex::default();
        let mut out = Vec::new();
        p.encode_join("bench", &mut out);
        assert_eq!(out, br#"{"type":"join_room","room":"bench"}"#);
        out.clear();
        p.encode_publish("bench", "1:2 xx", &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["room"], "bench");
        assert_eq!(v["message"], "1:2 xx");
        out.clear();
        assert!(p.encode_leave("bench", &mut out));
        assert_eq!(out, br#"{"type":"leave_room","room":"bench"}"#);
        out.clear();
        assert!(p.encode_join_recover("bench", 42, "e\"1", &mut out));
        assert_eq!(
            out,
            br#"{"type":"join_room","room":"bench","recover":{"offset":42,"epoch":"e\"1"}}"#
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["recover"]["epoch"], "e\"1");
        let t = crate::target::parse("ws://127.0.0.1:3000/ws?token=abc").unwrap();
        assert_eq!(
            p.request_target(&t, "lg s/1", "bench"),
            "/ws?token=abc&user=lg%20s%2F1"
        );
    }
}
