//! What the soak's clients on every worker thread and the orchestrating thread share: the
//! run's phase, per-room tallies, counters of what the clients sent and what the hub
//! acknowledged, and the faults and failures found.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::inbox::Faults;
use crate::clock;
use crate::scenario::common::{first, keep_first};

/// Where the run is. Clients watch it; only the orchestrating thread moves it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// The long-lived clients connect and join; nothing is published yet.
    Setup,
    /// The load runs.
    Load,
    /// Publishing and churn have stopped; late deliveries arrive.
    Drain,
    /// Every client closes.
    Close,
}

/// One room that long-lived members are in for the whole run: what was published to it
/// (acknowledged to its publisher) and what its long-lived members received of it.
#[derive(Default)]
pub struct RoomTally {
    /// Messages published to the room and acknowledged (own echo, or HTTP 200).
    pub sent: AtomicU64,
    /// Long-lived members of the room.
    pub members: AtomicU64,
    /// First deliveries to its long-lived members, all together.
    pub received: AtomicU64,
}

impl RoomTally {
    /// Deliveries still missing: `sent × members − received` (negative: more than sent).
    pub fn missing(&self) -> i64 {
        let sent = self.sent.load(Ordering::SeqCst) as i64;
        let members = self.members.load(Ordering::SeqCst) as i64;
        sent * members - self.received.load(Ordering::SeqCst) as i64
    }
}

/// Counters of the load generator's own doings, to hold the hub's counters against.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sent {
    /// Text frames the soak's clients wrote (every join, leave and chat message).
    pub frames: u64,
    /// Joins the hub confirmed (`joined`).
    pub joins_confirmed: u64,
    /// Leaves the hub confirmed (`left`).
    pub leaves_confirmed: u64,
    /// Chat messages whose sender got its own copy back.
    pub chats_acked: u64,
    /// API publishes answered 200.
    pub api_acked: u64,
    /// Chat messages and publications received by well-behaved clients.
    pub positioned_received: u64,
}

/// [`Sent`], counted from many threads.
#[derive(Default)]
pub struct SentCounters {
    pub frames: AtomicU64,
    pub joins_confirmed: AtomicU64,
    pub leaves_confirmed: AtomicU64,
    pub chats_acked: AtomicU64,
    pub api_acked: AtomicU64,
    pub positioned_received: AtomicU64,
}

impl SentCounters {
    pub fn snapshot(&self) -> Sent {
        let r = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Sent {
            frames: r(&self.frames),
            joins_confirmed: r(&self.joins_confirmed),
            leaves_confirmed: r(&self.leaves_confirmed),
            chats_acked: r(&self.chats_acked),
            api_acked: r(&self.api_acked),
            positioned_received: r(&self.positioned_received),
        }
    }
}

/// Things that went wrong, by kind, each with its first description.
#[derive(Default)]
pub struct Failures {
    /// Long-lived clients the hub closed, or that failed to set up.
    pub long_lived: AtomicU64,
    pub first_long_lived: Mutex<Option<String>>,
    /// Churn clients that did not complete their round.
    pub churn: AtomicU64,
    pub first_churn: Mutex<Option<String>>,
    /// API publishes not answered 200.
    pub api: AtomicU64,
    pub first_api: Mutex<Option<String>>,
    /// `error` messages to well-behaved clients.
    pub server_errors: AtomicU64,
    pub first_server_error: Mutex<Option<String>>,
}

impl Failures {
    pub fn count(slot: (&AtomicU64, &Mutex<Option<String>>), why: impl FnOnce() -> String) {
        slot.0.fetch_add(1, Ordering::SeqCst);
        keep_first(slot.1, why);
    }

    pub fn long_lived(&self, why: impl FnOnce() -> String) {
        Self::count((&self.long_lived, &self.first_long_lived), why)
    }

    pub fn churn(&self, why: impl FnOnce() -> String) {
        Self::count((&self.churn, &self.first_churn), why)
    }

    pub fn api(&self, why: impl FnOnce() -> String) {
        Self::count((&self.api, &self.first_api), why)
    }

    pub fn server_error(&self, why: impl FnOnce() -> String) {
        Self::count((&self.server_errors, &self.first_server_error), why)
    }

    /// The first failure of any kind.
    pub fn first_any(&self) -> Option<String> {
        [
            &self.first_long_lived,
            &self.first_churn,
            &self.first_api,
            &self.first_server_error,
        ]
        .into_iter()
        .find_map(first)
    }
}

/// What the stalled readers saw, and the hub's count of cuts that they wait on.
#[derive(Default)]
pub struct Stalls {
    /// Stalls begun; each takes the next ticket.
    pub tickets: AtomicU64,
    /// Slow-consumer cuts the hub has counted since the load began (from `/stats`, set by
    /// the orchestrating thread). The stall holding ticket `t` reads again once this
    /// exceeds `t`: the hub cuts stalled readers in the order they stalled, as they all
    /// fall behind on the same frames.
    pub cuts_counted: AtomicU64,
    /// Stalls that ended in a close 1008 "slow consumer".
    pub cut_with_close: AtomicU64,
    /// Stalls whose connection ended without that close frame.
    pub cut_without_close: AtomicU64,
    pub first_without_close: Mutex<Option<String>>,
    /// Stalls that read again (on another reader's cut, or when the load ended) and found
    /// their connection open.
    pub not_cut: AtomicU64,
}

/// Everything shared.
pub struct Shared {
    pub phase: watch::Sender<Phase>,
    /// Chat rooms first, then the fan-out room.
    pub rooms: Vec<RoomTally>,
    pub sent: SentCounters,
    /// Faults in deliveries to well-behaved clients (long-lived and churn).
    pub faults: Mutex<Faults>,
    pub failures: Failures,
    pub stalls: Stalls,
    /// Long-lived clients connected and joined.
    pub ready: AtomicU64,
    /// Churn clients started and finished, API publishes in flight.
    pub churn_started: AtomicU64,
    pub churn_done: AtomicU64,
    pub api_in_flight: AtomicU64,
    /// The next stream number.
    next_stream: AtomicU64,
    /// Joins that gave an offset: the rooms' offsets are checked (history on).
    pub offsets_checked: AtomicU64,
    /// When the load began ([`clock::now_ns`]), set before the phase moves to `Load`.
    pub load_start_ns: AtomicU64,
}

impl Shared {
    pub fn new(rooms: usize) -> Self {
        Self {
            phase: watch::Sender::new(Phase::Setup),
            rooms: (0..rooms).map(|_| RoomTally::default()).collect(),
            sent: SentCounters::default(),
            faults: Mutex::new(Faults::default()),
            failures: Failures::default(),
            stalls: Stalls::default(),
            ready: AtomicU64::new(0),
            churn_started: AtomicU64::new(0),
            churn_done: AtomicU64::new(0),
            api_in_flight: AtomicU64::new(0),
            next_stream: AtomicU64::new(1),
            offsets_checked: AtomicU64::new(0),
            load_start_ns: AtomicU64::new(0),
        }
    }

    /// A stream number no other publisher uses.
    pub fn new_stream(&self) -> u64 {
        self.next_stream.fetch_add(1, Ordering::Relaxed)
    }

    /// When the load began, as a timer instant.
    pub fn load_start(&self) -> Instant {
        Instant::from_std(clock::instant_at(self.load_start_ns.load(Ordering::SeqCst)))
    }

    /// Starts the load now.
    pub fn start_load(&self) {
        self.load_start_ns.store(clock::now_ns(), Ordering::SeqCst);
        self.phase.send_replace(Phase::Load);
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    pub fn add_faults(&self, f: &Faults) {
        self.faults.lock().unwrap_or_else(|e| e.into_inner()).add(f);
    }
}

/// Adds 1.
pub fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}
