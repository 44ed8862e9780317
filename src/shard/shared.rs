//! `HubShared`: what every shard and every `Hub` handle share. Configuration and the
//! policies built from it, the directory of rooms and users, the connection caps, the
//! shards' mailboxes, the counters and the hub's clock. Everything here is either
//! immutable after start or safe to touch from any thread; nothing here is touched per
//! delivery but the counters.

use std::sync::atomic::{AtomicBool, AtomicUsize};

use bytes::Bytes;
use crossbeam_channel::Receiver;
use serde::Serialize;

use super::error::EngineError;
use super::mailbox::{Mailbox, PostError};
use super::message::ShardMessage;
use super::thread::on_shard_thread;
use crate::admission::Admission;
use crate::auth::Authenticator;
use crate::checked_config::HandshakeGuards;
use crate::cluster::link::Cluster;
use crate::config::HubConfig;
use crate::forwarded::TrustedProxies;
use crate::hooks::answer::AnswerPost;
use crate::hooks::events::EventQueue;
use crate::hooks::proxy::Proxy;
use crate::hooks::ruling::Ruling;
use crate::ids::ConnectionId;
use crate::origin::OriginPolicy;
use crate::registry::Registry;
use crate::room_pattern::RoomPatterns;
use crate::stats::{self, Counters, HubStats};
use crate::tls::ServerTls;
use crate::ws::encode;

/// State shared by the `Hub` handles and the shards.
pub(crate) struct HubShared {
    pub config: HubConfig,
    pub registry: Registry,
    /// Verifies tokens when authentication is configured.
    pub authenticator: Option<Authenticator>,
    pub origins: OriginPolicy,
    /// Decides who a request comes from.
    pub proxies: TrustedProxies,
    pub admission: Admission,
    pub mailboxes: Box<[Mailbox]>,
    pub counters: Counters,
    /// Set once [`Hub::close`](crate::Hub::close) has been called.
    pub closed: AtomicBool,
    /// Which shard takes the next socket handed over with `Hub::register`.
    pub next_adopter: AtomicUsize,
    /// Zero of the hub-wide microsecond clock ([`HubShared::now_us`]).
    pub epoch: std::time::Instant,
    /// This node's part in a cluster (`cluster.nats_url`).
    pub cluster: Option<Cluster>,
    /// The embedding application's events (`HubConfig::application`).
    pub events: Option<EventQueue>,
    /// The backend's hooks (`proxy.*`), called from the proxy thread.
    pub proxy: Option<Proxy>,
    /// Open connections that negotiated permessage-deflate: while there are none, no
    /// broadcast is compressed.
    pub deflate_connections: AtomicUsize,
    /// What TLS connections start from (`tls.*`); `None`: connections are plain TCP.
    pub tls: Option<ServerTls>,
}

impl HubShared {
    /// The shared state of a hub with `config` and the guards built from it, and the
    /// inbox of each shard (the receiving ends of its `mailboxes`). Rooms in
    /// `rooms.create` exist from the start.
    pub fn new(
        config: HubConfig,
        guards: HandshakeGuards,
        tls: Option<ServerTls>,
        cluster: Option<Cluster>,
        proxy: Option<Proxy>,
    ) -> (HubShared, Vec<Receiver<ShardMessage>>) {
        let shards = config.shards;
        let (mailboxes, inboxes): (Vec<_>, Vec<_>) = (0..shards).map(|_| Mailbox::new()).unzip();
        let conflate = RoomPatterns::new(&config.rooms.conflate).expect("checked with the config");
        let registry = Registry::new(shards, conflate);
        for room in &config.rooms.create {
            registry.create_room(room);
        }
        let config_application = config.application.clone();
        let HandshakeGuards {
            authenticator,
            origins,
            proxies,
        } = guards;
        let shared = HubShared {
            admission: Admission::new(&config.limits),
            config,
            registry,
            authenticator,
            origins,
            proxies,
            mailboxes: mailboxes.into_boxed_slice(),
            counters: Counters::new(shards),
            closed: AtomicBool::new(false),
            next_adopter: AtomicUsize::new(0),
            epoch: std::time::Instant::now(),
            cluster,
            events: config_application.map(EventQueue::new),
            proxy,
            deflate_connections: AtomicUsize::new(0),
            tls,
        };
        (shared, inboxes)
    }

    /// Encodes a message to be fanned out. Counted: one per broadcast, however many
    /// shards and recipients it reaches.
    pub fn encode<T: Serialize + ?Sized>(&self, message: &T) -> Bytes {
        stats::add(&self.counters.frames_encoded, 1);
        encode::json_frame(message)
    }

    /// This node's tag in the cluster, the first part of its connection ids; 0 for a
    /// hub that is no cluster's node.
    pub fn node_tag(&self) -> u16 {
        self.cluster.as_ref().map_or(0, |c| c.tag)
    }

    /// Members of `room` in the whole cluster: `here` on this node, and the others'.
    pub fn room_count(&self, room: &str, here: usize) -> usize {
        here + self
            .cluster
            .as_ref()
            .map_or(0, |c| c.remote_room_count(room))
    }

    /// Runs `step`, a change to `user`'s connections on this node and what follows from
    /// it, given `user`'s connections on the other nodes, so that no change to the view
    /// of the other nodes comes between them. A user's presence is decided on the sum,
    /// and announced, here and on the bridge in one order.
    pub fn with_remote_connections<R>(&self, user: &str, step: impl FnOnce(usize) -> R) -> R {
        match &self.cluster {
            None => step(0),
            Some(cluster) => {
                let view = cluster.view();
                step(view.user_count(user))
            }
        }
    }

    /// Tells the other nodes what happened to a connection of this node.
    pub fn announce(&self, event: impl FnOnce() -> crate::cluster::link::LocalEvent) {
        if let Some(cluster) = &self.cluster {
            cluster.announce(event());
        }
    }

    /// A snapshot of every counter.
    pub fn stats(&self) -> HubStats {
        let mut stats = HubStats::collect(
            &self.counters,
            self.admission.open() as u64,
            self.registry.user_count() as u64,
            self.registry.room_count() as u64,
        );
        stats.application = self.events.as_ref().map(EventQueue::stats);
        stats.proxy = self.proxy.as_ref().map(Proxy::stats);
        stats.cluster = self.cluster.as_ref().map(|c| {
            let users = self.registry.users().into_iter().map(|(user, _)| user);
            let rooms = self.registry.rooms().into_iter().map(|r| r.name.clone());
            c.stats(self.admission.open(), users, rooms)
        });
        stats
    }

    /// True while the node runs without the rest of its cluster (NATS unreachable).
    pub fn is_degraded(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.link() != crate::stats::LinkState::Connected)
    }

    /// Encodes `text` (JSON from a backend) to be fanned out. Counted like [`Self::encode`].
    pub fn encode_text(&self, text: &str) -> Bytes {
        stats::add(&self.counters.frames_encoded, 1);
        encode::text_frame(text)
    }

    /// Microseconds since the hub started, wrapping after 71 minutes: the timestamps
    /// that follow a broadcast to measure fan-out latency, comparable across shards.
    pub fn now_us(&self) -> u32 {
        self.epoch.elapsed().as_micros() as u32
    }

    /// Posts to a shard's inbox. Threads that are not shards wait for room if needed;
    /// shards never block on each other.
    pub(crate) fn post(&self, shard: usize, msg: ShardMessage) -> Result<(), EngineError> {
        let mailbox = &self.mailboxes[shard];
        let posted = if on_shard_thread() {
            mailbox.try_post(msg)
        } else {
            mailbox.post_waiting(msg, self.config.write_timeout)
        };
        posted.map_err(|e| match e {
            PostError::Full(_) => EngineError::Overloaded,
            PostError::Closed => EngineError::Closed,
        })
    }
}

impl AnswerPost for HubShared {
    fn post_answer(&self, conn: ConnectionId, question: u64, ruling: Ruling) {
        let answer = ShardMessage::Answer {
            conn,
            question,
            ruling,
        };
        let _ = self.mailboxes[conn.shard()].try_post(answer);
    }
}
