//! Messages the server sends, serialized with serde into frames.

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use super::ErrorCode;
use crate::ids::ConnectionId;

/// A server-to-client message of protocol v1.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    /// First message on every connection.
    Welcome {
        /// The connection's id.
        connection_id: ConnectionId,
        /// The connection's user.
        user_id: &'a str,
        /// What the backend's connect hook gave the connection (`proxy.connect_url`).
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<&'a RawValue>,
    },
    /// To the joiner.
    Joined {
        /// The room.
        room: &'a str,
        /// Connections in the room after the join.
        count: usize,
        /// When the join asked to recover: whether every missed message follows.
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        /// With history on: the room's stream.
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a str>,
        /// With history on: the last positioned message this connection does not
        /// receive live.
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
    },
    /// To the leaver.
    Left {
        /// The room.
        room: &'a str,
        /// Connections in the room after the leave.
        count: usize,
    },
    /// To the room's other members.
    UserJoined {
        /// The room.
        room: &'a str,
        /// Who joined.
        user_id: &'a str,
        /// Connections in the room after the join.
        count: usize,
    },
    /// To the room's remaining members.
    UserLeft {
        /// The room.
        room: &'a str,
        /// Who left.
        user_id: &'a str,
        /// Connections in the room after the leave.
        count: usize,
    },
    /// A chat message, to every member of the room.
    ChatMessage {
        /// The room.
        room: &'a str,
        /// The sender.
        user_id: &'a str,
        /// The text, when the client sent one.
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<&'a str>,
        /// The attached JSON, when the client sent some, as it was sent.
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<&'a RawValue>,
        /// Unix seconds.
        time: u64,
        /// With history on: its place in the room's stream.
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
    },
    /// The backend's answer to an `rpc` (`proxy.rpc_url`).
    RpcResult {
        /// The client's `id`, as it sent it.
        id: &'a RawValue,
        /// What the backend answered.
        data: &'a RawValue,
    },
    /// An `rpc` the backend did not answer: `code` says why.
    RpcError {
        /// The client's `id`, as it sent it.
        id: &'a RawValue,
        /// `timeout`, `unavailable`, `forbidden`, `bad_answer` or `status_<n>`.
        code: &'a str,
    },
    /// A backend's publication to a room, through the API.
    Publication {
        /// The room.
        room: &'a str,
        /// The JSON the backend sent, as it was sent.
        data: &'a RawValue,
        /// Unix seconds.
        time: u64,
        /// With history on: its place in the room's stream.
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
    },
    /// Typing indicator, to the room's other members.
    Typing {
        /// The room.
        room: &'a str,
        /// Who types.
        user_id: &'a str,
        /// Typing or stopped.
        typing: bool,
    },
    /// A user came online or went offline.
    Presence {
        /// The user.
        user_id: &'a str,
        /// `online` or `offline`.
        status: PresenceStatus,
        /// Unix seconds.
        time: u64,
    },
    /// Answer to `ping`.
    Pong,
    /// A refused request; the connection stays open.
    Error {
        /// Machine-readable code.
        code: ErrorCode,
        /// Human-readable text.
        error: &'a str,
    },
    /// The server is shutting down; a close with 1001 follows.
    ServerShutdown {
        /// Human-readable text.
        message: &'a str,
    },
}

/// A user's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    /// The user's first connection opened.
    Online,
    /// The user's last connection closed.
    Offline,
}

impl Serialize for ConnectionId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(m: &ServerMessage<'_>) -> String {
        serde_json::to_string(m).unwrap()
    }

    #[test]
    fn messages_match_the_protocol_shapes() {
        assert_eq!(
            json(&ServerMessage::Welcome {
                connection_id: ConnectionId::new(1, 7),
                user_id: "u",
                data: None,
            }),
            r#"{"type":"welcome","connection_id":"1-7","user_id":"u"}"#
        );
        let id = RawValue::from_string("7".to_owned()).unwrap();
        let data = RawValue::from_string(r#"{"sum":3}"#.to_owned()).unwrap();
        assert_eq!(
            json(&ServerMessage::RpcResult {
                id: &id,
                data: &data
            }),
            r#"{"type":"rpc_result","id":7,"data":{"sum":3}}"#
        );
        assert_eq!(
            json(&ServerMessage::RpcError {
                id: &id,
                code: "timeout"
            }),
            r#"{"type":"rpc_error","id":7,"code":"timeout"}"#
        );
        assert_eq!(
            json(&ServerMessage::UserLeft {
                room: "g",
                user_id: "u",
                count: 2
            }),
            r#"{"type":"user_left","room":"g","user_id":"u","count":2}"#
        );
        assert_eq!(json(&ServerMessage::Pong), r#"{"type":"pong"}"#);
        assert_eq!(
            json(&ServerMessage::Error {
                code: ErrorCode::NotInRoom,
                error: "Not in room"
            }),
            r#"{"type":"error","code":"not_in_room","error":"Not in room"}"#
        );
        assert_eq!(
            json(&ServerMessage::Presence {
                user_id: "u",
                status: PresenceStatus::Offline,
                time: 5
            }),
            r#"{"type":"presence","user_id":"u","status":"offline","time":5}"#
        );
    }

    #[test]
    fn chat_message_omits_absent_parts_and_embeds_data() {
        let data = RawValue::from_string(r#"{"k":[true,null]}"#.to_owned()).unwrap();
        assert_eq!(
            json(&ServerMessage::ChatMessage {
                room: "g",
                user_id: "u",
                message: None,
                data: Some(&data),
                time: 9,
                offset: None,
            }),
            r#"{"type":"chat_message","room":"g","user_id":"u","data":{"k":[true,null]},"time":9}"#
        );
        assert_eq!(
            json(&ServerMessage::Publication {
                room: "g",
                data: &data,
                time: 9,
                offset: Some(4),
            }),
            r#"{"type":"publication","room":"g","data":{"k":[true,null]},"time":9,"offset":4}"#
        );
    }

    #[test]
    fn joined_has_the_v1_shape_unless_history_or_recovery_add_to_it() {
        let joined = |recovered, epoch, offset| {
            json(&ServerMessage::Joined {
                room: "g",
                count: 2,
                recovered,
                epoch,
                offset,
            })
        };
        assert_eq!(
            joined(None, None, None),
            r#"{"type":"joined","room":"g","count":2}"#
        );
        assert_eq!(
            joined(Some(true), Some("e"), Some(9)),
            r#"{"type":"joined","room":"g","count":2,"recovered":true,"epoch":"e","offset":9}"#
        );
    }
}
