//! Protocol v1 (`../shared/PROTOCOL.md`): what clients send, what the server sends, and
//! the error codes between them.

pub mod client;
pub mod server;

use serde::Serialize;

pub use client::{parse_client_message, parse_rpc, unknown_type, ClientMessage, Recover, Rpc};
pub use server::{PresenceStatus, ServerMessage};

/// The `code` of an `error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or not an object with a string `type`.
    InvalidMessage,
    /// A `type` the server does not know.
    UnknownType,
    /// A missing or malformed field.
    BadRequest,
    /// `message`, `typing` or `leave_room` for a room the connection is not in.
    NotInRoom,
    /// The room does not exist.
    RoomNotFound,
    /// Over the per-connection message rate.
    RateLimited,
    /// Over a cap (rooms per connection, ...).
    LimitExceeded,
    /// Binary frames are reserved.
    Unsupported,
    /// The server cannot do it now (in a cluster with history: its store is unreachable).
    Unavailable,
    /// The application or the backend's hook refused it.
    Forbidden,
}

impl ErrorCode {
    /// The protocol's wire name, e.g. `invalid_message`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::RoomNotFound => "room_not_found",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Forbidden => "forbidden",
        }
    }
}

/// A client message the server refuses, with the human text for the `error` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    /// The machine-readable code.
    pub code: ErrorCode,
    /// The human-readable text.
    pub text: std::borrow::Cow<'static, str>,
}

impl ProtocolError {
    /// An error with its fixed text.
    pub fn new(code: ErrorCode, text: &'static str) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }

    /// `room_not_found`: the room does not exist.
    pub fn room_not_found() -> Self {
        Self::new(ErrorCode::RoomNotFound, "Room not found")
    }

    /// A `bad_request` naming what was wrong.
    pub fn bad_request(text: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Self {
            code: ErrorCode::BadRequest,
            text: text.into(),
        }
    }
}

/// Seconds since the Unix epoch, the protocol's `time`.
pub fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
