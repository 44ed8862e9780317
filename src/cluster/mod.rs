//! The cluster: several neonex nodes on one NATS that behave as one hub
//! (`cluster.nats_url`).
//!
//! # How the nodes share the work
//!
//! - **The bridge** ([`bridge`]): one thread per node with a current-thread tokio runtime
//!   that owns the NATS client. Shards hand it what must leave the node through one
//!   bounded channel ([`link::Cluster::send`]) and never wait for it: when the channel is
//!   full the item is dropped and counted. What arrives from NATS it hands to the shards'
//!   inboxes, and never blocks on a full one either: it holds back what a full inbox
//!   cannot take, in order, up to a bound.
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
//! Messages keep the order one publisher sent them in (one NATS connection per node keeps
//! a publisher's order). With history off everything across nodes is at most once: lost
//! while NATS is unreachable or a queue on the way overflows (counted in `/stats`). With
//! history on, a room's positioned messages go through JetStream ([`history`]), and every
//! node delivers them once each, in offset order, repairing gaps from it.
//!
//! # Map of the module
//!
//! - [`link`]: what the shards and the `Hub` hold: the node's tag, the bounded queue to
//!   the bridge ([`link::Outbound`]), the view of the other nodes ([`view`]), counters.
//! - [`bridge`]: the thread that owns the NATS client, and its tasks: the [`outbox`],
//!   what the [`peers`] say, [`requests`] between nodes; [`subjects`] names the subjects,
//!   [`wire`] the events, heartbeats and snapshots it exchanges.
//! - [`inbound`]: frames from other nodes to this node's shards; [`notices`]: what a
//!   change in the view tells this node's clients; [`snapshot`]: this node's connections
//!   for a node that asks.
//! - [`command`]: commands for another node's connections, and [`carry_out`]: carrying
//!   them out here.
//! - [`history`] and [`journal`]: with history on, the rooms' streams in JetStream.

pub(crate) mod bridge;
mod bridge_state;
pub(crate) mod carry_out;
pub(crate) mod command;
mod history;
mod inbound;
mod journal;
pub(crate) mod link;
mod notices;
mod outbox;
mod peers;
mod requests;
mod snapshot;
pub(crate) mod subjects;
pub(crate) mod view;
pub(crate) mod wire;
