//! One monotonic epoch for the whole process, so that a send time stamped by the publisher on
//! one worker thread can be subtracted from a receive time taken on another.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Fixes the epoch. Call once at start; later calls are no-ops.
pub fn init() {
    EPOCH.get_or_init(Instant::now);
}

fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the process epoch (CLOCK_MONOTONIC through the vDSO).
#[inline]
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// The `Instant` that is `ns` nanoseconds after the epoch, for timers.
pub fn instant_at(ns: u64) -> Instant {
    epoch() + Duration::from_nanos(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_convertible() {
        init();
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        assert!(instant_at(b) >= instant_at(a));
    }
}
