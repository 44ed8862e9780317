//! Scenario `churn`: connections come and go at a fixed rate. Each one connects, upgrades,
//! joins the room, optionally stays a while, leaves the room (when the protocol has a leave
//! message) and closes with the closing handshake, waiting for the server to close the TCP
//! connection. Connection `k` starts at `t0 + k / rate`, or later when `--concurrency`
//! connections are already in flight (the report says how late the latest start was).
//! Reports connects per second achieved, errors, per-phase times and the server's CPU per
//! connection.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::clock::{self, now_ns};
use crate::conn::{self, Scratch};
use crate::protocol::{HubProtocol, Incoming, ProtocolKind};
use crate::report::{self, thousands, CpuSample, Heading, MsSummary, Usage};
use crate::scenario::common::{self, first, keep_first, sleep_ms, Dial};
use crate::target::Target;
use crate::workers;

const MAX_NS: u64 = 600_000_000_000;

/// Everything a churn run needs, already validated.
#[derive(Debug, Clone)]
pub struct ChurnConfig {
    /// The URL as given.
    pub url: String,
    /// Resolved loopback target.
    pub target: Target,
    /// Wire protocol.
    pub protocol: ProtocolKind,
    /// Connections started per second.
    pub rate: f64,
    /// Connections are started for this long.
    pub duration: Duration,
    /// Most connections in flight at once.
    pub concurrency: usize,
    /// How long each connection stays after joining.
    pub hold: Duration,
    /// Send the leave message (and wait for its answer) before closing.
    pub leave: bool,
    /// Room each connection joins.
    pub room: String,
    /// Worker threads.
    pub threads: usize,
    /// Timeout of connect + upgrade.
    pub connect_timeout: Duration,
    /// Timeout of handshake + join, and of the leave's answer.
    pub join_timeout: Duration,
    /// How long to wait for the server to close after our close frame.
    pub close_timeout: Duration,
    /// Server process to watch.
    pub server_pid: Option<u32>,
    /// Users are named `PREFIX-kN`.
    pub user_prefix: String,
    /// Largest server message accepted.
    pub max_message: usize,
    /// Connections per source address (over the whole run).
    pub conns_per_source: usize,
}

impl ChurnConfig {
    /// Connections the run starts.
    pub fn attempts(&self) -> usize {
        (self.rate * self.duration.as_secs_f64()).floor().max(1.0) as usize
    }

    /// Bound on the whole run, for the watchdog.
    pub fn run_budget(&self) -> Duration {
        // Starts can fall behind when the concurrency cap is reached; the tail of the run is
        // bounded by the per-connection timeouts.
        self.duration * 3
            + self.hold
            + self.connect_timeout
            + self.join_timeout * 2
            + self.close_timeout
            + Duration::from_secs(30)
    }
}

#[derive(Default)]
struct Shared {
    completed: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    left: AtomicU64,
    server_closed: AtomicU64,
    start_lag_max_ns: AtomicU64,
    last_end_ns: AtomicU64,
}

struct Ctx<P> {
    cfg: ChurnConfig,
    proto: P,
    shared: Shared,
    limit: Arc<Semaphore>,
    t0: u64,
}

struct Stats {
    upgraded: Histogram<u64>,
    joined: Histogram<u64>,
    cycle: Histogram<u64>,
}

impl Stats {
    fn new() -> Self {
        let h = || Histogram::new_with_bounds(1, MAX_NS, 2).expect("bounds");
        Self {
            upgraded: h(),
            joined: h(),
            cycle: h(),
        }
    }
}

struct WorkerEnv {
    scratch: Scratch,
    stats: RefCell<Stats>,
}

async fn cycle<P: HubProtocol>(
    ctx: Arc<Ctx<P>>,
    env: Rc<WorkerEnv>,
    k: usize,
    _permit: OwnedSemaphorePermit,
) {
    let cfg = &ctx.cfg;
    let started = now_ns();
    let result = async {
        let dial = Dial {
            target: cfg.target.clone(),
            room: cfg.room.clone(),
            connect_timeout: cfg.connect_timeout,
            join_timeout: cfg.join_timeout,
            max_message: cfg.max_message,
        };
        let source = common::source_for(k, cfg.attempts(), cfg.conns_per_source);
        let user = format!("{}-k{k}", cfg.user_prefix);
        let member = common::connect_and_join(
            &ctx.proto,
            &dial,
            &user,
            source,
            &env.scratch,
            k as u64 ^ started,
        )
        .await?;
        {
            let mut st = env.stats.borrow_mut();
            st.upgraded.saturating_record(member.upgraded_ns);
            st.joined.saturating_record(member.joined_ns);
        }
        let mut conn = member.conn;
        if !cfg.hold.is_zero() {
            tokio::time::sleep(cfg.hold).await;
        }
        let mut leave = Vec::new();
        if cfg.leave && ctx.proto.encode_leave(&cfg.room, &mut leave) {
            conn.queue_text(&leave);
            conn.flush().await.map_err(|e| format!("send leave: {e}"))?;
            let deadline = tokio::time::Instant::now() + cfg.join_timeout;
            loop {
                let mut left = false;
                let read = conn.read_batch(&env.scratch, |text, _| {
                    match ctx.proto.classify(text) {
                        Incoming::Left { room } if room == cfg.room => left = true,
                        Incoming::Reply(r) => return Some(r),
                        _ => {}
                    }
                    None
                });
                tokio::time::timeout_at(deadline, read)
                    .await
                    .map_err(|_| format!("no answer to leave within {:?}", cfg.join_timeout))?
                    .map_err(|c| format!("closed before leaving: {c}"))?;
                if left {
                    ctx.shared.left.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        if conn.close_gracefully(&env.scratch, cfg.close_timeout).await {
            ctx.shared.server_closed.fetch_add(1, Ordering::Relaxed);
        }
        Ok::<(), String>(())
    }
    .await;
    let end = now_ns();
    ctx.shared.last_end_ns.fetch_max(end, Ordering::Relaxed);
    match result {
        Ok(()) => {
            ctx.shared.completed.fetch_add(1, Ordering::Relaxed);
            env.stats
                .borrow_mut()
                .cycle
                .saturating_record(end.saturating_sub(started).max(1));
        }
        Err(e) => {
            ctx.shared.errors.fetch_add(1, Ordering::Relaxed);
            keep_first(&ctx.shared.first_error, || format!("connection {k}: {e}"));
        }
    }
}

async fn worker<P: HubProtocol>(ctx: Arc<Ctx<P>>, w: usize) -> Stats {
    let env = Rc::new(WorkerEnv {
        scratch: conn::new_scratch(),
        stats: RefCell::new(Stats::new()),
    });
    let interval = 1e9 / ctx.cfg.rate;
    let mut tasks = Vec::new();
    for k in (w..ctx.cfg.attempts()).step_by(ctx.cfg.threads) {
        let due = ctx.t0 + (k as f64 * interval) as u64;
        tokio::time::sleep_until(clock::instant_at(due).into()).await;
        let Ok(permit) = ctx.limit.clone().acquire_owned().await else {
            break;
        };
        let lag = now_ns().saturating_sub(due);
        ctx.shared
            .start_lag_max_ns
            .fetch_max(lag, Ordering::Relaxed);
        tasks.push(tokio::task::spawn_local(cycle(
            ctx.clone(),
            env.clone(),
            k,
            permit,
        )));
        if tasks.len() >= 4096 {
            tasks.retain(|t| !t.is_finished());
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    env.stats.replace(Stats::new())
}

/// The result of a churn run.
#[derive(Debug, Clone, Serialize)]
pub struct ChurnReport {
    #[serde(flatten)]
    pub heading: Heading,
    /// Connections per second asked for.
    pub rate: f64,
    /// Seconds over which connections were started (asked for).
    pub duration_seconds: f64,
    /// Most connections in flight at once.
    pub concurrency: usize,
    /// Milliseconds each connection stayed after joining.
    pub hold_ms: f64,
    /// Whether connections sent a leave message before closing.
    pub leave: bool,
    /// Worker threads of the load generator.
    pub threads: usize,
    /// Connections started.
    pub attempts: usize,
    /// Connections that connected, joined, (left) and closed without error.
    pub completed: u64,
    /// Connections that failed somewhere.
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Leaves the server confirmed.
    pub left_confirmed: u64,
    /// Connections the server closed after our close frame within the close timeout.
    pub server_closed: u64,
    /// From the first start to the end of the last connection, seconds.
    pub measured_seconds: f64,
    /// `completed / measured_seconds`.
    pub connects_per_second: f64,
    /// How late the most delayed start was (concurrency cap reached), ms.
    pub start_lag_max_ms: f64,
    /// Connect to upgrade response, ms.
    pub upgrade_ms: MsSummary,
    /// Connect to joined, ms.
    pub joined_ms: MsSummary,
    /// Connect to closed, ms.
    pub cycle_ms: MsSummary,
    /// A delivery here is a completed connection: the server's `cpu_us_per_delivery` is per
    /// connection, the load generator's `deliveries_per_cpu_second` connections per
    /// CPU-second.
    #[serde(flatten)]
    pub usage: Usage,
    /// No errors.
    pub ok: bool,
}

/// Runs the scenario and reports.
pub fn run(cfg: ChurnConfig) -> Result<ChurnReport, String> {
    crate::with_protocol!(cfg.protocol, run_with(cfg))
}

fn run_with<P: HubProtocol>(cfg: ChurnConfig, proto: P) -> Result<ChurnReport, String> {
    let cpu_start = CpuSample::take(cfg.server_pid)?;
    // Start a little in the future so that every worker's first due time is ahead of it.
    let t0 = now_ns() + 20_000_000;
    let ctx = Arc::new(Ctx {
        limit: Arc::new(Semaphore::new(cfg.concurrency.max(1))),
        shared: Shared::default(),
        proto,
        t0,
        cfg,
    });
    let cfg = &ctx.cfg;
    eprintln!(
        "loadgen: churn: {} connections at {} per second (at most {} in flight)",
        cfg.attempts(),
        cfg.rate,
        cfg.concurrency
    );
    let worker_ctx = ctx.clone();
    let handles = workers::spawn(cfg.threads, move |w| worker(worker_ctx.clone(), w))?;
    let mut stats = Stats::new();
    for h in handles {
        let s = h.join().map_err(|_| "worker thread panicked".to_string())?;
        let _ = stats.upgraded.add(&s.upgraded);
        let _ = stats.joined.add(&s.joined);
        let _ = stats.cycle.add(&s.cycle);
    }
    // Let the server finish the last closes before the CPU is read.
    sleep_ms(100);
    let cpu_end = CpuSample::take(cfg.server_pid)?;
    let shared = &ctx.shared;
    let end = shared.last_end_ns.load(Ordering::SeqCst).max(t0 + 1);
    let measured = (end - t0) as f64 / 1e9;
    let completed = shared.completed.load(Ordering::SeqCst);
    let errors = shared.errors.load(Ordering::SeqCst);
    let usage = report::usage(cpu_start, cpu_end, cfg.server_pid, measured, completed);
    Ok(ChurnReport {
        heading: Heading::new("churn", cfg.protocol, &cfg.url),
        rate: cfg.rate,
        duration_seconds: cfg.duration.as_secs_f64(),
        concurrency: cfg.concurrency,
        hold_ms: cfg.hold.as_secs_f64() * 1e3,
        leave: cfg.leave,
        threads: cfg.threads,
        attempts: cfg.attempts(),
        completed,
        errors,
        first_error: first(&shared.first_error),
        left_confirmed: shared.left.load(Ordering::SeqCst),
        server_closed: shared.server_closed.load(Ordering::SeqCst),
        measured_seconds: measured,
        connects_per_second: report::ratio(completed as f64, measured),
        start_lag_max_ms: shared.start_lag_max_ns.load(Ordering::SeqCst) as f64 / 1e6,
        upgrade_ms: MsSummary::from_ns(&stats.upgraded),
        joined_ms: MsSummary::from_ns(&stats.joined),
        cycle_ms: MsSummary::from_ns(&stats.cycle),
        usage,
        ok: errors == 0,
    })
}

/// Prints the human table.
pub fn print(r: &ChurnReport) {
    r.heading.print_title();
    println!(
        "  {} connections/s for {:.1} s, at most {} in flight, hold {} ms, leave {}, {} thread(s)",
        r.rate,
        r.duration_seconds,
        r.concurrency,
        r.hold_ms,
        if r.leave { "on" } else { "off" },
        r.threads
    );
    println!("{}", "-".repeat(64));
    let row = |k: &str, v: String| println!("{k:<30} {v}");
    row(
        "connections",
        format!(
            "{} started, {} completed, {} errors",
            thousands(r.attempts as u64),
            thousands(r.completed),
            r.errors
        ),
    );
    row(
        "achieved",
        format!(
            "{} connects/s over {:.3} s (latest start {:.1} ms late)",
            report::rate(r.connects_per_second),
            r.measured_seconds,
            r.start_lag_max_ms
        ),
    );
    let f = |m: &MsSummary| format!("{} / {} / {}", m.p50, m.p99, m.max);
    row("upgraded p50/p99/max", format!("{} ms", f(&r.upgrade_ms)));
    row("joined p50/p99/max", format!("{} ms", f(&r.joined_ms)));
    row("closed p50/p99/max", format!("{} ms", f(&r.cycle_ms)));
    row(
        "leaves confirmed / server closed",
        format!(
            "{} / {}",
            thousands(r.left_confirmed),
            thousands(r.server_closed)
        ),
    );
    if let Some(s) = &r.usage.server {
        report::print_server_usage(&row, s, "connection", 1);
    }
    row(
        "loadgen CPU",
        format!(
            "{:.2} s ({:.0}% of a core)",
            r.usage.loadgen.cpu_seconds,
            r.usage.loadgen.cpu_cores * 100.0
        ),
    );
    if let Some(e) = &r.first_error {
        row("first error", e.clone());
    }
    report::print_result(&row, r.ok);
}
