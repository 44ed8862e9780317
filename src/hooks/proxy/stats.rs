//! What the proxy counts, per hook: calls, failures by reason and how long calls took;
//! and the snapshot `/stats` and `/metrics` show of it.
//!
//! Callers count their calls and the ones refused as busy on their own threads, so the
//! counters are atomics; the latency histogram is written by the proxy thread alone, and
//! its lock is only contended by a snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::hook::{Failure, Hook};
use crate::stats::{add, latency_histogram, read};

/// The counters of every hook, shared by the callers and the proxy thread.
#[derive(Debug)]
pub(super) struct Counters {
    hooks: [HookCounters; Hook::ALL.len()],
    /// Which hooks have a URL: only those are shown.
    configured: [bool; Hook::ALL.len()],
}

#[derive(Debug)]
struct HookCounters {
    calls: AtomicU64,
    errors: [AtomicU64; Failure::LABELS.len()],
    /// Microseconds from a request being sent to its outcome.
    latency: Mutex<Histogram<u64>>,
}

impl Counters {
    pub fn new(configured: [bool; Hook::ALL.len()]) -> Self {
        Self {
            hooks: std::array::from_fn(|_| HookCounters {
                calls: AtomicU64::new(0),
                errors: Default::default(),
                latency: Mutex::new(latency_histogram()),
            }),
            configured,
        }
    }

    pub fn count_call(&self, hook: Hook) {
        add(&self.hooks[hook as usize].calls, 1);
    }

    pub fn count_failure(&self, hook: Hook, failure: Failure) {
        add(&self.hooks[hook as usize].errors[failure.index()], 1);
    }

    pub fn record_latency(&self, hook: Hook, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let mut h = self.hooks[hook as usize]
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        h.saturating_record(micros.max(1));
    }

    pub fn snapshot(&self) -> ProxyStats {
        let hooks = Hook::ALL
            .iter()
            .filter(|hook| self.configured[**hook as usize])
            .map(|&hook| {
                let counters = &self.hooks[hook as usize];
                let latency = counters
                    .latency
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let stats = HookStats {
                    calls: read(&counters.calls),
                    errors: Failure::LABELS
                        .iter()
                        .zip(&counters.errors)
                        .map(|(label, n)| (*label, read(n)))
                        .collect(),
                    latency_us: HookLatency::of(&latency),
                    latency,
                };
                (hook.name(), stats)
            })
            .collect();
        ProxyStats { hooks }
    }
}

/// What `/stats` shows of the backend hooks (`proxy.*`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProxyStats {
    /// Each hook that has a URL, by name: `connect`, `join`, `publish`, `rpc`.
    pub hooks: BTreeMap<&'static str, HookStats>,
}

/// One hook's calls.
#[derive(Debug, Clone, Serialize)]
pub struct HookStats {
    /// Calls asked for, including those refused at once.
    pub calls: u64,
    /// Calls without a usable answer, by reason: `timeout`, `unreachable`, `server_error`
    /// (5xx), `busy` (the queue was full), `bad_answer` (not the JSON the hook needs).
    pub errors: BTreeMap<&'static str, u64>,
    /// How long the calls made took, from sending the request to its outcome.
    pub latency_us: HookLatency,
    /// The same, as a histogram of microseconds, for `/metrics`.
    #[serde(skip)]
    pub(crate) latency: Histogram<u64>,
}

/// Percentiles of a hook's latency, in microseconds; zero before the first call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HookLatency {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Longest.
    pub max: u64,
}

impl HookLatency {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_hooks_are_shown_with_every_reason() {
        let counters = Counters::new([true, false, false, true]);
        counters.count_call(Hook::Rpc);
        counters.count_call(Hook::Rpc);
        counters.count_failure(Hook::Rpc, Failure::ServerError(502));
        counters.record_latency(Hook::Rpc, Duration::from_millis(3));
        let stats = counters.snapshot();
        assert_eq!(
            stats.hooks.keys().copied().collect::<Vec<_>>(),
            ["connect", "rpc"]
        );
        let rpc = &stats.hooks["rpc"];
        assert_eq!(rpc.calls, 2);
        assert_eq!(rpc.errors["server_error"], 1);
        assert_eq!(rpc.errors["timeout"], 0);
        assert_eq!(rpc.errors.len(), Failure::LABELS.len());
        assert!(
            (2900..=3100).contains(&rpc.latency_us.max),
            "{:?}",
            rpc.latency_us
        );
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(
            json["hooks"]["rpc"]["latency_us"]["p50"],
            rpc.latency_us.p50
        );
        assert_eq!(json["hooks"]["connect"]["calls"], 0);
        assert!(json["hooks"]["rpc"].get("latency").is_none());
    }
}
