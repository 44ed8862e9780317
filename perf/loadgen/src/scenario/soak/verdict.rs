//! The soak's pass criteria, each a named check with the figures it compared.

use serde::Serialize;

use super::inbox::Faults;
use super::levels::{allowed, Level};
use super::sampler::HubCounters;
use super::shared::Sent;

/// One criterion.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// What was compared.
    pub detail: String,
}

fn check(name: &'static str, ok: bool, detail: String) -> Check {
    Check { name, ok, detail }
}

/// What the checks look at.
#[derive(Clone, Copy)]
pub struct Evidence<'a> {
    pub tolerance: f64,
    pub rss: &'a Level,
    pub fds: &'a Level,
    pub sent: &'a Sent,
    /// The hub's counters after the run minus before it.
    pub hub: &'a HubCounters,
    /// The hub's open connections after the run.
    pub connections_after: u64,
    pub faults: &'a Faults,
    pub lost: u64,
    /// Failures of clients and calls, and the first of them.
    pub failures: u64,
    pub first_failure: Option<&'a str>,
    /// Stalls that ended in the close 1008 "slow consumer", and otherwise.
    pub cut_with_close: u64,
    pub cut_without_close: u64,
    pub first_without_close: Option<&'a str>,
    pub stalled_readers: usize,
}

/// Every check, in the order the report prints them.
pub fn checks(e: &Evidence) -> Vec<Check> {
    let tol = e.tolerance;
    let pct = tol * 100.0;
    let rss_max = allowed(e.rss.warm, tol, 0);
    let fd_load_max = allowed(e.fds.warm, tol, 2);
    let fd_after_max = allowed(e.fds.before, tol, 1);
    let acked = e.sent.joins_confirmed + e.sent.leaves_confirmed + e.sent.chats_acked;
    let cuts = e.cut_with_close + e.cut_without_close;
    vec![
        check(
            "rss_end",
            e.rss.end <= rss_max,
            format!(
                "RSS level at the end {} KiB, after warm-up {} KiB (at most +{pct}%: {rss_max})",
                e.rss.end, e.rss.warm
            ),
        ),
        check(
            "rss_after",
            e.rss.after <= rss_max,
            format!(
                "RSS after all closed {} KiB, after warm-up {} KiB (at most {rss_max})",
                e.rss.after, e.rss.warm
            ),
        ),
        check(
            "fds_during_load",
            e.fds.end <= fd_load_max,
            format!(
                "open files besides connections: at the end {}, after warm-up {} (at most {fd_load_max})",
                e.fds.end, e.fds.warm
            ),
        ),
        check(
            "fds_after",
            e.fds.after <= fd_after_max,
            format!(
                "open files at 0 connections: after {}, before {} (at most {fd_after_max})",
                e.fds.after, e.fds.before
            ),
        ),
        check(
            "connections_back_to_zero",
            e.connections_after == 0,
            format!("hub connections after the run: {}", e.connections_after),
        ),
        check(
            "exactly_once_in_order",
            !e.faults.any() && e.lost == 0,
            format!("lost {}, {:?}", e.lost, e.faults),
        ),
        check(
            "no_failures",
            e.failures == 0,
            format!(
                "{} failures{}",
                e.failures,
                e.first_failure
                    .map_or(String::new(), |f| format!("; first: {f}"))
            ),
        ),
        check(
            "messages_in_adds_up",
            e.hub.messages_in >= acked && e.hub.messages_in <= e.sent.frames,
            format!(
                "hub messages_in grew {}: at least the {acked} joins, leaves and chat messages \
                 it confirmed, at most the {} frames sent",
                e.hub.messages_in, e.sent.frames
            ),
        ),
        check(
            "deliveries_add_up",
            e.hub.deliveries >= e.sent.positioned_received,
            format!(
                "hub deliveries grew {}, well-behaved clients received {} chat messages and publications",
                e.hub.deliveries, e.sent.positioned_received
            ),
        ),
        check(
            "slow_consumers_add_up",
            e.hub.slow_consumers == cuts && e.hub.slow_consumer_closes == cuts,
            format!(
                "hub slow_consumers grew {}, closes.slow_consumer {}; stalled readers saw {cuts} cuts",
                e.hub.slow_consumers, e.hub.slow_consumer_closes
            ),
        ),
        check(
            "stalled_readers_cut_with_1008",
            e.cut_without_close == 0 && (e.stalled_readers == 0 || e.cut_with_close > 0),
            format!(
                "{} stalls cut with close 1008 \"slow consumer\", {} ended otherwise{}",
                e.cut_with_close,
                e.cut_without_close,
                e.first_without_close
                    .map_or(String::new(), |f| format!(" (first: {f})"))
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(before: u64, warm: u64, end: u64, after: u64) -> Level {
        Level {
            before,
            warm,
            end,
            after,
        }
    }

    #[test]
    fn a_clean_run_passes_and_each_fault_fails_its_check() {
        let rss = level(10_000, 50_000, 51_000, 45_000);
        let fds = level(20, 18, 19, 20);
        let sent = Sent {
            frames: 1000,
            joins_confirmed: 300,
            leaves_confirmed: 50,
            chats_acked: 600,
            api_acked: 20,
            positioned_received: 9000,
        };
        let hub = HubCounters {
            connections: 0,
            messages_in: 1000,
            deliveries: 9500,
            slow_consumers: 3,
            slow_consumer_closes: 3,
        };
        let faults = Faults::default();
        let e = Evidence {
            tolerance: 0.05,
            rss: &rss,
            fds: &fds,
            sent: &sent,
            hub: &hub,
            connections_after: 0,
            faults: &faults,
            lost: 0,
            failures: 0,
            first_failure: None,
            cut_with_close: 3,
            cut_without_close: 0,
            first_without_close: None,
            stalled_readers: 2,
        };
        let failed = |e: &Evidence| -> Vec<&'static str> {
            checks(e).iter().filter(|c| !c.ok).map(|c| c.name).collect()
        };
        assert!(failed(&e).is_empty(), "{:?}", checks(&e));
        let leaky = level(10_000, 50_000, 53_000, 45_000);
        assert_eq!(failed(&Evidence { rss: &leaky, ..e }), ["rss_end"]);
        let fd_leak = level(20, 18, 19, 22);
        assert_eq!(failed(&Evidence { fds: &fd_leak, ..e }), ["fds_after"]);
        assert_eq!(
            failed(&Evidence { lost: 1, ..e }),
            ["exactly_once_in_order"]
        );
        let short = HubCounters {
            messages_in: 900,
            ..hub
        };
        assert_eq!(
            failed(&Evidence { hub: &short, ..e }),
            ["messages_in_adds_up"]
        );
        assert_eq!(
            failed(&Evidence {
                cut_with_close: 2,
                ..e
            }),
            ["slow_consumers_add_up"]
        );
        assert_eq!(
            failed(&Evidence {
                connections_after: 1,
                ..e
            }),
            ["connections_back_to_zero"]
        );
    }
}
