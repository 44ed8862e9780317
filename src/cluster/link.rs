//! This node's part in the cluster as the shards and the `Hub` handles see it: its tag
//! and name, the bounded queue to the bridge and what goes into it, the link's state,
//! the view of the other nodes, and the counters.
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::command::{Answer, Command};
use super::subjects;
use super::view::View;
use crate::config::ClusterConfig;
use crate::ids::ConnectionId;
use crate::shard::error::EngineError;
use crate::shard::held_back::HeldBack;
use crate::shard::held_back::HELD_BACK_MAX;
use crate::shard::message::HomeRequest;
use crate::shard::message::{FrameKind, Target};
use crate::stats::{ClusterStats, LinkState, NodeStats};

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
    /// With history on, in a cluster the bridge is the home of every room's stream
    /// (see [`super::history`]).
    Home(HomeRequest),
    /// With history on: forget the history of a removed room.
    Purge(Arc<str>),
    /// The hub is closing: tell the others this node leaves, then answer.
    Goodbye(std::sync::mpsc::Sender<()>),
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
    /// The NATS client's slow-consumer events.
    slow_consumers: Arc<AtomicU64>,
    view: Mutex<View>,
    pub counters: ClusterCounters,
    /// Messages from the bridge for each shard whose inbox was full, in order.
    held_back: Mutex<HeldBack>,
    /// Told when a message is held back.
    held: tokio::sync::Notify,
}

impl Cluster {
    /// The node's part, with its tag and name, and the receiving end of its outbox for
    /// the bridge.
    pub(crate) fn new(
        config: &ClusterConfig,
        shards: usize,
        tag: u16,
        name: String,
        link: Arc<AtomicU8>,
        slow_consumers: Arc<AtomicU64>,
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
            slow_consumers,
            view: Mutex::new(View::default()),
            counters: ClusterCounters::default(),
            held_back: Mutex::new(HeldBack::new(shards, Some(HELD_BACK_MAX))),
            held: tokio::sync::Notify::new(),
        };
        (cluster, receiver)
    }

    /// Hands `item` to the bridge without waiting; when its queue is full the item is
    /// dropped and counted, and `false` says so.
    pub(crate) fn send(&self, item: Outbound) -> bool {
        let is_event = matches!(item, Outbound::Event(_));
        let sent = self.outbox.try_send(item).is_ok();
        if !sent {
            self.counters.dropped_out.fetch_add(1, Ordering::Relaxed);
            if is_event {
                self.events_lost.store(true, Ordering::Release);
            }
        }
        sent
    }

    /// What the bridge holds back, in order, for shards whose inbox was full (see
    /// `shard::publish::WithoutWaiting`).
    pub(crate) fn held_back(&self) -> MutexGuard<'_, HeldBack> {
        self.held_back.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the bridge's task that hands over what is held back.
    pub(crate) fn hold_notify(&self) -> &tokio::sync::Notify {
        &self.held
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

    /// The figures `/stats` shows, with this node's own: its open connections, and the
    /// names of its users and rooms.
    pub(crate) fn stats(
        &self,
        open_here: usize,
        users_here: impl IntoIterator<Item = Arc<str>>,
        rooms_here: impl IntoIterator<Item = Arc<str>>,
    ) -> ClusterStats {
        let view = self.view();
        let mut users = view.users();
        let mut rooms: std::collections::HashSet<Arc<str>> = view.rooms().into_keys().collect();
        let users_here: Vec<Arc<str>> = users_here.into_iter().collect();
        let rooms_here: Vec<Arc<str>> = rooms_here.into_iter().collect();
        let mut members: Vec<NodeStats> = view.node_stats().collect();
        members.push(NodeStats {
            node_id: self.name.clone(),
            connections: open_here,
            users: users_here.len(),
            rooms: rooms_here.len(),
        });
        members.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        users.extend(users_here);
        rooms.extend(rooms_here);

        let c = &self.counters;
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        ClusterStats {
            node_id: self.name.clone(),
            node_tag: self.tag,
            nodes: view.node_count() + 1,
            peers: view.node_names(),
            nats: self.link(),
            connections: view.connection_count() + open_here,
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
            nats_slow_consumers: get(&self.slow_consumers),
            journal_appends: get(&c.journal_appends),
            journal_conflicts: get(&c.journal_conflicts),
            journal_repairs: get(&c.journal_repairs),
            members,
        }
    }
}
