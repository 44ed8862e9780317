//! The bridge: the thread that owns the node's NATS client, with a current-thread tokio
//! runtime of its own, since async-nats runs its connection task and timers on tokio.
//!
//! It starts before the shards: it connects (waiting up to [`CONNECT_WAIT`]), and claims
//! a tag no live node holds by asking for the snapshot of a random tag, which must find
//! no responder. Then, once the hub is built, it runs these tasks side by side:
//!
//! - the outbox: frames and events from the shards, published in the order they came;
//!   events are numbered here, and before an event that gives this node its first member
//!   of a room goes out, the node subscribes to the room's subject (so a node that has
//!   heard of the member is sure its messages reach it);
//! - the events of the other nodes, applied to the view (resynchronising from a snapshot
//!   on a gap or a new node), with the notices they mean for this node's clients;
//! - frames from the global subject, the node's subject and each room's subject;
//! - answers to snapshot requests;
//! - the heartbeat, which also finds nodes silent for `cluster.node_timeout`.
//!
//! When NATS is unreachable the node goes on serving its own clients: what would leave
//! the node is dropped and counted, events keep their numbers so that the others find
//! the gap and resynchronise when the link is back, and no other node is taken for dead
//! while this one hears nobody.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions, Event, HeaderMap, ServerAddr, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle as TaskHandle;

use super::carry_out::carry_out;
use super::command::{Answer, Command};
use super::history::Histories;
use super::inbound::{self, Source};
use super::link::{Cluster, LocalEvent, Outbound, Route};
use super::subjects::Subjects;
use super::view::{Change, View};
use super::wire::{
    Body, Envelope, Snapshot, SnapshotRequest, CONNECTION_HEADER, EXCEPT_HEADER, KIND_HEADER,
    POSITIONED, USER_HEADER,
};
use super::{notices, snapshot};
use crate::config::ClusterConfig;
use crate::shard::message::FrameKind;
use crate::shard::message::HomeRequest;
use crate::shard::shared::HubShared;
use crate::stats::LinkState;

/// How long the hub's start waits for NATS before it serves alone (and joins the
/// cluster as soon as NATS answers).
const CONNECT_WAIT: Duration = Duration::from_secs(3);
/// How long a snapshot request, or a tag's claim, waits for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a closing node waits for its goodbye to reach NATS.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// A bridge that has connected (or tried to) and chosen the node's tag, waiting for the
/// hub it serves.
pub(crate) struct Starting {
    pub tag: u16,
    pub name: String,
    pub link: Arc<AtomicU8>,
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
                let (client, connected) = connect(servers, &thread_name, thread_link).await;
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
        handoff,
        thread,
    })
}

/// A client that connects, and reconnects, by itself; and whether it connected within
/// [`CONNECT_WAIT`].
async fn connect(servers: Vec<ServerAddr>, name: &str, link: Arc<AtomicU8>) -> (Client, bool) {
    let (state, mut changes) = watch::channel(LinkState::Connecting);
    let options = ConnectOptions::new()
        .name(format!("neonex {name}"))
        .no_echo()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((attempts as u64 * 100).min(1000))
        })
        .event_callback(move |event| {
            let (link, state) = (link.clone(), state.clone());
            async move {
                let now = match event {
                    Event::Connected => LinkState::Connected,
                    Event::Disconnected => LinkState::Disconnected,
                    Event::SlowConsumer(sid) => {
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
            REQUEST_TIMEOUT,
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

/// The bridge's state shared by its tasks (all on the bridge's one thread).
struct Bridge {
    hub: Arc<HubShared>,
    client: Client,
    /// The number of this node's last event.
    seq: Cell<u64>,
    /// The room subjects this node is subscribed to, with the task reading each.
    rooms: RefCell<HashMap<Arc<str>, TaskHandle<()>>>,
    /// Nodes that said goodbye, by tag, with their incarnation: their late events are
    /// not a new node.
    departed: RefCell<HashMap<u16, u64>>,
    /// The rooms' logs, with history on.
    history: Option<Rc<Histories>>,
}

impl Bridge {
    fn cluster(&self) -> &Cluster {
        self.hub.cluster.as_ref().expect("a cluster's node")
    }

    fn envelope(&self, ev: Body) -> Bytes {
        let cluster = self.cluster();
        let envelope = Envelope {
            node: cluster.tag,
            inc: cluster.incarnation,
            name: cluster.name.clone(),
            seq: self.seq.get(),
            ev,
        };
        serde_json::to_vec(&envelope)
            .expect("an envelope serializes")
            .into()
    }

    fn connected(&self) -> bool {
        self.cluster().link() == LinkState::Connected
    }

    /// How many connections `user` has on this node.
    fn local_count(&self) -> impl Fn(&str) -> usize + '_ {
        |user| self.hub.registry.user_connection_count(user)
    }

    /// Applies `step` to the view and tells this node's clients what changed.
    fn change_view(&self, step: impl FnOnce(&mut View, &dyn Fn(&str) -> usize) -> Vec<Change>) {
        let local = self.local_count();
        let mut view = self.cluster().view();
        let changes = step(&mut view, &local);
        notices::tell(&self.hub, &view, changes);
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
    tokio::task::spawn_local(frames(bridge.clone(), all, Source::All));
    tokio::task::spawn_local(frames(bridge.clone(), deliver, Source::Node));
    tokio::task::spawn_local(answer_snapshots(bridge.clone(), snapshots));
    tokio::task::spawn_local(answer_commands(bridge.clone(), commands));
    tokio::task::spawn_local(hear_events(bridge.clone(), events));
    tokio::task::spawn_local(heartbeat(bridge.clone()));
    send_outbox(bridge, outbox).await;
}

/// Publishes what the shards hand over, in order, until the hub says goodbye.
async fn send_outbox(bridge: Rc<Bridge>, mut outbox: mpsc::Receiver<Outbound>) {
    let cluster = bridge.cluster();
    let counters = &cluster.counters;
    while let Some(item) = outbox.recv().await {
        match item {
            Outbound::Frame { route, frame, kind } => {
                if !bridge.connected() {
                    counters.dropped_out.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let (subject, headers) = address(&cluster.subjects, &route, kind);
                match bridge
                    .client
                    .publish_with_headers(subject, headers, frame)
                    .await
                {
                    Ok(()) => counters.messages_out.fetch_add(1, Ordering::Relaxed),
                    Err(_) => counters.dropped_out.fetch_add(1, Ordering::Relaxed),
                };
            }
            Outbound::Event(event) => {
                follow_interest(&bridge, &event).await;
                // A lost event leaves a gap in the numbers, so the others resynchronise.
                let skip = u64::from(cluster.take_events_lost());
                bridge.seq.set(bridge.seq.get() + 1 + skip);
                if !bridge.connected() {
                    counters.dropped_out.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let payload = bridge.envelope(body_of(event));
                let subject = cluster.subjects.events();
                match bridge.client.publish(subject, payload).await {
                    Ok(()) => counters.events_out.fetch_add(1, Ordering::Relaxed),
                    Err(_) => counters.dropped_out.fetch_add(1, Ordering::Relaxed),
                };
            }
            Outbound::Ask {
                node,
                command,
                reply,
            } => {
                tokio::task::spawn_local(ask(bridge.clone(), node, command, reply));
            }
            Outbound::Gather { command, reply } => {
                let nodes: Vec<u16> = cluster.view().tags();
                let asks: Vec<_> = nodes
                    .into_iter()
                    .map(|node| {
                        let (bridge, command) = (bridge.clone(), command.clone());
                        async move { request(&bridge, node, &command).await }
                    })
                    .collect();
                tokio::task::spawn_local(async move {
                    let answers = futures_util::future::join_all(asks).await;
                    reply(answers.into_iter().flatten().collect());
                });
            }
            Outbound::Home(request) => match &bridge.history {
                Some(history) => drop(tokio::task::spawn_local(history.clone().serve(request))),
                None => refuse(request),
            },
            Outbound::Purge(room) => {
                if let Some(h) = &bridge.history {
                    tokio::task::spawn_local(h.clone().purge(room));
                }
            }
            Outbound::Goodbye(done) => {
                if bridge.connected() {
                    let payload = bridge.envelope(Body::Goodbye);
                    let said = async {
                        let _ = bridge
                            .client
                            .publish(cluster.subjects.events(), payload)
                            .await;
                        let _ = bridge.client.flush().await;
                    };
                    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, said).await;
                }
                let _ = done.send(());
                return;
            }
        }
    }
}

/// Answers a history request of a bridge that keeps no history (a hub sends none).
fn refuse(request: HomeRequest) {
    use crate::shard::error::EngineError::Overloaded;
    match request {
        HomeRequest::Sequence { reply, .. } => drop(reply.map(|r| r.send(Err(Overloaded)))),
        HomeRequest::ReadHistory { reply, .. } => drop(reply.send(Err(Overloaded))),
        HomeRequest::PlaceJoin { .. } => {}
    }
}

/// The subject and headers of a frame for `route`.
fn address(subjects: &Subjects, route: &Route, kind: FrameKind) -> (String, HeaderMap) {
    let mut headers = HeaderMap::new();
    if kind == FrameKind::Positioned {
        headers.insert(KIND_HEADER, POSITIONED);
    }
    let mut except = |id: &Option<crate::ids::ConnectionId>| {
        if let Some(id) = id {
            headers.insert(EXCEPT_HEADER, id.to_bits().to_string());
        }
    };
    let subject = match route {
        Route::All { except: id } => {
            except(id);
            subjects.all()
        }
        Route::Room { room, except: id } => {
            except(id);
            subjects.room(room)
        }
        Route::User { node, user } => {
            let user =
                percent_encoding::utf8_percent_encode(user, percent_encoding::NON_ALPHANUMERIC);
            headers.insert(USER_HEADER, user.to_string());
            subjects.deliver(*node)
        }
        Route::Connection(id) => {
            headers.insert(CONNECTION_HEADER, id.to_bits().to_string());
            subjects.deliver(id.node())
        }
    };
    (subject, headers)
}

fn body_of(event: LocalEvent) -> Body {
    match event {
        LocalEvent::Opened { conn, user, rooms } => Body::Opened {
            conn: conn.to_bits(),
            user,
            rooms,
        },
        LocalEvent::Closed { conn, .. } => Body::Closed {
            conn: conn.to_bits(),
        },
        LocalEvent::Joined { conn, user, room } => Body::Joined {
            conn: conn.to_bits(),
            user,
            room,
        },
        LocalEvent::Left { conn, room } => Body::Left {
            conn: conn.to_bits(),
            room,
        },
    }
}

/// Subscribes to the subject of each room the event touches while this node has members
/// in it, and unsubscribes when it has none. It reads the directory, not the event:
/// events of several shards may come in another order than their joins and leaves.
async fn follow_interest(bridge: &Rc<Bridge>, event: &LocalEvent) {
    let rooms: &[Arc<str>] = match event {
        LocalEvent::Opened { rooms, .. } | LocalEvent::Closed { rooms, .. } => rooms,
        LocalEvent::Joined { room, .. } | LocalEvent::Left { room, .. } => {
            std::slice::from_ref(room)
        }
    };
    for room in rooms {
        let here = bridge
            .hub
            .registry
            .room(room)
            .is_some_and(|r| r.count() > 0);
        let subscribed = bridge.rooms.borrow().contains_key(room);
        if here && !subscribed {
            let subject = bridge.cluster().subjects.room(room);
            match bridge.client.subscribe(subject).await {
                Ok(subscription) => {
                    let task = tokio::task::spawn_local(room_frames(
                        bridge.clone(),
                        room.clone(),
                        subscription,
                    ));
                    bridge.rooms.borrow_mut().insert(room.clone(), task);
                }
                Err(e) => tracing::warn!(%room, error = %e, "cannot subscribe to a room's subject"),
            }
        } else if !here && subscribed {
            if let Some(task) = bridge.rooms.borrow_mut().remove(room) {
                // Dropping the subscription with its task unsubscribes.
                task.abort();
            }
            if let Some(history) = &bridge.history {
                history.forget(room);
            }
        }
    }
}

async fn frames(bridge: Rc<Bridge>, mut subscription: Subscriber, source: Source) {
    while let Some(message) = subscription.next().await {
        inbound::frame(&bridge.hub, source, message);
    }
}

async fn room_frames(bridge: Rc<Bridge>, room: Arc<str>, mut subscription: Subscriber) {
    while let Some(message) = subscription.next().await {
        inbound::room_frame(&bridge.hub, &room, message);
    }
}

/// Asks node `node` to carry out `command`, and hands `reply` its answer, or
/// [`Answer::Failed`] if none comes in time.
async fn ask(
    bridge: Rc<Bridge>,
    node: u16,
    command: Command,
    reply: Box<dyn FnOnce(Answer) + Send>,
) {
    let answer = request(&bridge, node, &command).await;
    reply(answer.unwrap_or(Answer::Failed));
}

/// Node `node`'s answer to `command`, if it comes within [`REQUEST_TIMEOUT`].
async fn request(bridge: &Bridge, node: u16, command: &Command) -> Option<Answer> {
    if !bridge.connected() {
        return None;
    }
    let payload: Bytes = serde_json::to_vec(command)
        .expect("a command serializes")
        .into();
    let subject = bridge.cluster().subjects.command(node);
    let answer = tokio::time::timeout(REQUEST_TIMEOUT, bridge.client.request(subject, payload))
        .await
        .ok()?
        .ok()?;
    serde_json::from_slice(&answer.payload).ok()
}

/// Carries out the commands other nodes send for this node's connections.
async fn answer_commands(bridge: Rc<Bridge>, mut commands: Subscriber) {
    while let Some(message) = commands.next().await {
        let Some(reply) = message.reply else {
            continue;
        };
        let bridge = bridge.clone();
        tokio::task::spawn_local(async move {
            let answer = match serde_json::from_slice::<Command>(&message.payload) {
                Ok(command) => carry_out(&bridge.hub, command).await,
                Err(e) => {
                    tracing::warn!(error = %e, "an unreadable cluster command");
                    Answer::Failed
                }
            };
            let payload: Bytes = serde_json::to_vec(&answer)
                .expect("an answer serializes")
                .into();
            let _ = bridge.client.publish(reply, payload).await;
        });
    }
}

async fn answer_snapshots(bridge: Rc<Bridge>, mut requests: Subscriber) {
    while let Some(request) = requests.next().await {
        let Some(reply) = request.reply else {
            continue;
        };
        let asked: SnapshotRequest = serde_json::from_slice(&request.payload).unwrap_or_default();
        let snapshot = snapshot::take(&bridge.hub, bridge.seq.get(), asked.after);
        let payload: Bytes = serde_json::to_vec(&snapshot)
            .expect("a snapshot serializes")
            .into();
        let _ = bridge.client.publish(reply, payload).await;
    }
}

/// What to do with an event once its number is checked.
enum Next {
    Apply,
    Resync,
    Ignore,
}

async fn hear_events(bridge: Rc<Bridge>, mut events: Subscriber) {
    while let Some(message) = events.next().await {
        let envelope: Envelope = match serde_json::from_slice(&message.payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::warn!(error = %e, "an unreadable cluster event");
                continue;
            }
        };
        let cluster = bridge.cluster();
        if envelope.node == cluster.tag {
            if envelope.inc != cluster.incarnation {
                tracing::error!(tag = envelope.node, other = %envelope.name, "another node holds this node's tag");
            }
            continue;
        }
        cluster.counters.events_in.fetch_add(1, Ordering::Relaxed);
        match check(&bridge, &envelope) {
            Next::Apply => bridge.change_view(|view, local| apply(view, envelope, local)),
            Next::Resync => resync(&bridge, envelope.node, envelope.inc).await,
            Next::Ignore => {}
        }
    }
}

/// Checks an event's sender and number against the view, meeting new nodes and saying
/// farewell to departed ones on the way.
fn check(bridge: &Bridge, envelope: &Envelope) -> Next {
    let (tag, inc) = (envelope.node, envelope.inc);
    if matches!(envelope.ev, Body::Goodbye) {
        tracing::info!(node = %envelope.name, "a node left the cluster");
        bridge.departed.borrow_mut().insert(tag, inc);
        bridge.change_view(|view, local| view.remove_node(tag, local));
        return Next::Ignore;
    }
    if bridge.departed.borrow().get(&tag) == Some(&inc) {
        return Next::Ignore;
    }
    let now = Instant::now();
    let mut next = Next::Ignore;
    bridge.change_view(|view, local| {
        let mut changes = Vec::new();
        if view.node(tag).is_some_and(|n| n.inc != inc) {
            tracing::info!(node = %envelope.name, "a node restarted");
            changes = view.remove_node(tag, local);
        }
        if view.node(tag).is_none() {
            tracing::info!(node = %envelope.name, tag, "a node joined the cluster");
            view.meet(tag, &envelope.name, inc, now);
            next = Next::Resync;
            return changes;
        }
        let node = view.node_mut(tag).expect("met above");
        node.heard = now;
        next = match envelope.ev {
            Body::Heartbeat if envelope.seq > node.seq => Next::Resync,
            Body::Heartbeat => Next::Ignore,
            _ if envelope.seq <= node.seq => Next::Ignore,
            _ if envelope.seq == node.seq + 1 => {
                node.seq = envelope.seq;
                Next::Apply
            }
            _ => Next::Resync,
        };
        changes
    });
    next
}

fn apply(view: &mut View, envelope: Envelope, local: &dyn Fn(&str) -> usize) -> Vec<Change> {
    let tag = envelope.node;
    let id = crate::ids::ConnectionId::from_bits;
    match envelope.ev {
        Body::Opened { conn, user, rooms } => view.open(tag, id(conn), &user, &rooms, local),
        Body::Closed { conn } => view.close(tag, id(conn), local),
        Body::Joined { conn, user, room } => view.join(tag, id(conn), &user, &room, local),
        Body::Left { conn, room } => view.leave(tag, id(conn), &room),
        Body::Heartbeat | Body::Goodbye => Vec::new(),
    }
}

/// Asks node `tag` for a snapshot and starts again from it.
async fn resync(bridge: &Rc<Bridge>, tag: u16, inc: u64) {
    let cluster = bridge.cluster();
    let Some(snapshot) = read_snapshot(bridge, tag).await else {
        // The node's next heartbeat asks again.
        return tracing::debug!(tag, "no whole snapshot from a node");
    };
    if snapshot.inc != inc {
        return;
    }
    cluster.counters.resyncs.fetch_add(1, Ordering::Relaxed);
    bridge.change_view(|view, local| {
        if view.node(tag).is_some_and(|n| n.inc == inc) {
            view.replace(tag, &snapshot, local)
        } else {
            Vec::new()
        }
    });
}

/// Node `tag`'s whole snapshot, page after page, at the first page's number.
async fn read_snapshot(bridge: &Bridge, tag: u16) -> Option<Snapshot> {
    let subject = bridge.cluster().subjects.snapshot(tag);
    let mut whole: Option<Snapshot> = None;
    let mut after = None;
    loop {
        let request: Bytes = serde_json::to_vec(&SnapshotRequest { after })
            .expect("a request serializes")
            .into();
        let asked = bridge.client.request(subject.clone(), request);
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, asked)
            .await
            .ok()?
            .ok()?;
        let page: Snapshot = match serde_json::from_slice(&answer.payload) {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(tag, error = %e, "an unreadable snapshot");
                return None;
            }
        };
        after = page.conns.last().map(|c| c.conn).or(after);
        let more = page.more;
        match &mut whole {
            None => whole = Some(page),
            Some(whole) if whole.inc == page.inc => whole.conns.extend(page.conns),
            // The node restarted between two pages.
            Some(_) => return None,
        }
        if !more {
            return whole;
        }
    }
}

/// Says this node is alive, and takes nodes silent too long for dead: every
/// `cluster.node_timeout` / 3.
async fn heartbeat(bridge: Rc<Bridge>) {
    let cluster = bridge.cluster();
    let period = cluster.node_timeout / 3;
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_connected = false;
    loop {
        ticks.tick().await;
        let connected = bridge.connected();
        if !connected {
            was_connected = false;
            continue;
        }
        let payload = bridge.envelope(Body::Heartbeat);
        let _ = bridge
            .client
            .publish(cluster.subjects.events(), payload)
            .await;
        let now = Instant::now();
        if !was_connected {
            // Back from an outage: the others get a whole timeout to be heard again.
            was_connected = true;
            bridge.change_view(|view, _| {
                view.hear_all(now);
                Vec::new()
            });
            continue;
        }
        let silent = cluster.view().silent(now, cluster.node_timeout);
        for tag in silent {
            let name = cluster.view().node(tag).map(|n| n.name.clone());
            tracing::warn!(node = ?name, timeout = ?cluster.node_timeout, "a node was silent too long: taken for dead, its connections removed");
            cluster.counters.nodes_lost.fetch_add(1, Ordering::Relaxed);
            bridge.change_view(|view, local| view.remove_node(tag, local));
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
