//! Counters and latency the shards keep, and the snapshots the hub reports (`/stats`,
//! `/metrics`, [`Hub::stats`](crate::Hub::stats)).
//!
//! Each shard writes only its own counters (relaxed atomics on their own cache line), so
//! counting costs no contention; readers sum them when asked. Fan-out latency is recorded
//! in a histogram local to the shard and published to a shared copy once per tick.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;
use serde::Serialize;

/// Why a WebSocket connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// The client sent a close frame.
    ClientClosed,
    /// The client's stream ended or broke without a close frame.
    ClientGone,
    /// Its socket refused more than the send queue bounds (1008).
    SlowConsumer,
    /// Nothing heard from it within the pong timeout.
    Timeout,
    /// A write was stuck longer than the write timeout.
    WriteStalled,
    /// Over its message rate for too long (1008).
    RateLimited,
    /// A protocol violation (1002).
    Protocol,
    /// Invalid UTF-8 (1007).
    InvalidData,
    /// A frame or message too big (1009).
    TooBig,
    /// A bug while handling it (1011).
    Internal,
    /// Disconnected through the hub or its API.
    Disconnected,
    /// Graceful shutdown (1001).
    Shutdown,
    /// A socket error.
    IoError,
}

impl CloseCause {
    /// Every cause, in label order.
    pub const ALL: [CloseCause; 13] = [
        CloseCause::ClientClosed,
        CloseCause::ClientGone,
        CloseCause::SlowConsumer,
        CloseCause::Timeout,
        CloseCause::WriteStalled,
        CloseCause::RateLimited,
        CloseCause::Protocol,
        CloseCause::InvalidData,
        CloseCause::TooBig,
        CloseCause::Internal,
        CloseCause::Disconnected,
        CloseCause::Shutdown,
        CloseCause::IoError,
    ];

    /// The label used in stats and metrics.
    pub fn label(self) -> &'static str {
        match self {
            CloseCause::ClientClosed => "client_closed",
            CloseCause::ClientGone => "client_gone",
            CloseCause::SlowConsumer => "slow_consumer",
            CloseCause::Timeout => "timeout",
            CloseCause::WriteStalled => "write_stalled",
            CloseCause::RateLimited => "rate_limited",
            CloseCause::Protocol => "protocol_error",
            CloseCause::InvalidData => "invalid_data",
            CloseCause::TooBig => "too_big",
            CloseCause::Internal => "internal_error",
            CloseCause::Disconnected => "disconnected",
            CloseCause::Shutdown => "shutdown",
            CloseCause::IoError => "io_error",
        }
    }

    /// The cause of a close the server starts with `code` for a client's fault.
    pub fn of_code(code: u16) -> CloseCause {
        match code {
            1007 => CloseCause::InvalidData,
            1009 => CloseCause::TooBig,
            1011 => CloseCause::Internal,
            _ => CloseCause::Protocol,
        }
    }
}

/// How a join that asked to recover ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecoveryOutcome {
    /// Every missed message was replayed.
    Recovered,
    /// The client's epoch is not the stream's, or its offset is past the stream's top:
    /// it saw another stream.
    Epoch,
    /// Some message after the client's offset is no longer held (the ring passed it, or
    /// it expired).
    Gap,
    /// More messages were missed than `history.max_recover`.
    TooMany,
    /// History is off: there is no stream to recover from.
    HistoryOff,
}

impl RecoveryOutcome {
    /// Every outcome, in label order.
    pub const ALL: [RecoveryOutcome; 5] = [
        RecoveryOutcome::Recovered,
        RecoveryOutcome::Epoch,
        RecoveryOutcome::Gap,
        RecoveryOutcome::TooMany,
        RecoveryOutcome::HistoryOff,
    ];

    /// The label used in stats and metrics.
    pub fn label(self) -> &'static str {
        match self {
            RecoveryOutcome::Recovered => "recovered",
            RecoveryOutcome::Epoch => "epoch",
            RecoveryOutcome::Gap => "gap",
            RecoveryOutcome::TooMany => "too_many",
            RecoveryOutcome::HistoryOff => "history_off",
        }
    }
}

/// HTTP statuses counted one by one; anything else is counted as `other`.
pub const HTTP_STATUSES: [u16; 15] = [
    101, 200, 201, 400, 401, 403, 404, 405, 411, 413, 426, 429, 431, 500, 503,
];

/// Counters of one shard.
#[derive(Debug, Default)]
pub(crate) struct ShardCounters {
    pub connections: AtomicU64,
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub deliveries: AtomicU64,
    pub write_calls: AtomicU64,
    pub bytes_out: AtomicU64,
    pub slow_consumers: AtomicU64,
    pub accept_errors: AtomicU64,
    pub closes: [AtomicU64; CloseCause::ALL.len()],
    /// One per entry of [`HTTP_STATUSES`], then `other`.
    pub http_responses: [AtomicU64; HTTP_STATUSES.len() + 1],
    /// Per-second rates from the last tick, as `f64` bits.
    pub messages_in_rate: AtomicU64,
    pub deliveries_rate: AtomicU64,
    /// Fan-out latency (µs from publish to the socket), published once per tick.
    pub latency: Mutex<Option<Histogram<u64>>>,
    /// Joins that asked to recover, by outcome.
    pub recoveries: [AtomicU64; RecoveryOutcome::ALL.len()],
    /// Positioned messages held by the streams this shard is home to (a gauge, set
    /// once per tick), and their bytes.
    pub history_messages: AtomicU64,
    pub history_bytes: AtomicU64,
    /// Frames of conflated rooms that replaced an older one in a queue, or were skipped
    /// for a newer one.
    pub conflated: AtomicU64,
}

/// All counters of the hub.
#[derive(Debug)]
pub(crate) struct Counters {
    pub shards: Box<[CachePadded<ShardCounters>]>,
    /// Frames encoded for fan-out: one per broadcast, whatever its recipients.
    pub frames_encoded: CachePadded<AtomicU64>,
    /// Broadcasts compressed for permessage-deflate (at most one compression each), and
    /// their frames' bytes before and after; one that did not shrink counts its plain
    /// size after.
    pub compression: CachePadded<[AtomicU64; 3]>,
}

impl Counters {
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards).map(|_| CachePadded::default()).collect(),
            frames_encoded: CachePadded::default(),
            compression: CachePadded::default(),
        }
    }

    /// One broadcast frame of `before` bytes compressed into `after` (`None`: it did not
    /// shrink and goes out plain).
    pub fn count_compression(&self, before: usize, after: Option<usize>) {
        let [compressions, bytes_before, bytes_after] = &*self.compression;
        add(compressions, 1);
        add(bytes_before, before as u64);
        add(bytes_after, after.unwrap_or(before) as u64);
    }

    pub fn shard(&self, index: usize) -> &ShardCounters {
        &self.shards[index]
    }
}

impl ShardCounters {
    pub fn count_close(&self, cause: CloseCause) {
        add(&self.closes[cause as usize], 1);
    }

    pub fn count_recovery(&self, outcome: RecoveryOutcome) {
        add(&self.recoveries[outcome as usize], 1);
    }

    pub fn count_response(&self, status: u16) {
        let slot = HTTP_STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(HTTP_STATUSES.len());
        add(&self.http_responses[slot], 1);
    }

    fn snapshot(&self) -> ShardStats {
        let latency = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        ShardStats {
            connections: read(&self.connections),
            messages_in: read(&self.messages_in),
            messages_in_per_sec: f64::from_bits(read(&self.messages_in_rate)),
            bytes_in: read(&self.bytes_in),
            deliveries: read(&self.deliveries),
            deliveries_per_sec: f64::from_bits(read(&self.deliveries_rate)),
            write_calls: read(&self.write_calls),
            bytes_out: read(&self.bytes_out),
            slow_consumers: read(&self.slow_consumers),
            accept_errors: read(&self.accept_errors),
            closes: CloseCause::ALL
                .iter()
                .map(|c| (c.label(), read(&self.closes[*c as usize])))
                .collect(),
            http_responses: HTTP_STATUSES
                .iter()
                .map(|s| s.to_string())
                .chain(["other".to_owned()])
                .zip(self.http_responses.iter().map(read))
                .collect(),
            fanout_latency_us: LatencySummary::of(latency.as_ref()),
            latency: latency.clone(),
            history: HistoryStats {
                messages: read(&self.history_messages),
                bytes: read(&self.history_bytes),
            },
            recoveries: RecoveryStats::of(
                RecoveryOutcome::ALL
                    .iter()
                    .map(|o| (o.label(), read(&self.recoveries[*o as usize]))),
            ),
            conflated: read(&self.conflated),
        }
    }
}

/// Broadcasts compressed once each for the connections that negotiated permessage-deflate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CompressionStats {
    /// Broadcast frames compressed: at most one per broadcast, whatever its recipients.
    pub compressions: u64,
    /// Their bytes before compression.
    pub bytes_before: u64,
    /// Their bytes after (a frame that did not shrink, and went out plain, as before).
    pub bytes_after: u64,
    /// `bytes_before / bytes_after`; 0 before any compression.
    pub ratio: f64,
}

impl CompressionStats {
    fn of(counters: &[AtomicU64; 3]) -> Self {
        let [compressions, before, after] = counters.each_ref().map(read);
        Self {
            compressions,
            bytes_before: before,
            bytes_after: after,
            ratio: if after == 0 {
                0.0
            } else {
                before as f64 / after as f64
            },
        }
    }
}

/// What the rooms' streams hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HistoryStats {
    /// Positioned messages held.
    pub messages: u64,
    /// Their bytes, as frames.
    pub bytes: u64,
}

/// Joins that asked to recover.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryStats {
    /// Joins with `recover`.
    pub attempted: u64,
    /// Answered `recovered: true`, every missed message replayed.
    pub succeeded: u64,
    /// Answered `recovered: false`, by reason: `epoch`, `gap`, `too_many`, `history_off`.
    pub failed: BTreeMap<&'static str, u64>,
}

impl RecoveryStats {
    fn of(outcomes: impl Iterator<Item = (&'static str, u64)>) -> Self {
        let mut stats = RecoveryStats::default();
        for (label, n) in outcomes {
            stats.attempted += n;
            if label == RecoveryOutcome::Recovered.label() {
                stats.succeeded += n;
            } else {
                *stats.failed.entry(label).or_insert(0) += n;
            }
        }
        stats
    }
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Reads a counter.
pub(crate) fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// A new fan-out latency histogram: 1 µs to 60 s (longer waits count as 60 s), 2
/// significant digits: 2,560 counters (20 KB), small enough to copy per shard on every
/// `/stats` and `/metrics` request on a shard's thread (1 h at 3 digits would be 188 KB).
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid histogram bounds")
}

/// Percentiles of fan-out latency, in microseconds: from a broadcast being published to
/// its frame being handed to a recipient's socket (the longest wait in each write).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Writes measured.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl LatencySummary {
    fn of(h: Option<&Histogram<u64>>) -> Self {
        match h {
            Some(h) if !h.is_empty() => Self {
                count: h.len(),
                p50: h.value_at_quantile(0.5),
                p90: h.value_at_quantile(0.9),
                p99: h.value_at_quantile(0.99),
                p999: h.value_at_quantile(0.999),
                max: h.max(),
            },
            _ => Self::default(),
        }
    }
}

/// A snapshot of one shard's counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShardStats {
    /// Open WebSocket connections on the shard.
    pub connections: u64,
    /// Client messages received.
    pub messages_in: u64,
    /// Client messages per second, over the last second or so.
    pub messages_in_per_sec: f64,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Frames queued to connections (one per recipient): messages out.
    pub deliveries: u64,
    /// Deliveries per second, over the last second or so.
    pub deliveries_per_sec: f64,
    /// Write system calls made; `deliveries / write_calls` is the batching achieved.
    pub write_calls: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Clients found not reading (closed with 1008 `slow consumer`).
    pub slow_consumers: u64,
    /// Accepts that failed, out of file descriptors most likely; the shard backs off
    /// while they do.
    pub accept_errors: u64,
    /// Connections ended, by cause.
    pub closes: BTreeMap<&'static str, u64>,
    /// HTTP responses (upgrades included, as 101) by status.
    pub http_responses: BTreeMap<String, u64>,
    /// Fan-out latency percentiles since start.
    pub fanout_latency_us: LatencySummary,
    /// What the streams this shard is home to hold.
    pub history: HistoryStats,
    /// Recoveries of this shard's connections.
    pub recoveries: RecoveryStats,
    /// Conflated frames.
    pub conflated: u64,
    #[serde(skip)]
    pub(crate) latency: Option<Histogram<u64>>,
}

/// A snapshot of the hub's counters: the body of `GET /stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HubStats {
    /// Open WebSocket connections.
    pub total_connections: u64,
    /// Distinct users with at least one connection.
    pub unique_users: u64,
    /// Rooms that exist.
    pub rooms: u64,
    /// Unix seconds when the snapshot was taken.
    pub timestamp: u64,
    /// Broadcast frames encoded (each is shared by all its recipients).
    pub frames_encoded: u64,
    /// Client messages received.
    pub messages_in: u64,
    /// Client messages per second.
    pub messages_in_per_sec: f64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Frames queued to connections: messages out.
    pub deliveries: u64,
    /// Deliveries per second.
    pub deliveries_per_sec: f64,
    /// Write system calls.
    pub write_calls: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Clients closed as slow consumers.
    pub slow_consumers: u64,
    /// Accepts that failed (out of file descriptors, most likely).
    pub accept_errors: u64,
    /// Connections dropped for silence or a stuck write.
    pub dropped_dead: u64,
    /// Connections ended, by cause.
    pub closes: BTreeMap<&'static str, u64>,
    /// HTTP responses by status.
    pub http_responses: BTreeMap<String, u64>,
    /// Fan-out latency percentiles since start, all shards.
    pub fanout_latency_us: LatencySummary,
    /// What the rooms' streams hold (`history.size` > 0).
    pub history: HistoryStats,
    /// Joins that asked to recover.
    pub recoveries: RecoveryStats,
    /// Frames of conflated rooms that replaced an older one in a slow connection's
    /// queue, or were skipped for a newer one.
    pub conflated: u64,
    /// Broadcasts compressed for permessage-deflate (`compression.enabled`).
    pub compression: CompressionStats,
    /// The same, shard by shard.
    pub shards: Vec<ShardStats>,
    /// This node's part in a cluster (`cluster.nats_url`); the figures above are this
    /// node's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStats>,
    /// The embedding application's events (`HubConfig::application`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application: Option<crate::hooks::ApplicationStats>,
    /// The backend hooks' calls, failures and latency (`proxy.*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<crate::ProxyStats>,
    #[serde(skip)]
    pub(crate) latency: Option<Histogram<u64>>,
}

impl HubStats {
    pub(crate) fn collect(counters: &Counters, connections: u64, users: u64, rooms: u64) -> Self {
        let shards: Vec<ShardStats> = counters.shards.iter().map(|c| c.snapshot()).collect();
        let sum = |f: fn(&ShardStats) -> u64| shards.iter().map(f).sum::<u64>();
        let mut closes = BTreeMap::new();
        let mut http_responses = BTreeMap::new();
        let mut latency: Option<Histogram<u64>> = None;
        for shard in &shards {
            for (cause, n) in &shard.closes {
                *closes.entry(*cause).or_insert(0) += n;
            }
            for (status, n) in &shard.http_responses {
                *http_responses.entry(status.clone()).or_insert(0) += n;
            }
            if let Some(h) = &shard.latency {
                match &mut latency {
                    Some(total) => total.add(h).expect("same bounds"),
                    None => latency = Some(h.clone()),
                }
            }
        }
        let dropped_dead = closes["timeout"] + closes["write_stalled"];
        HubStats {
            total_connections: connections,
            unique_users: users,
            rooms,
            timestamp: crate::protocol::unix_time(),
            frames_encoded: read(&counters.frames_encoded),
            messages_in: sum(|s| s.messages_in),
            messages_in_per_sec: shards.iter().map(|s| s.messages_in_per_sec).sum(),
            bytes_in: sum(|s| s.bytes_in),
            deliveries: sum(|s| s.deliveries),
            deliveries_per_sec: shards.iter().map(|s| s.deliveries_per_sec).sum(),
            write_calls: sum(|s| s.write_calls),
            bytes_out: sum(|s| s.bytes_out),
            slow_consumers: sum(|s| s.slow_consumers),
            accept_errors: sum(|s| s.accept_errors),
            dropped_dead,
            closes,
            http_responses,
            fanout_latency_us: LatencySummary::of(latency.as_ref()),
            history: HistoryStats {
                messages: sum(|s| s.history.messages),
                bytes: sum(|s| s.history.bytes),
            },
            recoveries: RecoveryStats::of(shards.iter().flat_map(|s| {
                std::iter::once((RecoveryOutcome::Recovered.label(), s.recoveries.succeeded))
                    .chain(s.recoveries.failed.iter().map(|(k, v)| (*k, *v)))
            })),
            conflated: sum(|s| s.conflated),
            compression: CompressionStats::of(&counters.compression),
            shards,
            cluster: None,
            application: None,
            proxy: None,
            latency,
        }
    }

    /// The merged fan-out latency histogram (µs), if anything was measured.
    pub fn latency_histogram(&self) -> Option<&Histogram<u64>> {
        self.latency.as_ref()
    }
}

/// The state of the node's link to NATS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// Not connected yet since start.
    Connecting,
    /// Connected.
    Connected,
    /// Lost; the client reconnects by itself.
    Disconnected,
}

impl LinkState {
    pub(crate) fn from_u8(v: u8) -> LinkState {
        match v {
            1 => LinkState::Connected,
            2 => LinkState::Disconnected,
            _ => LinkState::Connecting,
        }
    }

    pub(crate) fn as_u8(self) -> u8 {
        match self {
            LinkState::Connecting => 0,
            LinkState::Connected => 1,
            LinkState::Disconnected => 2,
        }
    }
}

/// What `/stats` shows of the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStats {
    /// This node's name.
    pub node_id: String,
    /// This node's tag (the first part of its connection ids).
    pub node_tag: u16,
    /// Live nodes, this one included.
    pub nodes: usize,
    /// The other live nodes' names.
    pub peers: Vec<String>,
    /// The link to NATS.
    pub nats: LinkState,
    /// Open connections in the whole cluster.
    pub connections: usize,
    /// Distinct users with a connection anywhere in the cluster.
    pub users: usize,
    /// Rooms with members, or kept, anywhere in the cluster.
    pub rooms: usize,
    /// Connections on the other nodes.
    pub remote_connections: usize,
    /// Frames sent to other nodes.
    pub messages_out: u64,
    /// Frames received from other nodes.
    pub messages_in: u64,
    /// Connection events and heartbeats sent.
    pub events_out: u64,
    /// Connection events and heartbeats received.
    pub events_in: u64,
    /// Frames and events dropped on the way out (queue full or NATS unreachable).
    pub dropped_out: u64,
    /// Frames dropped on the way in (a shard's inbox full).
    pub dropped_in: u64,
    /// Snapshots taken of other nodes.
    pub resyncs: u64,
    /// Nodes taken for dead after `cluster.node_timeout` of silence.
    pub nodes_lost: u64,
    /// Times the NATS client dropped messages of a subscription of this node that fell
    /// behind (its slow-consumer events).
    pub nats_slow_consumers: u64,
    /// Positioned messages appended to the journal (history on).
    pub journal_appends: u64,
    /// Appends that found another node had appended first, and tried again.
    pub journal_conflicts: u64,
    /// Messages read from the journal to fill a gap before delivering.
    pub journal_repairs: u64,
    /// Every live node's own figures, this one's included, by name.
    pub members: Vec<NodeStats>,
}

/// One node of the cluster, as `/stats` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStats {
    /// The node's name.
    pub node_id: String,
    /// Its open connections.
    pub connections: usize,
    /// Distinct users with a connection on it.
    pub users: usize,
    /// Rooms with members on it (for the node answering, its kept rooms too).
    pub rooms: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latency_histogram_is_small_and_saturates() {
        let mut h = latency_histogram();
        assert_eq!(h.distinct_values(), 2560);
        h.saturating_record(u64::from(u32::MAX));
        assert!(
            h.max() >= 59_000_000 && h.max() <= 61_000_000,
            "{}",
            h.max()
        );
        h.saturating_record(1234);
        let p50 = h.value_at_quantile(0.5);
        assert!(
            (1220..=1250).contains(&p50),
            "two significant digits: {p50}"
        );
    }
}
