//! What travels between threads and shards: deliveries of encoded frames, and commands.

use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;

use super::error::EngineError;
use super::info::ConnectionInfo;
use super::positioned::Positioned;
use super::streams::{JoinPoint, Page};
use crate::ids::ConnectionId;
use crate::protocol::Recover;
use crate::room::Room;

/// Who receives a frame.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// Every open connection, but `except`.
    All { except: Option<ConnectionId> },
    /// Every member of a room, but `except`.
    Room {
        room: Arc<Room>,
        except: Option<ConnectionId>,
    },
    /// Every member of any of these rooms, once each, but `except`.
    Rooms {
        rooms: Arc<[Arc<Room>]>,
        except: Option<ConnectionId>,
    },
    /// Every connection of a user: those of this node, looked up once when it was
    /// published so that no shard looks the user up again, and in a cluster those of the
    /// other nodes that hold the user's connections.
    User {
        user: Arc<str>,
        connections: Arc<[ConnectionId]>,
    },
    /// One connection.
    Connection(ConnectionId),
}

impl Target {
    /// The shards with recipients, of `all` shards.
    pub(crate) fn shards(&self, all: usize) -> SmallVec<[usize; 8]> {
        match self {
            Target::All { .. } => (0..all).collect(),
            Target::Room { room, .. } => room.shards_with_members().collect(),
            Target::Rooms { rooms, .. } => {
                let mut shards: SmallVec<[usize; 8]> =
                    rooms.iter().flat_map(|r| r.shards_with_members()).collect();
                shards.sort_unstable();
                shards.dedup();
                shards
            }
            Target::User { connections, .. } => {
                let mut shards: SmallVec<[usize; 8]> =
                    connections.iter().map(|c| c.shard()).collect();
                shards.sort_unstable();
                shards.dedup();
                shards
            }
            Target::Connection(id) => std::iter::once(id.shard()).collect(),
        }
    }
}

/// What kind of frame a delivery carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameKind {
    /// A notice, an answer or a backend's raw broadcast: every one is delivered.
    Notice,
    /// A room's positioned message (`chat_message`, `publication`): in a conflated room,
    /// a member that falls behind gets the newest instead of every one.
    Positioned,
}

/// A join held on the joiner's shard while the room's home shard places it in the
/// room's stream; the answer brings it back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeldJoin {
    /// The joining connection (it names the joiner's shard).
    pub conn: ConnectionId,
    /// Its slab key there.
    pub key: usize,
    /// The ticket of the held join (see `Membership::release`).
    pub ticket: u64,
    /// The room's count after the join.
    pub count: usize,
}

/// What the home of a room's stream is asked, with history on (see [`super::home`]).
pub(crate) enum HomeRequest {
    /// Give `message` its offset, keep it, deliver it to the room, and answer with the
    /// offset.
    Sequence {
        room: Arc<Room>,
        message: Positioned<'static>,
        reply: Option<Reply<Option<u64>>>,
    },
    /// Where in the stream does `join` fall, and, with `recover`, what did the joiner
    /// miss? Answered with [`ShardMessage::JoinPlaced`] on the joiner's shard.
    PlaceJoin {
        room: Arc<Room>,
        join: HeldJoin,
        recover: Option<Recover>,
    },
    /// The held messages after `since`, at most `limit`.
    ReadHistory {
        room: Arc<Room>,
        since: u64,
        limit: usize,
        reply: Reply<Page>,
    },
}

impl HomeRequest {
    pub(crate) fn room(&self) -> &Arc<Room> {
        match self {
            HomeRequest::Sequence { room, .. }
            | HomeRequest::PlaceJoin { room, .. }
            | HomeRequest::ReadHistory { room, .. } => room,
        }
    }
}

/// A reply channel for a command whose caller waits for the outcome: a thread blocks on
/// the receiver, a shard awaits it.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

/// How long a caller (a `Hub` handle, or an API call on another shard) waits for the
/// shard that owns a connection to answer.
pub(crate) const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A message to a shard.
pub(crate) enum ShardMessage {
    /// Queue `frame` (already encoded) to the shard's recipients of `target`.
    /// `published_us` is when it was published, on the hub's clock.
    Deliver {
        target: Target,
        frame: Bytes,
        /// The same message compressed, for recipients that negotiated
        /// permessage-deflate; `None` to send them `frame` too.
        deflated: Option<Bytes>,
        published_us: u32,
        kind: FrameKind,
    },
    /// To a room's home shard (history on).
    Home(HomeRequest),
    /// To the joiner's shard: the home's answer to [`HomeRequest::PlaceJoin`].
    JoinPlaced {
        room: Arc<Room>,
        join: HeldJoin,
        point: JoinPoint,
    },
    /// To the joiner's shard: the held join could not be placed (in a cluster, the
    /// journal is unreachable); the joiner leaves the room again and gets `error`.
    JoinRefused {
        room: Arc<Room>,
        join: HeldJoin,
        error: crate::protocol::ProtocolError,
    },
    /// Accept connections from this listener.
    Listen(std::net::TcpListener),
    /// Serve this accepted socket (starting with its HTTP upgrade).
    Adopt(std::net::TcpStream),
    /// Make a connection join a room, as if it had sent `join_room`.
    Join {
        conn: ConnectionId,
        room: String,
        reply: Reply<usize>,
    },
    /// Make a connection leave a room, as if it had sent `leave_room`.
    Leave {
        conn: ConnectionId,
        room: String,
        reply: Reply<usize>,
    },
    /// Close a connection with a close frame.
    Disconnect {
        conn: ConnectionId,
        code: u16,
        reason: String,
        reply: Reply<()>,
    },
    /// Describe a connection.
    Describe {
        conn: ConnectionId,
        reply: Reply<ConnectionInfo>,
    },
    /// The answer to question `question` of connection `conn`.
    Answer {
        conn: ConnectionId,
        question: u64,
        ruling: crate::hooks::ruling::Ruling,
    },
    /// The backend's connect hook answered for connection `conn`'s upgrade.
    ConnectDecided {
        conn: ConnectionId,
        verdict: crate::hooks::proxy::ConnectVerdict,
    },
    /// A room was removed: forget it and tell its local members.
    RoomRemoved(Arc<Room>),
    /// Graceful shutdown: stop accepting, say goodbye, close everything.
    Shutdown,
}
