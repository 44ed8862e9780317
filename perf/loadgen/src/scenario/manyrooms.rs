//! Scenario `many-rooms`: every subscriber is in K rooms, each room has a publisher of its
//! own sending R messages per second, and the publishers' sends are spread evenly in time.
//!
//! A subscriber then receives K × R messages per second, one at a time and never in
//! bursts: the load where a hub writes one frame per system call unless it holds frames
//! back to send several together (neonex's `hub.write_delay`). This is what a dashboard
//! watching many feeds, or a user in many chats, costs a hub.
//!
//! Rooms are `mr-0` … `mr-(M-1)`. Publisher `p` joins room `p` (the hubs want a publisher
//! to be a member, and every hub then echoes its message to it alike) and sends its `k`-th
//! message at `t0 + (k + p/M) / R`. Subscriber `s` joins rooms `(s·K + j) mod M` for
//! `j < K`, so every room has S·K/M members, give or take one. Each message carries the
//! stamp `SEQ:SEND_NS` with `SEQ = k·M + p`; a subscriber checks loss, duplicates and order
//! per room. Publishers' echoes are not deliveries.
//!
//! Phases as in all-to-all: setup, settle, measure, drain.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{watch, Semaphore};

use crate::clock::{self, now_ns};
use crate::conn::{Closed, Scratch, WsConn};
use crate::protocol::{HubProtocol, Incoming, ProtocolKind, PublishVia};
use crate::report::{self, CpuSample, Heading, Usage};
use crate::scenario::common::{self, first, keep_first, sleep_ms, Dial, SetupProgress, Sink, Step};
use crate::scenario::delivery::{ReadBatch, Received, ReceiverStats, WorkerEnv};
use crate::scenario::delivery_report::{self, Deliveries, Disturbances, Publishing, Setup};
use crate::seq::SeqTracker;
use crate::target::Target;
use crate::{stamp, workers};

/// Most messages one publisher queues in one wake-up.
const MAX_BATCH: u64 = 1024;
/// Marks a room the subscriber is not in, in its table of trackers.
const NOT_MEMBER: u32 = u32::MAX;

/// Everything a many-rooms run needs, already validated.
#[derive(Debug, Clone)]
pub struct ManyRoomsConfig {
    /// The URL as given.
    pub url: String,
    /// Resolved loopback target.
    pub target: Target,
    /// Wire protocol.
    pub protocol: ProtocolKind,
    /// Subscriber connections.
    pub subscribers: usize,
    /// Rooms, each with its own publisher connection.
    pub rooms: usize,
    /// Rooms each subscriber is in (at most `rooms`).
    pub rooms_per_subscriber: usize,
    /// Messages per second, per room.
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
    /// Users are named `PREFIX-pN` (publishers) and `PREFIX-sN` (subscribers).
    pub user_prefix: String,
    /// Largest server message accepted.
    pub max_message: usize,
    /// Connections per source address.
    pub conns_per_source: usize,
}

impl ManyRoomsConfig {
    /// Bound on the whole run, for the watchdog.
    pub fn run_budget(&self) -> Duration {
        self.setup_timeout
            + self.settle_max
            + self.duration
            + self.drain_timeout
            + Duration::from_secs(30)
    }

    /// Connections: the publishers, then the subscribers.
    pub fn connections(&self) -> usize {
        self.rooms + self.subscribers
    }

    fn room_name(room: usize) -> String {
        format!("mr-{room}")
    }

    /// The rooms of subscriber `s`.
    fn rooms_of(&self, s: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.rooms_per_subscriber)
            .map(move |j| (s * self.rooms_per_subscriber + j) % self.rooms)
    }

    /// Subscribers in each room.
    fn members(&self) -> Vec<u64> {
        let mut members = vec![0; self.rooms];
        for s in 0..self.subscribers {
            for room in self.rooms_of(s) {
                members[room] += 1;
            }
        }
        members
    }
}

struct Shared {
    setup: SetupProgress,
    received: Received,
    disconnects: AtomicU64,
    first_disconnect: Mutex<Option<String>>,
    /// Messages published to each room.
    published: Box<[AtomicU64]>,
    done_publishing: AtomicUsize,
    publish_end_ns: AtomicU64,
    publish_lag_max_ns: AtomicU64,
    publish_error: Mutex<Option<String>>,
    stopping: AtomicBool,
}

struct Ctx<P> {
    cfg: ManyRoomsConfig,
    proto: P,
    shared: Shared,
    connect_limit: Arc<Semaphore>,
    go: watch::Receiver<Option<u64>>,
    stop: watch::Receiver<bool>,
}

/// What a subscriber keeps: a tracker per room it is in, found through `slot`.
struct Rooms {
    /// For each room, the index of its tracker, or [`NOT_MEMBER`].
    slot: Vec<u32>,
    trackers: Vec<(usize, SeqTracker)>,
}

impl Rooms {
    fn new(cfg: &ManyRoomsConfig, s: usize) -> Self {
        let mut slot = vec![NOT_MEMBER; cfg.rooms];
        let mut trackers = Vec::new();
        for room in cfg.rooms_of(s) {
            slot[room] = trackers.len() as u32;
            trackers.push((room, SeqTracker::default()));
        }
        Self { slot, trackers }
    }
}

fn on_message<P: HubProtocol>(
    ctx: &Ctx<P>,
    env: &WorkerEnv,
    rooms: &mut Rooms,
    b: &mut ReadBatch,
    text: &[u8],
    now: u64,
) -> Option<&'static [u8]> {
    match ctx.proto.classify(text) {
        Incoming::Chat { message } => {
            let m = ctx.cfg.rooms as u64;
            let Some((seq, sent)) = message.and_then(stamp::parse) else {
                b.foreign += 1;
                return None;
            };
            let (room, k) = ((seq % m) as usize, seq / m);
            match rooms.slot.get(room) {
                Some(&i) if i != NOT_MEMBER => {
                    b.delivery(&mut rooms.trackers[i as usize].1, k, sent, now, &env.stats);
                }
                _ => b.foreign += 1,
            }
        }
        Incoming::Error { text } => b.server_error(now, text, &ctx.shared.received),
        Incoming::Reply(reply) => return Some(reply),
        _ => b.noise(now),
    }
    None
}

/// Joins the rooms after the first (which `connect_and_join` joined) and waits for each
/// `joined`.
async fn join_more<P: HubProtocol>(
    proto: &P,
    conn: &mut WsConn,
    scratch: &Scratch,
    rooms: &[String],
    timeout: Duration,
) -> Result<(), String> {
    if rooms.is_empty() {
        return Ok(());
    }
    let mut join = Vec::new();
    for room in rooms {
        join.clear();
        proto.encode_join(room, &mut join);
        conn.queue_text(&join);
    }
    conn.flush().await.map_err(|e| format!("send joins: {e}"))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut waiting = rooms.len();
    while waiting > 0 {
        let mut refused = None;
        let read = conn.read_batch(scratch, |text, _| {
            match proto.classify(text) {
                Incoming::Joined { room } if rooms.contains(&room) => waiting -= 1,
                Incoming::Reply(reply) => return Some(reply),
                Incoming::Error { text } => {
                    refused = Some(String::from_utf8_lossy(text).into_owned())
                }
                _ => {}
            }
            None
        });
        tokio::time::timeout_at(deadline, read)
            .await
            .map_err(|_| format!("not joined to every room within {timeout:?}"))?
            .map_err(|c| format!("closed before joining: {c}"))?;
        if let Some(why) = refused {
            return Err(format!("join refused: {why}"));
        }
    }
    Ok(())
}

/// Connection `idx`: publisher of room `idx` below `cfg.rooms`, else subscriber
/// `idx - cfg.rooms`.
async fn client<P: HubProtocol>(ctx: Arc<Ctx<P>>, env: Rc<WorkerEnv>, idx: usize) {
    let cfg = &ctx.cfg;
    let publisher = (idx < cfg.rooms).then_some(idx);
    let rooms: Vec<String> = match publisher {
        Some(p) => vec![ManyRoomsConfig::room_name(p)],
        None => cfg
            .rooms_of(idx - cfg.rooms)
            .map(ManyRoomsConfig::room_name)
            .collect(),
    };
    let mut stop = ctx.stop.clone();
    let dial = Dial {
        target: cfg.target.clone(),
        room: rooms[0].clone(),
        connect_timeout: cfg.connect_timeout,
        join_timeout: cfg.setup_timeout,
        max_message: cfg.max_message,
    };
    let source = common::source_for(idx, cfg.connections(), cfg.conns_per_source);
    let user = match publisher {
        Some(p) => format!("{}-p{p}", cfg.user_prefix),
        None => format!("{}-s{}", cfg.user_prefix, idx - cfg.rooms),
    };
    let joined = tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => return,
        r = async {
            let _permit = ctx.connect_limit.clone().acquire_owned().await;
            let seed = idx as u64 ^ now_ns();
            let mut member =
                common::connect_and_join(&ctx.proto, &dial, &user, source, &env.scratch, seed)
                    .await?;
            join_more(&ctx.proto, &mut member.conn, &env.scratch, &rooms[1..], cfg.setup_timeout)
                .await?;
            Ok::<_, String>(member)
        } => r,
    };
    let member = match joined {
        Ok(m) => m,
        Err(e) => return ctx.shared.setup.fail(format!("{user}: {e}")),
    };
    {
        let mut st = env.stats.borrow_mut();
        st.upgraded.saturating_record(member.upgraded_ns);
        st.joined.saturating_record(member.joined_ns);
    }
    let mut conn = member.conn;
    let mut sink = match ctx.proto.publish_via(&cfg.target, &rooms[0]) {
        PublishVia::WebSocket => Sink::Ws,
        PublishVia::HttpPost(path) if publisher.is_some() => {
            let on = {
                let ctx = ctx.clone();
                move |code, body: &[u8]| ctx.shared.received.http_answer(code, body)
            };
            match common::http_sink(&cfg.target, &path, source, &ctx.stop, on).await {
                Ok(s) => s,
                Err(e) => return ctx.shared.setup.fail(format!("{user}: {e}")),
            }
        }
        PublishVia::HttpPost(_) => Sink::Ws,
    };
    ctx.shared.setup.joined();
    let mut subscribed = Rooms::new(cfg, idx.saturating_sub(cfg.rooms));
    if publisher.is_some() {
        // A publisher's echoes are not deliveries: it tracks no room.
        subscribed.slot.fill(NOT_MEMBER);
        subscribed.trackers.clear();
    }
    let mut go = ctx.go.clone();
    let stopped = stop.wait_for(|s| *s);
    tokio::pin!(stopped);
    let mut closed: Option<Closed> = None;
    let mut t0 = None;
    let mut schedule: Option<Schedule> = None;
    let (mut text, mut payload) = (String::new(), Vec::new());
    loop {
        if let (Some(p), Some(s), Some(t0)) = (publisher, schedule.as_mut(), t0) {
            if let Err(e) = s
                .publish(&ctx, &mut sink, &mut conn, p, t0, &mut text, &mut payload)
                .await
            {
                keep_first(&ctx.shared.publish_error, || format!("{user}: {e}"));
            }
            if s.done {
                schedule = None;
            }
        }
        let wake = match (&schedule, t0) {
            (Some(s), Some(t0)) => clock::instant_at(s.next_due(t0)),
            _ => clock::instant_at(now_ns() + 3_600_000_000_000),
        };
        let mut b = ReadBatch::default();
        let step = tokio::select! {
            biased;
            _ = &mut stopped => Step::Stop,
            v = go.wait_for(|v| v.is_some()), if t0.is_none() => {
                Step::Go(v.map(|v| v.unwrap_or(0)).unwrap_or(0))
            }
            _ = tokio::time::sleep_until(wake.into()) => Step::Wake,
            r = conn.read_batch(&env.scratch, |text, now| {
                on_message(&ctx, &env, &mut subscribed, &mut b, text, now)
            }) => Step::Read(r),
        };
        if publisher.is_none() {
            b.commit(&ctx.shared.received);
        }
        match step {
            Step::Stop => break,
            Step::Read(Err(c)) => {
                closed = Some(c);
                break;
            }
            Step::Go(at) => {
                t0 = Some(at);
                if publisher.is_some() {
                    schedule = Some(Schedule::new(cfg, idx));
                }
            }
            _ => {}
        }
    }
    if publisher.is_some() && (schedule.is_some() || t0.is_none()) {
        ctx.shared.done_publishing.fetch_add(1, Ordering::SeqCst);
    }

    match closed {
        Some(c) => {
            if !ctx.shared.stopping.load(Ordering::SeqCst) {
                ctx.shared.disconnects.fetch_add(1, Ordering::SeqCst);
                keep_first(&ctx.shared.first_disconnect, || format!("{user}: {c}"));
            }
            let _ = stopped.await;
        }
        None => conn.close().await,
    }
    if publisher.is_none() {
        let (mut lost, mut dup, mut late) = (0, 0, 0);
        for (room, t) in &subscribed.trackers {
            lost += t.lost(ctx.shared.published[*room].load(Ordering::SeqCst));
            dup += t.duplicates;
            late += t.late;
        }
        env.stats.borrow_mut().finalize_receiver(lost, dup, late);
    }
}

/// A publisher's timetable: its `k`-th message is due at `t0 + offset + k · interval`.
struct Schedule {
    interval: f64,
    offset: f64,
    end_after: u64,
    k: u64,
    done: bool,
}

impl Schedule {
    fn new(cfg: &ManyRoomsConfig, room: usize) -> Self {
        let interval = 1e9 / cfg.rate;
        Self {
            interval,
            offset: interval * room as f64 / cfg.rooms as f64,
            end_after: cfg.duration.as_nanos() as u64,
            k: 0,
            done: false,
        }
    }

    fn next_due(&self, t0: u64) -> u64 {
        t0 + (self.offset + self.k as f64 * self.interval) as u64
    }

    /// Sends every message due by now, and notes when the last one is out.
    #[allow(clippy::too_many_arguments)]
    async fn publish<P: HubProtocol>(
        &mut self,
        ctx: &Ctx<P>,
        sink: &mut Sink,
        conn: &mut WsConn,
        room: usize,
        t0: u64,
        text: &mut String,
        payload: &mut Vec<u8>,
    ) -> Result<(), String> {
        let (m, end) = (ctx.cfg.rooms as u64, t0 + self.end_after);
        let name = ManyRoomsConfig::room_name(room);
        let now = now_ns();
        let (mut queued, mut lag_max) = (0, 0);
        while queued < MAX_BATCH && self.next_due(t0) <= now && self.next_due(t0) < end {
            lag_max = lag_max.max(now - self.next_due(t0));
            stamp::write(
                text,
                self.k * m + room as u64,
                now_ns(),
                ctx.cfg.payload_bytes,
            );
            sink.queue(&ctx.proto, conn, &name, text, payload);
            self.k += 1;
            queued += 1;
        }
        let mut result = Ok(());
        if queued > 0 {
            let shared = &ctx.shared;
            shared.published[room].store(self.k, Ordering::SeqCst);
            shared
                .publish_lag_max_ns
                .fetch_max(lag_max, Ordering::Relaxed);
            result = sink
                .flush(conn)
                .await
                .map_err(|e| format!("publish write: {e}"));
        }
        if self.next_due(t0) >= end || now >= end {
            self.done = true;
            if let Some(why) = sink.failure() {
                result = result.and(Err(why));
            }
            ctx.shared
                .publish_end_ns
                .fetch_max(now_ns(), Ordering::SeqCst);
            ctx.shared.done_publishing.fetch_add(1, Ordering::SeqCst);
        }
        result
    }
}

async fn worker<P: HubProtocol>(ctx: Arc<Ctx<P>>, w: usize) -> ReceiverStats {
    let env = Rc::new(WorkerEnv::new());
    let tasks: Vec<_> = (w..ctx.cfg.connections())
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

/// The result of a many-rooms run.
#[derive(Debug, Clone, Serialize)]
pub struct ManyRoomsReport {
    #[serde(flatten)]
    pub heading: Heading,
    /// Subscriber connections.
    pub subscribers: usize,
    /// Rooms, each with a publisher of its own.
    pub rooms: usize,
    /// Rooms each subscriber is in.
    pub rooms_per_subscriber: usize,
    /// Worker threads of the load generator.
    pub threads: usize,
    /// Messages per second asked of each room's publisher.
    pub rate_per_room: f64,
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
    #[serde(flatten)]
    pub publishing: Publishing,
    #[serde(flatten)]
    pub usage: Usage,
    /// Nothing lost or duplicated, no disconnects, no publish error.
    pub ok: bool,
}

/// Runs the scenario and reports.
pub fn run(cfg: ManyRoomsConfig) -> Result<ManyRoomsReport, String> {
    crate::with_protocol!(cfg.protocol, run_with(cfg))
}

fn run_with<P: HubProtocol>(cfg: ManyRoomsConfig, proto: P) -> Result<ManyRoomsReport, String> {
    let (go_tx, go_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (m, total) = (cfg.rooms, cfg.connections());
    let members = cfg.members();
    let ctx = Arc::new(Ctx {
        connect_limit: Arc::new(Semaphore::new(cfg.connect_concurrency.max(1))),
        shared: Shared {
            setup: SetupProgress::default(),
            received: Received::default(),
            disconnects: AtomicU64::new(0),
            first_disconnect: Mutex::new(None),
            published: (0..m).map(|_| AtomicU64::new(0)).collect(),
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
    let abort = |why: String| -> Result<ManyRoomsReport, String> {
        shared.stopping.store(true, Ordering::SeqCst);
        let _ = stop_tx.send(true);
        Err(why)
    };

    // 1. setup
    let setup_start = now_ns();
    let worker_ctx = ctx.clone();
    let handles = workers::spawn(cfg.threads, move |w| worker(worker_ctx.clone(), w))?;
    let setup = &shared.setup;
    let noun = "connection";
    if let Err(why) = common::wait_for_setup(setup, total, noun, setup_start, cfg.setup_timeout) {
        return abort(why);
    }
    let ready_at = now_ns();
    let setup_seconds = (ready_at - setup_start) as f64 / 1e9;
    eprintln!(
        "loadgen: {} subscribers in {} of {m} rooms each, {m} publishers joined in {setup_seconds:.2} s; settling",
        cfg.subscribers, cfg.rooms_per_subscriber
    );

    // 2. settle
    let received = &shared.received;
    let lost = || {
        (shared.disconnects.load(Ordering::SeqCst) > 0)
            .then(|| first(&shared.first_disconnect).unwrap_or_default())
    };
    let quiet = (cfg.settle_quiet, cfg.settle_max);
    let settled = match common::settle(
        &received.last_noise_ns,
        ready_at,
        quiet.0,
        quiet.1,
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
        "loadgen: settled after {settle_seconds:.2} s; {m} publishers sending {} msg/s each",
        cfg.rate
    );
    let _ = go_tx.send(Some(t0));
    let limit = t0 + (cfg.duration + Duration::from_secs(10)).as_nanos() as u64;
    while shared.done_publishing.load(Ordering::SeqCst) < m {
        sleep_ms(2);
        if now_ns() > limit {
            return abort("the publishers did not stop publishing in time".into());
        }
    }
    let publish_end = shared.publish_end_ns.load(Ordering::SeqCst).max(t0);
    let per_room: Vec<u64> = shared
        .published
        .iter()
        .map(|p| p.load(Ordering::SeqCst))
        .collect();
    let published: u64 = per_room.iter().sum();
    let expected: u64 = per_room.iter().zip(&members).map(|(p, n)| p * n).sum();

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
    if stats.finalized != cfg.subscribers {
        let n = cfg.subscribers;
        return Err(format!(
            "only {} of {n} subscribers reported",
            stats.finalized
        ));
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
    Ok(ManyRoomsReport {
        heading: Heading::new("many-rooms", cfg.protocol, &cfg.url),
        subscribers: cfg.subscribers,
        rooms: m,
        rooms_per_subscriber: cfg.rooms_per_subscriber,
        threads: cfg.threads,
        rate_per_room: cfg.rate,
        payload_bytes: cfg.payload_bytes,
        setup: Setup::new(setup_seconds, settle_seconds, settled, setup_noise, &stats),
        subscribers_with_loss: stats.receivers_with_loss,
        ok: delivery_report::passed(&deliveries, &disturbances, &publishing),
        deliveries,
        disturbances,
        publishing,
        usage,
    })
}

/// Prints the human table.
pub fn print(r: &ManyRoomsReport) {
    use report::thousands;
    r.heading.print_title();
    println!(
        "  {} subscribers, each in {} of {} rooms; each room {} msg/s from its own publisher; {} thread(s), payload {} B",
        thousands(r.subscribers as u64),
        r.rooms_per_subscriber,
        r.rooms,
        r.rate_per_room,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(subscribers: usize, rooms: usize, k: usize) -> ManyRoomsConfig {
        ManyRoomsConfig {
            url: String::new(),
            target: crate::target::parse("ws://127.0.0.1:3000/ws").unwrap(),
            protocol: ProtocolKind::Neonex,
            subscribers,
            rooms,
            rooms_per_subscriber: k,
            rate: 25.0,
            duration: Duration::from_secs(1),
            payload_bytes: 64,
            threads: 1,
            connect_timeout: Duration::from_secs(1),
            connect_concurrency: 1,
            setup_timeout: Duration::from_secs(1),
            settle_quiet: Duration::from_secs(1),
            settle_max: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(1),
            server_pid: None,
            user_prefix: "t".into(),
            max_message: 1 << 20,
            conns_per_source: 25_000,
        }
    }

    #[test]
    fn every_subscriber_is_in_k_distinct_rooms_and_the_rooms_are_even() {
        let cfg = config(100, 40, 20);
        for s in 0..cfg.subscribers {
            let mut rooms: Vec<_> = cfg.rooms_of(s).collect();
            rooms.sort_unstable();
            rooms.dedup();
            assert_eq!(rooms.len(), 20);
        }
        assert!(cfg.members().iter().all(|&n| n == 50));
        let uneven = config(7, 5, 3).members();
        assert_eq!(uneven.iter().sum::<u64>(), 21);
        assert!(uneven.iter().all(|&n| n == 4 || n == 5), "{uneven:?}");
    }
}
