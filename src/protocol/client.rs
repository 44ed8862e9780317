//! Parsing client messages.
//!
//! serde_json reads the message into borrowed slices: `type`, `room` and `message` are
//! checked one by one (so each mistake gets its own error code), and `data` is kept as raw
//! JSON text that the `chat_message` carries on byte for byte, never parsed into values
//! and written again. `benches/frames.rs` measures this against simd-json building a
//! value tree of the same messages: serde_json takes a half to a quarter of the time, from
//! chat lines to 200 KB dashboard updates, because the hub never needs `data` as values.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{ErrorCode, ProtocolError};
use crate::ids::{is_valid_room_name, MAX_NAME_LEN};

/// A valid client message. Strings borrow from the message bytes where JSON allows.
#[derive(Debug)]
pub enum ClientMessage<'a> {
    /// `join_room`.
    JoinRoom {
        /// Room to join.
        room: Cow<'a, str>,
        /// Where the client left the room's stream, to get what it missed.
        recover: Option<Recover>,
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
        /// Any JSON the client attached, exactly as it was sent.
        data: Option<&'a RawValue>,
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
    /// A `type` protocol v1 does not define: the application's own (`Application::
    /// custom_types`), an `rpc` for the backend (`proxy.rpc_url`, see [`parse_rpc`]), or
    /// else `unknown_type`.
    Custom {
        /// The message's `type`.
        kind: Cow<'a, str>,
    },
}

/// An `rpc` for the backend: `{"type":"rpc","id":ID,"method":M,"data":...}`.
#[derive(Debug)]
pub struct Rpc<'a> {
    /// Any string or number the client picks; its answer carries it back as sent.
    pub id: &'a RawValue,
    /// What the client asks for.
    pub method: Cow<'a, str>,
    /// Its arguments, as sent.
    pub data: Option<&'a RawValue>,
}

/// `recover` of a `join_room`: "I last saw offset `offset` of epoch `epoch`".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Recover {
    /// The last offset the client received.
    pub offset: u64,
    /// The epoch that offset belongs to.
    pub epoch: String,
}

/// The fields of any client message, each still raw JSON; a field given as `null` is
/// present (`data: null` is data). A repeated field is an error (serde refuses it), so
/// no two readers can disagree on which value counts.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "type", borrow, default, deserialize_with = "present")]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    room: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    room_id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    message: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    recover: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Parses one text message (UTF-8, as the frame layer guarantees).
pub fn parse_client_message(text: &[u8]) -> Result<ClientMessage<'_>, ProtocolError> {
    let invalid = || ProtocolError::new(ErrorCode::InvalidMessage, "Invalid message format");
    // serde would also fill the fields from a JSON array, by position: only an object is
    // a message.
    if text.trim_ascii_start().first() != Some(&b'{') {
        return Err(invalid());
    }
    let fields: Fields<'_> = serde_json::from_slice(text).map_err(|_| invalid())?;
    let kind: Cow<'_, str> = fields
        .kind
        .and_then(|raw| string(raw).ok())
        .ok_or_else(invalid)?;
    let room = || -> Result<Cow<'_, str>, ProtocolError> {
        let raw = fields
            .room
            .or(fields.room_id)
            .ok_or_else(|| ProtocolError::bad_request("missing field: room"))?;
        let room = string(raw).map_err(|_| ProtocolError::bad_request("room must be a string"))?;
        if !is_valid_room_name(&room) {
            return Err(ProtocolError::bad_request(format!(
                "room must be 1 to {MAX_NAME_LEN} bytes of [A-Za-z0-9_.:@-]"
            )));
        }
        Ok(room)
    };
    match kind.as_ref() {
        "join_room" => Ok(ClientMessage::JoinRoom {
            room: room()?,
            recover: recover(fields.recover)?,
        }),
        "leave_room" => Ok(ClientMessage::LeaveRoom { room: room()? }),
        "typing" => {
            let room = room()?;
            let typing = fields
                .data
                .and_then(|raw| serde_json::from_str::<bool>(raw.get()).ok())
                .ok_or_else(|| ProtocolError::bad_request("typing needs data: true or false"))?;
            Ok(ClientMessage::Typing { room, typing })
        }
        "message" => {
            let room = room()?;
            let message = match fields.message {
                None => None,
                Some(raw) => Some(
                    string(raw)
                        .map_err(|_| ProtocolError::bad_request("message must be a string"))?,
                ),
            };
            if message.is_none() && fields.data.is_none() {
                return Err(ProtocolError::bad_request(
                    "a message needs a message string or data",
                ));
            }
            Ok(ClientMessage::Message {
                room,
                message,
                data: fields.data,
            })
        }
        "ping" => Ok(ClientMessage::Ping),
        _ => Ok(ClientMessage::Custom { kind }),
    }
}

/// Parses the fields of an `rpc` (a message [`parse_client_message`] found valid).
pub fn parse_rpc(text: &[u8]) -> Result<Rpc<'_>, ProtocolError> {
    #[derive(Deserialize)]
    struct RpcFields<'a> {
        #[serde(borrow, default, deserialize_with = "present")]
        id: Option<&'a RawValue>,
        #[serde(borrow, default, deserialize_with = "present")]
        method: Option<&'a RawValue>,
        #[serde(borrow, default, deserialize_with = "present")]
        data: Option<&'a RawValue>,
    }
    let fields: RpcFields<'_> = serde_json::from_slice(text)
        .map_err(|_| ProtocolError::new(ErrorCode::InvalidMessage, "Invalid message format"))?;
    let id = fields
        .id
        .filter(|id| {
            let first = id.get().as_bytes().first();
            first == Some(&b'"') || first.is_some_and(|b| *b == b'-' || b.is_ascii_digit())
        })
        .ok_or_else(|| ProtocolError::bad_request("rpc needs an id: a string or a number"))?;
    let method = fields
        .method
        .and_then(|raw| string(raw).ok())
        .ok_or_else(|| ProtocolError::bad_request("rpc needs a method string"))?;
    Ok(Rpc {
        id,
        method,
        data: fields.data,
    })
}

/// The `unknown_type` error, for a type nobody answers.
pub fn unknown_type() -> ProtocolError {
    ProtocolError::new(ErrorCode::UnknownType, "Unknown message type")
}

/// The `recover` of a `join_room`; `null` is the same as none.
fn recover(raw: Option<&RawValue>) -> Result<Option<Recover>, ProtocolError> {
    match raw {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => serde_json::from_str(raw.get()).map(Some).map_err(|_| {
            ProtocolError::bad_request(
                "recover must be {\"offset\": a non-negative integer, \"epoch\": a string}",
            )
        }),
    }
}

/// A raw JSON value that must be a string: borrowed unless it has escapes. (serde's
/// `Cow<str>` always copies: it borrows only through a `#[serde(borrow)]` field.)
fn string(raw: &RawValue) -> Result<Cow<'_, str>, serde_json::Error> {
    match serde_json::from_str::<&str>(raw.get()) {
        Ok(plain) => Ok(Cow::Borrowed(plain)),
        Err(_) => serde_json::from_str::<String>(raw.get()).map(Cow::Owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<String, ErrorCode> {
        parse_client_message(text.as_bytes())
            .map(|m| format!("{m:?}"))
            .map_err(|e| e.code)
    }

    #[test]
    fn parses_every_client_type() {
        assert!(parse(r#"{"type":"join_room","room":"general"}"#)
            .unwrap()
            .contains("JoinRoom"));
        assert!(
            parse(r#"{"type":"join_room","room":"g","recover":{"offset":7,"epoch":"e1"}}"#)
                .unwrap()
                .contains(r#"recover: Some(Recover { offset: 7, epoch: "e1" })"#)
        );
        assert!(parse(r#"{"type":"join_room","room":"g","recover":null}"#)
            .unwrap()
            .contains("recover: None"));
        assert!(parse(r#"{"type":"leave_room","room_id":"general"}"#)
            .unwrap()
            .contains("LeaveRoom"));
        assert!(parse(r#"{"type":"typing","room":"r","data":true}"#)
            .unwrap()
            .contains("typing: true"));
        assert_eq!(parse(r#"{"type":"ping"}"#).unwrap(), "Ping");
        assert_eq!(
            parse(r#"{"t\u0079pe":"ping","extra":[1]}"#).unwrap(),
            "Ping",
            "escaped keys and unknown fields"
        );
    }

    #[test]
    fn plain_strings_are_borrowed_and_escaped_ones_decoded() {
        let text = br#"{"type":"message","room":"g","message":"plain"}"#;
        let Ok(ClientMessage::Message { room, message, .. }) = parse_client_message(text) else {
            panic!("a message");
        };
        assert!(matches!(room, Cow::Borrowed("g")), "{room:?}");
        assert!(
            matches!(message, Some(Cow::Borrowed("plain"))),
            "{message:?}"
        );
        let text = br#"{"type":"message","room":"g","message":"caf\u00e9 \"x\""}"#;
        let Ok(ClientMessage::Message { message, .. }) = parse_client_message(text) else {
            panic!("a message");
        };
        assert!(
            matches!(message, Some(Cow::Owned(ref s)) if s == "café \"x\""),
            "{message:?}"
        );
        assert!(parse_client_message(br#"{"type":"message","room":7}"#).is_err());
    }

    #[test]
    fn message_carries_text_and_data_verbatim() {
        let text =
            br#"{"type":"message","room":"g","message":"hi \"you\"","data":{"n": [1, 2.50]}}"#;
        let ClientMessage::Message {
            room,
            message,
            data,
        } = parse_client_message(text).unwrap()
        else {
            panic!("not a message")
        };
        assert_eq!(room, "g");
        assert_eq!(message.as_deref(), Some("hi \"you\""));
        assert_eq!(data.unwrap().get(), r#"{"n": [1, 2.50]}"#);
    }

    #[test]
    fn a_type_the_protocol_lacks_is_handed_on_by_name() {
        let parsed = parse_client_message(br#"{"type":"dance","room":"g"}"#).unwrap();
        assert!(matches!(parsed, ClientMessage::Custom { kind } if kind == "dance"));
    }

    #[test]
    fn rpc_fields_are_read_with_their_id_as_sent() {
        let text = br#"{"type":"rpc","id":"a1","method":"sum","data":[1,2]}"#;
        let rpc = parse_rpc(text).unwrap();
        assert_eq!((rpc.id.get(), &*rpc.method), (r#""a1""#, "sum"));
        assert_eq!(rpc.data.unwrap().get(), "[1,2]");
        assert_eq!(
            parse_rpc(br#"{"type":"rpc","id":7,"method":"m"}"#)
                .unwrap()
                .id
                .get(),
            "7"
        );
        for bad in [
            r#"{"type":"rpc","method":"m"}"#,
            r#"{"type":"rpc","id":{"a":1},"method":"m"}"#,
            r#"{"type":"rpc","id":null,"method":"m"}"#,
            r#"{"type":"rpc","id":1}"#,
            r#"{"type":"rpc","id":1,"method":5}"#,
        ] {
            assert_eq!(
                parse_rpc(bad.as_bytes()).unwrap_err().code,
                ErrorCode::BadRequest,
                "{bad}"
            );
        }
    }

    #[test]
    fn malformed_input_maps_to_protocol_codes() {
        use ErrorCode::*;
        for (text, code) in [
            ("not json", InvalidMessage),
            ("[1,2]", InvalidMessage),
            (r#"{"room":"g"}"#, InvalidMessage),
            (r#"{"type":7}"#, InvalidMessage),
            (r#"{"type":"join_room"}"#, BadRequest),
            (r#"{"type":"join_room","room":5}"#, BadRequest),
            (r#"{"type":"join_room","room":"has space"}"#, BadRequest),
            (r#"{"type":"join_room","room":"g","recover":5}"#, BadRequest),
            (
                r#"{"type":"join_room","room":"g","recover":{"offset":1}}"#,
                BadRequest,
            ),
            (
                r#"{"type":"join_room","room":"g","recover":{"offset":-1,"epoch":"e"}}"#,
                BadRequest,
            ),
            (
                r#"{"type":"join_room","room":"g","recover":{"offset":1.5,"epoch":"e"}}"#,
                BadRequest,
            ),
            (
                r#"{"type":"join_room","room":"g","recover":{"offset":1,"epoch":3}}"#,
                BadRequest,
            ),
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
            (r#"{"type":"ping"} trailing"#, InvalidMessage),
            (r#"["ping"]"#, InvalidMessage),
            (r#"{"type":null}"#, InvalidMessage),
            (r#"{"type":"message","room":null,"data":1}"#, BadRequest),
        ] {
            assert_eq!(parse(text), Err(code), "{text}");
        }
    }
}
