//! Commands for another node's connections, by NATS request and reply on the owning
//! node's subject: a `Hub` method or an API call on any node acts on a connection of
//! any node. The owning node's bridge carries a command out ([`super::carry_out`]) and
//! answers with the outcome, which the asker reads as the engine's own result.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::ids::ConnectionId;
use crate::protocol::{ErrorCode, ProtocolError};
use crate::shard::error::EngineError;
use crate::shard::info::ConnectionInfo;

/// What one node asks another to do. Connections are
/// [`ConnectionId::to_bits`](crate::ids::ConnectionId).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Command {
    Disconnect {
        conn: u64,
        code: u16,
        reason: String,
    },
    Describe {
        conn: u64,
    },
    Join {
        conn: u64,
        room: String,
    },
    Leave {
        conn: u64,
        room: String,
    },
    /// This node's members of a room.
    RoomMembers {
        room: String,
    },
    /// Make the room persistent here (created through the API on another node).
    CreateRoom {
        room: String,
    },
    /// Remove the room here (removed through the API on another node).
    RemoveRoom {
        room: String,
    },
    /// This node's connections of a user.
    UserConnections {
        user: String,
    },
}

/// The outcome of a [`Command`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Answer {
    Done,
    /// A room's count after a join or leave.
    Count(usize),
    Described {
        user_id: Arc<str>,
        remote_addr: SocketAddr,
        connected_at_ms: u64,
    },
    Connections(Vec<u64>),
    UnknownConnection(u64),
    Refused {
        code: ErrorCode,
        text: String,
    },
    /// The node could not carry it out (a shard's inbox stayed full, or it is closing).
    Failed,
}

impl Answer {
    pub(crate) fn of<T>(result: Result<T, EngineError>, done: impl FnOnce(T) -> Answer) -> Answer {
        match result {
            Ok(value) => done(value),
            Err(EngineError::UnknownConnection(id)) => Answer::UnknownConnection(id.to_bits()),
            Err(EngineError::Refused(e)) => Answer::Refused {
                code: e.code,
                text: e.text.into_owned(),
            },
            Err(EngineError::Overloaded | EngineError::Closed) => Answer::Failed,
        }
    }

    /// The answer as the engine's own result, for `convert`'s kind of value.
    pub fn into_result<T>(
        self,
        convert: impl FnOnce(Answer) -> Option<T>,
    ) -> Result<T, EngineError> {
        match self {
            Answer::UnknownConnection(bits) => Err(EngineError::UnknownConnection(
                ConnectionId::from_bits(bits),
            )),
            Answer::Refused { code, text } => Err(EngineError::Refused(ProtocolError {
                code,
                text: text.into(),
            })),
            Answer::Failed => Err(EngineError::Overloaded),
            other => convert(other).ok_or(EngineError::Overloaded),
        }
    }

    pub fn done(self) -> Option<()> {
        matches!(self, Answer::Done).then_some(())
    }

    pub fn count(self) -> Option<usize> {
        match self {
            Answer::Count(n) => Some(n),
            _ => None,
        }
    }

    pub fn connections(self) -> Option<Vec<ConnectionId>> {
        match self {
            Answer::Connections(ids) => {
                Some(ids.into_iter().map(ConnectionId::from_bits).collect())
            }
            _ => None,
        }
    }

    /// Connection `id` described, from a [`Answer::Described`].
    pub fn described(self, id: ConnectionId) -> Option<ConnectionInfo> {
        match self {
            Answer::Described {
                user_id,
                remote_addr,
                connected_at_ms,
            } => Some(ConnectionInfo {
                id,
                user_id,
                remote_addr,
                connected_at: UNIX_EPOCH + Duration::from_millis(connected_at_ms),
            }),
            _ => None,
        }
    }
}
