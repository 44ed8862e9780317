//! Scenario `idle`: open N connections, join them all to one room (or, with `--no-join`,
//! to none), and hold them for a while
//! without traffic. Reports the server's memory per connection: its resident memory
//! (VmRSS of the process and its descendants, from /proc) after connecting, minus a baseline
//! taken before the first connection, divided by N. Also the server's CPU per connection
//! during setup and its CPU while holding (keep-alive pings, timers).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{watch, Semaphore};

use crate::clock::now_ns;
use crate::conn::{self, Scratch};
use crate::protocol::{HubProtocol, Incoming, ProtocolKind};
use crate::report::{self, thousands, Heading, MsSummary, ServerTrouble};
use crate::scenario::common::{self, first, keep_first, sleep_ms, Dial, SetupProgress};
use crate::sys::{self, Proc};
use crate::target::Target;
use crate::workers;

const MAX_NS: u64 = 600_000_000_000;

/// Everything an idle run needs, already validated.
#[derive(Debug, Clone)]
pub struct IdleConfig {
    /// The URL as given.
    pub url: String,
    /// Resolved loopback target.
    pub target: Target,
    /// Wire protocol.
    pub protocol: ProtocolKind,
    /// Connections to hold.
    pub connections: usize,
    /// Room they all join.
    pub room: String,
    /// False: they join no room.
    pub join: bool,
    /// How long to hold them once set up and settled.
    pub hold: Duration,
    /// Worker threads.
    pub threads: usize,
    /// Timeout of connect + upgrade, per connection.
    pub connect_timeout: Duration,
    /// Connections between connect and joined at once.
    pub connect_concurrency: usize,
    /// Setup must finish within this.
    pub setup_timeout: Duration,
    /// Settled when no frame arrived for this long.
    pub settle_quiet: Duration,
    /// Give up waiting for quiet after this long.
    pub settle_max: Duration,
    /// Server process to measure.
    pub server_pid: u32,
    /// Users are named `PREFIX-iN`.
    pub user_prefix: String,
    /// Largest server message accepted.
    pub max_message: usize,
    /// Connections per source address.
    pub conns_per_source: usize,
}

impl IdleConfig {
    /// Bound on the whole run, for the watchdog.
    pub fn run_budget(&self) -> Duration {
        self.setup_timeout + self.settle_max + self.hold + Duration::from_secs(30)
    }
}

struct Shared {
    setup: SetupProgress,
    frames: AtomicU64,
    last_frame_ns: AtomicU64,
    server_errors: AtomicU64,
    first_server_error: Mutex<Option<String>>,
    disconnects: AtomicU64,
    first_disconnect: Mutex<Option<String>>,
    stopping: AtomicBool,
}

struct Ctx<P> {
    cfg: IdleConfig,
    proto: P,
    shared: Shared,
    connect_limit: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
}

struct WorkerEnv {
    scratch: Scratch,
    upgraded: RefCell<Histogram<u64>>,
    joined: RefCell<Histogram<u64>>,
}

async fn holder<P: HubProtocol>(ctx: Arc<Ctx<P>>, env: Rc<WorkerEnv>, idx: usize) {
    let cfg = &ctx.cfg;
    let mut stop = ctx.stop.clone();
    let dial = Dial {
        target: cfg.target.clone(),
        room: cfg.room.clone(),
        connect_timeout: cfg.connect_timeout,
        join_timeout: cfg.setup_timeout,
        max_message: cfg.max_message,
    };
    let source = common::source_for(idx, cfg.connections, cfg.conns_per_source);
    let user = format!("{}-i{idx}", cfg.user_prefix);
    let joined = tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => return,
        r = async {
            let _permit = ctx.connect_limit.clone().acquire_owned().await;
            let seed = idx as u64 ^ now_ns();
            common::connect_member(&ctx.proto, &dial, &user, source, &env.scratch, seed, cfg.join).await
        } => r,
    };
    let member = match joined {
        Ok(m) => m,
        Err(e) => return ctx.shared.setup.fail(format!("connection {idx}: {e}")),
    };
    env.upgraded
        .borrow_mut()
        .saturating_record(member.upgraded_ns);
    env.joined.borrow_mut().saturating_record(member.joined_ns);
    ctx.shared.frames.fetch_add(member.noise, Ordering::Relaxed);
    ctx.shared.setup.joined();
    let mut conn = member.conn;
    let stopped = stop.wait_for(|s| *s);
    tokio::pin!(stopped);
    loop {
        let (mut frames, mut last) = (0u64, 0u64);
        let read = conn.read_batch(&env.scratch, |text, now| {
            frames += 1;
            last = now;
            match ctx.proto.classify(text) {
                Incoming::Reply(reply) => return Some(reply),
                Incoming::Error { text } => {
                    ctx.shared.server_errors.fetch_add(1, Ordering::Relaxed);
                    keep_first(&ctx.shared.first_server_error, || {
                        String::from_utf8_lossy(text).into_owned()
                    });
                }
                _ => {}
            }
            None
        });
        let result = tokio::select! {
            biased;
            _ = &mut stopped => None,
            r = read => Some(r),
        };
        if frames > 0 {
            ctx.shared.frames.fetch_add(frames, Ordering::Relaxed);
            ctx.shared.last_frame_ns.fetch_max(last, Ordering::Relaxed);
        }
        match result {
            None => return conn.close().await,
            Some(Ok(())) => {}
            Some(Err(c)) => {
                if !ctx.shared.stopping.load(Ordering::SeqCst) {
                    ctx.shared.disconnects.fetch_add(1, Ordering::SeqCst);
                    keep_first(&ctx.shared.first_disconnect, || {
                        format!("connection {idx}: {c}")
                    });
                }
                return;
            }
        }
    }
}

async fn worker<P: HubProtocol>(ctx: Arc<Ctx<P>>, w: usize) -> (Histogram<u64>, Histogram<u64>) {
    let env = Rc::new(WorkerEnv {
        scratch: conn::new_scratch(),
        upgraded: RefCell::new(Histogram::new_with_bounds(1, MAX_NS, 2).expect("bounds")),
        joined: RefCell::new(Histogram::new_with_bounds(1, MAX_NS, 2).expect("bounds")),
    });
    let tasks: Vec<_> = (w..ctx.cfg.connections)
        .step_by(ctx.cfg.threads)
        .map(|idx| tokio::task::spawn_local(holder(ctx.clone(), env.clone(), idx)))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let up = env.upgraded.borrow().clone();
    let joined = env.joined.borrow().clone();
    (up, joined)
}

/// The result of an idle run.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    #[serde(flatten)]
    pub heading: Heading,
    /// Connections held.
    pub connections: usize,
    /// Each joined the run's room; false with `--no-join`.
    pub joined_room: bool,
    /// Worker threads of the load generator.
    pub threads: usize,
    /// Connect + join of every connection, seconds.
    pub setup_seconds: f64,
    /// Connections set up per second.
    pub setup_connections_per_second: f64,
    /// Per connection, connect to upgrade response, ms.
    pub setup_upgrade_ms: MsSummary,
    /// Per connection, connect to joined, ms.
    pub setup_joined_ms: MsSummary,
    /// Wait until no frame came for the settle time, seconds.
    pub settle_seconds: f64,
    /// False when frames kept coming until the limit.
    pub settled: bool,
    /// Seconds the connections were held after settling.
    pub hold_seconds: f64,
    /// Server VmRSS before the first connection, KiB.
    pub baseline_rss_kib: u64,
    /// Server VmRSS once all were connected and settled, KiB.
    pub loaded_rss_kib: u64,
    /// Server VmRSS at the end of the hold, KiB.
    pub end_rss_kib: u64,
    /// Server VmHWM (peak) at the end, KiB.
    pub peak_rss_kib: Option<u64>,
    /// `(end_rss - baseline_rss) / connections`, bytes.
    pub rss_per_connection_bytes: f64,
    /// `(peak_rss - baseline_rss) / connections`, bytes.
    pub peak_rss_per_connection_bytes: Option<f64>,
    /// Server CPU from the first connect to settled, seconds.
    pub setup_server_cpu_seconds: f64,
    /// Server CPU per connection set up, µs.
    pub setup_server_cpu_us_per_connection: f64,
    /// Server CPU during the hold, seconds.
    pub hold_server_cpu_seconds: f64,
    /// Server CPU during the hold as a share of one core.
    pub hold_server_cpu_cores: f64,
    /// The load generator's VmRSS growth per connection, bytes (its own cost, for scale).
    pub loadgen_rss_per_connection_bytes: f64,
    /// Frames received after the connections were set up (notices, keep-alives).
    pub frames_after_setup: u64,
    #[serde(flatten)]
    pub server: ServerTrouble,
    /// Every connection held to the end.
    pub ok: bool,
}

/// Runs the scenario and reports.
pub fn run(cfg: IdleConfig) -> Result<IdleReport, String> {
    crate::with_protocol!(cfg.protocol, run_with(cfg))
}

fn rss(pid: u32) -> Result<u64, String> {
    sys::tree_status_kib(pid, "VmRSS").ok_or_else(|| format!("cannot read VmRSS of {pid}"))
}

fn run_with<P: HubProtocol>(cfg: IdleConfig, proto: P) -> Result<IdleReport, String> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let n = cfg.connections;
    let pid = cfg.server_pid;
    let ctx = Arc::new(Ctx {
        connect_limit: Arc::new(Semaphore::new(cfg.connect_concurrency.max(1))),
        shared: Shared {
            setup: SetupProgress::default(),
            frames: AtomicU64::new(0),
            last_frame_ns: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            first_server_error: Mutex::new(None),
            disconnects: AtomicU64::new(0),
            first_disconnect: Mutex::new(None),
            stopping: AtomicBool::new(false),
        },
        proto,
        stop: stop_rx,
        cfg,
    });
    let cfg = &ctx.cfg;
    let shared = &ctx.shared;
    let abort = |why: String| -> Result<IdleReport, String> {
        shared.stopping.store(true, Ordering::SeqCst);
        let _ = stop_tx.send(true);
        Err(why)
    };

    let baseline_rss = rss(pid)?;
    let my_rss0 = sys::status_kib(Proc::Me, "VmRSS").unwrap_or(0);
    let cpu0 = sys::tree_cpu_seconds(pid)?;

    // 1. setup
    let setup_start = now_ns();
    let worker_ctx = ctx.clone();
    let handles = workers::spawn(cfg.threads, move |w| worker(worker_ctx.clone(), w))?;
    let setup = &shared.setup;
    if let Err(why) = common::wait_for_setup(setup, n, "connection", setup_start, cfg.setup_timeout)
    {
        return abort(why);
    }
    let ready_at = now_ns();
    let setup_seconds = (ready_at - setup_start) as f64 / 1e9;
    eprintln!(
        "loadgen: {n} connections joined {:?} in {setup_seconds:.2} s; settling",
        cfg.room
    );

    // 2. settle
    // Idle connections are not watched for losses while settling: the hold counts them.
    let settled = common::settle(
        &shared.last_frame_ns,
        ready_at,
        cfg.settle_quiet,
        cfg.settle_max,
        "frames",
        || None,
    )?;
    let settle_seconds = (now_ns() - ready_at) as f64 / 1e9;
    let frames_setup = shared.frames.load(Ordering::SeqCst);

    // 3. hold
    let loaded_rss = rss(pid)?;
    let cpu1 = sys::tree_cpu_seconds(pid)?;
    let my_rss1 = sys::status_kib(Proc::Me, "VmRSS").unwrap_or(0);
    eprintln!(
        "loadgen: settled after {settle_seconds:.2} s; holding {n} connections for {:?}",
        cfg.hold
    );
    let hold_start = now_ns();
    let hold_end = hold_start + cfg.hold.as_nanos() as u64;
    while now_ns() < hold_end {
        sleep_ms(50);
    }
    let hold_seconds = (now_ns() - hold_start) as f64 / 1e9;
    let end_rss = rss(pid)?;
    let peak_rss = sys::tree_status_kib(pid, "VmHWM");
    let cpu2 = sys::tree_cpu_seconds(pid)?;
    let frames_after = shared.frames.load(Ordering::SeqCst) - frames_setup;
    shared.stopping.store(true, Ordering::SeqCst);
    let _ = stop_tx.send(true);

    let mut upgraded = Histogram::<u64>::new_with_bounds(1, MAX_NS, 2).expect("bounds");
    let mut joined = upgraded.clone();
    for h in handles {
        let (u, j) = h.join().map_err(|_| "worker thread panicked".to_string())?;
        let _ = upgraded.add(&u);
        let _ = joined.add(&j);
    }
    let per = |kib: u64| (kib as f64 - baseline_rss as f64) * 1024.0 / n as f64;
    let disconnects = shared.disconnects.load(Ordering::SeqCst);
    let setup_cpu = (cpu1 - cpu0).max(0.0);
    let hold_cpu = (cpu2 - cpu1).max(0.0);
    Ok(IdleReport {
        heading: Heading::new("idle", cfg.protocol, &cfg.url),
        connections: n,
        joined_room: cfg.join,
        threads: cfg.threads,
        setup_seconds,
        setup_connections_per_second: report::ratio(n as f64, setup_seconds),
        setup_upgrade_ms: MsSummary::from_ns(&upgraded),
        setup_joined_ms: MsSummary::from_ns(&joined),
        settle_seconds,
        settled,
        hold_seconds,
        baseline_rss_kib: baseline_rss,
        loaded_rss_kib: loaded_rss,
        end_rss_kib: end_rss,
        peak_rss_kib: peak_rss,
        rss_per_connection_bytes: per(end_rss),
        peak_rss_per_connection_bytes: peak_rss.map(per),
        setup_server_cpu_seconds: setup_cpu,
        setup_server_cpu_us_per_connection: setup_cpu * 1e6 / n as f64,
        hold_server_cpu_seconds: hold_cpu,
        hold_server_cpu_cores: report::ratio(hold_cpu, hold_seconds),
        loadgen_rss_per_connection_bytes: (my_rss1 as f64 - my_rss0 as f64) * 1024.0 / n as f64,
        frames_after_setup: frames_after,
        server: ServerTrouble {
            disconnects,
            first_disconnect: first(&shared.first_disconnect),
            server_errors: shared.server_errors.load(Ordering::SeqCst),
            first_server_error: first(&shared.first_server_error),
        },
        ok: disconnects == 0,
    })
}

/// Prints the human table.
pub fn print(r: &IdleReport) {
    r.heading.print_title();
    println!(
        "  {} connections in {}, {} thread(s), held {:.1} s",
        thousands(r.connections as u64),
        if r.joined_room { "one room" } else { "no room" },
        r.threads,
        r.hold_seconds
    );
    println!("{}", "-".repeat(64));
    let row = |k: &str, v: String| println!("{k:<30} {v}");
    row(
        "setup",
        format!(
            "{:.2} s ({} connections/s), settle {:.2} s{}",
            r.setup_seconds,
            report::rate(r.setup_connections_per_second),
            r.settle_seconds,
            if r.settled { "" } else { " (NOT settled)" }
        ),
    );
    let (u, j) = (&r.setup_upgrade_ms, &r.setup_joined_ms);
    row(
        "per connection (ms)",
        format!(
            "upgraded p50/p99/max {} / {} / {}, joined {} / {} / {}",
            u.p50, u.p99, u.max, j.p50, j.p99, j.max
        ),
    );
    row(
        "server RSS",
        format!(
            "baseline {} KiB, loaded {} KiB, end {} KiB, peak {}",
            thousands(r.baseline_rss_kib),
            thousands(r.loaded_rss_kib),
            thousands(r.end_rss_kib),
            r.peak_rss_kib
                .map_or("-".into(), |k| format!("{} KiB", thousands(k)))
        ),
    );
    row(
        "server RSS per connection",
        format!(
            "{:.0} bytes (peak {})",
            r.rss_per_connection_bytes,
            r.peak_rss_per_connection_bytes
                .map_or("-".into(), |b| format!("{b:.0} bytes"))
        ),
    );
    row(
        "server CPU",
        format!(
            "setup {:.2} s ({:.1} µs/connection), hold {:.2} s ({:.1}% of a core)",
            r.setup_server_cpu_seconds,
            r.setup_server_cpu_us_per_connection,
            r.hold_server_cpu_seconds,
            r.hold_server_cpu_cores * 100.0
        ),
    );
    row(
        "loadgen RSS per connection",
        format!("{:.0} bytes", r.loadgen_rss_per_connection_bytes),
    );
    row("frames after setup", thousands(r.frames_after_setup));
    row(
        "disconnects / server errors",
        format!("{} / {}", r.server.disconnects, r.server.server_errors),
    );
    for (k, v) in [
        ("first disconnect", &r.server.first_disconnect),
        ("first server error", &r.server.first_server_error),
    ] {
        if let Some(v) = v {
            row(k, v.clone());
        }
    }
    report::print_result(&row, r.ok);
}
