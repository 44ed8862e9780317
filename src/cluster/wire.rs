//! What nodes say to each other besides frames: connection events, heartbeats and
//! snapshots, as JSON on NATS (they are rare next to messages), and the headers that
//! go with a frame.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Header naming the kind of frame when it is a room's positioned message.
pub(crate) const KIND_HEADER: &str = "Neonex-Kind";
/// Its value for positioned messages.
pub(crate) const POSITIONED: &str = "positioned";
/// Header naming the user a frame on a node's subject is for (percent-encoded).
pub(crate) const USER_HEADER: &str = "Neonex-User";
/// Header naming the connection a room's or everyone's frame skips.
pub(crate) const EXCEPT_HEADER: &str = "Neonex-Except";
/// Header naming the connection a frame on a node's subject is for.
pub(crate) const CONNECTION_HEADER: &str = "Neonex-Connection";

/// One event of one node, on the events subject.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// The sender's tag.
    pub node: u16,
    /// The sender's incarnation: a node restarted under the same tag is another node.
    pub inc: u64,
    /// The sender's name.
    pub name: String,
    /// The sender's event number: +1 per event; a heartbeat carries the last one.
    pub seq: u64,
    pub ev: Body,
}

/// What happened. Connection ids are [`crate::ids::ConnectionId::to_bits`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Body {
    /// The node is alive; `seq` is its last event.
    Heartbeat,
    Opened {
        conn: u64,
        user: Arc<str>,
        rooms: Vec<Arc<str>>,
    },
    Closed {
        conn: u64,
    },
    Joined {
        conn: u64,
        user: Arc<str>,
        room: Arc<str>,
    },
    Left {
        conn: u64,
        room: Arc<str>,
    },
    /// The node is shutting down: its connections are gone.
    Goodbye,
}

/// A request for a page of a node's snapshot: the connections after `after` (by
/// [`crate::ids::ConnectionId::to_bits`]); an empty request asks for the first page.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct SnapshotRequest {
    #[serde(default)]
    pub after: Option<u64>,
}

/// A node's connections at its event `seq`: the answer to a snapshot request, one page
/// of them, in the order of their ids, so that no answer outgrows a NATS message.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub node: u16,
    pub inc: u64,
    pub name: String,
    pub seq: u64,
    pub conns: Vec<SnapshotConnection>,
    /// More pages follow.
    #[serde(default)]
    pub more: bool,
}

/// One connection in a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SnapshotConnection {
    pub conn: u64,
    pub user: Arc<str>,
    pub rooms: Vec<Arc<str>>,
}
