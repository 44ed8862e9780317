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

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{watch, Semaphore};

use crate::clock::{self, now_ns};
use crate::conn::Closed;
use crate::protocol::{HubProtocol, Incoming, ProtocolKind, PublishVia};
use crate::report::{self, CpuSample, Heading, Usage};
use crate::scenario::common::{self, first, keep_first, sleep_ms, Dial, SetupProgress, Sink, Step};
use crate::scenario::delivery::{ReadBatch, Received, ReceiverStats, WorkerEnv};
use crate::scenario::delivery_report::{self, Deliveries, Disturbances, Publishing, Setup};
use crate::seq::SeqTracker;
use crate::target::Target;
use crate::{stamp, workers};

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
    setup: SetupProgress,
    received: Received,
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
    fn total_published(&self) -> u64 {
        self.published
            .iter()
            .map(|p| p.load(Ordering::SeqCst))
            .sum()
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

fn on_message<P: HubProtocol>(
    ctx: &Ctx<P>,
    env: &WorkerEnv,
    trackers: &mut [SeqTracker],
    b: &mut ReadBatch,
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
            let (publisher, k) = ((seq % n) as usize, seq / n);
            b.delivery(&mut trackers[publisher], k, sent, now, &env.stats);
        }
        Incoming::Error { text } => b.server_error(now, text, &ctx.shared.received),
        Incoming::Reply(reply) => return Some(reply),
        _ => b.noise(now),
    }
    None
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
        Err(e) => return ctx.shared.setup.fail(format!("client {idx}: {e}")),
    };
    {
        let mut st = env.stats.borrow_mut();
        st.upgraded.saturating_record(member.upgraded_ns);
        st.joined.saturating_record(member.joined_ns);
    }
    ctx.shared
        .received
        .noise
        .fetch_add(member.noise, Ordering::Relaxed);
    let mut conn = member.conn;
    let mut sink = match ctx.proto.publish_via(&cfg.target, &cfg.room) {
        PublishVia::WebSocket => Sink::Ws,
        PublishVia::HttpPost(path) => {
            let on = {
                let ctx = ctx.clone();
                move |code, body: &[u8]| ctx.shared.received.http_answer(code, body)
            };
            match common::http_sink(&cfg.target, &path, source, &ctx.stop, on).await {
                Ok(s) => s,
                Err(e) => return ctx.shared.setup.fail(format!("client {idx}: {e}")),
            }
        }
    };
    ctx.shared.setup.joined();
    let mut trackers = vec![SeqTracker::default(); n];
    let mut go = ctx.go.clone();
    let stopped = stop.wait_for(|s| *s);
    tokio::pin!(stopped);
    let mut closed: Option<Closed> = None;

    // Until the go signal: read (notices of other joins).
    let t0 = loop {
        let mut b = ReadBatch::default();
        let step = tokio::select! {
            biased;
            _ = &mut stopped => Step::Stop,
            v = go.wait_for(|v| v.is_some()) => Step::Go(v.map(|v| v.unwrap_or(0)).unwrap_or(0)),
            r = conn.read_batch(&env.scratch, |text, now| {
                on_message(&ctx, &env, &mut trackers, &mut b, text, now)
            }) => Step::Read(r),
        };
        b.commit(&ctx.shared.received);
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
            let mut b = ReadBatch::default();
            let step = tokio::select! {
                biased;
                _ = &mut stopped => Step::Stop,
                _ = tokio::time::sleep_until(wake.into()) => Step::Wake,
                r = conn.read_batch(&env.scratch, |text, now| {
                    on_message(&ctx, &env, &mut trackers, &mut b, text, now)
                }) => Step::Read(r),
            };
            b.commit(&ctx.shared.received);
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
    env.stats.borrow_mut().finalize_receiver(lost, dup, late);
}

async fn worker<P: HubProtocol>(ctx: Arc<Ctx<P>>, w: usize) -> ReceiverStats {
    let env = Rc::new(WorkerEnv::new());
    let tasks: Vec<_> = (w..ctx.cfg.clients)
        .step_by(ctx.cfg.threads)
        .map(|idx| tokio::task::spawn_local(client(ctx.clone(), env.clone(), idx)))
        .collect();
    for t in tasks {
        if let Err(e) = t.await {
            ctx.shared.setup.fail(format!("client task failed: {e}"));
        }
    }
    env.take_stats()
}

/// The result of an all-to-all run.
#[derive(Debug, Clone, Serialize)]
pub struct AllToAllReport {
    #[serde(flatten)]
    pub heading: Heading,
    /// Clients (each publishes and receives).
    pub clients: usize,
    /// Worker threads of the load generator.
    pub threads: usize,
    /// Messages per second asked of each client.
    pub rate_per_client: f64,
    /// Message text length.
    pub payload_bytes: usize,
    #[serde(flatten)]
    pub setup: Setup,
    #[serde(flatten)]
    pub deliveries: Deliveries,
    /// Clients that missed at least one message.
    pub clients_with_loss: u64,
    #[serde(flatten)]
    pub disturbances: Disturbances,
    #[serde(flatten)]
    pub publishing: Publishing,
    #[serde(flatten)]
    pub usage: Usage,
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
            setup: SetupProgress::default(),
            received: Received::default(),
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
    let setup = &shared.setup;
    if let Err(why) = common::wait_for_setup(setup, n, "client", setup_start, cfg.setup_timeout) {
        return abort(why);
    }
    let ready_at = now_ns();
    let setup_seconds = (ready_at - setup_start) as f64 / 1e9;
    eprintln!(
        "loadgen: {n} clients joined {:?} in {setup_seconds:.2} s; settling",
        cfg.room
    );

    // 2. settle
    let received = &shared.received;
    let lost = || {
        (shared.disconnects.load(Ordering::SeqCst) > 0)
            .then(|| first(&shared.first_disconnect).unwrap_or_default())
    };
    let settled = match common::settle(
        &received.last_noise_ns,
        ready_at,
        cfg.settle_quiet,
        cfg.settle_max,
        "notices",
        lost,
    ) {
        Ok(settled) => settled,
        Err(why) => return abort(why),
    };
    let settle_seconds = (now_ns() - ready_at) as f64 / 1e9;
    let setup_noise = received.noise.load(Ordering::SeqCst);

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
    let drained = common::drain(&received.unique, expected, drain_limit);
    let cpu_end = CpuSample::take(cfg.server_pid)?;
    let measured = received.measured_seconds(t0, publish_end);
    let noise_during = received.noise.load(Ordering::SeqCst) - setup_noise;
    shared.stopping.store(true, Ordering::SeqCst);
    let _ = stop_tx.send(true);

    let mut stats = ReceiverStats::new();
    for h in handles {
        let s = h.join().map_err(|_| "worker thread panicked".to_string())?;
        stats.merge(&s);
    }
    if stats.finalized != n {
        return Err(format!("only {} of {n} clients reported", stats.finalized));
    }
    let delivered = received.deliveries.load(Ordering::SeqCst);
    let usage = report::usage(cpu_start, cpu_end, cfg.server_pid, measured, delivered);
    let deliveries = Deliveries::new(published, expected, delivered, measured, &stats);
    let disturbances = Disturbances::new(
        drained,
        received,
        noise_during,
        shared.disconnects.load(Ordering::SeqCst),
        first(&shared.first_disconnect),
    );
    let publishing = Publishing {
        publish_lag_max_us: Some(shared.publish_lag_max_ns.load(Ordering::SeqCst) as f64 / 1e3),
        publish_error: first(&shared.publish_error),
    };
    Ok(AllToAllReport {
        heading: Heading::new("all-to-all", cfg.protocol, &cfg.url),
        clients: n,
        threads: cfg.threads,
        rate_per_client: cfg.rate,
        payload_bytes: cfg.payload_bytes,
        setup: Setup::new(setup_seconds, settle_seconds, settled, setup_noise, &stats),
        clients_with_loss: stats.receivers_with_loss,
        ok: delivery_report::passed(&deliveries, &disturbances, &publishing),
        deliveries,
        disturbances,
        publishing,
        usage,
    })
}

/// Prints the human table.
pub fn print(r: &AllToAllReport) {
    use report::thousands;
    r.heading.print_title();
    println!(
        "  {} clients, each publishing {} msg/s, {} thread(s), payload {} B",
        thousands(r.clients as u64),
        r.rate_per_client,
        r.threads,
        r.payload_bytes
    );
    delivery_report::print_body(
        &r.setup,
        &r.deliveries,
        &r.disturbances,
        &r.publishing,
        &r.usage,
        r.ok,
    );
}
