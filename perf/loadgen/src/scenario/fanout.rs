//! Scenario `fanout`: one publisher, N subscribers in one room.
//!
//! Phases:
//! 1. setup: every connection connects, upgrades, joins the room and waits for `joined`
//!    (at most `connect_concurrency` connections are between connect and `joined` at once);
//! 2. settle: wait until no non-chat frame (presence, join notices) arrived for a while;
//! 3. measure: the publisher sends stamped messages at a fixed rate or with a window of
//!    messages in flight, for a duration or a message count;
//! 4. drain: wait (bounded) until every subscriber got every message, then count losses.
//!
//! With `history` (neonex with `history.size` > 0), every subscriber also checks the room's
//! offsets: from the top its `joined` gave, every offset once, in order, up to the room's
//! final top (the highest offset any connection received).
//!
//! The hub may be several nodes of one cluster: the subscribers are spread over them and
//! the publisher connects to the first (see [`nodes`](crate::scenario::nodes)). Every check
//! covers every subscriber whatever its node, and the report adds each node's figures.

use std::net::Ipv4Addr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

use crate::clock::{self, now_ns};
use crate::conn::WsConn;
use crate::offsets::{OffsetReport, OffsetTracker};
use crate::protocol::{HubProtocol, Incoming, ProtocolKind, PublishVia};
use crate::report::{self, CpuSample, Heading, LoadgenUsage, Usage};
use crate::scenario::common::{self, first, keep_first, sleep_ms, SetupProgress, Sink, Step};
use crate::scenario::delivery::{ReadBatch, Received, ReceiverStats, WorkerEnv};
use crate::scenario::delivery_report::{self, Deliveries, Disturbances, Publishing, Setup};
use crate::scenario::node_report::{self, NodeReport, NodeTally, NodesCpu};
use crate::scenario::nodes::{self, Node, PUBLISHER_NODE};
use crate::seq::SeqTracker;
use crate::{stamp, workers};

/// Most messages one publisher wake-up sends in one write (rate mode).
const MAX_BATCH: usize = 4096;

/// How the publisher paces its messages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Open loop: this many messages per second.
    Rate(f64),
    /// Closed loop: at most this many messages not yet received by every subscriber.
    Window(u32),
}

/// Everything a fanout run needs, already validated.
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    /// The hub's nodes (one unless it is a cluster), each with its server to watch.
    pub nodes: Vec<Node>,
    /// Wire protocol.
    pub protocol: ProtocolKind,
    /// Subscriber connections.
    pub subscribers: usize,
    /// Room to fan out in.
    pub room: String,
    /// Pacing.
    pub pace: Pace,
    /// Publishing stops after this long.
    pub duration: Duration,
    /// Publishing stops after this many messages.
    pub messages: Option<u64>,
    /// Length of each message text.
    pub payload_bytes: usize,
    /// Worker threads.
    pub threads: usize,
    /// Timeout of connect + upgrade, per connection.
    pub connect_timeout: Duration,
    /// Connections between connect and `joined` at once, over all workers.
    pub connect_concurrency: usize,
    /// Setup (all connected and joined) must finish within this.
    pub setup_timeout: Duration,
    /// Settled when no non-chat frame arrived for this long.
    pub settle_quiet: Duration,
    /// Give up waiting for quiet after this long (and go on, flagged).
    pub settle_max: Duration,
    /// After publishing, wait this long at most for late deliveries.
    pub drain_timeout: Duration,
    /// Window mode: stop when the oldest message in flight made no progress this long.
    pub stall_timeout: Duration,
    /// Users are named `PREFIX-pub` and `PREFIX-sN`.
    pub user_prefix: String,
    /// Largest server message accepted.
    pub max_message: usize,
    /// Connections per source address; above this many connections in total, sources
    /// 127.0.0.2, 127.0.0.3, ... are used.
    pub conns_per_source: usize,
    /// Check the history offsets of every delivery (neonex with history on).
    pub history: bool,
    /// Offer permessage-deflate on every connection.
    pub deflate: bool,
    /// What each message text is after its stamp.
    pub payload: stamp::Payload,
}

impl FanoutConfig {
    fn total_connections(&self) -> usize {
        self.subscribers + 1
    }

    /// The node connection `idx` (0 is the publisher) goes to.
    fn node_of(&self, idx: usize) -> usize {
        nodes::node_of(idx, self.nodes.len())
    }

    /// The node the publisher connects to.
    pub fn publisher_node(&self) -> &Node {
        &self.nodes[PUBLISHER_NODE]
    }

    /// Source address of connection `idx` (0 is the publisher), if spreading.
    fn source(&self, idx: usize) -> Option<Ipv4Addr> {
        common::source_for(idx, self.total_connections(), self.conns_per_source)
    }

    /// Bound on the whole run, for the watchdog.
    pub fn run_budget(&self) -> Duration {
        self.setup_timeout
            + self.settle_max
            + self.duration
            + self.stall_timeout
            + self.drain_timeout
            + Duration::from_secs(30)
    }
}

/// State shared by the orchestrating thread and all connections.
struct Shared {
    setup: SetupProgress,
    received: Received,
    /// The publisher's own copies of its messages.
    echoes: AtomicU64,
    disconnects: AtomicU64,
    first_disconnect: Mutex<Option<String>>,
    published: AtomicU64,
    publish_done: AtomicBool,
    publish_end_ns: AtomicU64,
    publish_lag_max_ns: AtomicU64,
    publish_error: Mutex<Option<String>>,
    /// Window mode: subscribers that received message `seq`, at `seq & ring_mask`.
    slots: Box<[AtomicU32]>,
    ring_mask: usize,
    /// Window mode: a message reached every subscriber.
    progress: Notify,
    /// History: the highest offset the publisher received (its own messages).
    top_offset: AtomicU64,
    /// History: the epoch of the first `joined`.
    epoch: Mutex<Option<String>>,
    /// History: `joined` messages with another epoch.
    epoch_changes: AtomicU64,
    /// Per node: its subscribers' deliveries, counted as `received.deliveries` is.
    node_deliveries: Box<[AtomicU64]>,
    /// Per node: its subscribers' connections the server closed.
    node_disconnects: Box<[AtomicU64]>,
    /// Bytes the subscribers read from their sockets (frames as sent, compressed or not).
    wire_bytes: AtomicU64,
    /// Deliveries that arrived compressed.
    compressed: AtomicU64,
    /// Subscribers whose server accepted permessage-deflate.
    deflate_subscribers: AtomicU64,
    /// Of those, the ones whose server keeps its window across messages.
    context_takeover: AtomicU64,
}

impl Shared {
    fn new(ring: usize, nodes: usize) -> Self {
        let per_node = || (0..nodes).map(|_| AtomicU64::new(0)).collect();
        Self {
            setup: SetupProgress::default(),
            received: Received::default(),
            echoes: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            first_disconnect: Mutex::new(None),
            published: AtomicU64::new(0),
            publish_done: AtomicBool::new(false),
            publish_end_ns: AtomicU64::new(0),
            publish_lag_max_ns: AtomicU64::new(0),
            publish_error: Mutex::new(None),
            slots: (0..ring).map(|_| AtomicU32::new(0)).collect(),
            ring_mask: ring - 1,
            progress: Notify::new(),
            top_offset: AtomicU64::new(0),
            epoch: Mutex::new(None),
            epoch_changes: AtomicU64::new(0),
            node_deliveries: per_node(),
            node_disconnects: per_node(),
            wire_bytes: AtomicU64::new(0),
            compressed: AtomicU64::new(0),
            deflate_subscribers: AtomicU64::new(0),
            context_takeover: AtomicU64::new(0),
        }
    }

    /// Adds one read's counters, of a connection to node `node` (one atomic update per
    /// counter and read, not per frame).
    fn commit(&self, b: &Batch, node: usize) {
        b.counts.commit(&self.received);
        if b.counts.deliveries > 0 {
            self.node_deliveries[node].fetch_add(b.counts.deliveries, Ordering::Relaxed);
        }
        if b.echoes > 0 {
            self.echoes.fetch_add(b.echoes, Ordering::Relaxed);
        }
        if b.compressed > 0 {
            self.compressed.fetch_add(b.compressed, Ordering::Relaxed);
        }
        if b.wire_bytes > 0 {
            self.wire_bytes.fetch_add(b.wire_bytes, Ordering::Relaxed);
        }
    }
}

/// Counters of one read.
#[derive(Default)]
struct Batch {
    counts: ReadBatch,
    /// The publisher's own messages.
    echoes: u64,
    /// Deliveries that arrived compressed.
    compressed: u64,
    /// Bytes a subscriber read.
    wire_bytes: u64,
    /// The server confirmed the join.
    joined: bool,
}

/// What the connections need, shared by all of them.
struct Ctx<P> {
    cfg: FanoutConfig,
    proto: P,
    shared: Shared,
    connect_limit: Arc<Semaphore>,
    go: watch::Receiver<Option<u64>>,
    stop: watch::Receiver<bool>,
}

enum Role {
    Publisher,
    Subscriber(Subscriber),
}

/// What a subscriber tracks.
#[derive(Default)]
struct Subscriber {
    seq: SeqTracker,
    /// History: its offsets, from its `joined` on.
    offsets: Option<OffsetTracker>,
    /// History: chat messages without an offset.
    without_offset: u64,
}

/// History: checks the stream a `joined` for our room describes, and starts the
/// subscriber's offset tracker after its top. Fails the setup when the hub keeps no history.
fn on_joined_stream<P: HubProtocol>(ctx: &Ctx<P>, role: &mut Role, text: &[u8]) {
    let stream = ctx.proto.joined_stream(text);
    let Some((epoch, top)) = stream.and_then(|s| Some((s.epoch?, s.offset?))) else {
        return ctx.shared.setup.fail(format!(
            "--history: `joined` carries no epoch and offset (is history on in the hub, \
             history.size > 0?): {}",
            String::from_utf8_lossy(text)
        ));
    };
    {
        let mut first = ctx.shared.epoch.lock().unwrap_or_else(|e| e.into_inner());
        match &*first {
            None => *first = Some(epoch),
            Some(e) if *e != epoch => {
                ctx.shared.epoch_changes.fetch_add(1, Ordering::Relaxed);
            }
            Some(_) => {}
        }
    }
    if let Role::Subscriber(sub) = role {
        sub.offsets = Some(OffsetTracker::after(top));
    }
}

/// Handles one server text message; returns the text message to answer with, if the
/// protocol wants one (Engine.IO's pong).
fn on_message<P: HubProtocol>(
    ctx: &Ctx<P>,
    env: &WorkerEnv,
    role: &mut Role,
    b: &mut Batch,
    text: &[u8],
    now: u64,
    compressed: bool,
) -> Option<&'static [u8]> {
    match ctx.proto.classify(text) {
        Incoming::Chat { message } => {
            let Role::Subscriber(sub) = role else {
                b.echoes += 1;
                if ctx.cfg.history {
                    if let Some(offset) = ctx.proto.chat_offset(text) {
                        ctx.shared.top_offset.fetch_max(offset, Ordering::Relaxed);
                    }
                }
                return None;
            };
            if let Some(offsets) = &mut sub.offsets {
                match ctx.proto.chat_offset(text) {
                    Some(offset) => {
                        offsets.observe(offset);
                    }
                    None => sub.without_offset += 1,
                }
            }
            let tracker = &mut sub.seq;
            let Some((seq, sent)) = message.and_then(stamp::parse) else {
                b.counts.foreign += 1;
                return None;
            };
            b.compressed += u64::from(compressed);
            let first = b.counts.delivery(tracker, seq, sent, now, &env.stats);
            if first && matches!(ctx.cfg.pace, Pace::Window(_)) {
                let slot = &ctx.shared.slots[seq as usize & ctx.shared.ring_mask];
                if slot.fetch_add(1, Ordering::AcqRel) + 1 == ctx.cfg.subscribers as u32 {
                    ctx.shared.progress.notify_one();
                }
            }
        }
        Incoming::Joined { room } => {
            b.counts.noise(now);
            if room == ctx.cfg.room {
                b.joined = true;
                if ctx.cfg.history {
                    on_joined_stream(ctx, role, text);
                }
            }
        }
        Incoming::Error { text } => b.counts.server_error(now, text, &ctx.shared.received),
        Incoming::Reply(reply) => return Some(reply),
        Incoming::Left { .. } | Incoming::Ready | Incoming::Other => b.counts.noise(now),
    }
    None
}

/// A connection that sent its join and waits for `joined`.
struct Joining {
    conn: WsConn,
    /// Held until `joined`: bounds the connections in setup at once.
    permit: Option<OwnedSemaphorePermit>,
    /// When the connect started (after waiting for the permit).
    started: u64,
}

impl Joining {
    /// Call after each read; true the first time `joined` was seen.
    fn on_batch(&mut self, b: &Batch, env: &WorkerEnv, shared: &Shared) -> bool {
        if !b.joined || self.permit.take().is_none() {
            return false;
        }
        let took = now_ns().saturating_sub(self.started);
        env.stats.borrow_mut().joined.saturating_record(took.max(1));
        shared.setup.joined();
        true
    }

    fn is_joined(&self) -> bool {
        self.permit.is_none()
    }
}

/// Connects connection `idx` and sends the join.
async fn establish<P: HubProtocol>(
    ctx: &Ctx<P>,
    env: &WorkerEnv,
    idx: usize,
) -> Result<Joining, String> {
    let permit = ctx
        .connect_limit
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| "connect limiter closed".to_string())?;
    let user = if idx == 0 {
        format!("{}-pub", ctx.cfg.user_prefix)
    } else {
        format!("{}-s{idx}", ctx.cfg.user_prefix)
    };
    let target = &ctx.cfg.nodes[ctx.cfg.node_of(idx)].target;
    let request_target = ctx.proto.request_target(target, &user, &ctx.cfg.room);
    let source = ctx.cfg.source(idx);
    let name = match source {
        Some(src) => format!("connection {idx} (from {src})"),
        None => format!("connection {idx}"),
    };
    let timeout = ctx.cfg.connect_timeout;
    let started = now_ns();
    let deadline = tokio::time::Instant::now() + timeout;
    let tcp = WsConn::connect(target, source);
    let stream = tokio::time::timeout_at(deadline, tcp)
        .await
        .map_err(|_| format!("{name}: TCP connect (and TLS handshake) took more than {timeout:?}"))?
        .map_err(|e| format!("{name}: {e}"))?;
    let upgrade = WsConn::upgrade(
        stream,
        target,
        &request_target,
        ctx.cfg.max_message,
        idx as u64 ^ started,
        ctx.cfg.deflate,
    );
    let mut conn = tokio::time::timeout_at(deadline, upgrade)
        .await
        .map_err(|_| {
            format!(
                "{name}: no upgrade response within {timeout:?} of connecting (the server \
                 did not accept or answer in time; a busy server accepts late: try a lower \
                 --connect-concurrency or a longer --connect-timeout)"
            )
        })?
        .map_err(|e| format!("{name}: {e}"))?;
    env.stats
        .borrow_mut()
        .upgraded
        .saturating_record(now_ns().saturating_sub(started).max(1));
    if let (Some(d), true) = (conn.deflate(), idx > 0) {
        ctx.shared
            .deflate_subscribers
            .fetch_add(1, Ordering::Relaxed);
        if !d.server_no_context_takeover {
            ctx.shared.context_takeover.fetch_add(1, Ordering::Relaxed);
        }
    }
    let join_deadline = tokio::time::Instant::now() + ctx.cfg.setup_timeout;
    common::handshake(&ctx.proto, &mut conn, &env.scratch, join_deadline)
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    let mut joining = Joining {
        conn,
        permit: Some(permit),
        started,
    };
    if ctx.proto.joins_on_upgrade() {
        let joined = Batch {
            joined: true,
            ..Batch::default()
        };
        joining.on_batch(&joined, env, &ctx.shared);
        return Ok(joining);
    }
    let mut join = Vec::new();
    ctx.proto.encode_join(&ctx.cfg.room, &mut join);
    joining.conn.queue_text(&join);
    joining
        .conn
        .flush()
        .await
        .map_err(|e| format!("{name}: send join: {e}"))?;
    Ok(joining)
}

async fn subscriber<P: HubProtocol>(ctx: Arc<Ctx<P>>, env: Rc<WorkerEnv>, idx: usize) {
    let node = ctx.cfg.node_of(idx);
    let mut stop = ctx.stop.clone();
    let established = tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => return,
        r = establish(&ctx, &env, idx) => r,
    };
    let mut joining = match established {
        Ok(x) => x,
        Err(e) => return ctx.shared.setup.fail(e),
    };
    let mut role = Role::Subscriber(Subscriber::default());
    let mut closed = None;
    // One stop future for the whole loop: re-creating it per read would re-register a
    // waiter (a mutex and a list insert) on every read.
    let stopped = stop.wait_for(|s| *s);
    tokio::pin!(stopped);
    loop {
        let mut b = Batch::default();
        let read_before = joining.conn.bytes_read();
        let step = tokio::select! {
            biased;
            _ = &mut stopped => Step::Stop,
            r = joining.conn.read_batch_flagged(&env.scratch, |text, now, compressed| {
                on_message(&ctx, &env, &mut role, &mut b, text, now, compressed)
            }) => Step::Read(r),
        };
        b.wire_bytes = joining.conn.bytes_read() - read_before;
        ctx.shared.commit(&b, node);
        joining.on_batch(&b, &env, &ctx.shared);
        match step {
            Step::Read(Err(c)) => {
                closed = Some(c);
                break;
            }
            Step::Read(Ok(())) => {}
            _ => break,
        }
    }
    match closed {
        Some(c) if !joining.is_joined() => {
            ctx.shared
                .setup
                .fail(format!("connection {idx} closed before joining: {c}"));
        }
        Some(c) => {
            ctx.shared.disconnects.fetch_add(1, Ordering::SeqCst);
            ctx.shared.node_disconnects[node].fetch_add(1, Ordering::SeqCst);
            keep_first(&ctx.shared.first_disconnect, || {
                format!(
                    "subscriber {idx}, {:.3} s after loadgen start: {c}",
                    now_ns() as f64 / 1e9
                )
            });
            let _ = stopped.await;
        }
        None => joining.conn.close().await,
    }
    if let Role::Subscriber(sub) = role {
        let published = ctx.shared.published.load(Ordering::SeqCst);
        let mut stats = env.stats.borrow_mut();
        let tracker = &sub.seq;
        stats.finalize_receiver(tracker.lost(published), tracker.duplicates, tracker.late);
        if ctx.cfg.history {
            let offsets = sub.offsets.unwrap_or_else(|| OffsetTracker::after(0));
            let who = format!("subscriber {idx}");
            stats.offsets.add(&who, &offsets, sub.without_offset);
        }
    }
}

async fn publisher<P: HubProtocol>(ctx: Arc<Ctx<P>>, env: Rc<WorkerEnv>) {
    let mut stop = ctx.stop.clone();
    let mut go = ctx.go.clone();
    let established = tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => return,
        r = establish(&ctx, &env, 0) => r,
    };
    let mut joining = match established {
        Ok(x) => x,
        Err(e) => return ctx.shared.setup.fail(e),
    };
    let mut role = Role::Publisher;
    let target = &ctx.cfg.publisher_node().target;
    let mut sink = match ctx.proto.publish_via(target, &ctx.cfg.room) {
        PublishVia::WebSocket => Sink::Ws,
        PublishVia::HttpPost(path) => {
            match common::http_sink(target, &path, ctx.cfg.source(0), &ctx.stop, {
                let ctx = ctx.clone();
                move |code, body| ctx.shared.received.http_answer(code, body)
            })
            .await
            {
                Ok(sink) => sink,
                Err(e) => return ctx.shared.setup.fail(format!("publisher: {e}")),
            }
        }
    };
    let stopped = stop.wait_for(|s| *s);
    tokio::pin!(stopped);
    let started = go.wait_for(|v| v.is_some());
    tokio::pin!(started);
    // Join, then keep reading until the go signal.
    let t0 = loop {
        let mut b = Batch::default();
        let step = tokio::select! {
            biased;
            _ = &mut stopped => Step::Stop,
            v = &mut started => Step::Go(v.map(|v| v.unwrap_or(0)).unwrap_or(0)),
            r = joining.conn.read_batch(&env.scratch, |text, now| {
                on_message(&ctx, &env, &mut role, &mut b, text, now, false)
            }) => Step::Read(r),
        };
        ctx.shared.commit(&b, PUBLISHER_NODE);
        joining.on_batch(&b, &env, &ctx.shared);
        match step {
            Step::Go(t0) => break t0,
            Step::Read(Err(c)) => {
                return ctx.shared.setup.fail(format!(
                    "publisher connection closed before publishing: {c}"
                ))
            }
            Step::Read(Ok(())) | Step::Wake => {}
            Step::Stop => return,
        }
    };
    let mut conn = joining.conn;
    let result = match ctx.cfg.pace {
        Pace::Rate(rate) => publish_rate(&ctx, &env, &mut conn, &mut sink, t0, rate).await,
        Pace::Window(w) => publish_window(&ctx, &env, &mut conn, &mut sink, t0, w).await,
    };
    if let Some(why) = sink.failure() {
        keep_first(&ctx.shared.publish_error, || why);
    }
    ctx.shared.publish_end_ns.store(now_ns(), Ordering::SeqCst);
    if let Err(e) = result {
        keep_first(&ctx.shared.publish_error, || e);
    }
    ctx.shared.publish_done.store(true, Ordering::SeqCst);
    // Keep taking our own echoes until the end, so the server never sees a slow consumer.
    loop {
        let mut b = Batch::default();
        let step = tokio::select! {
            biased;
            _ = &mut stopped => Step::Stop,
            r = conn.read_batch(&env.scratch, |text, now| {
                on_message(&ctx, &env, &mut role, &mut b, text, now, false)
            }) => Step::Read(r),
        };
        ctx.shared.commit(&b, PUBLISHER_NODE);
        match step {
            Step::Read(Ok(())) => {}
            Step::Stop => return conn.close().await,
            _ => return,
        }
    }
}

/// Stamps message `seq` with the current time and queues it.
fn queue_message<P: HubProtocol>(
    ctx: &Ctx<P>,
    conn: &mut WsConn,
    sink: &mut Sink,
    seq: u64,
    text: &mut String,
    payload: &mut Vec<u8>,
) {
    stamp::write_payload(text, seq, now_ns(), ctx.cfg.payload_bytes, ctx.cfg.payload);
    sink.queue(&ctx.proto, conn, &ctx.cfg.room, text, payload);
}

async fn publish_rate<P: HubProtocol>(
    ctx: &Ctx<P>,
    env: &WorkerEnv,
    conn: &mut WsConn,
    sink: &mut Sink,
    t0: u64,
    rate: f64,
) -> Result<(), String> {
    let end = t0 + ctx.cfg.duration.as_nanos() as u64;
    let max = ctx.cfg.messages.unwrap_or(u64::MAX);
    let interval = 1e9 / rate;
    let due = |seq: u64| t0 + (seq as f64 * interval) as u64;
    let (mut text, mut payload) = (String::new(), Vec::new());
    let mut role = Role::Publisher;
    let mut sent = 0u64;
    let mut lag_max = 0u64;
    loop {
        let now = now_ns();
        if now >= end || sent >= max {
            break;
        }
        let mut batch = 0;
        while sent < max && batch < MAX_BATCH && due(sent) <= now {
            lag_max = lag_max.max(now - due(sent));
            queue_message(ctx, conn, sink, sent, &mut text, &mut payload);
            sent += 1;
            batch += 1;
        }
        if batch > 0 {
            ctx.shared.published.store(sent, Ordering::SeqCst);
            ctx.shared
                .publish_lag_max_ns
                .fetch_max(lag_max, Ordering::Relaxed);
            sink.flush(conn)
                .await
                .map_err(|e| format!("publisher write: {e}"))?;
        }
        let wake = clock::instant_at(due(sent).min(end));
        let mut b = Batch::default();
        let step = tokio::select! {
            biased;
            _ = tokio::time::sleep_until(wake.into()) => Step::Wake,
            r = conn.read_batch(&env.scratch, |text, now| {
                on_message(ctx, env, &mut role, &mut b, text, now, false)
            }) => Step::Read(r),
        };
        ctx.shared.commit(&b, PUBLISHER_NODE);
        if let Step::Read(Err(c)) = step {
            return Err(format!("publisher connection: {c}"));
        }
    }
    Ok(())
}

async fn publish_window<P: HubProtocol>(
    ctx: &Ctx<P>,
    env: &WorkerEnv,
    conn: &mut WsConn,
    sink: &mut Sink,
    t0: u64,
    window: u32,
) -> Result<(), String> {
    let shared = &ctx.shared;
    let subscribers = ctx.cfg.subscribers as u32;
    let end = t0 + ctx.cfg.duration.as_nanos() as u64;
    let stall_ns = ctx.cfg.stall_timeout.as_nanos() as u64;
    let max = ctx.cfg.messages.unwrap_or(u64::MAX);
    let window = u64::from(window);
    let (mut text, mut payload) = (String::new(), Vec::new());
    let mut role = Role::Publisher;
    let (mut sent, mut oldest, mut last_progress) = (0u64, 0u64, t0);
    loop {
        let now = now_ns();
        while oldest < sent
            && shared.slots[oldest as usize & shared.ring_mask].load(Ordering::Acquire)
                >= subscribers
        {
            oldest += 1;
            last_progress = now;
        }
        if now >= end || sent >= max {
            break;
        }
        if sent - oldest < window {
            while sent - oldest < window && sent < max {
                // Safe to reuse: the ring is at least as large as the window, so the slot's
                // previous message is older than `oldest`, hence complete.
                shared.slots[sent as usize & shared.ring_mask].store(0, Ordering::Release);
                queue_message(ctx, conn, sink, sent, &mut text, &mut payload);
                sent += 1;
            }
            shared.published.store(sent, Ordering::SeqCst);
            sink.flush(conn)
                .await
                .map_err(|e| format!("publisher write: {e}"))?;
            continue;
        }
        if now - last_progress >= stall_ns {
            let got = shared.slots[oldest as usize & shared.ring_mask].load(Ordering::Acquire);
            return Err(format!(
                "window stalled: message {oldest} reached only {got} of {subscribers} \
                 subscribers in {:.1} s",
                (now - last_progress) as f64 / 1e9
            ));
        }
        let wake = clock::instant_at(end.min(last_progress + stall_ns));
        let mut b = Batch::default();
        let step = tokio::select! {
            biased;
            _ = shared.progress.notified() => Step::Wake,
            r = conn.read_batch(&env.scratch, |text, now| {
                on_message(ctx, env, &mut role, &mut b, text, now, false)
            }) => Step::Read(r),
            _ = tokio::time::sleep_until(wake.into()) => Step::Wake,
        };
        ctx.shared.commit(&b, PUBLISHER_NODE);
        if let Step::Read(Err(c)) = step {
            return Err(format!("publisher connection: {c}"));
        }
    }
    Ok(())
}

/// Runs worker `w`'s connections; returns what they counted, per node.
async fn worker<P: HubProtocol>(ctx: Arc<Ctx<P>>, w: usize) -> Vec<ReceiverStats> {
    // One environment per node, shared by this worker's connections to it, so that each
    // node's latencies and losses are counted apart without a lookup per delivery.
    let envs: Vec<Rc<WorkerEnv>> = ctx
        .cfg
        .nodes
        .iter()
        .map(|_| Rc::new(WorkerEnv::new()))
        .collect();
    let mut tasks = Vec::new();
    for idx in (w..ctx.cfg.total_connections()).step_by(ctx.cfg.threads) {
        let (ctx, env) = (ctx.clone(), envs[ctx.cfg.node_of(idx)].clone());
        tasks.push(if idx == 0 {
            tokio::task::spawn_local(publisher(ctx, env))
        } else {
            tokio::task::spawn_local(subscriber(ctx, env, idx))
        });
    }
    for task in tasks {
        if let Err(e) = task.await {
            ctx.shared
                .setup
                .fail(format!("connection task failed: {e}"));
        }
    }
    envs.iter().map(|env| env.take_stats()).collect()
}

/// The result of a fanout run.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    #[serde(flatten)]
    pub heading: Heading,
    /// Subscriber connections.
    pub subscribers: usize,
    /// Worker threads of the load generator.
    pub threads: usize,
    /// `rate` or `window`.
    pub pace: &'static str,
    /// Messages per second asked for (rate mode).
    pub rate: Option<f64>,
    /// Messages in flight (window mode).
    pub window: Option<u32>,
    /// Message text length.
    pub payload_bytes: usize,
    #[serde(flatten)]
    pub setup: Setup,
    #[serde(flatten)]
    pub deliveries: Deliveries,
    /// Subscribers that missed at least one message.
    pub subscribers_with_loss: u64,
    #[serde(flatten)]
    pub disturbances: Disturbances,
    /// The publisher's own copies of its messages.
    pub publisher_echoes: u64,
    #[serde(flatten)]
    pub publishing: Publishing,
    /// `server` is every node's server together (its `pid` is the first node's).
    #[serde(flatten)]
    pub usage: Usage,
    /// Each node's figures, in the order of the URLs (one entry for a single hub).
    pub nodes: Vec<NodeReport>,
    /// With `--history`: the offset check (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<OffsetReport>,
    /// What the subscribers read, and what arrived compressed.
    pub wire: Wire,
    /// Zero lost, zero duplicated, no disconnects, no publish error; with `--history`, no
    /// offset missing, repeated or out of order.
    pub ok: bool,
}

/// Runs the scenario and reports.
pub fn run(cfg: FanoutConfig) -> Result<FanoutReport, String> {
    crate::with_protocol!(cfg.protocol, run_with(cfg))
}

fn run_with<P: HubProtocol>(cfg: FanoutConfig, proto: P) -> Result<FanoutReport, String> {
    let ring = match cfg.pace {
        Pace::Window(w) => (w as usize).next_power_of_two().max(1024),
        Pace::Rate(_) => 1,
    };
    let (go_tx, go_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = Arc::new(Ctx {
        connect_limit: Arc::new(Semaphore::new(cfg.connect_concurrency.max(1))),
        shared: Shared::new(ring, cfg.nodes.len()),
        proto,
        go: go_rx,
        stop: stop_rx,
        cfg,
    });
    let cfg = &ctx.cfg;
    let shared = &ctx.shared;
    let total = cfg.total_connections();

    // 1. setup
    let setup_start = now_ns();
    let worker_ctx = ctx.clone();
    let handles = workers::spawn(cfg.threads, move |w| worker(worker_ctx.clone(), w))?;
    let abort = |why: String| -> Result<FanoutReport, String> {
        let _ = stop_tx.send(true);
        Err(why)
    };
    let setup = &shared.setup;
    if let Err(why) =
        common::wait_for_setup(setup, total, "connection", setup_start, cfg.setup_timeout)
    {
        return abort(why);
    }
    let ready_at = now_ns();
    let setup_seconds = (ready_at - setup_start) as f64 / 1e9;
    eprintln!(
        "loadgen: {total} connections joined {:?} in {setup_seconds:.2} s; settling",
        cfg.room
    );

    // 2. settle
    let received = &shared.received;
    let lost = || {
        let lost = setup.failed.load(Ordering::SeqCst)
            + shared.disconnects.load(Ordering::SeqCst) as usize;
        (lost > 0).then(|| {
            first(&shared.first_disconnect)
                .or_else(|| first(&setup.first_failure))
                .unwrap_or_default()
        })
    };
    let settled = match common::settle(
        &received.last_noise_ns,
        ready_at,
        cfg.settle_quiet,
        cfg.settle_max,
        "non-chat frames",
        lost,
    ) {
        Ok(settled) => settled,
        Err(why) => return abort(why),
    };
    let settle_seconds = (now_ns() - ready_at) as f64 / 1e9;
    let setup_noise = received.noise.load(Ordering::SeqCst);

    // 3. measure
    let cpu_start = CpuSample::take(None)?;
    let servers_start = NodesCpu::take(&cfg.nodes);
    let wire_start = shared.wire_bytes.load(Ordering::SeqCst);
    let t0 = now_ns();
    eprintln!("loadgen: settled after {settle_seconds:.2} s; publishing");
    let _ = go_tx.send(Some(t0));
    let publish_limit =
        t0 + (cfg.duration + cfg.stall_timeout + Duration::from_secs(10)).as_nanos() as u64;
    while !shared.publish_done.load(Ordering::SeqCst) {
        sleep_ms(1);
        if now_ns() > publish_limit {
            return abort("the publisher did not stop in time (stuck writing?)".into());
        }
    }
    let publish_end = shared.publish_end_ns.load(Ordering::SeqCst);
    let published = shared.published.load(Ordering::SeqCst);
    let expected = published * cfg.subscribers as u64;

    // 4. drain
    let drain_limit = publish_end + cfg.drain_timeout.as_nanos() as u64;
    let drained = common::drain(&received.unique, expected, drain_limit);
    let cpu_end = CpuSample::take(None)?;
    let servers_end = NodesCpu::take(&cfg.nodes);
    let wire_bytes = shared.wire_bytes.load(Ordering::SeqCst) - wire_start;
    let measured = received.measured_seconds(t0, publish_end);
    let noise_during = received.noise.load(Ordering::SeqCst) - setup_noise;
    let _ = stop_tx.send(true);

    let mut per_node: Vec<ReceiverStats> = cfg.nodes.iter().map(|_| ReceiverStats::new()).collect();
    for h in handles {
        let by_node = h.join().map_err(|_| "worker thread panicked".to_string())?;
        for (node, s) in per_node.iter_mut().zip(&by_node) {
            node.merge(s);
        }
    }
    let mut stats = ReceiverStats::new();
    for s in &per_node {
        stats.merge(s);
    }
    let history = cfg.history.then(|| {
        let top = stats
            .offsets
            .lasts
            .iter()
            .map(|&(last, _)| last)
            .chain([shared.top_offset.load(Ordering::SeqCst)])
            .max()
            .unwrap_or(0);
        stats.offsets.finish(top);
        OffsetReport::new(
            &stats.offsets,
            top,
            first(&shared.epoch),
            shared.epoch_changes.load(Ordering::SeqCst),
        )
    });
    if stats.finalized != cfg.subscribers {
        return Err(format!(
            "only {} of {} subscribers reported",
            stats.finalized, cfg.subscribers
        ));
    }

    let delivered = received.deliveries.load(Ordering::SeqCst);
    let servers_used = servers_start.used_until(&servers_end);
    let node_reports: Vec<NodeReport> = cfg
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let tally = NodeTally {
                subscribers: nodes::subscribers_on(i, cfg.subscribers, cfg.nodes.len()),
                deliveries: shared.node_deliveries[i].load(Ordering::SeqCst),
                disconnects: shared.node_disconnects[i].load(Ordering::SeqCst),
                stats: &per_node[i],
            };
            NodeReport::new(i, node, tally, servers_used[i], measured)
        })
        .collect();
    let usage = Usage {
        server: node_report::all_servers(&node_reports, measured, delivered),
        loadgen: LoadgenUsage::between(cpu_start.me, cpu_end.me, measured, delivered),
    };
    let (rate, window) = match cfg.pace {
        Pace::Rate(r) => (Some(r), None),
        Pace::Window(w) => (None, Some(w)),
    };
    let deliveries = Deliveries::new(published, expected, delivered, measured, &stats);
    let disturbances = Disturbances::new(
        drained,
        received,
        noise_during,
        shared.disconnects.load(Ordering::SeqCst),
        first(&shared.first_disconnect),
    );
    let publishing = Publishing {
        publish_lag_max_us: rate
            .map(|_| shared.publish_lag_max_ns.load(Ordering::SeqCst) as f64 / 1e3),
        publish_error: first(&shared.publish_error),
    };
    Ok(FanoutReport {
        heading: Heading::new("fanout", cfg.protocol, &cfg.publisher_node().url),
        subscribers: cfg.subscribers,
        threads: cfg.threads,
        pace: if rate.is_some() { "rate" } else { "window" },
        rate,
        window,
        payload_bytes: cfg.payload_bytes,
        setup: Setup::new(setup_seconds, settle_seconds, settled, setup_noise, &stats),
        subscribers_with_loss: stats.receivers_with_loss,
        publisher_echoes: shared.echoes.load(Ordering::SeqCst),
        ok: delivery_report::passed(&deliveries, &disturbances, &publishing)
            && history.as_ref().is_none_or(OffsetReport::ok),
        history,
        wire: Wire {
            payload: cfg.payload.name(),
            deflate_offered: cfg.deflate,
            deflate_subscribers: shared.deflate_subscribers.load(Ordering::SeqCst),
            context_takeover_subscribers: shared.context_takeover.load(Ordering::SeqCst),
            wire_bytes,
            wire_bytes_per_delivery: wire_bytes as f64 / delivered.max(1) as f64,
            compressed_deliveries: shared.compressed.load(Ordering::SeqCst),
        },
        deliveries,
        disturbances,
        publishing,
        usage,
        nodes: node_reports,
    })
}

/// Bytes on the wire and compression, over the measured window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Wire {
    /// `pad` (the stamp padded with `x`) or `document` (a JSON document after the stamp).
    pub payload: &'static str,
    /// permessage-deflate was offered.
    pub deflate_offered: bool,
    /// Subscribers whose server accepted it.
    pub deflate_subscribers: u64,
    /// Of those, the ones whose server keeps its window across messages (no
    /// `server_no_context_takeover`): each has an inflater of its own.
    pub context_takeover_subscribers: u64,
    /// Bytes the subscribers read from their sockets while measuring (WebSocket frames,
    /// headers included; not TCP/IP headers).
    pub wire_bytes: u64,
    /// `wire_bytes` / deliveries.
    pub wire_bytes_per_delivery: f64,
    /// Deliveries that arrived compressed (RSV1), of all deliveries.
    pub compressed_deliveries: u64,
}

/// Prints the human table.
pub fn print(r: &FanoutReport) {
    use report::thousands;
    let pace = match (r.rate, r.window) {
        (Some(rate), _) => format!("rate {rate} msg/s"),
        (_, Some(w)) => format!("window {w}"),
        _ => String::new(),
    };
    r.heading.print_title();
    println!(
        "  {} subscribers + 1 publisher, {} thread(s), {pace}, payload {} B",
        thousands(r.subscribers as u64),
        r.threads,
        r.payload_bytes
    );
    r.setup.print();
    let (u, j) = (&r.setup.setup_upgrade_ms, &r.setup.setup_joined_ms);
    println!(
        "  per connection: upgraded p50/p99/max {} / {} / {} ms, joined {} / {} / {} ms",
        u.p50, u.p99, u.max, j.p50, j.p99, j.max
    );
    println!("{}", "-".repeat(64));
    let row = |k: &str, v: String| println!("{k:<30} {v}");
    delivery_report::print_rows(
        &row,
        &r.deliveries,
        &r.disturbances,
        &r.publishing,
        &r.usage,
    );
    let w = &r.wire;
    row(
        "wire bytes per delivery",
        format!(
            "{:.1} B ({} B read by subscribers, payload {})",
            w.wire_bytes_per_delivery,
            thousands(w.wire_bytes),
            w.payload
        ),
    );
    if w.deflate_offered {
        row(
            "permessage-deflate",
            format!(
                "{} of {} subscribers ({} with context takeover); {} deliveries compressed",
                thousands(w.deflate_subscribers),
                thousands(r.subscribers as u64),
                thousands(w.context_takeover_subscribers),
                thousands(w.compressed_deliveries)
            ),
        );
    }
    node_report::print_rows(&row, &r.nodes);
    if let Some(h) = &r.history {
        h.print_rows(&row, "subscribers");
    }
    report::print_result(&row, r.ok);
}
