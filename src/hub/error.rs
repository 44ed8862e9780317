//! `HubError`: why a call on the [`Hub`](super::Hub) failed. The engine's, the protocol's
//! and the configuration's errors become one here, at the handle's boundary.

use crate::config::ConfigError;
use crate::ids::ConnectionId;
use crate::protocol::{ErrorCode, ProtocolError};
use crate::shard::error::EngineError;

/// Why a hub call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// The configuration is invalid; the text names the setting.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// No open connection has this id.
    #[error("connection {0} not found")]
    UnknownConnection(ConnectionId),
    /// No room has this name.
    #[error("room not found")]
    RoomNotFound,
    /// The connection is not a member of the room.
    #[error("not in room")]
    NotInRoom,
    /// A room name outside `[A-Za-z0-9_.:@-]{1,128}`.
    #[error("invalid room name")]
    InvalidRoomName,
    /// The request was refused with a protocol error code.
    #[error("{text} ({code:?})")]
    Refused {
        /// The protocol error code.
        code: ErrorCode,
        /// The human-readable reason.
        text: String,
    },
    /// History is off (`history.size` is 0): rooms keep no streams.
    #[error("history is off")]
    HistoryOff,
    /// A publication that is not JSON.
    #[error("not JSON: {0}")]
    InvalidJson(String),
    /// A shard's inbox stayed full; try again later.
    #[error("the hub is overloaded")]
    Overloaded,
    /// The hub has shut down.
    #[error("the hub is closed")]
    Closed,
    /// Calls that wait for a shard's answer cannot be made on a shard's own thread.
    #[error("this call waits for a shard and cannot be made from a shard thread")]
    OnShardThread,
    /// Starting the shards failed.
    #[error("i/o error: {0}")]
    Io(String),
}

impl From<EngineError> for HubError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::UnknownConnection(id) => HubError::UnknownConnection(id),
            EngineError::Refused(refusal) => refusal.into(),
            EngineError::Overloaded => HubError::Overloaded,
            EngineError::Closed => HubError::Closed,
        }
    }
}

impl From<ProtocolError> for HubError {
    fn from(e: ProtocolError) -> Self {
        match e.code {
            ErrorCode::RoomNotFound => HubError::RoomNotFound,
            ErrorCode::NotInRoom => HubError::NotInRoom,
            code => HubError::Refused {
                code,
                text: e.text.into_owned(),
            },
        }
    }
}

impl From<ConfigError> for HubError {
    fn from(e: ConfigError) -> Self {
        HubError::Config(e.to_string())
    }
}
