//! Scenario `soak`: one neonex hub under a mixed load for a long while, watched for leaks.
//!
//! For `--duration` the load runs together: churn (clients that join a few rooms, chat a
//! little and go, `members`' counterpart in `churn`), long-lived chat clients in many
//! rooms and a fan-out room with its publisher (`members`), stalled readers that the hub
//! must cut as slow consumers (`stalled`), and API publishes (`api`). Well-behaved
//! clients check exactly-once, in-order delivery (`inbox`). Once a second the hub's
//! memory, open files and `/stats` are sampled (`sampler`); at the end the levels
//! (`levels`) and the counters are checked (`verdict`) and reported (`report`).
//!
//! The phases (`shared::Phase`): the long-lived clients join (setup); the load runs; it
//! stops and late deliveries drain; every client closes; once the hub counts no
//! connection, the last sample is taken.

mod api;
mod churn;
mod inbox;
mod levels;
mod members;
mod report;
mod sampler;
mod session;
mod shared;
mod stalled;
mod verdict;
mod wire;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub use report::{print, SoakReport};

use crate::clock::now_ns;
use crate::conn::{self, Scratch};
use crate::protocol::neonex::Neonex;
use crate::protocol::ProtocolKind;
use crate::report::Heading;
use crate::scenario::common::sleep_ms;
use crate::target::Target;
use crate::workers;
use levels::{fd_overhead, Windows};
use members::{Member, Speaking};
use sampler::Sample;
use session::RoomSpec;
use shared::{Phase, Shared};

/// Everything a soak run needs, already validated.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    pub url: String,
    pub target: Target,
    /// The hub's process.
    pub server_pid: u32,
    /// How long the load runs.
    pub duration: Duration,
    /// Share of the load that is warm-up, before the levels are taken.
    pub warmup: f64,
    /// How far above its post-warm-up level RSS (and open files) may end.
    pub tolerance: f64,
    /// Churn clients started per second, and how long each listens after its echoes.
    pub churn_rate: f64,
    pub churn_hold: Duration,
    /// Long-lived chat clients, chat rooms, rooms per chat client, and how often each
    /// client speaks.
    pub chat_clients: usize,
    pub chat_rooms: usize,
    pub rooms_per_client: usize,
    pub chat_interval: Duration,
    /// Length of each chat message text.
    pub chat_bytes: usize,
    /// Subscribers of the fan-out room, its publisher's rate and message length.
    pub fanout_subscribers: usize,
    pub fanout_rate: f64,
    pub fanout_bytes: usize,
    pub fanout_room: String,
    /// Stalled readers in the fan-out room.
    pub stalled: usize,
    /// API publishes per second.
    pub api_rate: f64,
    pub threads: usize,
    pub connect_timeout: Duration,
    pub join_timeout: Duration,
    pub setup_timeout: Duration,
    /// Longest wait for late deliveries after the load.
    pub drain_timeout: Duration,
    /// Longest wait for the hub to count no connection after the clients closed.
    pub close_timeout: Duration,
    /// Wait after that before the last sample (the hub's housekeeping runs).
    pub settle: Duration,
    pub user_prefix: String,
    pub max_message: usize,
}

impl SoakConfig {
    /// Chat room `i`; its tally is `i`.
    pub fn chat_room(&self, i: usize) -> RoomSpec {
        RoomSpec {
            name: format!("{}-chat-{i}", self.user_prefix),
            tally: Some(i),
        }
    }

    /// The fan-out room; its tally follows the chat rooms'.
    pub fn fanout_spec(&self) -> RoomSpec {
        RoomSpec {
            name: self.fanout_room.clone(),
            tally: Some(self.chat_rooms),
        }
    }

    /// Chat clients, the fan-out publisher and the subscribers.
    pub fn long_lived(&self) -> usize {
        self.chat_clients + 1 + self.fanout_subscribers
    }

    /// Most connections open at once: the long-lived, the stalled, the churn clients of a
    /// few seconds and some HTTP calls.
    pub fn peak_connections(&self) -> usize {
        self.long_lived() + self.stalled + (self.churn_rate * 10.0) as usize + 16
    }

    /// Bound on the whole run, for the watchdog.
    pub fn run_budget(&self) -> Duration {
        self.setup_timeout
            + self.duration
            + self.join_timeout * 4
            + self.drain_timeout
            + self.close_timeout
            + self.settle
            + Duration::from_secs(60)
    }

    /// Long-lived client `idx`: chat clients first, then the fan-out publisher, then the
    /// subscribers.
    fn member(&self, idx: usize) -> Member {
        let p = &self.user_prefix;
        if idx < self.chat_clients {
            let stride = self.chat_rooms / self.rooms_per_client;
            let rooms = (0..self.rooms_per_client)
                .map(|j| self.chat_room((idx + j * stride) % self.chat_rooms))
                .collect();
            let spread = self
                .chat_interval
                .mul_f64(idx as f64 / self.chat_clients as f64);
            return Member {
                user: format!("{p}-chat{idx}"),
                rooms,
                speaking: Some(Speaking {
                    every: self.chat_interval,
                    first_after: spread,
                    bytes: self.chat_bytes,
                }),
            };
        }
        if idx == self.chat_clients {
            return Member {
                user: format!("{p}-pub"),
                rooms: vec![self.fanout_spec()],
                speaking: Some(Speaking {
                    every: Duration::from_secs_f64(1.0 / self.fanout_rate),
                    first_after: Duration::ZERO,
                    bytes: self.fanout_bytes,
                }),
            };
        }
        Member {
            user: format!("{p}-sub{}", idx - self.chat_clients - 1),
            rooms: vec![self.fanout_spec()],
            speaking: None,
        }
    }
}

/// What every client task shares.
pub struct Ctx {
    pub cfg: SoakConfig,
    pub shared: Shared,
    pub proto: Neonex,
}

/// What the client tasks of one worker thread share.
pub struct WorkerEnv {
    pub scratch: Scratch,
}

/// Worker `w`: its share of every kind of client, until all of them are done.
async fn worker(ctx: Arc<Ctx>, w: usize) {
    let cfg = &ctx.cfg;
    let env = Rc::new(WorkerEnv {
        scratch: conn::new_scratch(),
    });
    let mut tasks = Vec::new();
    for idx in (w..cfg.long_lived()).step_by(cfg.threads) {
        let member = cfg.member(idx);
        let task = members::run(ctx.clone(), env.clone(), member, idx as u64);
        tasks.push(tokio::task::spawn_local(task));
    }
    for i in (w..cfg.stalled).step_by(cfg.threads) {
        tasks.push(tokio::task::spawn_local(stalled::run(
            ctx.clone(),
            env.clone(),
            i,
        )));
    }
    let mut phase = ctx.shared.phase.subscribe();
    if phase.wait_for(|p| *p >= Phase::Load).await.is_ok() {
        if w == 0 {
            tasks.push(tokio::task::spawn_local(api::run(ctx.clone())));
        }
        churn::run(ctx.clone(), env.clone(), w).await;
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Runs the soak and reports.
pub fn run(cfg: SoakConfig) -> Result<SoakReport, String> {
    let rooms = cfg.chat_rooms + 1;
    let ctx = Arc::new(Ctx {
        cfg,
        shared: Shared::new(rooms),
        proto: Neonex::default(),
    });
    let cfg = &ctx.cfg;
    let (pid, addr) = (cfg.server_pid, SocketAddr::V4(cfg.target.addr));
    let before_ns = now_ns();
    let mut before = sampler::sample(pid, addr, 0.0, "before")?;
    if before.hub.connections != 0 {
        return Err(format!(
            "the hub has {} connections before the soak: give the soak a hub of its own \
             (open files are compared at 0 connections)",
            before.hub.connections
        ));
    }
    let worker_ctx = ctx.clone();
    let handles = workers::spawn(cfg.threads, move |w| worker(worker_ctx.clone(), w))?;
    let outcome = drive(&ctx, pid, addr, &before);
    // Whatever happened, every client closes and the workers end.
    ctx.shared.phase.send_replace(Phase::Close);
    for h in handles {
        h.join().map_err(|_| "worker thread panicked".to_string())?;
    }
    let (mut samples, lost) = outcome?;
    let after = settle_and_sample(&ctx, pid, addr)?;
    let load_start = ctx.shared.load_start_ns.load(Ordering::SeqCst);
    before.t = -((load_start.saturating_sub(before_ns) / 100_000_000) as f64 / 10.0);
    samples.insert(0, before.clone());
    samples.push(after.clone());
    Ok(conclude(&ctx, samples, &before, &after, lost))
}

/// Setup, load and drain, sampling once a second: the samples, and the deliveries lost.
fn drive(
    ctx: &Ctx,
    pid: u32,
    addr: SocketAddr,
    before: &Sample,
) -> Result<(Vec<Sample>, u64), String> {
    let cfg = &ctx.cfg;
    let shared = &ctx.shared;
    wait_for_setup(ctx)?;
    eprintln!(
        "loadgen: soak: {} long-lived clients joined; load for {:?}",
        cfg.long_lived(),
        cfg.duration
    );
    shared.start_load();
    let t0 = now_ns();
    let mut samples = Vec::new();
    let load_end = t0 + cfg.duration.as_nanos() as u64;
    let drain_end = load_end + cfg.drain_timeout.as_nanos() as u64;
    for tick in 1u64.. {
        let due = t0 + tick * 1_000_000_000;
        if due > load_end && shared.phase() == Phase::Load {
            shared.phase.send_replace(Phase::Drain);
        }
        if due > load_end && (drained(shared) || due > drain_end) {
            break;
        }
        std::thread::sleep(Duration::from_nanos(due.saturating_sub(now_ns())));
        let phase = if due <= load_end { "load" } else { "drain" };
        let s = sampler::sample(pid, addr, tick as f64, phase)?;
        let cuts = s
            .hub
            .slow_consumers
            .saturating_sub(before.hub.slow_consumers);
        shared.stalls.cuts_counted.store(cuts, Ordering::SeqCst);
        samples.push(s);
    }
    let lost = shared.rooms.iter().map(|r| r.missing().max(0) as u64).sum();
    Ok((samples, lost))
}

/// Waits until every long-lived client joined.
fn wait_for_setup(ctx: &Ctx) -> Result<(), String> {
    let started = now_ns();
    let expected = ctx.cfg.long_lived() as u64;
    loop {
        sleep_ms(10);
        if let Some(why) = ctx.shared.failures.first_any() {
            return Err(format!("setup failed: {why}"));
        }
        if ctx.shared.ready.load(Ordering::SeqCst) == expected {
            return Ok(());
        }
        if now_ns() - started > ctx.cfg.setup_timeout.as_nanos() as u64 {
            return Err(format!(
                "setup took more than {:?}: {} of {expected} clients joined",
                ctx.cfg.setup_timeout,
                ctx.shared.ready.load(Ordering::SeqCst)
            ));
        }
    }
}

/// True once the churn clients and API calls are done and every long-lived member has
/// every message published to its rooms.
fn drained(shared: &Shared) -> bool {
    shared.churn_done.load(Ordering::SeqCst) == shared.churn_started.load(Ordering::SeqCst)
        && shared.api_in_flight.load(Ordering::SeqCst) == 0
        && shared.rooms.iter().all(|r| r.missing() <= 0)
}

/// Waits until the hub counts no connection (at most `close_timeout`), then `settle`, and
/// takes the last sample.
fn settle_and_sample(ctx: &Ctx, pid: u32, addr: SocketAddr) -> Result<Sample, String> {
    let cfg = &ctx.cfg;
    let deadline = now_ns() + cfg.close_timeout.as_nanos() as u64;
    while sampler::stats(addr)?.connections > 0 && now_ns() < deadline {
        sleep_ms(200);
    }
    std::thread::sleep(cfg.settle);
    let t = (now_ns() - ctx.shared.load_start_ns.load(Ordering::SeqCst)) as f64 / 1e9;
    sampler::sample(pid, addr, (t * 10.0).round() / 10.0, "after")
}

/// Levels, checks and the report.
fn conclude(
    ctx: &Ctx,
    samples: Vec<Sample>,
    before: &Sample,
    after: &Sample,
    lost: u64,
) -> SoakReport {
    let cfg = &ctx.cfg;
    let shared = &ctx.shared;
    let w = Windows {
        duration: cfg.duration.as_secs_f64(),
        warmup: cfg.warmup,
    };
    let unknown = |e: String| {
        eprintln!("loadgen: soak: {e}");
        levels::Level {
            before: 0,
            warm: 0,
            end: u64::MAX,
            after: u64::MAX,
        }
    };
    let rss =
        levels::level(w, &samples, before, after, |s| s.rss_kib as i64).unwrap_or_else(unknown);
    let fds = levels::level(w, &samples, before, after, fd_overhead).unwrap_or_else(unknown);
    let sent = shared.sent.snapshot();
    let hub = delta(&before.hub, &after.hub);
    let faults = *shared.faults.lock().unwrap_or_else(|e| e.into_inner());
    let f = &shared.failures;
    let failures = [&f.long_lived, &f.churn, &f.api, &f.server_errors]
        .iter()
        .map(|a| a.load(Ordering::SeqCst))
        .sum();
    let first_failure = f.first_any();
    let st = &shared.stalls;
    let first_without_close = crate::scenario::common::first(&st.first_without_close);
    let stalls = report::StallReport {
        stalls_begun: st.tickets.load(Ordering::SeqCst),
        cut_with_close: st.cut_with_close.load(Ordering::SeqCst),
        cut_without_close: st.cut_without_close.load(Ordering::SeqCst),
        not_cut: st.not_cut.load(Ordering::SeqCst),
    };
    let evidence = verdict::Evidence {
        tolerance: cfg.tolerance,
        rss: &rss,
        fds: &fds,
        sent: &sent,
        hub: &hub,
        connections_after: after.hub.connections,
        faults: &faults,
        lost,
        failures,
        first_failure: first_failure.as_deref(),
        cut_with_close: stalls.cut_with_close,
        cut_without_close: stalls.cut_without_close,
        first_without_close: first_without_close.as_deref(),
        stalled_readers: cfg.stalled,
    };
    let checks = verdict::checks(&evidence);
    SoakReport {
        heading: Heading::new("soak", ProtocolKind::Neonex, &cfg.url),
        server_pid: cfg.server_pid,
        load: report::Load {
            duration_seconds: w.duration,
            warmup_fraction: cfg.warmup,
            tolerance: cfg.tolerance,
            churn_per_second: cfg.churn_rate,
            chat_clients: cfg.chat_clients,
            chat_rooms: cfg.chat_rooms,
            chat_interval_seconds: cfg.chat_interval.as_secs_f64(),
            fanout_subscribers: cfg.fanout_subscribers,
            fanout_rate: cfg.fanout_rate,
            stalled_readers: cfg.stalled,
            api_rate: cfg.api_rate,
            threads: cfg.threads,
        },
        offsets_checked: shared.offsets_checked.load(Ordering::SeqCst) > 0,
        rss_kib: rss,
        open_files: fds,
        sent,
        churn_clients: shared.churn_done.load(Ordering::SeqCst),
        lost,
        faults,
        stalls,
        hub_delta: hub,
        ok: checks.iter().all(|c| c.ok),
        checks,
        samples,
    }
}

/// `b − a`, counter by counter (connections: `b`'s).
fn delta(a: &sampler::HubCounters, b: &sampler::HubCounters) -> sampler::HubCounters {
    sampler::HubCounters {
        connections: b.connections,
        messages_in: b.messages_in.saturating_sub(a.messages_in),
        deliveries: b.deliveries.saturating_sub(a.deliveries),
        slow_consumers: b.slow_consumers.saturating_sub(a.slow_consumers),
        slow_consumer_closes: b
            .slow_consumer_closes
            .saturating_sub(a.slow_consumer_closes),
    }
}
