//! A client's text message, parsed the way a shard parses it (`src/shard/dispatch.rs`):
//! `parse_client_message` on the message bytes.
//!
//! Every input is parsed (no panic on any bytes). Input that is valid UTF-8, which is all
//! the server ever hands the parser, is also checked against serde_json as a reference:
//! - when parse_client_message accepts a message, serde_json reads the same JSON object
//!   (if it can read it at all), with the same `type`, the room as `room` (or `room_id`
//!   when there is no `room`), a valid room name, and the same `message` text;
//! - when serde_json reads an object whose `type` is `ping`, parse_client_message says
//!   `Ping`.
//!
//! - an object that repeats one of the protocol's fields (`type`, `room`, `room_id`,
//!   `message`, `data`) is refused as `invalid_message`: readers disagree on which of the
//!   values counts (the finding under `fuzz/regressions/client_message/`).
//!
//! Other repeated keys are ignored by the hub and left out of the comparison.
#![no_main]

use libfuzzer_sys::fuzz_target;
use neonex::ids::is_valid_room_name;
use neonex::protocol::{parse_client_message, ClientMessage, ErrorCode};
use serde_json::Value;

const FIELDS: [&str; 5] = ["type", "room", "room_id", "message", "data"];

fn kind(m: &ClientMessage<'_>) -> &'static str {
    match m {
        ClientMessage::JoinRoom { .. } => "join_room",
        ClientMessage::LeaveRoom { .. } => "leave_room",
        ClientMessage::Message { .. } => "message",
        ClientMessage::Typing { .. } => "typing",
        ClientMessage::Ping => "ping",
    }
}

fn room<'m>(m: &'m ClientMessage<'_>) -> Option<&'m str> {
    match m {
        ClientMessage::JoinRoom { room }
        | ClientMessage::LeaveRoom { room }
        | ClientMessage::Message { room, .. }
        | ClientMessage::Typing { room, .. } => Some(room),
        ClientMessage::Ping => None,
    }
}

/// The keys of a JSON object, in order, repeats included; `None` for anything else.
struct Keys(Option<Vec<String>>);

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    keys.push(key);
                }
                Ok(Keys(Some(keys)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Keys, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Keys(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Keys, E> {
                Ok(Keys(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Keys, E> {
                Ok(Keys(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Keys, E> {
                Ok(Keys(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Keys, E> {
                Ok(Keys(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Keys, E> {
                Ok(Keys(None))
            }
            fn visit_unit<E>(self) -> Result<Keys, E> {
                Ok(Keys(None))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// The repeated top-level keys of an object: (any repeated, a protocol field repeated).
fn repeated_keys(data: &[u8]) -> (bool, bool) {
    let Ok(Keys(Some(keys))) = serde_json::from_slice::<Keys>(data) else {
        return (false, false);
    };
    let mut sorted = keys.clone();
    sorted.sort();
    let repeated: Vec<&String> = sorted
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| &w[0])
        .collect();
    let field = repeated.iter().any(|k| FIELDS.contains(&k.as_str()));
    (!repeated.is_empty(), field)
}

fuzz_target!(|data: &[u8]| {
    {
        let parsed = parse_client_message(data);
        if std::str::from_utf8(data).is_err() {
            return;
        }
        let (repeated, repeated_field) = repeated_keys(data);
        if repeated_field {
            let code = parsed.as_ref().err().map(|e| e.code);
            assert_eq!(code, Some(ErrorCode::InvalidMessage), "repeated protocol field");
            return;
        }
        if repeated {
            return;
        }
        let reference: Option<Value> = serde_json::from_slice(data).ok();
        let reference = reference.as_ref().and_then(Value::as_object);
        match parsed {
            Ok(m) => {
                if let Some(name) = room(&m) {
                    assert!(is_valid_room_name(name), "accepted room {name:?}");
                }
                let Some(obj) = reference else { return };
                assert_eq!(obj.get("type").and_then(Value::as_str), Some(kind(&m)));
                if let Some(name) = room(&m) {
                    let expected = obj.get("room").or_else(|| obj.get("room_id"));
                    assert_eq!(expected.and_then(Value::as_str), Some(name), "room");
                }
                if let ClientMessage::Message { message, data, .. } = &m {
                    assert_eq!(
                        obj.get("message").and_then(Value::as_str),
                        message.as_deref(),
                        "message text"
                    );
                    assert_eq!(obj.get("data").is_some(), data.is_some(), "data");
                }
                if let ClientMessage::Typing { typing, .. } = &m {
                    assert_eq!(obj.get("data").and_then(Value::as_bool), Some(*typing));
                }
            }
            Err(e) => {
                if let Some(obj) = reference {
                    if obj.get("type").and_then(Value::as_str) == Some("ping") {
                        panic!("serde_json reads a ping, parse_client_message says {e:?}");
                    }
                }
            }
        }
    }
});
