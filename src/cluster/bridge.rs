//! The bridge: the thread that owns the node's NATS client, with a current-thread tokio
//! runtime of its own, since async-nats runs its connection task and timers on tokio.
//!
//! It starts before the shards: it connects (waiting up to [`CONNECT_WAIT`]), and claims
//! a tag no live node holds by asking for the snapshot of a random tag, which must find
//! no responder. Then, once the hub is built, it runs these tasks side by side:
//!
//! - the outbox ([`super::outbox`]): frames and events from the shards, published in the
//!   order they came;
//! - what the other nodes say ([`super::peers`]): their events, applied to the view, the
//!   heartbeat, and answers to their snapshot requests;
//! - commands for other nodes' connections and answers to theirs ([`super::requests`]);
//! - frames from the global subject, the node's subject and each room's subject.
//!
//! When NATS is unreachable the node goes on serving its own clients: what would leave
//! the node is dropped and counted, events keep their numbers so that the others find
//! the gap and resynchronise when the link is back, and no other node is taken for dead
//! while this one hears nobody.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event, ServerAddr};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use super::bridge_state::Bridge;
use super::history::Histories;
use super::inbound::{self, Source};
use super::link::{Cluster, Outbound};
use super::outbox::send_outbox;
use super::peers::{answer_snapshots, hear_events, heartbeat};
use super::requests::answer_commands;
use super::subjects::Subjects;
use crate::config::ClusterConfig;
use crate::shard::publish::hand_over_held_back;
use crate::shard::shared::HubShared;
use crate::stats::LinkState;

/// How long the hub's start waits for NATS before it serves alone (and joins the
/// cluster as soon as NATS answers).
const CONNECT_WAIT: Duration = Duration::from_secs(3);

/// A bridge that has connected (or tried to) and chosen the node's tag, waiting for the
/// hub it serves.
pub(crate) struct Starting {
    pub tag: u16,
    pub name: String,
    pub link: Arc<AtomicU8>,
    /// Counts the NATS client's slow-consumer events (it dropped messages of a
    /// subscription that fell behind).
    pub slow_consumers: Arc<AtomicU64>,
    handoff: oneshot::Sender<(Arc<HubShared>, mpsc::Receiver<Outbound>)>,
    thread: JoinHandle<()>,
}

impl Starting {
    /// Serves `hub`, whose cluster part was made from this bridge's tag and link, with
    /// the outbox's receiving end. Returns the bridge's thread.
    pub fn run(self, hub: Arc<HubShared>, outbox: mpsc::Receiver<Outbound>) -> JoinHandle<()> {
        let _ = self.handoff.send((hub, outbox));
        self.thread
    }
}

/// Starts the bridge thread for `config` and waits until it has a tag.
pub(crate) fn start(config: &ClusterConfig) -> std::io::Result<Starting> {
    let urls = config.nats_url.clone().expect("a cluster's configuration");
    let servers: Vec<ServerAddr> = urls
        .split(',')
        .map(|u| u.trim().parse().expect("checked with the config"))
        .collect();
    let name = config.node_id.clone().unwrap_or_else(default_node_id);
    let subjects = Subjects::new(&config.subject_prefix);
    let link = Arc::new(AtomicU8::new(LinkState::Connecting.as_u8()));
    let slow_consumers = Arc::new(AtomicU64::new(0));
    let thread_slow = slow_consumers.clone();
    let (ready, tag) = std::sync::mpsc::channel();
    let (handoff, handed) = oneshot::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread_link = link.clone();
    let thread_name = name.clone();
    let thread = std::thread::Builder::new()
        .name("neonex-bridge".into())
        .spawn(move || {
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async move {
                let (client, connected) =
                    connect(servers, &thread_name, thread_link, thread_slow).await;
                let tag = claim_tag(&client, &subjects, connected).await;
                let _ = ready.send(tag);
                if let Ok((hub, outbox)) = handed.await {
                    run(hub, client, outbox).await;
                }
            });
        })?;
    let tag = tag
        .recv()
        .map_err(|_| std::io::Error::other("the cluster bridge did not start"))?;
    Ok(Starting {
        tag,
        name,
        link,
        slow_consumers,
        handoff,
        thread,
    })
}

/// A client that connects, and reconnects, by itself; and whether it connected within
/// [`CONNECT_WAIT`].
async fn connect(
    servers: Vec<ServerAddr>,
    name: &str,
    link: Arc<AtomicU8>,
    slow_consumers: Arc<AtomicU64>,
) -> (Client, bool) {
    let (state, mut changes) = watch::channel(LinkState::Connecting);
    // async-nats reads no credentials from the address itself.
    let credentials = servers.iter().find(|s| s.has_user_pass()).map(|s| {
        let user = s.username().unwrap_or_default().to_owned();
        (user, s.password().unwrap_or_default().to_owned())
    });
    let options = match credentials {
        Some((user, password)) => ConnectOptions::with_user_and_password(user, password),
        None => ConnectOptions::new(),
    };
    let options = options
        .name(format!("neonex {name}"))
        .no_echo()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((attempts as u64 * 100).min(1000))
        })
        .event_callback(move |event| {
            let (link, state, slow) = (link.clone(), state.clone(), slow_consumers.clone());
            async move {
                let now = match event {
                    Event::Connected => LinkState::Connected,
                    Event::Disconnected => LinkState::Disconnected,
                    Event::SlowConsumer(sid) => {
                        slow.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(
                            subscription = sid,
                            "NATS: this node falls behind its subscription; messages were dropped"
                        );
                        return;
                    }
                    other => {
                        tracing::info!(event = %other, "NATS");
                        return;
                    }
                };
                Cluster::set_link(&link, now);
                match now {
                    LinkState::Connected => {
                        tracing::info!("NATS connected: the node is in the cluster")
                    }
                    _ => tracing::warn!(
                        "NATS unreachable: the node serves its own clients alone until it is back"
                    ),
                }
                let _ = state.send(now);
            }
        });
    let client = options
        .connect(servers)
        .await
        .expect("with retry on initial connect, connecting does not fail");
    let connected = tokio::time::timeout(
        CONNECT_WAIT,
        changes.wait_for(|s| *s == LinkState::Connected),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if !connected {
        tracing::warn!("NATS does not answer yet: serving alone, joining the cluster when it does");
    }
    (client, connected)
}

/// A tag no live node holds: one whose snapshot subject has no responder. Without NATS
/// the tag is chosen at random.
async fn claim_tag(client: &Client, subjects: &Subjects, connected: bool) -> u16 {
    loop {
        let tag = fastrand::u16(1..);
        if !connected {
            return tag;
        }
        let asked = tokio::time::timeout(
            super::bridge_state::REQUEST_TIMEOUT,
            client.request(subjects.snapshot(tag), Bytes::new()),
        )
        .await;
        match asked {
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => return tag,
            Ok(Ok(_)) => tracing::debug!(tag, "tag held by another node"),
            _ => {
                tracing::warn!(tag, "NATS did not answer a tag's claim; taking it");
                return tag;
            }
        }
    }
}

async fn run(hub: Arc<HubShared>, client: Client, outbox: mpsc::Receiver<Outbound>) {
    let history = hub.config.history.is_on().then(|| {
        let subjects = hub
            .cluster
            .as_ref()
            .expect("a cluster's node")
            .subjects
            .clone();
        Rc::new(Histories::new(hub.clone(), client.clone(), subjects))
    });
    let bridge = Rc::new(Bridge {
        hub,
        client,
        seq: Cell::new(0),
        rooms: RefCell::new(HashMap::new()),
        departed: RefCell::new(HashMap::new()),
        resyncing: RefCell::new(HashMap::new()),
        tasks: Rc::new(Cell::new(0)),
        history,
    });
    let cluster = bridge.cluster();
    let subjects = cluster.subjects.clone();
    let tag = cluster.tag;
    let subscribed = async {
        let c = &bridge.client;
        Ok::<_, async_nats::SubscribeError>((
            c.subscribe(subjects.events()).await?,
            c.subscribe(subjects.all()).await?,
            c.subscribe(subjects.deliver(tag)).await?,
            c.subscribe(subjects.snapshot(tag)).await?,
            c.subscribe(subjects.command(tag)).await?,
        ))
    };
    let (events, all, deliver, snapshots, commands) = match subscribed.await {
        Ok(subscriptions) => subscriptions,
        Err(e) => {
            tracing::error!(error = %e, "cannot subscribe to the cluster's subjects: the node serves alone");
            return;
        }
    };
    tokio::task::spawn_local(inbound::frames(bridge.hub.clone(), all, Source::All));
    tokio::task::spawn_local(inbound::frames(bridge.hub.clone(), deliver, Source::Node));
    tokio::task::spawn_local(answer_snapshots(bridge.clone(), snapshots));
    tokio::task::spawn_local(answer_commands(bridge.clone(), commands));
    tokio::task::spawn_local(hear_events(bridge.clone(), events));
    tokio::task::spawn_local(heartbeat(bridge.clone()));
    tokio::task::spawn_local(hand_over(bridge.hub.clone()));
    send_outbox(bridge, outbox).await;
}

/// Hands what the bridge held back to the shards as they make room: woken when a
/// message is held, then every millisecond until none is.
async fn hand_over(hub: Arc<HubShared>) {
    let cluster = hub.cluster.as_ref().expect("a cluster's node");
    loop {
        cluster.hold_notify().notified().await;
        while hand_over_held_back(&hub) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
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
    fn the_default_node_id_is_a_valid_one() {
        assert!(crate::config::is_valid_node_id(&default_node_id()));
    }
}
