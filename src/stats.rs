//! Counters the shards keep and the hub reports.
//!
//! Each shard writes only its own counters (relaxed atomics on their own cache line), so
//! counting costs no contention; readers sum them when asked.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

/// Counters of one shard.
#[derive(Debug, Default)]
pub(crate) struct ShardCounters {
    pub connections: AtomicU64,
    pub messages_in: AtomicU64,
    pub deliveries: AtomicU64,
    pub write_calls: AtomicU64,
    pub bytes_out: AtomicU64,
    pub slow_consumers: AtomicU64,
    pub dropped_dead: AtomicU64,
}

/// All counters of the hub.
#[derive(Debug)]
pub(crate) struct Counters {
    pub shards: Box<[CachePadded<ShardCounters>]>,
    /// Frames encoded for fan-out: one per broadcast, whatever its recipients.
    pub frames_encoded: CachePadded<AtomicU64>,
}

impl Counters {
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards).map(|_| CachePadded::default()).collect(),
            frames_encoded: CachePadded::default(),
        }
    }

    pub fn shard(&self, index: usize) -> &ShardCounters {
        &self.shards[index]
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

/// A snapshot of one shard's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShardStats {
    /// Open WebSocket connections on the shard.
    pub connections: u64,
    /// Client messages received.
    pub messages_in: u64,
    /// Frames queued to connections (one per recipient).
    pub deliveries: u64,
    /// Write system calls made; `deliveries / write_calls` is the batching achieved.
    pub write_calls: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Connections closed for not reading (1008 `slow consumer`).
    pub slow_consumers: u64,
    /// Connections dropped for silence or a stuck write.
    pub dropped_dead: u64,
}

/// A snapshot of the hub's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HubStats {
    /// Open WebSocket connections.
    pub connections: u64,
    /// Distinct users with at least one connection.
    pub users: u64,
    /// Rooms that exist.
    pub rooms: u64,
    /// Broadcast frames encoded (each is shared by all its recipients).
    pub frames_encoded: u64,
    /// Sum over shards.
    pub messages_in: u64,
    /// Sum over shards.
    pub deliveries: u64,
    /// Sum over shards.
    pub write_calls: u64,
    /// Sum over shards.
    pub bytes_out: u64,
    /// Sum over shards.
    pub slow_consumers: u64,
    /// Sum over shards.
    pub dropped_dead: u64,
    /// Per shard.
    pub shards: Vec<ShardStats>,
}

impl ShardCounters {
    pub fn snapshot(&self) -> ShardStats {
        ShardStats {
            connections: read(&self.connections),
            messages_in: read(&self.messages_in),
            deliveries: read(&self.deliveries),
            write_calls: read(&self.write_calls),
            bytes_out: read(&self.bytes_out),
            slow_consumers: read(&self.slow_consumers),
            dropped_dead: read(&self.dropped_dead),
        }
    }
}
