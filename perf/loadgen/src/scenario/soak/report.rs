//! The soak's report: what ran, the hub's memory and files over time, what was sent and
//! received, the hub's counters against the clients', and the checks.

use serde::Serialize;

use super::inbox::Faults;
use super::levels::Level;
use super::sampler::{HubCounters, Sample};
use super::shared::Sent;
use super::verdict::Check;
use crate::report::{thousands, Heading};

/// The load asked for.
#[derive(Debug, Clone, Serialize)]
pub struct Load {
    pub duration_seconds: f64,
    pub warmup_fraction: f64,
    pub tolerance: f64,
    pub churn_per_second: f64,
    pub chat_clients: usize,
    pub chat_rooms: usize,
    pub chat_interval_seconds: f64,
    pub fanout_subscribers: usize,
    pub fanout_rate: f64,
    pub stalled_readers: usize,
    pub api_rate: f64,
    pub threads: usize,
}

/// What the stalled readers went through.
#[derive(Debug, Clone, Serialize)]
pub struct StallReport {
    pub stalls_begun: u64,
    pub cut_with_close: u64,
    pub cut_without_close: u64,
    /// Stalls that read again on another reader's cut and found their connection open.
    pub not_cut: u64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    #[serde(flatten)]
    pub heading: Heading,
    pub server_pid: u32,
    pub load: Load,
    /// Whether rooms' offsets were checked (the hub keeps history).
    pub offsets_checked: bool,
    pub rss_kib: Level,
    /// `before`/`after`: open files at 0 connections; `warm`/`end`: open files besides the
    /// WebSocket connections while the load runs.
    pub open_files: Level,
    pub sent: Sent,
    pub churn_clients: u64,
    pub lost: u64,
    pub faults: Faults,
    pub stalls: StallReport,
    /// The hub's counters, after the run minus before it.
    pub hub_delta: HubCounters,
    pub checks: Vec<Check>,
    pub ok: bool,
    /// One sample per second, from before the first connection to after the last.
    pub samples: Vec<Sample>,
}

/// Samples near `fractions` of the load, and the ones before and after it.
fn timeline(r: &SoakReport) -> Vec<&Sample> {
    let d = r.load.duration_seconds;
    let mut picked: Vec<&Sample> = r
        .samples
        .iter()
        .filter(|s| s.phase == "before")
        .take(1)
        .collect();
    for f in [0.0, 0.2, 0.4, 0.6, 0.8, 1.0] {
        let near = r
            .samples
            .iter()
            .filter(|s| s.phase == "load")
            .min_by(|a, b| (a.t - f * d).abs().total_cmp(&(b.t - f * d).abs()));
        if let Some(s) = near {
            if !picked.iter().any(|p| std::ptr::eq(*p, s)) {
                picked.push(s);
            }
        }
    }
    picked.extend(r.samples.iter().rev().find(|s| s.phase == "after"));
    picked
}

/// Prints the human summary.
pub fn print(r: &SoakReport) {
    r.heading.print_title();
    let l = &r.load;
    println!(
        "  {:.0} s: churn {}/s, {} chat clients in {} rooms (one message per {} s each), \
         fan-out {} subscribers at {}/s, {} stalled readers, API {}/s",
        l.duration_seconds,
        l.churn_per_second,
        l.chat_clients,
        l.chat_rooms,
        l.chat_interval_seconds,
        l.fanout_subscribers,
        l.fanout_rate,
        l.stalled_readers,
        l.api_rate
    );
    println!("{}", "-".repeat(72));
    println!(
        "{:>8}  {:<7} {:>12} {:>6} {:>6} {:>12} {:>14}",
        "t (s)", "phase", "RSS KiB", "fds", "conns", "messages_in", "deliveries"
    );
    for s in timeline(r) {
        println!(
            "{:>8.1}  {:<7} {:>12} {:>6} {:>6} {:>12} {:>14}",
            s.t,
            s.phase,
            thousands(s.rss_kib),
            s.fds,
            s.hub.connections,
            thousands(s.hub.messages_in),
            thousands(s.hub.deliveries)
        );
    }
    println!("{}", "-".repeat(72));
    let row = |k: &str, v: String| println!("{k:<30} {v}");
    let s = &r.sent;
    row(
        "sent",
        format!(
            "{} frames; {} chat messages and {} API publishes acknowledged; {} churn clients",
            thousands(s.frames),
            thousands(s.chats_acked),
            thousands(s.api_acked),
            thousands(r.churn_clients)
        ),
    );
    row(
        "received",
        format!(
            "{} chat messages and publications (offsets {})",
            thousands(s.positioned_received),
            if r.offsets_checked {
                "checked"
            } else {
                "not checked: history off"
            }
        ),
    );
    row(
        "stalls",
        format!(
            "{} begun, {} cut with 1008, {} ended otherwise, {} not cut",
            r.stalls.stalls_begun,
            r.stalls.cut_with_close,
            r.stalls.cut_without_close,
            r.stalls.not_cut
        ),
    );
    for c in &r.checks {
        row(
            &format!("{} {}", if c.ok { "ok  " } else { "FAIL" }, c.name),
            c.detail.clone(),
        );
    }
    crate::report::print_result(&row, r.ok);
}
