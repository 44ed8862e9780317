//! Scenario `recovery-storm` (neonex with history on): N clients in one room drop at once
//! and come back at once, each recovering what it missed.
//!
//! Phases:
//! 1. setup: a publisher and N clients connect and join the room (at most
//!    `connect_concurrency` between connect and `joined` at once); each client's `joined`
//!    gives the room's epoch and top offset, and the client checks every offset after it;
//! 2. settle: wait until no non-chat frame arrived for a while;
//! 3. warm-up: the publisher publishes stamped messages at `rate` per second, for the whole
//!    rest of the run; the clients receive them live;
//! 4. drop: every client closes its socket at once, without a close frame (FIN, or RST with
//!    `--drop rst`), remembering the last offset it saw;
//! 5. away: nobody comes back for `away`, while the publisher goes on;
//! 6. storm: every client reconnects (at most `reconnect_concurrency` between connect and
//!    `joined` at once) and joins with `recover: {offset: LAST, epoch: E}`. The server answers
//!    `joined` with `recovered: true` and the room's top, then replays LAST+1 … top, then live
//!    messages follow. A client has *recovered* when it received every offset up to that top,
//!    and is *caught up* at the first live message after them. The storm ends when every
//!    client is caught up (or `recover_timeout` passed);
//! 7. tail and drain: the publisher goes on for `tail`, stops; the run waits (bounded) until
//!    every client has the room's final top, then checks that every client got every offset
//!    from its first `joined` to the final top exactly once, in order, across the drop.
//!
//! Each replayed or live message is also checked to carry the text that was published at its
//! offset: `offset - SEQ` is the same for every message of the run (SEQ from the stamp).

use std::net::Ipv4Addr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{watch, Semaphore};

use crate::clock::{self, now_ns};
use crate::conn::{self, Closed, Scratch, WsConn};
use crate::offsets::{OffsetReport, OffsetTotals, OffsetTracker};
use crate::protocol::{HubProtocol, Incoming, ProtocolKind};
use crate::report::{self, thousands, CpuSample, Heading, MsSummary, ServerTrouble, Usage};
use crate::scenario::common::{self, first, keep_first};
use crate::target::Target;
use crate::{stamp, workers};

const MAX_NS: u64 = 600_000_000_000;
/// Most messages one publisher wake-up sends in one write.
const MAX_BATCH: usize = 4096;

/// How the clients drop their connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DropMode {
    /// close(2) without a close frame: the kernel sends FIN (RST when data is unread).
    Fin,
    /// SO_LINGER 0, then close(2): the kernel sends RST.
    Rst,
}

impl DropMode {
    fn name(self) -> &'static str {
        match self {
            DropMode::Fin => "fin",
            DropMode::Rst => "rst",
        }
    }
}

/// Everything a recovery-storm run needs, already validated.
#[derive(Debug, Clone)]
pub struct RecoveryConfig {
    /// The URL as given.
    pub url: String,
    /// Resolved loopback target.
    pub target: Target,
    /// Wire protocol (neonex).
    pub protocol: ProtocolKind,
    /// Clients that drop and recover.
    pub clients: usize,
    /// The room.
    pub room: String,
    /// Messages per second, published from the warm-up to the end.
    pub rate: f64,
    /// Publishing before the drop.
    pub warmup: Duration,
    /// Time between the drop and the reconnect.
    pub away: Duration,
    /// How the clients drop.
    pub drop: DropMode,
    /// Reconnecting clients between connect and `joined` at once.
    pub reconnect_concurrency: usize,
    /// The storm fails when not every client caught up this long after the reconnect start.
    pub recover_timeout: Duration,
    /// Publishing after every client caught up.
    pub tail: Duration,
    /// Length of each message text.
    pub payload_bytes: usize,
    /// Worker threads.
    pub threads: usize,
    /// Timeout of connect + upgrade, per connection.
    pub connect_timeout: Duration,
    /// Connections between connect and `joined` at once during the first setup.
    pub connect_concurrency: usize,
    /// Setup (all connected and joined) must finish within this.
    pub setup_timeout: Duration,
    /// Settled when no non-chat frame arrived for this long.
    pub settle_quiet: Duration,
    /// Give up waiting for quiet after this long.
    pub settle_max: Duration,
    /// After publishing, wait this long at most for every client to reach the final top.
    pub drain_timeout: Duration,
    /// Server process to watch.
    pub server_pid: Option<u32>,
    /// Users are named `PREFIX-pub` and `PREFIX-rN`.
    pub user_prefix: String,
    /// Largest server message accepted.
    pub max_message: usize,
    /// Connections per source address (over the whole run: each client connects twice).
    pub conns_per_source: usize,
}

impl RecoveryConfig {
    /// Connections opened over the run: the publisher and each client twice.
    fn connections_over_run(&self) -> usize {
        2 * self.clients + 1
    }

    /// Source address of connection `idx` (0 the publisher, 1..=N the clients' first
    /// connections, N+1..=2N their reconnections), if spreading.
    fn source(&self, idx: usize) -> Option<Ipv4Addr> {
        common::source_for(idx, self.connections_over_run(), self.conns_per_source)
    }

    /// Bound on the whole run, for the watchdog.
    pub fn run_budget(&self) -> Duration {
        self.setup_timeout
            + self.settle_max
            + self.warmup
            + self.away
            + self.recover_timeout
            + self.tail
            + self.drain_timeout * 2
            + Duration::from_secs(60)
    }
}

/// State shared by the orchestrating thread and all connections.
struct Shared {
    setup: common::SetupProgress,
    noise: AtomicU64,
    last_noise_ns: AtomicU64,
    /// Chat deliveries to clients.
    deliveries: AtomicU64,
    server_errors: AtomicU64,
    first_server_error: Mutex<Option<String>>,
    /// Client connections the server closed (not our drop).
    disconnects: AtomicU64,
    first_disconnect: Mutex<Option<String>>,
    published: AtomicU64,
    publish_done: AtomicBool,
    publish_lag_max_ns: AtomicU64,
    publish_error: Mutex<Option<String>>,
    /// The highest offset among the publisher's own messages, and how many it got back.
    publisher_top: AtomicU64,
    publisher_echoes: AtomicU64,
    /// The epoch of the first `joined`, and how many `joined` named another one.
    epoch: Mutex<Option<String>>,
    epoch_changes: AtomicU64,
    /// Clients that dropped their first connection.
    dropped: AtomicUsize,
    reconnect_failures: AtomicU64,
    first_reconnect_failure: Mutex<Option<String>>,
    /// Clients whose reconnection got `joined`, and its `recovered` answer.
    rejoined: AtomicUsize,
    recovered_true: AtomicU64,
    recovered_false: AtomicU64,
    first_refusal: Mutex<Option<String>>,
    /// `joined` with `recovered: true` whose top was below what the client had seen.
    top_regressions: AtomicU64,
    /// Clients that received every missed offset (after `recovered: true`).
    replay_complete: AtomicUsize,
    /// Clients that received a live message after the replay (or after a refusal).
    caught_up: AtomicUsize,
    /// Of those, clients recovered with no gap or duplicate so far.
    caught_up_clean: AtomicUsize,
    last_caught_up_ns: AtomicU64,
    /// Messages whose text was not the one published at their offset.
    content_mismatches: AtomicU64,
    first_content_mismatch: Mutex<Option<String>>,
    /// When the latest client started its reconnect (its TCP connect).
    last_reconnect_start_ns: AtomicU64,
    /// Clients that ended without catching up (reconnect failed, or closed by the server).
    given_up: AtomicUsize,
    /// Each client's last offset (drain); `u64::MAX` for a client that gave up.
    lasts: Box<[AtomicU64]>,
}

impl Shared {
    fn new(clients: usize) -> Self {
        Self {
            setup: common::SetupProgress::default(),
            noise: AtomicU64::new(0),
            last_noise_ns: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            first_server_error: Mutex::new(None),
            disconnects: AtomicU64::new(0),
            first_disconnect: Mutex::new(None),
            published: AtomicU64::new(0),
            publish_done: AtomicBool::new(false),
            publish_lag_max_ns: AtomicU64::new(0),
            publish_error: Mutex::new(None),
            publisher_top: AtomicU64::new(0),
            publisher_echoes: AtomicU64::new(0),
            epoch: Mutex::new(None),
            epoch_changes: AtomicU64::new(0),
            dropped: AtomicUsize::new(0),
            reconnect_failures: AtomicU64::new(0),
            first_reconnect_failure: Mutex::new(None),
            rejoined: AtomicUsize::new(0),
            recovered_true: AtomicU64::new(0),
            recovered_false: AtomicU64::new(0),
            first_refusal: Mutex::new(None),
            top_regressions: AtomicU64::new(0),
            replay_complete: AtomicUsize::new(0),
            caught_up: AtomicUsize::new(0),
            caught_up_clean: AtomicUsize::new(0),
            last_caught_up_ns: AtomicU64::new(0),
            content_mismatches: AtomicU64::new(0),
            first_content_mismatch: Mutex::new(None),
            last_reconnect_start_ns: AtomicU64::new(0),
            given_up: AtomicUsize::new(0),
            lasts: (0..clients).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// What the connections need, shared by all of them.
struct Ctx<P> {
    cfg: RecoveryConfig,
    proto: P,
    shared: Shared,
    connect_limit: Arc<Semaphore>,
    reconnect_limit: Arc<Semaphore>,
    /// Publishing starts (at this time, ns).
    go: watch::Receiver<Option<u64>>,
    /// Drop now.
    drop: watch::Receiver<bool>,
    /// Reconnect now.
    reconnect: watch::Receiver<bool>,
    /// Stop publishing.
    publish_stop: watch::Receiver<bool>,
    /// The run is over.
    stop: watch::Receiver<bool>,
}

/// Per worker thread: the results of its clients.
struct Stats {
    upgraded: Histogram<u64>,
    joined: Histogram<u64>,
    /// Reconnect: waiting for a `reconnect_concurrency` slot.
    reconnect_wait: Histogram<u64>,
    /// Reconnect start → `joined`.
    rejoin: Histogram<u64>,
    /// Reconnect start → every missed offset received.
    recovery: Histogram<u64>,
    /// Reconnect start → the first live message after the replay.
    caught_up: Histogram<u64>,
    /// Messages each recovered client had missed (`joined` top − its last offset).
    missed: Histogram<u64>,
    /// Their sum.
    missed_total: u64,
    offsets: OffsetTotals,
}

impl Stats {
    fn new() -> Self {
        let h = || Histogram::new_with_bounds(1, MAX_NS, 3).expect("histogram bounds");
        Self {
            upgraded: h(),
            joined: h(),
            reconnect_wait: h(),
            rejoin: h(),
            recovery: h(),
            caught_up: h(),
            missed: Histogram::new(3).expect("histogram"),
            missed_total: 0,
            offsets: OffsetTotals::default(),
        }
    }

    fn merge(&mut self, o: &Stats) {
        let _ = self.upgraded.add(&o.upgraded);
        let _ = self.joined.add(&o.joined);
        let _ = self.reconnect_wait.add(&o.reconnect_wait);
        let _ = self.rejoin.add(&o.rejoin);
        let _ = self.recovery.add(&o.recovery);
        let _ = self.caught_up.add(&o.caught_up);
        let _ = self.missed.add(&o.missed);
        self.missed_total += o.missed_total;
        self.offsets.merge(&o.offsets);
    }
}

struct WorkerEnv {
    scratch: Scratch,
    stats: std::cell::RefCell<Stats>,
}

/// Where a client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// First connection, waiting for `joined`.
    Joining,
    /// First connection, receiving live.
    Live,
    /// Reconnected at `started`, waiting for `joined`.
    Rejoining { started: u64 },
    /// `recovered: true` with this top: receiving the replay.
    Replaying { started: u64, top: u64 },
    /// Every missed offset (up to `top`) is in, or the server refused: waiting for the first
    /// live message.
    AwaitLive { started: u64, top: u64 },
    /// Caught up.
    Done,
}

/// One client's state across both of its connections.
struct Client {
    idx: usize,
    stage: Stage,
    offsets: Option<OffsetTracker>,
    epoch: Option<String>,
    /// `offset - SEQ` of its first stamped message.
    delta: Option<i128>,
    without_offset: u64,
}

/// Counters of one read.
#[derive(Default)]
struct Batch {
    noise: u64,
    last_noise: u64,
    deliveries: u64,
    errors: u64,
    /// `joined` for our room arrived.
    joined: bool,
}

impl Batch {
    fn commit(&self, shared: &Shared) {
        let add = |a: &AtomicU64, n: u64| {
            if n > 0 {
                a.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&shared.noise, self.noise);
        add(&shared.deliveries, self.deliveries);
        add(&shared.server_errors, self.errors);
        if self.noise > 0 {
            shared
                .last_noise_ns
                .fetch_max(self.last_noise, Ordering::Relaxed);
        }
    }

    fn noise(&mut self, now: u64) {
        self.noise += 1;
        self.last_noise = now;
    }
}

fn record(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record(ns.max(1));
}

/// Records the epoch of a `joined`: the first one is the run's, later ones must match.
fn note_epoch(shared: &Shared, epoch: &str) {
    let mut first = shared.epoch.lock().unwrap_or_else(|e| e.into_inner());
    match &*first {
        None => *first = Some(epoch.to_owned()),
        Some(e) if e != epoch => {
            shared.epoch_changes.fetch_add(1, Ordering::Relaxed);
        }
        Some(_) => {}
    }
}

/// A client's `joined` for the room.
fn on_joined<P: HubProtocol>(ctx: &Ctx<P>, env: &WorkerEnv, c: &mut Client, text: &[u8], now: u64) {
    let shared = &ctx.shared;
    let stream = ctx.proto.joined_stream(text).unwrap_or_default();
    let (epoch, top) = match (stream.epoch, stream.offset) {
        (Some(e), Some(o)) => (e, o),
        _ if c.stage == Stage::Joining => {
            return shared.setup.fail(format!(
                "client {}: `joined` carries no epoch and offset (is history on in the hub, \
                 history.size > 0?): {}",
                c.idx,
                String::from_utf8_lossy(text)
            ))
        }
        _ => (String::new(), 0),
    };
    match c.stage {
        Stage::Joining => {
            note_epoch(shared, &epoch);
            c.epoch = Some(epoch);
            c.offsets = Some(OffsetTracker::after(top));
            c.stage = Stage::Live;
        }
        Stage::Rejoining { started } => {
            record(&mut env.stats.borrow_mut().rejoin, now - started);
            shared.rejoined.fetch_add(1, Ordering::Relaxed);
            let tracker = c.offsets.get_or_insert_with(|| OffsetTracker::after(top));
            let last = tracker.last();
            if stream.recovered == Some(true) && !epoch.is_empty() {
                shared.recovered_true.fetch_add(1, Ordering::Relaxed);
                note_epoch(shared, &epoch);
                if top < last {
                    shared.top_regressions.fetch_add(1, Ordering::Relaxed);
                }
                let missed = top.saturating_sub(last);
                let mut stats = env.stats.borrow_mut();
                stats.missed.saturating_record(missed);
                stats.missed_total += missed;
                drop(stats);
                c.stage = if last >= top {
                    replay_done(ctx, env, started, now);
                    Stage::AwaitLive { started, top }
                } else {
                    Stage::Replaying { started, top }
                };
            } else {
                shared.recovered_false.fetch_add(1, Ordering::Relaxed);
                keep_first(&shared.first_refusal, || {
                    format!(
                        "client {} (last offset {last}, epoch {}): {}",
                        c.idx,
                        c.epoch.as_deref().unwrap_or("-"),
                        String::from_utf8_lossy(text)
                    )
                });
                // Nothing is replayed: the client goes on from the new top.
                tracker.skip_to(top);
                if !epoch.is_empty() {
                    c.epoch = Some(epoch);
                }
                c.stage = Stage::AwaitLive { started, top };
            }
        }
        // A second `joined` on one connection: the server's business, not a recovery.
        _ => {}
    }
}

fn replay_done<P>(ctx: &Ctx<P>, env: &WorkerEnv, started: u64, now: u64) {
    record(&mut env.stats.borrow_mut().recovery, now - started);
    ctx.shared.replay_complete.fetch_add(1, Ordering::Relaxed);
}

/// A chat message to a client.
fn on_chat<P: HubProtocol>(
    ctx: &Ctx<P>,
    env: &WorkerEnv,
    c: &mut Client,
    b: &mut Batch,
    text: &[u8],
    message: Option<&[u8]>,
    now: u64,
) {
    b.deliveries += 1;
    let Some(offset) = ctx.proto.chat_offset(text) else {
        c.without_offset += 1;
        return;
    };
    let Some(tracker) = c.offsets.as_mut() else {
        // Before any `joined`: the server does not send those.
        c.without_offset += 1;
        return;
    };
    tracker.observe(offset);
    if let Some((seq, _)) = message.and_then(stamp::parse) {
        let delta = i128::from(offset) - i128::from(seq);
        match c.delta {
            None => c.delta = Some(delta),
            Some(d) if d != delta => {
                ctx.shared
                    .content_mismatches
                    .fetch_add(1, Ordering::Relaxed);
                keep_first(&ctx.shared.first_content_mismatch, || {
                    format!(
                        "client {}: offset {offset} carried message {seq}, expected message {}",
                        c.idx,
                        i128::from(offset) - d
                    )
                });
            }
            Some(_) => {}
        }
    }
    if let Stage::Replaying { started, top } = c.stage {
        if tracker.last() >= top {
            replay_done(ctx, env, started, now);
            c.stage = Stage::AwaitLive { started, top };
        }
    }
    if let Stage::AwaitLive { started, top } = c.stage {
        if offset > top {
            record(&mut env.stats.borrow_mut().caught_up, now - started);
            let shared = &ctx.shared;
            shared.caught_up.fetch_add(1, Ordering::Relaxed);
            if tracker.contiguous() && tracker.skipped == 0 {
                shared.caught_up_clean.fetch_add(1, Ordering::Relaxed);
            }
            shared.last_caught_up_ns.fetch_max(now, Ordering::Relaxed);
            c.stage = Stage::Done;
        }
    }
    ctx.shared.lasts[c.idx - 1].store(tracker.last(), Ordering::Relaxed);
}

/// Handles one server text message to a client.
fn on_client_message<P: HubProtocol>(
    ctx: &Ctx<P>,
    env: &WorkerEnv,
    c: &mut Client,
    b: &mut Batch,
    text: &[u8],
    now: u64,
) -> Option<&'static [u8]> {
    match ctx.proto.classify(text) {
        Incoming::Chat { message } => on_chat(ctx, env, c, b, text, message, now),
        Incoming::Joined { room } if room == ctx.cfg.room => {
            b.noise(now);
            b.joined = true;
            on_joined(ctx, env, c, text, now);
        }
        Incoming::Error { text } => {
            b.noise(now);
            b.errors += 1;
            keep_first(&ctx.shared.first_server_error, || {
                format!("client {}: {}", c.idx, String::from_utf8_lossy(text))
            });
        }
        Incoming::Reply(reply) => return Some(reply),
        _ => b.noise(now),
    }
    None
}

/// Connects connection `idx`, upgrades, does the protocol handshake and sends `join`.
async fn dial<P: HubProtocol>(
    ctx: &Ctx<P>,
    env: &WorkerEnv,
    idx: usize,
    user: &str,
    join: &[u8],
) -> Result<WsConn, String> {
    let cfg = &ctx.cfg;
    let started = now_ns();
    let timeout = cfg.connect_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let tcp = WsConn::connect(&cfg.target, cfg.source(idx));
    let stream = tokio::time::timeout_at(deadline, tcp)
        .await
        .map_err(|_| format!("TCP connect (and TLS handshake) took more than {timeout:?}"))??;
    let request_target = ctx.proto.request_target(&cfg.target, user, &cfg.room);
    let upgrade = WsConn::upgrade(
        stream,
        &cfg.target,
        &request_target,
        cfg.max_message,
        idx as u64 ^ started,
        false,
    );
    let mut conn = tokio::time::timeout_at(deadline, upgrade)
        .await
        .map_err(|_| format!("no upgrade response within {timeout:?} of connecting"))??;
    record(
        &mut env.stats.borrow_mut().upgraded,
        now_ns().saturating_sub(started),
    );
    let deadline = tokio::time::Instant::now() + cfg.setup_timeout;
    common::handshake(&ctx.proto, &mut conn, &env.scratch, deadline).await?;
    conn.queue_text(join);
    conn.flush().await.map_err(|e| format!("send join: {e}"))?;
    Ok(conn)
}

/// What ended a client's read loop.
enum Ended {
    /// The signal it waited for.
    Signal,
    /// The connection closed.
    Closed(Closed),
}

/// Reads `conn` for client `c` until `signal` fires or the connection closes; `permit` is
/// released at the first `joined` (and `on_joined` called then).
async fn read_until<P: HubProtocol>(
    ctx: &Ctx<P>,
    env: &WorkerEnv,
    c: &mut Client,
    conn: &mut WsConn,
    signal: impl std::future::Future<Output = ()>,
    mut permit: Option<tokio::sync::OwnedSemaphorePermit>,
    mut on_first_joined: impl FnMut(),
) -> Ended {
    tokio::pin!(signal);
    loop {
        let mut b = Batch::default();
        let read = tokio::select! {
            biased;
            _ = &mut signal => None,
            r = conn.read_batch(&env.scratch, |text, now| {
                on_client_message(ctx, env, c, &mut b, text, now)
            }) => Some(r),
        };
        b.commit(&ctx.shared);
        if b.joined && permit.take().is_some() {
            on_first_joined();
        }
        match read {
            None => return Ended::Signal,
            Some(Ok(())) => {}
            Some(Err(closed)) => return Ended::Closed(closed),
        }
    }
}

/// Waits until `rx` turns true (or its sender is gone).
async fn wait_true(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

async fn client<P: HubProtocol>(ctx: Arc<Ctx<P>>, env: Rc<WorkerEnv>, idx: usize) {
    let cfg = &ctx.cfg;
    let shared = &ctx.shared;
    let user = format!("{}-r{idx}", cfg.user_prefix);
    let mut c = Client {
        idx,
        stage: Stage::Joining,
        offsets: None,
        epoch: None,
        delta: None,
        without_offset: 0,
    };

    // 1. the first connection
    let mut join = Vec::new();
    ctx.proto.encode_join(&cfg.room, &mut join);
    let first_conn = async {
        let permit = ctx
            .connect_limit
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| "connect limiter closed".to_string())?;
        let started = now_ns();
        let conn = dial(&ctx, &env, idx, &user, &join).await?;
        Ok::<_, String>((conn, permit, started))
    };
    let (mut conn, permit, started) = tokio::select! {
        biased;
        _ = wait_true(ctx.stop.clone()) => return,
        r = first_conn => match r {
            Ok(x) => x,
            Err(e) => return shared.setup.fail(format!("client {idx}: {e}")),
        },
    };
    let (drop_rx, stop_rx) = (ctx.drop.clone(), ctx.stop.clone());
    let until_drop = async move {
        tokio::select! {
            _ = wait_true(drop_rx) => {}
            _ = wait_true(stop_rx) => {}
        }
    };
    let on_joined = || {
        record(
            &mut env.stats.borrow_mut().joined,
            now_ns().saturating_sub(started),
        );
        shared.setup.joined();
    };
    let ended = read_until(
        &ctx,
        &env,
        &mut c,
        &mut conn,
        until_drop,
        Some(permit),
        on_joined,
    )
    .await;
    if *ctx.stop.borrow() {
        return finish(&env, c, Some(conn)).await;
    }

    // 2. the drop
    let last = c.offsets.as_ref().map_or(0, OffsetTracker::last);
    shared.lasts[idx - 1].store(last, Ordering::Relaxed);
    match ended {
        Ended::Signal => conn.abort(cfg.drop == DropMode::Rst),
        Ended::Closed(closed) => {
            if c.stage == Stage::Joining {
                return shared
                    .setup
                    .fail(format!("client {idx} closed before joining: {closed}"));
            }
            shared.disconnects.fetch_add(1, Ordering::Relaxed);
            keep_first(&shared.first_disconnect, || {
                format!("client {idx}, before the drop: {closed}")
            });
        }
    }
    shared.dropped.fetch_add(1, Ordering::SeqCst);

    // 3. away, then the reconnect
    tokio::select! {
        biased;
        _ = wait_true(ctx.stop.clone()) => return finish(&env, c, None).await,
        _ = wait_true(ctx.reconnect.clone()) => {}
    }
    let asked = now_ns();
    let permit = tokio::select! {
        biased;
        _ = wait_true(ctx.stop.clone()) => return finish(&env, c, None).await,
        p = ctx.reconnect_limit.clone().acquire_owned() => match p {
            Ok(p) => p,
            Err(_) => return finish(&env, c, None).await,
        },
    };
    let started = now_ns();
    record(&mut env.stats.borrow_mut().reconnect_wait, started - asked);
    shared
        .last_reconnect_start_ns
        .fetch_max(started, Ordering::Relaxed);
    c.stage = Stage::Rejoining { started };
    let mut join = Vec::new();
    let epoch = c.epoch.clone().unwrap_or_default();
    ctx.proto
        .encode_join_recover(&cfg.room, last, &epoch, &mut join);
    let redial = tokio::select! {
        biased;
        _ = wait_true(ctx.stop.clone()) => return finish(&env, c, None).await,
        r = dial(&ctx, &env, cfg.clients + idx, &user, &join) => r,
    };
    let mut conn = match redial {
        Ok(conn) => conn,
        Err(e) => {
            shared.reconnect_failures.fetch_add(1, Ordering::Relaxed);
            keep_first(&shared.first_reconnect_failure, || {
                format!("client {idx}: {e}")
            });
            give_up(shared, &c);
            return finish(&env, c, None).await;
        }
    };

    // 4. the recovery, then live until the end
    let ended = read_until(
        &ctx,
        &env,
        &mut c,
        &mut conn,
        wait_true(ctx.stop.clone()),
        Some(permit),
        || {},
    )
    .await;
    match ended {
        Ended::Signal => finish(&env, c, Some(conn)).await,
        Ended::Closed(closed) => {
            shared.disconnects.fetch_add(1, Ordering::Relaxed);
            keep_first(&shared.first_disconnect, || {
                format!("client {idx}, after reconnecting: {closed}")
            });
            give_up(shared, &c);
            wait_true(ctx.stop.clone()).await;
            finish(&env, c, None).await
        }
    }
}

/// A client that will not catch up (or receive more): the orchestrator stops waiting for it.
fn give_up(shared: &Shared, c: &Client) {
    shared.lasts[c.idx - 1].store(u64::MAX, Ordering::Relaxed);
    if c.stage != Stage::Done {
        shared.given_up.fetch_add(1, Ordering::SeqCst);
    }
}

/// Closes the connection (if any) and hands the client's offsets to the worker's totals.
async fn finish(env: &WorkerEnv, c: Client, conn: Option<WsConn>) {
    if let Some(conn) = conn {
        conn.close().await;
    }
    if let Some(t) = &c.offsets {
        let who = format!("client {}", c.idx);
        env.stats
            .borrow_mut()
            .offsets
            .add(&who, t, c.without_offset);
    }
}

/// Handles one server text message to the publisher.
fn on_publisher_message<P: HubProtocol>(
    ctx: &Ctx<P>,
    b: &mut Batch,
    text: &[u8],
    now: u64,
) -> Option<&'static [u8]> {
    let shared = &ctx.shared;
    match ctx.proto.classify(text) {
        Incoming::Chat { .. } => {
            shared.publisher_echoes.fetch_add(1, Ordering::Relaxed);
            if let Some(offset) = ctx.proto.chat_offset(text) {
                shared.publisher_top.fetch_max(offset, Ordering::Relaxed);
            }
        }
        Incoming::Joined { room } if room == ctx.cfg.room => {
            b.noise(now);
            b.joined = true;
        }
        Incoming::Error { text } => {
            b.noise(now);
            b.errors += 1;
            keep_first(&shared.first_server_error, || {
                format!("publisher: {}", String::from_utf8_lossy(text))
            });
        }
        Incoming::Reply(reply) => return Some(reply),
        _ => b.noise(now),
    }
    None
}

async fn publisher<P: HubProtocol>(ctx: Arc<Ctx<P>>, env: Rc<WorkerEnv>) {
    let cfg = &ctx.cfg;
    let shared = &ctx.shared;
    let user = format!("{}-pub", cfg.user_prefix);
    let mut join = Vec::new();
    ctx.proto.encode_join(&cfg.room, &mut join);
    let setup = async {
        let permit = ctx
            .connect_limit
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| "connect limiter closed".to_string())?;
        let conn = dial(&ctx, &env, 0, &user, &join).await?;
        Ok::<_, String>((conn, permit))
    };
    let (mut conn, permit) = tokio::select! {
        biased;
        _ = wait_true(ctx.stop.clone()) => return,
        r = setup => match r {
            Ok(x) => x,
            Err(e) => return shared.setup.fail(format!("publisher: {e}")),
        },
    };
    // Join, then read until the go signal.
    let mut permit = Some(permit);
    let mut go = ctx.go.clone();
    let started = go.wait_for(|v| v.is_some());
    tokio::pin!(started);
    let stopped = wait_true(ctx.stop.clone());
    tokio::pin!(stopped);
    let t0 = loop {
        let mut b = Batch::default();
        let step = tokio::select! {
            biased;
            _ = &mut stopped => return,
            v = &mut started => Err(v.map(|v| v.unwrap_or(0)).unwrap_or(0)),
            r = conn.read_batch(&env.scratch, |text, now| {
                on_publisher_message(&ctx, &mut b, text, now)
            }) => Ok(r),
        };
        b.commit(shared);
        if b.joined && permit.take().is_some() {
            shared.setup.joined();
        }
        match step {
            Err(t0) => break t0,
            Ok(Ok(())) => {}
            Ok(Err(closed)) => {
                return shared.setup.fail(format!(
                    "publisher connection closed before publishing: {closed}"
                ))
            }
        }
    };
    let result = publish(&ctx, &env, &mut conn, t0).await;
    if let Err(e) = result {
        keep_first(&shared.publish_error, || e);
    }
    shared.publish_done.store(true, Ordering::SeqCst);
    // Keep taking our own messages until the end.
    loop {
        let mut b = Batch::default();
        let step = tokio::select! {
            biased;
            _ = &mut stopped => None,
            r = conn.read_batch(&env.scratch, |text, now| {
                on_publisher_message(&ctx, &mut b, text, now)
            }) => Some(r),
        };
        b.commit(shared);
        match step {
            Some(Ok(())) => {}
            None => return conn.close().await,
            Some(Err(_)) => return,
        }
    }
}

/// Publishes at the configured rate from `t0` until told to stop.
async fn publish<P: HubProtocol>(
    ctx: &Ctx<P>,
    env: &WorkerEnv,
    conn: &mut WsConn,
    t0: u64,
) -> Result<(), String> {
    let cfg = &ctx.cfg;
    let shared = &ctx.shared;
    let interval = 1e9 / cfg.rate;
    let due = |seq: u64| t0 + (seq as f64 * interval) as u64;
    let (mut text, mut payload) = (String::new(), Vec::new());
    let (mut sent, mut lag_max) = (0u64, 0u64);
    let halt = wait_true(ctx.publish_stop.clone());
    tokio::pin!(halt);
    loop {
        let now = now_ns();
        let mut batch = 0;
        while batch < MAX_BATCH && due(sent) <= now {
            lag_max = lag_max.max(now - due(sent));
            stamp::write(&mut text, sent, now_ns(), cfg.payload_bytes);
            payload.clear();
            ctx.proto.encode_publish(&cfg.room, &text, &mut payload);
            conn.queue_text(&payload);
            sent += 1;
            batch += 1;
        }
        if batch > 0 {
            shared.published.store(sent, Ordering::SeqCst);
            shared
                .publish_lag_max_ns
                .fetch_max(lag_max, Ordering::Relaxed);
            conn.flush()
                .await
                .map_err(|e| format!("publisher write: {e}"))?;
        }
        let wake = clock::instant_at(due(sent));
        let mut b = Batch::default();
        let read = tokio::select! {
            biased;
            _ = &mut halt => return Ok(()),
            _ = tokio::time::sleep_until(wake.into()) => None,
            r = conn.read_batch(&env.scratch, |text, now| {
                on_publisher_message(ctx, &mut b, text, now)
            }) => Some(r),
        };
        b.commit(shared);
        if let Some(Err(closed)) = read {
            return Err(format!("publisher connection: {closed}"));
        }
    }
}

async fn worker<P: HubProtocol>(ctx: Arc<Ctx<P>>, w: usize) -> Stats {
    let env = Rc::new(WorkerEnv {
        scratch: conn::new_scratch(),
        stats: std::cell::RefCell::new(Stats::new()),
    });
    let mut tasks = Vec::new();
    for idx in (w..=ctx.cfg.clients).step_by(ctx.cfg.threads) {
        let (ctx, env) = (ctx.clone(), env.clone());
        tasks.push(if idx == 0 {
            tokio::task::spawn_local(publisher(ctx, env))
        } else {
            tokio::task::spawn_local(client(ctx, env, idx))
        });
    }
    for task in tasks {
        if let Err(e) = task.await {
            ctx.shared
                .setup
                .fail(format!("connection task failed: {e}"));
        }
    }
    env.stats.replace(Stats::new())
}

/// A count per client: p50, p99, max and the total.
#[derive(Debug, Clone, Serialize)]
pub struct CountSummary {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
    /// Sum over clients.
    pub total: u64,
}

impl CountSummary {
    fn from(h: &Histogram<u64>, total: u64) -> Self {
        if h.is_empty() {
            return Self {
                p50: 0,
                p99: 0,
                max: 0,
                total: 0,
            };
        }
        Self {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
            total,
        }
    }
}

/// The result of a recovery-storm run.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryReport {
    #[serde(flatten)]
    pub heading: Heading,
    /// Clients that dropped and recovered.
    pub clients: usize,
    /// Worker threads of the load generator.
    pub threads: usize,
    /// Messages per second published.
    pub rate: f64,
    /// Publishing before the drop, seconds.
    pub warmup_seconds: f64,
    /// Between the drop and the reconnect, seconds.
    pub away_seconds: f64,
    /// How the clients dropped: `fin` or `rst`.
    pub drop: &'static str,
    /// Reconnecting clients between connect and `joined` at once.
    pub reconnect_concurrency: usize,
    /// Message text length.
    pub payload_bytes: usize,
    /// Connect + join of every connection, seconds.
    pub setup_seconds: f64,
    /// Waiting for the notices to stop, seconds.
    pub settle_seconds: f64,
    /// False when they did not stop within the settle limit.
    pub settled: bool,
    /// Non-chat frames before publishing.
    pub setup_noise_frames: u64,
    /// The first connections' connect → `joined`, ms.
    pub setup_joined_ms: MsSummary,
    /// Messages the publisher sent over the whole run.
    pub messages_published: u64,
    /// The room's top offset (the publisher's view) when the clients dropped.
    pub top_offset_at_drop: u64,
    /// Clients that dropped.
    pub dropped: usize,
    /// Reconnections that failed (connect, upgrade or join), and the first reason.
    pub reconnect_failures: u64,
    pub first_reconnect_failure: Option<String>,
    /// Reconnections that got `joined`.
    pub rejoined: usize,
    /// `joined` with `recovered: true`.
    pub recovered_true: u64,
    /// `joined` with `recovered: false` (or without `recovered`), and the first of them.
    pub recovered_false: u64,
    pub first_refusal: Option<String>,
    /// `recovered: true` whose top was below the client's last offset.
    pub top_regressions: u64,
    /// Clients that received every missed offset.
    pub replay_complete: usize,
    /// Clients that received a live message after their replay (or refusal).
    pub caught_up: usize,
    /// Clients caught up after `recovered: true` with no gap and no duplicate so far.
    pub recovered_clean: usize,
    /// Every client caught up within the recover timeout.
    pub all_caught_up: bool,
    /// From the reconnect start to the moment the last client caught up, seconds (when all
    /// did).
    pub storm_seconds: Option<f64>,
    /// From the reconnect start to the moment the last client started its TCP connect, ms
    /// (the load generator's own spread, plus waits for a reconnect slot).
    pub reconnect_spread_ms: f64,
    /// Per client, waiting for a reconnect slot, ms.
    pub reconnect_wait_ms: MsSummary,
    /// Per client, from its reconnect start (TCP connect) to `joined`, ms.
    pub rejoin_ms: MsSummary,
    /// Per client, from its reconnect start to the last missed offset received, ms.
    pub recovery_ms: MsSummary,
    /// Per client, from its reconnect start to the first live message after the replay, ms.
    pub caught_up_ms: MsSummary,
    /// Messages each client missed and had replayed (`joined` top − its last offset).
    pub missed_messages: CountSummary,
    /// The offset check over the whole run (every client, across the drop).
    pub history: OffsetReport,
    /// Messages whose text was not the one published at their offset, and the first.
    pub content_mismatches: u64,
    pub first_content_mismatch: Option<String>,
    /// Every client reached the room's final top before the drain timeout.
    pub drained: bool,
    #[serde(flatten)]
    pub server: ServerTrouble,
    /// How late, at worst, a message went out, µs.
    pub publish_lag_max_us: f64,
    /// Why publishing failed, if it did.
    pub publish_error: Option<String>,
    /// CPU over the warm-up (steady state; per delivery).
    pub steady: Usage,
    /// CPU over the storm, from the reconnect start until every client caught up or the
    /// timeout (`cpu_us_per_delivery` is per caught-up client).
    pub storm: Usage,
    /// Every client recovered (`recovered: true`) and caught up, no offset missing,
    /// repeated or out of order, no wrong text, no disconnect, no error.
    pub ok: bool,
}

/// Runs the scenario and reports.
pub fn run(cfg: RecoveryConfig) -> Result<RecoveryReport, String> {
    crate::with_protocol!(cfg.protocol, run_with(cfg))
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Waits (on the orchestrating thread) until `done()` or `limit` (ns); true when done.
fn wait_until(limit: u64, done: impl Fn() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if now_ns() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn run_with<P: HubProtocol>(cfg: RecoveryConfig, proto: P) -> Result<RecoveryReport, String> {
    let (go_tx, go_rx) = watch::channel(None);
    let (drop_tx, drop_rx) = watch::channel(false);
    let (reconnect_tx, reconnect_rx) = watch::channel(false);
    let (publish_stop_tx, publish_stop_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = Arc::new(Ctx {
        connect_limit: Arc::new(Semaphore::new(cfg.connect_concurrency.max(1))),
        reconnect_limit: Arc::new(Semaphore::new(cfg.reconnect_concurrency.max(1))),
        shared: Shared::new(cfg.clients),
        proto,
        go: go_rx,
        drop: drop_rx,
        reconnect: reconnect_rx,
        publish_stop: publish_stop_rx,
        stop: stop_rx,
        cfg,
    });
    let cfg = &ctx.cfg;
    let shared = &ctx.shared;
    let n = cfg.clients;
    let abort = |why: String| -> Result<RecoveryReport, String> {
        let _ = stop_tx.send(true);
        Err(why)
    };

    // 1. setup
    let setup_start = now_ns();
    let worker_ctx = ctx.clone();
    let handles = workers::spawn(cfg.threads, move |w| worker(worker_ctx.clone(), w))?;
    let total = n + 1;
    if let Err(why) = common::wait_for_setup(
        &shared.setup,
        total,
        "connection",
        setup_start,
        cfg.setup_timeout,
    ) {
        return abort(why);
    }
    let ready_at = now_ns();
    let setup_seconds = secs(ready_at - setup_start);
    eprintln!(
        "loadgen: {total} connections joined {:?} in {setup_seconds:.2} s; settling",
        cfg.room
    );

    // 2. settle
    let lost = || {
        (shared.disconnects.load(Ordering::SeqCst) > 0)
            .then(|| first(&shared.first_disconnect).unwrap_or_default())
    };
    let settled = match common::settle(
        &shared.last_noise_ns,
        ready_at,
        cfg.settle_quiet,
        cfg.settle_max,
        "non-chat frames",
        lost,
    ) {
        Ok(s) => s,
        Err(why) => return abort(why),
    };
    let settle_seconds = secs(now_ns() - ready_at);
    let setup_noise = shared.noise.load(Ordering::SeqCst);

    // 3. warm-up
    let cpu_go = CpuSample::take(cfg.server_pid)?;
    let t0 = now_ns();
    eprintln!(
        "loadgen: settled after {settle_seconds:.2} s; publishing {} msg/s, dropping every \
         client in {:.1} s",
        cfg.rate,
        cfg.warmup.as_secs_f64()
    );
    let _ = go_tx.send(Some(t0));
    std::thread::sleep(cfg.warmup);
    let cpu_drop = CpuSample::take(cfg.server_pid)?;
    let steady_seconds = secs(now_ns() - t0);
    let steady = report::usage(
        cpu_go,
        cpu_drop,
        cfg.server_pid,
        steady_seconds,
        shared.deliveries.load(Ordering::SeqCst),
    );

    // 4. the drop
    let top_at_drop = shared.publisher_top.load(Ordering::SeqCst);
    let t_drop = now_ns();
    let _ = drop_tx.send(true);
    let dropped_all = wait_until(t_drop + 10_000_000_000, || {
        shared.dropped.load(Ordering::SeqCst) >= n
    });
    if !dropped_all {
        return abort(format!(
            "only {} of {n} clients dropped within 10 s",
            shared.dropped.load(Ordering::SeqCst)
        ));
    }
    eprintln!(
        "loadgen: {n} clients dropped at offset {top_at_drop} in {:.1} ms; away for {:.1} s",
        (now_ns() - t_drop) as f64 / 1e6,
        cfg.away.as_secs_f64()
    );

    // 5. away; 6. the storm
    let back = t_drop + cfg.away.as_nanos() as u64;
    std::thread::sleep(Duration::from_nanos(back.saturating_sub(now_ns())));
    let cpu_storm = CpuSample::take(cfg.server_pid)?;
    let t_reconnect = now_ns();
    let _ = reconnect_tx.send(true);
    let storm_limit = t_reconnect + cfg.recover_timeout.as_nanos() as u64;
    let all_caught_up = wait_until(storm_limit, || {
        shared.caught_up.load(Ordering::SeqCst) + shared.given_up.load(Ordering::SeqCst) >= n
    }) && shared.caught_up.load(Ordering::SeqCst) >= n;
    let t_storm_end = now_ns();
    let cpu_storm_end = CpuSample::take(cfg.server_pid)?;
    let caught_up = shared.caught_up.load(Ordering::SeqCst);
    let storm_seconds = all_caught_up.then(|| {
        secs(
            shared
                .last_caught_up_ns
                .load(Ordering::SeqCst)
                .max(t_reconnect)
                - t_reconnect,
        )
    });
    let storm = report::usage(
        cpu_storm,
        cpu_storm_end,
        cfg.server_pid,
        secs(t_storm_end - t_reconnect),
        caught_up as u64,
    );
    match storm_seconds {
        Some(s) => eprintln!("loadgen: every client caught up {s:.3} s after the reconnect start"),
        None => eprintln!(
            "loadgen: {caught_up} of {n} clients caught up within {:?}",
            cfg.recover_timeout
        ),
    }

    // 7. tail, stop publishing, drain
    std::thread::sleep(cfg.tail);
    let _ = publish_stop_tx.send(true);
    let published_by = now_ns() + 10_000_000_000;
    if !wait_until(published_by, || shared.publish_done.load(Ordering::SeqCst)) {
        return abort("the publisher did not stop in time (stuck writing?)".into());
    }
    let published = shared.published.load(Ordering::SeqCst);
    let drain_limit = now_ns() + cfg.drain_timeout.as_nanos() as u64;
    wait_until(drain_limit, || {
        shared.publisher_echoes.load(Ordering::SeqCst) >= published
    });
    let final_top = shared.publisher_top.load(Ordering::SeqCst);
    let drain_limit = now_ns() + cfg.drain_timeout.as_nanos() as u64;
    let drained = wait_until(drain_limit, || {
        shared
            .lasts
            .iter()
            .all(|l| l.load(Ordering::Relaxed) >= final_top)
    });
    let _ = stop_tx.send(true);

    let mut stats = Stats::new();
    for h in handles {
        let s = h.join().map_err(|_| "worker thread panicked".to_string())?;
        stats.merge(&s);
    }
    let top = stats
        .offsets
        .lasts
        .iter()
        .map(|&(last, _)| last)
        .chain([final_top])
        .max()
        .unwrap_or(0);
    stats.offsets.finish(top);
    let history = OffsetReport::new(
        &stats.offsets,
        top,
        first(&shared.epoch),
        shared.epoch_changes.load(Ordering::SeqCst),
    );
    let server = ServerTrouble {
        disconnects: shared.disconnects.load(Ordering::SeqCst),
        first_disconnect: first(&shared.first_disconnect),
        server_errors: shared.server_errors.load(Ordering::SeqCst),
        first_server_error: first(&shared.first_server_error),
    };
    let recovered_clean = shared.caught_up_clean.load(Ordering::SeqCst);
    let reconnect_failures = shared.reconnect_failures.load(Ordering::SeqCst);
    let recovered_false = shared.recovered_false.load(Ordering::SeqCst);
    let top_regressions = shared.top_regressions.load(Ordering::SeqCst);
    let content_mismatches = shared.content_mismatches.load(Ordering::SeqCst);
    let publish_error = first(&shared.publish_error);
    let ok = all_caught_up
        && recovered_clean == n
        && recovered_false == 0
        && reconnect_failures == 0
        && top_regressions == 0
        && content_mismatches == 0
        && drained
        && history.ok()
        && history.members == n as u64
        && server.disconnects == 0
        && server.server_errors == 0
        && publish_error.is_none();
    Ok(RecoveryReport {
        heading: Heading::new("recovery-storm", cfg.protocol, &cfg.url),
        clients: n,
        threads: cfg.threads,
        rate: cfg.rate,
        warmup_seconds: cfg.warmup.as_secs_f64(),
        away_seconds: cfg.away.as_secs_f64(),
        drop: cfg.drop.name(),
        reconnect_concurrency: cfg.reconnect_concurrency,
        payload_bytes: cfg.payload_bytes,
        setup_seconds,
        settle_seconds,
        settled,
        setup_noise_frames: setup_noise,
        setup_joined_ms: MsSummary::from_ns(&stats.joined),
        messages_published: published,
        top_offset_at_drop: top_at_drop,
        dropped: shared.dropped.load(Ordering::SeqCst),
        reconnect_failures,
        first_reconnect_failure: first(&shared.first_reconnect_failure),
        rejoined: shared.rejoined.load(Ordering::SeqCst),
        recovered_true: shared.recovered_true.load(Ordering::SeqCst),
        recovered_false,
        first_refusal: first(&shared.first_refusal),
        top_regressions,
        replay_complete: shared.replay_complete.load(Ordering::SeqCst),
        caught_up,
        recovered_clean,
        all_caught_up,
        storm_seconds,
        reconnect_spread_ms: shared
            .last_reconnect_start_ns
            .load(Ordering::SeqCst)
            .saturating_sub(t_reconnect) as f64
            / 1e6,
        reconnect_wait_ms: MsSummary::from_ns(&stats.reconnect_wait),
        rejoin_ms: MsSummary::from_ns(&stats.rejoin),
        recovery_ms: MsSummary::from_ns(&stats.recovery),
        caught_up_ms: MsSummary::from_ns(&stats.caught_up),
        missed_messages: CountSummary::from(&stats.missed, stats.missed_total),
        history,
        content_mismatches,
        first_content_mismatch: first(&shared.first_content_mismatch),
        drained,
        server,
        publish_lag_max_us: shared.publish_lag_max_ns.load(Ordering::SeqCst) as f64 / 1e3,
        publish_error,
        steady,
        storm,
        ok,
    })
}

/// Prints the human table.
pub fn print(r: &RecoveryReport) {
    r.heading.print_title();
    println!(
        "  {} clients + 1 publisher, {} thread(s), rate {} msg/s, warm-up {:.1} s, away {:.1} s, \
         drop {}, reconnect concurrency {}",
        thousands(r.clients as u64),
        r.threads,
        r.rate,
        r.warmup_seconds,
        r.away_seconds,
        r.drop,
        r.reconnect_concurrency
    );
    println!(
        "  setup {:.2} s, settle {:.2} s{} ({} notice frames)",
        r.setup_seconds,
        r.settle_seconds,
        if r.settled { "" } else { " (NOT settled)" },
        thousands(r.setup_noise_frames)
    );
    println!("{}", "-".repeat(64));
    let row = |k: &str, v: String| println!("{k:<30} {v}");
    let ms = |m: &MsSummary| format!("{} / {} / {} ms", m.p50, m.p99, m.max);
    row(
        "messages published",
        format!(
            "{} (top offset {} at the drop)",
            thousands(r.messages_published),
            r.top_offset_at_drop
        ),
    );
    row(
        "dropped / rejoined",
        format!(
            "{} / {}",
            thousands(r.dropped as u64),
            thousands(r.rejoined as u64)
        ),
    );
    row(
        "recovered true / false",
        format!("{} / {}", r.recovered_true, r.recovered_false),
    );
    row(
        "replayed / caught up / clean",
        format!(
            "{} / {} / {}",
            r.replay_complete, r.caught_up, r.recovered_clean
        ),
    );
    row(
        "storm (all caught up)",
        match r.storm_seconds {
            Some(s) => format!("{s:.3} s after the reconnect start"),
            None => "NOT every client caught up in time".into(),
        },
    );
    row(
        "reconnect starts spread",
        format!(
            "{:.1} ms (last TCP connect after the reconnect start)",
            r.reconnect_spread_ms
        ),
    );
    row("reconnect wait p50/p99/max", ms(&r.reconnect_wait_ms));
    row("rejoined p50/p99/max", ms(&r.rejoin_ms));
    row("recovered p50/p99/max", ms(&r.recovery_ms));
    row("caught up p50/p99/max", ms(&r.caught_up_ms));
    let m = &r.missed_messages;
    row(
        "missed per client p50/p99/max",
        format!(
            "{} / {} / {} ({} replayed in all)",
            m.p50,
            m.p99,
            m.max,
            thousands(m.total)
        ),
    );
    r.history.print_rows(&row, "clients");
    row(
        "wrong text / top regressions",
        format!("{} / {}", r.content_mismatches, r.top_regressions),
    );
    row("reconnect failures", r.reconnect_failures.to_string());
    row(
        "disconnects / server errors",
        format!("{} / {}", r.server.disconnects, r.server.server_errors),
    );
    row(
        "publisher lag max",
        format!("{:.0} µs", r.publish_lag_max_us),
    );
    if let Some(s) = &r.steady.server {
        row("server CPU warm-up", s.cpu_row());
    }
    if let Some(s) = &r.storm.server {
        row(
            "server CPU storm",
            format!(
                "{:.2} s ({:.0}% of a core), {} µs/client",
                s.cpu_seconds,
                s.cpu_cores * 100.0,
                s.cpu_us_per_delivery
                    .map_or("-".into(), |x| format!("{x:.1}"))
            ),
        );
        let kib = |k: Option<u64>| k.map_or("-".into(), |k| format!("{} KiB", thousands(k)));
        row(
            "server RSS peak / now",
            format!("{} / {}", kib(s.peak_rss_kib), kib(s.rss_kib)),
        );
    }
    row(
        "loadgen CPU storm",
        format!(
            "{:.2} s ({:.0}% of a core)",
            r.storm.loadgen.cpu_seconds,
            r.storm.loadgen.cpu_cores * 100.0
        ),
    );
    if !r.drained {
        row(
            "drain",
            "timed out: some clients never reached the final top".into(),
        );
    }
    for (k, v) in [
        ("publish error", &r.publish_error),
        ("first refusal", &r.first_refusal),
        ("first reconnect failure", &r.first_reconnect_failure),
        ("first wrong text", &r.first_content_mismatch),
        ("first disconnect", &r.server.first_disconnect),
        ("first server error", &r.server.first_server_error),
    ] {
        if let Some(v) = v {
            row(k, v.clone());
        }
    }
    report::print_result(&row, r.ok);
}
