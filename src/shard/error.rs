//! Why the engine could not do what it was asked: the errors its replies and posts carry.
//! The `Hub` handle turns them into [`HubError`](crate::HubError) at its boundary.

use crate::ids::ConnectionId;
use crate::protocol::ProtocolError;

/// A refused or failed request to the engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EngineError {
    /// No open connection has this id on its shard.
    #[error("connection {0} not found")]
    UnknownConnection(ConnectionId),
    /// The protocol refused it (no such room, not in the room, a cap).
    #[error("{}", .0.text)]
    Refused(ProtocolError),
    /// A shard's inbox stayed full.
    #[error("the hub is overloaded")]
    Overloaded,
    /// The shard has shut down.
    #[error("the hub is closed")]
    Closed,
}

impl From<ProtocolError> for EngineError {
    fn from(e: ProtocolError) -> Self {
        EngineError::Refused(e)
    }
}
