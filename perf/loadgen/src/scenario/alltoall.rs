//! Scenario `all-to-all`: N clients in one room, each publishing at a fixed rate; every
//! client receives every message (its own included), like uWebSockets' broadcast test.
//!
//! Phases: setup (connect, join, wait for the confirmation), settle (no notices for a
//! while), measure (client `i` sends its `k`-th message at `t0 + (k + i/N) / rate`, so the
//! clients' sends are spread evenly), drain (bounded wait for late deliveries).
//!
//! Each message carries the stamp `SEQ:SEND_NS` with `SEQ = k * N + i`: the receiver gets
//! the publisher (`SEQ % N`) and its sequence number (`SEQ / N`) from one number, and checks
//! loss, duplicates and order per publisher.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{watch, Semaphore};

use crate::clock::{self, now_ns};
use crate::conn::{self, Closed, Scratch};
use crate::protocol::{HubProtocol, Incoming, ProtocolKind, PublishVia};
use crate::report::{self, CpuSample, LatencyUs, LoadgenUsage, MsSummary, ServerUsage};
use crate::scenario::common::{self, first, keep_first, sleep_ms, Dial, Sink};
use crate::seq::{Seen, SeqTracker};
use crate::target::Target;
use crate::{stamp, workers};

const MAX_LATENCY_NS: u64 = 600_000_000_000;
/// Most messages one client queues in one wake-up.
const MAX_BATCH: u64 = 1024;

/// Everything an all-to-all run needs, already validated.
#[derive(Debug, Clone)]
pub struct AllToAllConfig {
    /// The URL as given.
    pub url: String,
    /// Resolved loopback target.
    pub target: Target,
    /// Wire protocol.
    pub protocol: ProtocolKind,
    /// Clients; each publishes and receives.
    pub clients: usize,
    /// Room.
    pub room: String,
    /// Messages per second, per client.
    pub rate: f64,
    /// Publishing stops after this long.
    pub duration: Duration,
    /// Length of each message text.
    pub payload_bytes: usize,
    /// Worker threads.
    pub threads: usize,
    /// Timeout of connect + upgrade, per connection.
    pub connect_timeout: Duration,
    /// Connections between connect and joined at once.
    pub connect_concurrency: usize,
    /// Setup must finish within this.
    pub setup_timeout: Duration,
    /// Settled when no non-chat frame arrived for this long.
    pub settle_quiet: Duration,
    /// Give up waiting for quiet after this long.
    pub settle_max: Duration,
    /// After publishing, wait this long at most for late deliveries.
    pub drain_timeout: Duration,
    /// Server process to watch.
    pub server_pid: Option<u32>,
    /// Users are named `PREFIX-cN`.
    pub user_prefix: String,
    /// Largest server message accepted.
    pub max_message: usize,
    /// Connections per source address.
    pub conns_per_source: usize,
}

impl AllToAllConfig {
    /// Bound on the whole run, for the watchdog.
    pub fn run_budget(&self) -> Duration {
        self.setup_timeout
            + self.settle_max
            + self.duration
            + self.drain_timeout
            + Duration::from_secs(30)
    }
}

struct Shared {
    ready: AtomicUsize,
    failed: AtomicUsize,
    first_failure: Mutex<Option<String>>,
    noise: AtomicU64,
    last_noise_ns: AtomicU64,
    deliveries: AtomicU64,
    unique: AtomicU64,
    last_delivery_ns: AtomicU64,
    foreign: AtomicU64,
    server_errors: AtomicU64,
    first_server_error: Mutex<Option<String>>,
    disconnects: AtomicU64,
    first_disconnect: Mutex<Option<String>>,
    /// Messages published by each client.
    published: Box<[AtomicU64]>,
    done_publishing: AtomicUsize,
    publish_end_ns: AtomicU64,
    publish_lag_max_ns: AtomicU64,
    publish_error: Mutex<Option<String>>,
    stopping: AtomicBool,
}

impl Shared {
    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        keep_first(&self.first_failure, || why);
    }

    fn total_published(&self) -> u64 {
        self.published
            .iter()
            .map(|p| p.load(Ordering::SeqCst))
            .sum()
    }
}

#[derive(Default)]
struct Batch {
    deliveries: u64,
    unique: u64,
    last_delivery: u64,
    noise: u64,
    last_noise: u64,
    foreign: u64,
    errors: u64,
}

impl Batch {
    fn commit(&self, s: &Shared) {
        let add = |a: &AtomicU64, n: u64| {
            if n > 0 {
                a.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&s.noise, self.noise);
        add(&s.deliveries, self.deliveries);
        add(&s.unique, self.unique);
        add(&s.foreign, self.foreign);
        add(&s.server_errors, self.errors);
        if self.noise > 0 {
            s.last_noise_ns
                .fetch_max(self.last_noise, Ordering::Relaxed);
        }
        if self.unique > 0 {
            s.last_delivery_ns
                .fetch_max(self.last_delivery, Ordering::Relaxed);
        }
    }
}

struct Ctx<P> {
    cfg: AllToAllConfig,
    proto: P,
    shared: Shared,
    connect_limit: Arc<Semaphore>,
    go: watch::Receiver<Option<u64>>,
    stop: watch::Receiver<bool>,
}

struct WorkerStats {
    latency: Histogram<u64>,
    upgraded: Histogram<u64>,
    joined: Histogram<u64>,
    lost: u64,
    duplicates: u64,
    late: u64,
    finalized: usize,
    clients_with_loss: u64,
}

impl WorkerStats {
    fn new() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("histogram bounds"),
            upgraded: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 2).expect("histogram bounds"),
            joined: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 2).expect("histogram bounds"),
            lost: 0,
            duplicates: 0,
            late: 0,
            finalized: 0,
            clients_with_loss: 0,
        }
    }

    fn merge(&mut self, o: &WorkerStats) {
        let _ = self.latency.add(&o.latency);
        let _ = self.upgraded.add(&o.upgraded);
        let _ = self.joined.add(&o.joined);
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.late += o.late;
        self.finalized += o.finalized;
        self.clients_with_loss += o.clients_with_loss;
    }
}

struct WorkerEnv {
    scratch: Scratch,
    stats: RefCell<WorkerStats>,
}

fn on_message<P: HubProtocol>(
    ctx: &Ctx<P>,
    env: &WorkerEnv,
    trackers: &mut [SeqTracker],
    b: &mut Batch,
    text: &[u8],
    now: u64,
) -> Option<&'static [u8]> {
    match ctx.proto.classify(text) {
        Incoming::Chat { message } => {
            let n = trackers.len() as u64;
            let Some((seq, sent)) = message.and_then(stamp::parse) else {
                b.foreign += 1;
                return None;
            };
            b.deliveries += 1;
            let (publisher, k) = ((seq % n) as usize, seq / n);
            if trackers[publisher].observe(k) == Seen::Duplicate {
                return None;
            }
            b.unique += 1;
            b.last_delivery = now;
            env.stats
                .borrow_mut()
                .latency
                .saturating_record(now.saturating_sub(sent).max(1));
        }
        Incoming::Error { text } => {
            b.noise += 1;
            b.last_noise = now;
            b.errors += 1;
            keep_first(&ctx.shared.first_server_error, || {
                String::from_utf8_lossy(text).into_owned()
            });
        }
        Incoming::Reply(reply) => return Some(reply),
        _ => {
            b.noise += 1;
            b.last_noise = now;
        }
    }
    None
}

enum Step {
    Stop,
    Go(u64),
    Read(Result<(), Closed>),
    Wake,
}

fn http_refused(shared: &Shared, code: u16, body: &[u8]) {
    if !(200..300).contains(&code) {
        shared.server_errors.fetch_add(1, Ordering::Relaxed);
        keep_first(&shared.first_server_error, || {
            format!(
                "HTTP {code} to a publish: {}",
                String::from_utf8_lossy(body)
            )
        });
    }
}

async fn client<P: HubProtocol>(ctx: Arc<Ctx<P>>, env: Rc<WorkerEnv>, idx: usize) {
    let cfg = &ctx.cfg;
    let n = cfg.clients;
    let mut stop = ctx.stop.clone();
    let dial = Dial {
        target: cfg.target.clone(),
        room: cfg.room.clone(),
        connect_timeout: cfg.connect_timeout,
        join_timeout: cfg.setup_timeout,
        max_message: cfg.max_message,
    };
    let source = common::source_for(idx, n, cfg.conns_per_source);
    let user = format!("{}-c{idx}", cfg.user_prefix);
    let joined = tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => return,
        r = async {
            let _permit = ctx.connect_limit.clone().acquire_owned().await;
            common::connect_and_join(&ctx.proto, &dial, &user, source, &env.scratch, idx as u64 ^ now_ns()).await
        } => r,
    };
    let member = match joined {
        Ok(m) => m,
        Err(e) => return ctx.shared.fail(format!("client {idx}: {e}")),
    };
    {
        let mut st = env.stats.borrow_mut();
        st.upgraded.saturating_record(member.upgraded_ns);
        st.joined.saturating_record(member.joined_ns);
    }
    ctx.shared.noise.fetch_add(member.noise, Ordering::Relaxed);
    let mut conn = member.conn;
    let mut sink = match ctx.proto.publish_via(&cfg.target, &cfg.room) {
        PublishVia::WebSocket => Sink::Ws,
        PublishVia::HttpPost(path) => {
            let on = {
                let ctx = ctx.clone();
                move |code, body: &[u8]| http_refused(&ctx.shared, code, body)
            };
            match common::http_sink(&cfg.target, &path, source, &ctx.stop, on).await {
                Ok(s) => s,
                Err(e) => return ctx.shared.fail(format!("client {idx}: {e}")),
            }
        }
    };
    ctx.shared.ready.fetch_add(1, Ordering::SeqCst);
    let mut trackers = vec![SeqTracker::default(); n];
    let mut go = ctx.go.clone();
    let stopped = stop.wait_for(|s| *s);
    tokio::pin!(stopped);
    let mut closed: Option<Closed> = None;

    // Until the go signal: read (notices of other joins).
    let t0 = loop {
        let mut b = Batch::default();
        let step = tokio::select! {
            biased;
            _ = &mut stopped => Step::Stop,
            v = go.wait_for(|v| v.is_some()) => Step::Go(v.map(|v| v.unwrap_or(0)).unwrap_or(0)),
            r = conn.read_batch(&env.scratch, |text, now| {
                on_message(&ctx, &env, &mut trackers, &mut b, text, now)
            }) => Step::Read(r),
        };
        b.commit(&ctx.shared);
        match step {
            Step::Go(t0) => break Some(t0),
            Step::Read(Err(c)) => {
                closed = Some(c);
                break None;
            }
            Step::Stop => break None,
            _ => {}
        }
    };

    if let Some(t0) = t0 {
        let interval = 1e9 / cfg.rate;
        let offset = interval * idx as f64 / n as f64;
        let due = |k: u64| t0 + (offset + k as f64 * interval) as u64;
        let end = t0 + cfg.duration.as_nanos() as u64;
        let (mut text, mut payload) = (String::new(), Vec::new());
        let (mut k, mut lag_max, mut publishing) = (0u64, 0u64, true);
        loop {
            let now = now_ns();
            if publishing {
                let mut queued = 0;
                while queued < MAX_BATCH && due(k) <= now && due(k) < end {
                    lag_max = lag_max.max(now - due(k));
                    stamp::write(
                        &mut text,
                        k * n as u64 + idx as u64,
                        now_ns(),
                        cfg.payload_bytes,
                    );
                    sink.queue(&ctx.proto, &mut conn, &cfg.room, &text, &mut payload);
                    k += 1;
                    queued += 1;
                }
                if queued > 0 {
                    ctx.shared.published[idx].store(k, Ordering::SeqCst);
                    ctx.shared
                        .publish_lag_max_ns
                        .fetch_max(lag_max, Ordering::Relaxed);
                    if let Err(e) = sink.flush(&mut conn).await {
                        keep_first(&ctx.shared.publish_error, || {
                            format!("client {idx}: publish write: {e}")
                        });
                    }
                }
                if due(k) >= end || now >= end {
                    publishing = false;
                    if let Some(why) = sink.failure() {
                        keep_first(&ctx.shared.publish_error, || format!("client {idx}: {why}"));
                    }
                    ctx.shared
                        .publish_end_ns
                        .fetch_max(now_ns(), Ordering::SeqCst);
                    ctx.shared.done_publishing.fetch_add(1, Ordering::SeqCst);
                }
            }
            let wake = if publishing {
                clock::instant_at(due(k).min(end))
            } else {
                clock::instant_at(now_ns() + 3_600_000_000_000)
            };
            let mut b = Batch::default();
            let step = tokio::select! {
                biased;
                _ = &mut stopped => Step::Stop,
                _ = tokio::time::sleep_until(wake.into()) => Step::Wake,
                r = conn.read_batch(&env.scratch, |text, now| {
                    on_message(&ctx, &env, &mut trackers, &mut b, text, now)
                }) => Step::Read(r),
            };
            b.commit(&ctx.shared);
            match step {
                Step::Stop => break,
                Step::Read(Err(c)) => {
                    closed = Some(c);
                    break;
                }
                _ => {}
            }
        }
        if publishing {
            ctx.shared.done_publishing.fetch_add(1, Ordering::SeqCst);
        }
    }

    match closed {
        Some(c) => {
            if !ctx.shared.stopping.load(Ordering::SeqCst) {
                ctx.shared.disconnects.fetch_add(1, Ordering::SeqCst);
                keep_first(&ctx.shared.first_disconnect, || {
                    format!("client {idx}: {c}")
                });
            }
            if t0.is_none() {
                ctx.shared.done_publishing.fetch_add(1, Ordering::SeqCst);
            }
            let _ = stopped.await;
        }
        None => conn.close().await,
    }
    let mut lost = 0;
    let (mut dup, mut late) = (0, 0);
    for (i, t) in trackers.iter().enumerate() {
        lost += t.lost(ctx.shared.published[i].load(Ordering::SeqCst));
        dup += t.duplicates;
        late += t.late;
    }
    let mut st = env.stats.borrow_mut();
    st.lost += lost;
    st.duplicates += dup;
    st.late += late;
    st.finalized += 1;
    st.clients_with_loss += u64::from(lost > 0);
}

async fn worker<P: HubProtocol>(ctx: Arc<Ctx<P>>, w: usize) -> WorkerStats {
    let env = Rc::new(WorkerEnv {
        scratch: conn::new_scratch(),
        stats: RefCell::new(WorkerStats::new()),
    });
    let tasks: Vec<_> = (w..ctx.cfg.clients)
        .step_by(ctx.cfg.threads)
        .map(|idx| tokio::task::spawn_local(client(ctx.clone(), env.clone(), idx)))
        .collect();
    for t in tasks {
        if let Err(e) = t.await {
            ctx.shared.fail(format!("client task failed: {e}"));
        }
    }
    env.stats.replace(WorkerStats::new())
}

/// The result of an all-to-all run.
#[derive(Debug, Clone, Serialize)]
pub struct AllToAllReport {
    /// `all-to-all`.
    pub scenario: &'static str,
    /// Wire protocol.
    pub protocol: &'static str,
    /// Target URL.
    pub url: String,
    /// Clients (each publishes and receives).
    pub clients: usize,
    /// Worker threads of the load generator.
    pub threads: usize,
    /// Messages per second asked of each client.
    pub rate_per_client: f64,
    /// Message text length.
    pub payload_bytes: usize,
    /// Connect + join of every client, seconds.
    pub setup_seconds: f64,
    /// Per connection, connect to upgrade response, ms.
    pub setup_upgrade_ms: MsSummary,
    /// Per connection, connect to joined, ms.
    pub setup_joined_ms: MsSummary,
    /// Wait for notices to stop, seconds.
    pub settle_seconds: f64,
    /// False when notices did not stop within the limit.
    pub settled: bool,
    /// Non-chat frames before measuring.
    pub setup_noise_frames: u64,
    /// From the first publish to the last delivery (or the end of publishing).
    pub measured_seconds: f64,
    /// Messages all clients sent.
    pub messages_published: u64,
    /// Per second over the measured window.
    pub messages_per_second: f64,
    /// Chat deliveries (duplicates included), each client's own messages included.
    pub deliveries: u64,
    /// Per second over the measured window.
    pub deliveries_per_second: f64,
    /// `messages_published * clients`.
    pub expected_deliveries: u64,
    /// Publish to receive latency of first deliveries.
    pub latency_us: LatencyUs,
    /// Expected deliveries that never arrived.
    pub lost: u64,
    /// Deliveries of a message already received.
    pub duplicated: u64,
    /// First deliveries that came after a later message of the same publisher.
    pub reordered: u64,
    /// Clients that missed at least one message.
    pub clients_with_loss: u64,
    /// Every expected delivery arrived before the drain timeout.
    pub drained: bool,
    /// Connections the server closed during the run.
    pub disconnects: u64,
    /// The first of them.
    pub first_disconnect: Option<String>,
    /// Error messages (or refused HTTP publishes) from the server.
    pub server_errors: u64,
    /// The first of them.
    pub first_server_error: Option<String>,
    /// Non-chat frames after measuring started.
    pub noise_frames_during_run: u64,
    /// Chat messages without our stamp.
    pub foreign_messages: u64,
    /// How late, at worst, a client sent a message compared with its schedule, µs.
    pub publish_lag_max_us: f64,
    /// Why publishing failed, if it did.
    pub publish_error: Option<String>,
    /// The server's CPU and memory.
    pub server: Option<ServerUsage>,
    /// The load generator's own CPU.
    pub loadgen: LoadgenUsage,
    /// Nothing lost or duplicated, no disconnects, no publish error.
    pub ok: bool,
}

/// Runs the scenario and reports.
pub fn run(cfg: AllToAllConfig) -> Result<AllToAllReport, String> {
    crate::with_protocol!(cfg.protocol, run_with(cfg))
}

fn run_with<P: HubProtocol>(cfg: AllToAllConfig, proto: P) -> Result<AllToAllReport, String> {
    let (go_tx, go_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let n = cfg.clients;
    let ctx = Arc::new(Ctx {
        connect_limit: Arc::new(Semaphore::new(cfg.connect_concurrency.max(1))),
        shared: Shared {
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            first_failure: Mutex::new(None),
            noise: AtomicU64::new(0),
            last_noise_ns: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            unique: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            first_server_error: Mutex::new(None),
            disconnects: AtomicU64::new(0),
            first_disconnect: Mutex::new(None),
            published: (0..n).map(|_| AtomicU64::new(0)).collect(),
            done_publishing: AtomicUsize::new(0),
            publish_end_ns: AtomicU64::new(0),
            publish_lag_max_ns: AtomicU64::new(0),
            publish_error: Mutex::new(None),
            stopping: AtomicBool::new(false),
        },
        proto,
        go: go_rx,
        stop: stop_rx,
        cfg,
    });
    let cfg = &ctx.cfg;
    let shared = &ctx.shared;
    let abort = |why: String| -> Result<AllToAllReport, String> {
        shared.stopping.store(true, Ordering::SeqCst);
        let _ = stop_tx.send(true);
        Err(why)
    };

    // 1. setup
    let setup_start = now_ns();
    let worker_ctx = ctx.clone();
    let handles = workers::spawn(cfg.threads, move |w| worker(worker_ctx.clone(), w))?;
    loop {
        sleep_ms(5);
        if shared.failed.load(Ordering::SeqCst) > 0 {
            let why = first(&shared.first_failure).unwrap_or_default();
            return abort(format!("setup failed: {why}"));
        }
        let ready = shared.ready.load(Ordering::SeqCst);
        if ready == n {
            break;
        }
        if now_ns() - setup_start > cfg.setup_timeout.as_nanos() as u64 {
            return abort(format!(
                "setup took more than {:?}: {ready} of {n} clients joined",
                cfg.setup_timeout
            ));
        }
    }
    let ready_at = now_ns();
    let setup_seconds = (ready_at - setup_start) as f64 / 1e9;
    eprintln!(
        "loadgen: {n} clients joined {:?} in {setup_seconds:.2} s; settling",
        cfg.room
    );

    // 2. settle
    let quiet = cfg.settle_quiet.as_nanos() as u64;
    let settled = loop {
        sleep_ms(10);
        let now = now_ns();
        let last = shared.last_noise_ns.load(Ordering::Relaxed).max(ready_at);
        if now.saturating_sub(last) >= quiet {
            break true;
        }
        if now - ready_at >= cfg.settle_max.as_nanos() as u64 {
            eprintln!("loadgen: warning: notices still arriving; measuring anyway");
            break false;
        }
        if shared.disconnects.load(Ordering::SeqCst) > 0 {
            let why = first(&shared.first_disconnect).unwrap_or_default();
            return abort(format!("a connection was lost while settling: {why}"));
        }
    };
    let settle_seconds = (now_ns() - ready_at) as f64 / 1e9;
    let setup_noise = shared.noise.load(Ordering::SeqCst);

    // 3. measure
    let cpu_start = CpuSample::take(cfg.server_pid)?;
    let t0 = now_ns();
    eprintln!(
        "loadgen: settled after {settle_seconds:.2} s; {n} clients publishing {} msg/s each",
        cfg.rate
    );
    let _ = go_tx.send(Some(t0));
    let limit = t0 + (cfg.duration + Duration::from_secs(10)).as_nanos() as u64;
    while shared.done_publishing.load(Ordering::SeqCst) < n {
        sleep_ms(2);
        if now_ns() > limit {
            return abort("the clients did not stop publishing in time".into());
        }
    }
    let publish_end = shared.publish_end_ns.load(Ordering::SeqCst).max(t0);
    let published = shared.total_published();
    let expected = published * n as u64;

    // 4. drain
    let drain_limit = now_ns().max(publish_end) + cfg.drain_timeout.as_nanos() as u64;
    let drained = loop {
        if shared.unique.load(Ordering::SeqCst) >= expected {
            break true;
        }
        if now_ns() >= drain_limit {
            break false;
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    let cpu_end = CpuSample::take(cfg.server_pid)?;
    let t_end = shared
        .last_delivery_ns
        .load(Ordering::SeqCst)
        .max(publish_end)
        .max(t0 + 1);
    let measured = (t_end - t0) as f64 / 1e9;
    let noise_during = shared.noise.load(Ordering::SeqCst) - setup_noise;
    shared.stopping.store(true, Ordering::SeqCst);
    let _ = stop_tx.send(true);

    let mut stats = WorkerStats::new();
    for h in handles {
        let s = h.join().map_err(|_| "worker thread panicked".to_string())?;
        stats.merge(&s);
    }
    if stats.finalized != n {
        return Err(format!("only {} of {n} clients reported", stats.finalized));
    }
    let deliveries = shared.deliveries.load(Ordering::SeqCst);
    let (server, loadgen) = report::usage(cpu_start, cpu_end, cfg.server_pid, measured, deliveries);
    let publish_error = first(&shared.publish_error);
    let disconnects = shared.disconnects.load(Ordering::SeqCst);
    Ok(AllToAllReport {
        scenario: "all-to-all",
        protocol: cfg.protocol.name(),
        url: cfg.url.clone(),
        clients: n,
        threads: cfg.threads,
        rate_per_client: cfg.rate,
        payload_bytes: cfg.payload_bytes,
        setup_seconds,
        setup_upgrade_ms: MsSummary::from_ns(&stats.upgraded),
        setup_joined_ms: MsSummary::from_ns(&stats.joined),
        settle_seconds,
        settled,
        setup_noise_frames: setup_noise,
        measured_seconds: measured,
        messages_published: published,
        messages_per_second: report::ratio(published as f64, measured),
        deliveries,
        deliveries_per_second: report::ratio(deliveries as f64, measured),
        expected_deliveries: expected,
        latency_us: LatencyUs::from_ns(&stats.latency),
        lost: stats.lost,
        duplicated: stats.duplicates,
        reordered: stats.late,
        clients_with_loss: stats.clients_with_loss,
        drained,
        disconnects,
        first_disconnect: first(&shared.first_disconnect),
        server_errors: shared.server_errors.load(Ordering::SeqCst),
        first_server_error: first(&shared.first_server_error),
        noise_frames_during_run: noise_during,
        foreign_messages: shared.foreign.load(Ordering::SeqCst),
        publish_lag_max_us: shared.publish_lag_max_ns.load(Ordering::SeqCst) as f64 / 1e3,
        ok: stats.lost == 0 && stats.duplicates == 0 && disconnects == 0 && publish_error.is_none(),
        publish_error,
        server,
        loadgen,
    })
}

/// Prints the human table.
pub fn print(r: &AllToAllReport) {
    use report::{rate as fmt_rate, thousands};
    println!("loadgen all-to-all  {}  (protocol {})", r.url, r.protocol);
    println!(
        "  {} clients, each publishing {} msg/s, {} thread(s), payload {} B",
        thousands(r.clients as u64),
        r.rate_per_client,
        r.threads,
        r.payload_bytes
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
    row("measured window", format!("{:.3} s", r.measured_seconds));
    row(
        "messages published",
        format!(
            "{}  ({} msg/s)",
            thousands(r.messages_published),
            fmt_rate(r.messages_per_second)
        ),
    );
    row(
        "deliveries",
        format!(
            "{} of {} expected  ({} /s)",
            thousands(r.deliveries),
            thousands(r.expected_deliveries),
            fmt_rate(r.deliveries_per_second)
        ),
    );
    let l = &r.latency_us;
    row(
        "latency p50/p99/p99.9/max",
        format!("{} / {} / {} / {} µs", l.p50, l.p99, l.p999, l.max),
    );
    row(
        "lost / duplicated / reordered",
        format!("{} / {} / {}", r.lost, r.duplicated, r.reordered),
    );
    row(
        "disconnects / server errors",
        format!("{} / {}", r.disconnects, r.server_errors),
    );
    row(
        "publisher lag max",
        format!("{:.0} µs", r.publish_lag_max_us),
    );
    report::print_usage(&row, r.server.as_ref(), &r.loadgen);
    if r.noise_frames_during_run > 0 || r.foreign_messages > 0 {
        row(
            "other frames during run",
            format!(
                "{} notices, {} foreign chat messages",
                r.noise_frames_during_run, r.foreign_messages
            ),
        );
    }
    if !r.drained {
        row("drain", "timed out: some deliveries never came".into());
    }
    for (k, v) in [
        ("publish error", &r.publish_error),
        ("first disconnect", &r.first_disconnect),
        ("first server error", &r.first_server_error),
    ] {
        if let Some(v) = v {
            row(k, v.clone());
        }
    }
    row(
        "result",
        if r.ok {
            "OK".into()
        } else {
            "FAILED (see above)".into()
        },
    );
}
