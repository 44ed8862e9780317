//! The cluster: several neonex nodes on one NATS that behave as one hub
//! (`cluster.nats_url`).
//!
//! # How the nodes share the work
//!
//! - **The bridge** ([`bridge`]): one thread per node with a current-thread tokio runtime
//!   that owns the NATS client. Shards hand it what must leave the node through one
//!   bounded channel ([`Cluster::send`]) and never wait for it: when the channel is full
//!   the item is dropped and counted. What arrives from NATS it hands to the shards'
//!   inboxes, the same way a `Hub` handle does, and never blocks on a full one either.
//! - **Frames travel once per node** ([`subjects`]): a room's messages go to the room's
//!   subject, to which a node subscribes while it has members of the room, so each node
//!   with members gets one copy. The NATS payload is the WebSocket frame itself, so the
//!   receiving node hands those same bytes to its shards: nothing is decoded or encoded
//!   again. Global broadcasts go to one subject every node takes; frames for a user or a
//!   connection go to the subject of the node that holds them. NATS is told not to echo
//!   a node's own messages back to it.
//! - **Every node knows the others' connections** ([`view`]): each node announces its
//!   connections opening and closing and joining and leaving rooms on the events subject,
//!   numbered one by one, and sends a heartbeat that carries the last number. A node
//!   that hears a node for the first time, or finds a number missing, asks that node for
//!   a snapshot of its connections and starts again from it ([`wire::Snapshot`]). Room
//!   counts, presence and member counts then add this node's own figures to the view.
//! - **Notices are made by each node for its own clients** ([`notices`]): `user_joined`,
//!   `user_left` and `presence` for another node's connection are made from its event by
//!   every node that has clients to tell, with counts of the whole cluster. A node silent
//!   for `cluster.node_timeout` is dead: every node removes its connections, and tells
//!   its own clients, as if each had closed.
//!
//! Positioned messages keep the order one publisher sent them in (one NATS connection
//! per node keeps a publisher's order). What is at most once across nodes: everything,
//! while NATS is unreachable or a queue on the way overflows (counted in `/stats`); with
//! history on, JetStream will repair that for positioned messages.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde::Serialize;

use crate::config::ClusterConfig;
use crate::ids::ConnectionId;
use crate::protocol::Recover;
use crate::room::Room;
use crate::shard::error::EngineError;
use crate::shard::message::{FrameKind, HeldJoin, Reply, Target};
use crate::shard::positioned::Positioned;
use crate::shard::shared::HubShared;
use crate::shard::streams::Page;
use command::{Answer, Command};

pub(crate) mod bridge;
pub(crate) mod command;
mod history;
mod inbound;
mod journal;
mod notices;
mod snapshot;
pub(crate) mod subjects;
pub(crate) mod view;
pub(crate) mod wire;

pub(crate) use view::View;

/// Most items waiting for the bridge; beyond it a frame is dropped and counted, and a
/// lost event makes the other nodes resynchronise.
const OUTBOX_CAPACITY: usize = 64 * 1024;

/// Where a frame goes in the cluster.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// Every connection of every other node, but `except`.
    All { except: Option<ConnectionId> },
    /// The members of a room on every other node, but `except`.
    Room {
        room: Arc<str>,
        except: Option<ConnectionId>,
    },
    /// The connections of a user on one node.
    User { node: u16, user: Arc<str> },
    /// One connection of another node.
    Connection(ConnectionId),
}

/// What happened to a connection of this node, for the other nodes' views.
#[derive(Debug, Clone)]
pub(crate) enum LocalEvent {
    /// It opened, and joined these rooms on the way in.
    Opened {
        conn: ConnectionId,
        user: Arc<str>,
        rooms: Vec<Arc<str>>,
    },
    /// It closed, and so left every room; these were its rooms.
    Closed {
        conn: ConnectionId,
        rooms: Vec<Arc<str>>,
    },
    Joined {
        conn: ConnectionId,
        user: Arc<str>,
        room: Arc<str>,
    },
    Left {
        conn: ConnectionId,
        room: Arc<str>,
    },
}

/// What a shard or a `Hub` handle gives the bridge.
pub(crate) enum Outbound {
    Frame {
        route: Route,
        frame: Bytes,
        kind: FrameKind,
    },
    Event(LocalEvent),
    /// Carry out `command` on node `node`, and give its answer to `reply`.
    Ask {
        node: u16,
        command: Command,
        reply: Box<dyn FnOnce(Answer) + Send>,
    },
    /// Carry out `command` on every other node, and give their answers to `reply`.
    Gather {
        command: Command,
        reply: Box<dyn FnOnce(Vec<Answer>) + Send>,
    },
    /// With history on: give a positioned message of `room` its offset in the journal,
    /// and deliver it (see [`history`]).
    Sequence {
        room: Arc<str>,
        message: Positioned<'static>,
        reply: Option<Reply<Option<u64>>>,
    },
    /// With history on: place a held join in the room's stream.
    PlaceJoin {
        room: Arc<Room>,
        join: HeldJoin,
        recover: Option<Recover>,
    },
    /// With history on: the held messages of `room` after `since`, at most `limit`.
    ReadHistory {
        room: Arc<str>,
        since: u64,
        limit: usize,
        reply: Reply<Page>,
    },
    /// With history on: forget the history of a removed room.
    Purge(Arc<str>),
    /// The hub is closing: tell the others this node leaves, then answer.
    Goodbye(std::sync::mpsc::Sender<()>),
}

/// The state of the node's link to NATS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// Not connected yet since start.
    Connecting,
    /// Connected.
    Connected,
    /// Lost; the client reconnects by itself.
    Disconnected,
}

impl LinkState {
    fn from_u8(v: u8) -> LinkState {
        match v {
            1 => LinkState::Connected,
            2 => LinkState::Disconnected,
            _ => LinkState::Connecting,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            LinkState::Connecting => 0,
            LinkState::Connected => 1,
            LinkState::Disconnected => 2,
        }
    }
}

/// Counters of the node's traffic with the cluster.
#[derive(Debug, Default)]
pub(crate) struct ClusterCounters {
    pub messages_out: AtomicU64,
    pub messages_in: AtomicU64,
    pub events_out: AtomicU64,
    pub events_in: AtomicU64,
    /// Dropped on the way out: the bridge's queue was full, or NATS unreachable.
    pub dropped_out: AtomicU64,
    /// Dropped on the way in: a shard's inbox was full.
    pub dropped_in: AtomicU64,
    /// Snapshots taken of other nodes, after a gap or on meeting them.
    pub resyncs: AtomicU64,
    /// Nodes taken for dead after `cluster.node_timeout` of silence.
    pub nodes_lost: AtomicU64,
    /// Positioned messages this node appended to the journal (history on).
    pub journal_appends: AtomicU64,
    /// Appends refused because another node appended first, and tried again.
    pub journal_conflicts: AtomicU64,
    /// Messages read from the journal to fill a gap before delivering.
    pub journal_repairs: AtomicU64,
}

/// The node's part in the cluster, shared by the shards, the `Hub` handles and the
/// bridge.
pub(crate) struct Cluster {
    /// This node's tag, the first part of its connection ids and its address in
    /// subjects; unique among the live nodes (claimed at start).
    pub tag: u16,
    /// This node's name (`cluster.node_id`).
    pub name: String,
    /// Tells this run of the node from an earlier one with the same tag.
    pub incarnation: u64,
    pub subjects: subjects::Subjects,
    pub node_timeout: std::time::Duration,
    outbox: tokio::sync::mpsc::Sender<Outbound>,
    /// An event was dropped on its way to the bridge: the others must resynchronise.
    events_lost: AtomicBool,
    link: Arc<AtomicU8>,
    view: Mutex<View>,
    pub counters: ClusterCounters,
}

/// What `/stats` shows of the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStats {
    /// This node's name.
    pub node_id: String,
    /// This node's tag (the first part of its connection ids).
    pub node_tag: u16,
    /// Live nodes, this one included.
    pub nodes: usize,
    /// The other live nodes' names.
    pub peers: Vec<String>,
    /// The link to NATS.
    pub nats: LinkState,
    /// Open connections in the whole cluster.
    pub connections: usize,
    /// Distinct users with a connection anywhere in the cluster.
    pub users: usize,
    /// Rooms with members, or kept, anywhere in the cluster.
    pub rooms: usize,
    /// Connections on the other nodes.
    pub remote_connections: usize,
    /// Frames sent to other nodes.
    pub messages_out: u64,
    /// Frames received from other nodes.
    pub messages_in: u64,
    /// Connection events sent.
    pub events_out: u64,
    /// Connection events received.
    pub events_in: u64,
    /// Frames and events dropped on the way out (queue full or NATS unreachable).
    pub dropped_out: u64,
    /// Frames dropped on the way in (a shard's inbox full).
    pub dropped_in: u64,
    /// Snapshots taken of other nodes.
    pub resyncs: u64,
    /// Nodes taken for dead after `cluster.node_timeout` of silence.
    pub nodes_lost: u64,
    /// Positioned messages appended to the journal (history on).
    pub journal_appends: u64,
    /// Appends that found another node had appended first, and tried again.
    pub journal_conflicts: u64,
    /// Messages read from the journal to fill a gap before delivering.
    pub journal_repairs: u64,
}

impl Cluster {
    /// The node's part, with its tag and name, and the receiving end of its outbox for
    /// the bridge.
    pub(crate) fn new(
        config: &ClusterConfig,
        tag: u16,
        name: String,
        link: Arc<AtomicU8>,
    ) -> (Cluster, tokio::sync::mpsc::Receiver<Outbound>) {
        let (outbox, receiver) = tokio::sync::mpsc::channel(OUTBOX_CAPACITY);
        let cluster = Cluster {
            tag,
            name,
            incarnation: fastrand::u64(1..),
            subjects: subjects::Subjects::new(&config.subject_prefix),
            node_timeout: config.node_timeout,
            outbox,
            events_lost: AtomicBool::new(false),
            link,
            view: Mutex::new(View::default()),
            counters: ClusterCounters::default(),
        };
        (cluster, receiver)
    }

    /// Hands `item` to the bridge without waiting; when its queue is full the item is
    /// dropped and counted.
    pub(crate) fn send(&self, item: Outbound) {
        let is_event = matches!(item, Outbound::Event(_));
        if self.outbox.try_send(item).is_err() {
            self.counters.dropped_out.fetch_add(1, Ordering::Relaxed);
            if is_event {
                self.events_lost.store(true, Ordering::Release);
            }
        }
    }

    /// Announces a connection event to the other nodes.
    pub(crate) fn announce(&self, event: LocalEvent) {
        self.send(Outbound::Event(event));
    }

    /// Sends `frame`, published here to `target`, to the other nodes' recipients: once
    /// to each node with some. The rooms of a presence notice are this node's alone.
    pub(crate) fn forward(&self, target: &Target, frame: &Bytes, kind: FrameKind) {
        let route = match target {
            Target::All { except } => Route::All { except: *except },
            Target::Room { room, except } => Route::Room {
                room: room.name.clone(),
                except: *except,
            },
            Target::Connection(id) if id.node() != self.tag => Route::Connection(*id),
            Target::User { user, .. } => {
                for (node, _) in self.view().nodes_of_user(user) {
                    self.send(Outbound::Frame {
                        route: Route::User {
                            node,
                            user: user.clone(),
                        },
                        frame: frame.clone(),
                        kind,
                    });
                }
                return;
            }
            Target::Connection(_) | Target::Rooms { .. } => return,
        };
        self.send(Outbound::Frame {
            route,
            frame: frame.clone(),
            kind,
        });
    }

    /// Has node `node` carry out `command`; its answer, made a `T` by `convert`, comes
    /// on the returned channel (an error if the node does not answer in time).
    pub(crate) fn ask<T: Send + 'static>(
        &self,
        node: u16,
        command: Command,
        convert: impl FnOnce(Answer) -> Option<T> + Send + 'static,
    ) -> oneshot::Receiver<Result<T, EngineError>> {
        let (sender, receiver) = oneshot::channel();
        let reply = Box::new(move |answer: Answer| {
            let _ = sender.send(answer.into_result(convert));
        });
        self.send(Outbound::Ask {
            node,
            command,
            reply,
        });
        receiver
    }

    /// Has every other node carry out `command`; the answers that came in time come on
    /// the returned channel, made `T`s by `convert`.
    pub(crate) fn gather<T: Send + 'static>(
        &self,
        command: Command,
        convert: fn(Answer) -> Option<T>,
    ) -> oneshot::Receiver<Vec<T>> {
        let (sender, receiver) = oneshot::channel();
        let reply = Box::new(move |answers: Vec<Answer>| {
            let _ = sender.send(answers.into_iter().filter_map(convert).collect());
        });
        self.send(Outbound::Gather { command, reply });
        receiver
    }

    /// True (once) if an event was lost on its way to the bridge since the last call.
    pub(crate) fn take_events_lost(&self) -> bool {
        self.events_lost.swap(false, Ordering::AcqRel)
    }

    /// The others' connections, locked. Taken on opens, closes, joins and leaves, and by
    /// the bridge for each event it hears; never per message.
    pub(crate) fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn link(&self) -> LinkState {
        LinkState::from_u8(self.link.load(Ordering::Acquire))
    }

    pub(crate) fn set_link(link: &AtomicU8, state: LinkState) {
        link.store(state.as_u8(), Ordering::Release);
    }

    /// Members of room `name` on the other nodes.
    pub(crate) fn remote_room_count(&self, name: &str) -> usize {
        self.view().room_count(name)
    }

    /// True if `id` is a connection of another node in room `name`.
    pub(crate) fn is_remote_member(&self, name: &str, id: ConnectionId) -> bool {
        self.view()
            .connection(id)
            .is_some_and(|(_, rooms)| rooms.iter().any(|r| &**r == name))
    }

    /// The figures `/stats` shows; `hub` is this node's.
    pub(crate) fn stats(&self, hub: &HubShared) -> ClusterStats {
        let view = self.view();
        let mut users = view.users();
        let mut rooms: std::collections::HashSet<Arc<str>> = view.rooms().into_keys().collect();
        users.extend(hub.registry.users().into_iter().map(|(user, _)| user));
        rooms.extend(hub.registry.rooms().into_iter().map(|r| r.name.clone()));
        let c = &self.counters;
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        ClusterStats {
            node_id: self.name.clone(),
            node_tag: self.tag,
            nodes: view.node_count() + 1,
            peers: view.node_names(),
            nats: self.link(),
            connections: view.connection_count() + hub.admission.open(),
            users: users.len(),
            rooms: rooms.len(),
            remote_connections: view.connection_count(),
            messages_out: get(&c.messages_out),
            messages_in: get(&c.messages_in),
            events_out: get(&c.events_out),
            events_in: get(&c.events_in),
            dropped_out: get(&c.dropped_out),
            dropped_in: get(&c.dropped_in),
            resyncs: get(&c.resyncs),
            nodes_lost: get(&c.nodes_lost),
            journal_appends: get(&c.journal_appends),
            journal_conflicts: get(&c.journal_conflicts),
            journal_repairs: get(&c.journal_repairs),
        }
    }
}

/// A node id is 1 to 64 of `[A-Za-z0-9_-]`.
pub(crate) fn is_valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// A subject prefix is one or more dot-separated tokens of `[A-Za-z0-9_-]`.
pub(crate) fn is_valid_subject_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.split('.').all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        })
}

/// The default node id: the host name and a random suffix.
pub(crate) fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .take(48)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned());
    format!("{host}-{:06x}", fastrand::u32(..0x100_0000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_prefixes() {
        assert!(is_valid_node_id("node-a_1"));
        assert!(!is_valid_node_id(""));
        assert!(!is_valid_node_id("a.b"));
        assert!(is_valid_subject_prefix("neonex"));
        assert!(is_valid_subject_prefix("acme.neonex"));
        assert!(!is_valid_subject_prefix("a..b"));
        assert!(!is_valid_subject_prefix("a.*"));
        assert!(!is_valid_subject_prefix(""));
        assert!(is_valid_node_id(&default_node_id()));
    }
}
