//! Heartbeat and timeouts: pings, silent connections, stuck writes, the cleanup sweep.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::connection::Phase;
use super::Shard;
use crate::stats::{self, CloseCause, ShardCounters};
use crate::ws::encode;

/// The housekeeping task of a shard.
pub(crate) async fn run(shard: Rc<Shard>) {
    let config = &shard.hub.config;
    let tick = tick_period(config);
    let mut next_ping = Instant::now() + config.ping_interval;
    let mut next_sweep = Instant::now() + config.cleanup_interval;
    let mut rates = RateMeter::new(shard.counters());
    let mut next_stats_log = Instant::now() + config.stats_log_interval;
    loop {
        monoio::time::sleep(tick).await;
        let now = Instant::now();
        rates.update(shard.counters(), now);
        publish_latency(&shard);
        if now >= next_ping {
            ping_all(&shard);
            next_ping = now + config.ping_interval;
        }
        enforce_deadlines(&shard, now);
        if config.history.is_on() {
            keep_history(&shard, now);
        }
        if now >= next_sweep {
            sweep(&shard);
            next_sweep = now + config.cleanup_interval;
        }
        // One shard speaks for the hub.
        if shard.index == 0 && now >= next_stats_log {
            log_stats(&shard.hub.stats());
            next_stats_log = now + config.stats_log_interval;
        }
    }
}

/// Lets expired positioned messages go, and the streams of gone rooms; publishes what
/// the streams hold.
fn keep_history(shard: &Shard, now: Instant) {
    let mut state = shard.state.borrow_mut();
    let hub = &shard.hub;
    state.streams.sweep(now, &hub.config.history, &hub.registry);
    let (messages, bytes) = state.streams.usage();
    let counters = shard.counters();
    counters.history_messages.store(messages, Ordering::Relaxed);
    counters.history_bytes.store(bytes, Ordering::Relaxed);
}

/// Deadlines are checked once a second, or often enough for the shortest timeout.
fn tick_period(config: &crate::config::HubConfig) -> Duration {
    [
        Duration::from_secs(1),
        config.ping_interval / 2,
        config.pong_timeout / 4,
        config.write_timeout / 4,
        config.handshake_timeout / 4,
        config.cleanup_interval,
    ]
    .into_iter()
    .min()
    .unwrap_or(Duration::from_secs(1))
    .max(Duration::from_millis(5))
}

fn log_stats(stats: &stats::HubStats) {
    tracing::info!(
        connections = stats.total_connections,
        users = stats.unique_users,
        rooms = stats.rooms,
        messages_in_per_sec = format!("{:.1}", stats.messages_in_per_sec),
        deliveries_per_sec = format!("{:.1}", stats.deliveries_per_sec),
        fanout_p99_us = stats.fanout_latency_us.p99,
        slow_consumers = stats.slow_consumers,
        "stats"
    );
}

/// Turns counters into per-second rates between ticks.
struct RateMeter {
    at: Instant,
    messages_in: u64,
    deliveries: u64,
}

impl RateMeter {
    fn new(counters: &ShardCounters) -> Self {
        Self {
            at: Instant::now(),
            messages_in: stats::read(&counters.messages_in),
            deliveries: stats::read(&counters.deliveries),
        }
    }

    fn update(&mut self, counters: &ShardCounters, now: Instant) {
        let seconds = now.duration_since(self.at).as_secs_f64();
        if seconds < 0.5 {
            return;
        }
        let (messages_in, deliveries) = (
            stats::read(&counters.messages_in),
            stats::read(&counters.deliveries),
        );
        let rate = |now: u64, before: u64| ((now - before) as f64 / seconds).to_bits();
        let store = |slot: &std::sync::atomic::AtomicU64, value| {
            slot.store(value, std::sync::atomic::Ordering::Relaxed)
        };
        store(
            &counters.messages_in_rate,
            rate(messages_in, self.messages_in),
        );
        store(&counters.deliveries_rate, rate(deliveries, self.deliveries));
        *self = Self {
            at: now,
            messages_in,
            deliveries,
        };
    }
}

/// Moves the latency measured since the last tick into the shared histogram that
/// stats and metrics read, so the shard's own recording never takes a lock.
fn publish_latency(shard: &Shard) {
    let mut local = shard.latency.borrow_mut();
    if local.is_empty() {
        return;
    }
    let mut shared = shard
        .counters()
        .latency
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    shared
        .get_or_insert_with(stats::latency_histogram)
        .add(&*local)
        .expect("same bounds");
    local.reset();
}

fn ping_all(shard: &Shard) {
    let ping = encode::ping_frame();
    let limits = shard.hub.config.send_queue;
    let now_us = shard.hub.now_us();
    let mut state = shard.state.borrow_mut();
    let state = &mut *state;
    for (key, conn) in state.conns.iter_mut() {
        // A queue too full for a ping belongs to a slow consumer; the next fan-out
        // or the write timeout deals with it.
        if conn.is_open() && conn.queue(ping.clone(), now_us, &limits).is_ok() {
            conn.list_in(&mut state.dirty, key);
        }
    }
    if !state.dirty.is_empty() {
        shard.flush.notify();
    }
}

/// Drops connections past a deadline: silent beyond the pong timeout, writes stuck
/// beyond the write timeout, handshakes and closing handshakes that took too long.
/// Also ticks the outbound queues: one drained since the previous tick keeps its
/// memory for the next flush pass while the connection is being sent to; an idle one
/// gives it back, within two ticks of its last write. (This is here rather than in the
/// sweep, which runs only every `cleanup_interval`, and costs little more than this
/// loop over the connections already does.)
fn enforce_deadlines(shard: &Shard, now: Instant) {
    let config = &shard.hub.config;
    let mut state = shard.state.borrow_mut();
    let now_ms = shard.now_ms();
    let since = |ms: u32| Duration::from_millis(u64::from(now_ms.wrapping_sub(ms)));
    for (_, conn) in state.conns.iter_mut() {
        conn.out.tick();
        let stuck = conn
            .write_blocked_since_ms
            .is_some_and(|ms| since(ms.get()) >= config.write_timeout);
        let expired = match &conn.phase {
            Phase::Handshake { deadline, .. }
            | Phase::Connecting { deadline, .. }
            | Phase::Answering { deadline }
            | Phase::Closing { deadline, .. } => now >= *deadline,
            Phase::Open => since(conn.last_heard_ms) >= config.pong_timeout,
            Phase::Dead => false,
        };
        if expired || stuck {
            if conn.is_open() {
                let cause = if stuck {
                    CloseCause::WriteStalled
                } else {
                    CloseCause::Timeout
                };
                conn.blame(cause);
                tracing::debug!(conn = %conn.id, cause = cause.label(), "dropping dead connection");
            }
            conn.kill();
        }
    }
}

/// The periodic sweep: gives back memory that bursts left behind.
fn sweep(shard: &Shard) {
    let mut state = shard.state.borrow_mut();
    let state = &mut *state;
    state.by_seq.shrink_to(state.by_seq.len() * 2);
    state.membership.shrink();
    let dirty_len = state.dirty.len();
    state.dirty.shrink_to(dirty_len.max(64));
    state.delayed.shrink();
}
