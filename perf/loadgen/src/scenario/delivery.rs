//! Counting deliveries of stamped chat messages, for the scenarios whose connections receive
//! them (fanout and all-to-all): counters shared by all connections, the counters of one read
//! (committed with one atomic update per counter, not per frame), and each worker thread's
//! latency histogram and loss totals.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;

use crate::conn::{self, Scratch};
use crate::offsets::OffsetTotals;
use crate::scenario::common::keep_first;
use crate::seq::{Seen, SeqTracker};

/// Largest latency the histograms hold (longer ones are recorded as this).
const MAX_LATENCY_NS: u64 = 600_000_000_000;

/// What all connections received so far.
#[derive(Default)]
pub struct Received {
    /// Non-chat frames (join notices, presence, errors, ...).
    pub noise: AtomicU64,
    /// When the latest non-chat frame arrived, ns.
    pub last_noise_ns: AtomicU64,
    /// Chat deliveries with our stamp, duplicates included.
    pub deliveries: AtomicU64,
    /// First deliveries of a message to a receiver.
    pub unique: AtomicU64,
    /// When the latest first delivery arrived, ns.
    pub last_delivery_ns: AtomicU64,
    /// Chat messages without our stamp.
    pub foreign: AtomicU64,
    /// Error messages (or refused HTTP publishes) from the server.
    pub server_errors: AtomicU64,
    /// The first of them.
    pub first_server_error: Mutex<Option<String>>,
}

impl Received {
    /// Seconds from `t0` to the last first delivery, or to `publish_end` if that is later
    /// (at least 1 ns, so rates stay finite).
    pub fn measured_seconds(&self, t0: u64, publish_end: u64) -> f64 {
        let end = self
            .last_delivery_ns
            .load(Ordering::SeqCst)
            .max(publish_end)
            .max(t0 + 1);
        (end - t0) as f64 / 1e9
    }

    /// Handles an HTTP publisher's answer: one that is not a 2xx counts as a server error.
    pub fn http_answer(&self, code: u16, body: &[u8]) {
        if !(200..300).contains(&code) {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
            keep_first(&self.first_server_error, || {
                format!(
                    "HTTP {code} to a publish: {}",
                    String::from_utf8_lossy(body)
                )
            });
        }
    }
}

/// Counters of one read.
#[derive(Default)]
pub struct ReadBatch {
    pub deliveries: u64,
    pub unique: u64,
    pub last_delivery: u64,
    pub noise: u64,
    pub last_noise: u64,
    pub foreign: u64,
    pub errors: u64,
}

impl ReadBatch {
    /// Counts a non-chat frame that arrived at `now`.
    pub fn noise(&mut self, now: u64) {
        self.noise += 1;
        self.last_noise = now;
    }

    /// Counts an error message from the server (a non-chat frame too) and keeps its text if
    /// it is the first.
    pub fn server_error(&mut self, now: u64, text: &[u8], received: &Received) {
        self.noise(now);
        self.errors += 1;
        keep_first(&received.first_server_error, || {
            String::from_utf8_lossy(text).into_owned()
        });
    }

    /// Counts a delivery of message `seq` (numbered as `tracker` numbers its publisher's
    /// messages), sent at `sent`, received at `now`; records the latency of a first delivery.
    /// True if it was the first.
    pub fn delivery(
        &mut self,
        tracker: &mut SeqTracker,
        seq: u64,
        sent: u64,
        now: u64,
        stats: &RefCell<ReceiverStats>,
    ) -> bool {
        self.deliveries += 1;
        if tracker.observe(seq) == Seen::Duplicate {
            return false;
        }
        self.unique += 1;
        self.last_delivery = now;
        stats
            .borrow_mut()
            .latency
            .saturating_record(now.saturating_sub(sent).max(1));
        true
    }

    /// Adds this read's counters to `received`.
    pub fn commit(&self, received: &Received) {
        let add = |a: &AtomicU64, n: u64| {
            if n > 0 {
                a.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&received.noise, self.noise);
        add(&received.deliveries, self.deliveries);
        add(&received.unique, self.unique);
        add(&received.foreign, self.foreign);
        add(&received.server_errors, self.errors);
        if self.noise > 0 {
            received
                .last_noise_ns
                .fetch_max(self.last_noise, Ordering::Relaxed);
        }
        if self.unique > 0 {
            received
                .last_delivery_ns
                .fetch_max(self.last_delivery, Ordering::Relaxed);
        }
    }
}

/// Per worker thread: results of its receiving connections.
pub struct ReceiverStats {
    /// Publish to receive latency of first deliveries, ns.
    pub latency: Histogram<u64>,
    /// Setup: from connect to the upgrade response, ns.
    pub upgraded: Histogram<u64>,
    /// Setup: from connect to `joined`, ns.
    pub joined: Histogram<u64>,
    pub lost: u64,
    pub duplicates: u64,
    /// First deliveries that came after a later message of the same publisher.
    pub late: u64,
    /// Receivers that counted their losses at the end.
    pub finalized: usize,
    pub receivers_with_loss: u64,
    /// Offsets of the receivers (runs that check the hub's history offsets).
    pub offsets: OffsetTotals,
}

impl ReceiverStats {
    pub fn new() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("histogram bounds"),
            upgraded: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 2).expect("histogram bounds"),
            joined: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 2).expect("histogram bounds"),
            lost: 0,
            duplicates: 0,
            late: 0,
            finalized: 0,
            receivers_with_loss: 0,
            offsets: OffsetTotals::default(),
        }
    }

    /// Adds one receiver's totals, counted once it stopped receiving.
    pub fn finalize_receiver(&mut self, lost: u64, duplicates: u64, late: u64) {
        self.lost += lost;
        self.duplicates += duplicates;
        self.late += late;
        self.finalized += 1;
        self.receivers_with_loss += u64::from(lost > 0);
    }

    pub fn merge(&mut self, other: &ReceiverStats) {
        let _ = self.latency.add(&other.latency);
        let _ = self.upgraded.add(&other.upgraded);
        let _ = self.joined.add(&other.joined);
        self.lost += other.lost;
        self.duplicates += other.duplicates;
        self.late += other.late;
        self.finalized += other.finalized;
        self.receivers_with_loss += other.receivers_with_loss;
        self.offsets.merge(&other.offsets);
    }
}

/// Per worker thread, shared by its connections through `Rc`.
pub struct WorkerEnv {
    /// The read buffer of all its connections.
    pub scratch: Scratch,
    pub stats: RefCell<ReceiverStats>,
}

impl WorkerEnv {
    pub fn new() -> Self {
        Self {
            scratch: conn::new_scratch(),
            stats: RefCell::new(ReceiverStats::new()),
        }
    }

    /// Hands over the statistics at the end of the worker.
    pub fn take_stats(&self) -> ReceiverStats {
        self.stats.replace(ReceiverStats::new())
    }
}
