//! Parsing client messages with simd-json, in place, with the shard's reusable buffers.

use std::borrow::Cow;

use simd_json::prelude::*;
use simd_json::BorrowedValue;

use super::{ErrorCode, ProtocolError};
use crate::ids::{is_valid_room_name, MAX_NAME_LEN};

/// A valid client message. Strings borrow from the message bytes where JSON allows.
#[derive(Debug, PartialEq)]
pub enum ClientMessage<'a> {
    /// `join_room`.
    JoinRoom {
        /// Room to join.
        room: Cow<'a, str>,
    },
    /// `leave_room`.
    LeaveRoom {
        /// Room to leave.
        room: Cow<'a, str>,
    },
    /// `message`: a chat message for a room.
    Message {
        /// Target room (`room` or `room_id`).
        room: Cow<'a, str>,
        /// Text of the message.
        message: Option<Cow<'a, str>>,
        /// Any JSON the client attached.
        data: Option<BorrowedValue<'a>>,
    },
    /// `typing`: the client started or stopped typing.
    Typing {
        /// Room the client types in.
        room: Cow<'a, str>,
        /// Typing or not.
        typing: bool,
    },
    /// `ping`: asks for a `pong`.
    Ping,
}

/// Parses one text message. `payload` is rewritten by the parser.
pub fn parse_client_message<'a>(
    payload: &'a mut [u8],
    buffers: &mut simd_json::Buffers,
) -> Result<ClientMessage<'a>, ProtocolError> {
    let invalid = || ProtocolError::new(ErrorCode::InvalidMessage, "Invalid message format");
    let value =
        simd_json::to_borrowed_value_with_buffers(payload, buffers).map_err(|_| invalid())?;
    let BorrowedValue::Object(mut fields) = value else {
        return Err(invalid());
    };
    // Readers disagree on which of two same-named keys counts (simd-json keeps both), so
    // a gateway in front of the hub could read a message one way and the hub another:
    // such a message is refused rather than guessed at.
    if has_repeated_key(fields.len(), fields.keys()) {
        return Err(ProtocolError::new(
            ErrorCode::InvalidMessage,
            "Invalid message format: a key is repeated",
        ));
    }
    let kind = match fields.remove("type") {
        Some(BorrowedValue::String(kind)) => kind,
        _ => return Err(invalid()),
    };
    let mut room = || -> Result<Cow<'a, str>, ProtocolError> {
        let value = match fields.remove("room") {
            Some(v) => v,
            None => fields
                .remove("room_id")
                .ok_or_else(|| ProtocolError::bad_request("missing field: room"))?,
        };
        let BorrowedValue::String(room) = value else {
            return Err(ProtocolError::bad_request("room must be a string"));
        };
        if !is_valid_room_name(&room) {
            return Err(ProtocolError::bad_request(format!(
                "room must be 1 to {MAX_NAME_LEN} bytes of [A-Za-z0-9_.:@-]"
            )));
        }
        Ok(room)
    };
    match kind.as_ref() {
        "join_room" => Ok(ClientMessage::JoinRoom { room: room()? }),
        "leave_room" => Ok(ClientMessage::LeaveRoom { room: room()? }),
        "typing" => {
            let room = room()?;
            let typing = fields
                .get("data")
                .and_then(|d| d.as_bool())
                .ok_or_else(|| ProtocolError::bad_request("typing needs data: true or false"))?;
            Ok(ClientMessage::Typing { room, typing })
        }
        "message" => {
            let room = room()?;
            let message = match fields.remove("message") {
                None => None,
                Some(BorrowedValue::String(text)) => Some(text),
                Some(_) => return Err(ProtocolError::bad_request("message must be a string")),
            };
            let data = fields.remove("data");
            if message.is_none() && data.is_none() {
                return Err(ProtocolError::bad_request(
                    "a message needs a message string or data",
                ));
            }
            Ok(ClientMessage::Message {
                room,
                message,
                data,
            })
        }
        "ping" => Ok(ClientMessage::Ping),
        _ => Err(ProtocolError::new(
            ErrorCode::UnknownType,
            "Unknown message type",
        )),
    }
}

fn has_repeated_key<'k>(count: usize, mut keys: impl Iterator<Item = &'k Cow<'k, str>>) -> bool {
    // A protocol message has a handful of keys; a hostile one may have thousands, which
    // a set checks in linear time.
    if count <= 16 {
        let mut seen: smallvec::SmallVec<[&str; 16]> = smallvec::SmallVec::new();
        keys.any(|key| {
            let repeated = seen.contains(&key.as_ref());
            seen.push(key.as_ref());
            repeated
        })
    } else {
        let mut seen = std::collections::HashSet::with_capacity(count);
        keys.any(|key| !seen.insert(key.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<String, ErrorCode> {
        let mut bytes = text.as_bytes().to_vec();
        let mut buffers = simd_json::Buffers::default();
        parse_client_message(&mut bytes, &mut buffers)
            .map(|m| format!("{m:?}"))
            .map_err(|e| e.code)
    }

    #[test]
    fn parses_every_client_type() {
        assert!(parse(r#"{"type":"join_room","room":"general"}"#)
            .unwrap()
            .contains("JoinRoom"));
        assert!(parse(r#"{"type":"leave_room","room_id":"general"}"#)
            .unwrap()
            .contains("LeaveRoom"));
        assert!(parse(r#"{"type":"typing","room":"r","data":true}"#)
            .unwrap()
            .contains("typing: true"));
        assert_eq!(parse(r#"{"type":"ping"}"#).unwrap(), "Ping");
    }

    #[test]
    fn message_carries_text_and_arbitrary_data() {
        let mut bytes =
            br#"{"type":"message","room":"g","message":"hi \"you\"","data":{"n":[1,2]}}"#.to_vec();
        let mut buffers = simd_json::Buffers::default();
        let ClientMessage::Message {
            room,
            message,
            data,
        } = parse_client_message(&mut bytes, &mut buffers).unwrap()
        else {
            panic!("not a message")
        };
        assert_eq!(room, "g");
        assert_eq!(message.as_deref(), Some("hi \"you\""));
        assert_eq!(
            simd_json::to_string(&data.unwrap()).unwrap(),
            r#"{"n":[1,2]}"#
        );
    }

    #[test]
    fn malformed_input_maps_to_protocol_codes() {
        use ErrorCode::*;
        for (text, code) in [
            ("not json", InvalidMessage),
            ("[1,2]", InvalidMessage),
            (r#"{"room":"g"}"#, InvalidMessage),
            (r#"{"type":7}"#, InvalidMessage),
            (r#"{"type":"dance"}"#, UnknownType),
            (r#"{"type":"join_room"}"#, BadRequest),
            (r#"{"type":"join_room","room":5}"#, BadRequest),
            (r#"{"type":"join_room","room":"has space"}"#, BadRequest),
            (r#"{"type":"message","room":"g"}"#, BadRequest),
            (r#"{"type":"message","room":"g","message":1}"#, BadRequest),
            (r#"{"type":"typing","room":"g"}"#, BadRequest),
            (r#"{"type":"typing","room":"g","data":"yes"}"#, BadRequest),
            (
                r#"{"type":"ping","type":"join_room","room":"x"}"#,
                InvalidMessage,
            ),
            (
                r#"{"type":"join_room","room":"a","room":"b"}"#,
                InvalidMessage,
            ),
        ] {
            assert_eq!(parse(text), Err(code), "{text}");
        }
    }
}
