//! The report sections of the scenarios that publish and count deliveries (fanout and
//! all-to-all), embedded in their reports with `#[serde(flatten)]`: setup, the measured
//! window, what disturbed it, and how the publishers kept to their schedule; and the rows
//! they print in the human report.

use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::report::{self, thousands, LatencyUs, MsSummary, ServerTrouble, Usage};
use crate::scenario::common::first;
use crate::scenario::delivery::{Received, ReceiverStats};

/// Connecting, joining and settling every connection.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// Connect + join of every connection, seconds.
    pub setup_seconds: f64,
    /// Per connection, from the start of its connect to the upgrade response, ms.
    pub setup_upgrade_ms: MsSummary,
    /// Per connection, from the start of its connect to its `joined`, ms.
    pub setup_joined_ms: MsSummary,
    /// Wait for the join/presence notices to stop, seconds.
    pub settle_seconds: f64,
    /// False when the notices did not stop within the settle limit.
    pub settled: bool,
    /// Non-chat frames received before measuring (joins, presence, ...).
    pub setup_noise_frames: u64,
}

impl Setup {
    /// `stats` are the receivers' merged totals, with their connect times.
    pub fn new(
        setup_seconds: f64,
        settle_seconds: f64,
        settled: bool,
        setup_noise_frames: u64,
        stats: &ReceiverStats,
    ) -> Self {
        Self {
            setup_seconds,
            setup_upgrade_ms: MsSummary::from_ns(&stats.upgraded),
            setup_joined_ms: MsSummary::from_ns(&stats.joined),
            settle_seconds,
            settled,
            setup_noise_frames,
        }
    }

    /// The setup line under a human report's title.
    pub fn print(&self) {
        println!(
            "  setup {:.2} s, settle {:.2} s{} ({} notice frames)",
            self.setup_seconds,
            self.settle_seconds,
            if self.settled { "" } else { " (NOT settled)" },
            thousands(self.setup_noise_frames)
        );
    }
}

/// What was published and what arrived in the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct Deliveries {
    /// From the first publish to the last delivery (or to the end of publishing).
    pub measured_seconds: f64,
    /// Messages the publishers sent.
    pub messages_published: u64,
    /// `messages_published / measured_seconds`.
    pub messages_per_second: f64,
    /// Chat deliveries with our stamp (duplicates included; in all-to-all, each client's
    /// own messages included).
    pub deliveries: u64,
    /// `deliveries / measured_seconds`.
    pub deliveries_per_second: f64,
    /// `messages_published` times the receivers of each message.
    pub expected_deliveries: u64,
    /// Publish → receive latency of first deliveries.
    pub latency_us: LatencyUs,
    /// Expected deliveries that never arrived (after the drain wait).
    pub lost: u64,
    /// Deliveries of a message the receiver already had.
    pub duplicated: u64,
    /// First deliveries that came after a later message of the same publisher.
    pub reordered: u64,
}

impl Deliveries {
    /// The figures of `published` messages, of which `expected` deliveries were due and
    /// `delivered` arrived over `measured_seconds`; `stats` are the receivers' merged
    /// totals.
    pub fn new(
        published: u64,
        expected: u64,
        delivered: u64,
        measured_seconds: f64,
        stats: &ReceiverStats,
    ) -> Self {
        Self {
            measured_seconds,
            messages_published: published,
            messages_per_second: report::ratio(published as f64, measured_seconds),
            deliveries: delivered,
            deliveries_per_second: report::ratio(delivered as f64, measured_seconds),
            expected_deliveries: expected,
            latency_us: LatencyUs::from_ns(&stats.latency),
            lost: stats.lost,
            duplicated: stats.duplicates,
            reordered: stats.late,
        }
    }
}

/// What may have disturbed the measured window besides the hub's own speed.
#[derive(Debug, Clone, Serialize)]
pub struct Disturbances {
    /// Every expected delivery arrived before the drain timeout.
    pub drained: bool,
    #[serde(flatten)]
    pub server: ServerTrouble,
    /// Non-chat frames received after measuring started.
    pub noise_frames_during_run: u64,
    /// Chat messages without our stamp (someone else publishing in the room).
    pub foreign_messages: u64,
}

impl Disturbances {
    /// From what the connections received (of which `noise_during_run` non-chat frames
    /// came after measuring started) and the `disconnects` the server made.
    pub fn new(
        drained: bool,
        received: &Received,
        noise_during_run: u64,
        disconnects: u64,
        first_disconnect: Option<String>,
    ) -> Self {
        Self {
            drained,
            server: ServerTrouble {
                disconnects,
                first_disconnect,
                server_errors: received.server_errors.load(Ordering::SeqCst),
                first_server_error: first(&received.first_server_error),
            },
            noise_frames_during_run: noise_during_run,
            foreign_messages: received.foreign.load(Ordering::SeqCst),
        }
    }
}

/// How the publishers kept to their schedule.
#[derive(Debug, Clone, Serialize)]
pub struct Publishing {
    /// How late, at worst, a message went out compared with its schedule, µs; `None`
    /// without a schedule (fanout's window mode).
    pub publish_lag_max_us: Option<f64>,
    /// Why publishing failed or stopped early (window stall, write error), if it did.
    pub publish_error: Option<String>,
}

/// A run that publishes passed: nothing lost or duplicated, no disconnects, no publish
/// error.
pub fn passed(
    deliveries: &Deliveries,
    disturbances: &Disturbances,
    publishing: &Publishing,
) -> bool {
    deliveries.lost == 0
        && deliveries.duplicated == 0
        && disturbances.server.disconnects == 0
        && publishing.publish_error.is_none()
}

/// Prints what follows the title and the load's description in the human report of a
/// scenario whose figures are all here: the setup, then the rows, then the verdict.
pub fn print_body(
    setup: &Setup,
    deliveries: &Deliveries,
    disturbances: &Disturbances,
    publishing: &Publishing,
    usage: &Usage,
    ok: bool,
) {
    setup.print();
    println!("{}", "-".repeat(64));
    let row = |k: &str, v: String| println!("{k:<30} {v}");
    print_rows(&row, deliveries, disturbances, publishing, usage);
    report::print_result(&row, ok);
}

/// Prints the rows of a human report that publishes, from the measured window to the first
/// errors, one `row(name, value)` each.
pub fn print_rows(
    row: &dyn Fn(&str, String),
    deliveries: &Deliveries,
    disturbances: &Disturbances,
    publishing: &Publishing,
    usage: &Usage,
) {
    let d = deliveries;
    row("measured window", format!("{:.3} s", d.measured_seconds));
    row(
        "messages published",
        format!(
            "{}  ({} msg/s)",
            thousands(d.messages_published),
            report::rate(d.messages_per_second)
        ),
    );
    row(
        "deliveries",
        format!(
            "{} of {} expected  ({} /s)",
            thousands(d.deliveries),
            thousands(d.expected_deliveries),
            report::rate(d.deliveries_per_second)
        ),
    );
    let l = &d.latency_us;
    row(
        "latency p50/p99/p99.9/max",
        format!("{} / {} / {} / {} µs", l.p50, l.p99, l.p999, l.max),
    );
    row("latency mean / p90", format!("{} / {} µs", l.mean, l.p90));
    row(
        "lost / duplicated / reordered",
        format!("{} / {} / {}", d.lost, d.duplicated, d.reordered),
    );
    let server = &disturbances.server;
    row(
        "disconnects / server errors",
        format!("{} / {}", server.disconnects, server.server_errors),
    );
    if let Some(lag) = publishing.publish_lag_max_us {
        row("publisher lag max", format!("{lag:.0} µs"));
    }
    report::print_usage(row, usage);
    let (noise, foreign) = (
        disturbances.noise_frames_during_run,
        disturbances.foreign_messages,
    );
    if noise > 0 || foreign > 0 {
        row(
            "other frames during run",
            format!("{noise} notices, {foreign} foreign chat messages"),
        );
    }
    if !disturbances.drained {
        row("drain", "timed out: some deliveries never came".into());
    }
    for (k, v) in [
        ("publish error", &publishing.publish_error),
        ("first disconnect", &server.first_disconnect),
        ("first server error", &server.first_server_error),
    ] {
        if let Some(v) = v {
            row(k, v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

    use super::*;
    use crate::protocol::ProtocolKind;
    use crate::report::{Heading, LoadgenUsage};
    use crate::scenario::alltoall::AllToAllReport;
    use crate::scenario::fanout::FanoutReport;

    /// The top-level keys of `report`'s JSON, in the order they are written: perf/run and
    /// perf/charts.py read the reports by these keys.
    fn keys(report: &impl Serialize) -> Vec<String> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.push(key);
                }
                Ok(keys)
            }
        }
        let text = serde_json::to_string(report).unwrap();
        serde_json::Deserializer::from_str(&text)
            .deserialize_map(Keys)
            .unwrap()
    }

    /// The sections of a run in which nothing was published.
    fn empty_sections() -> (Setup, Deliveries, Disturbances, Publishing, Usage) {
        let stats = ReceiverStats::new();
        let usage = Usage {
            server: None,
            loadgen: LoadgenUsage {
                cpu_seconds: 0.0,
                cpu_cores: 0.0,
                deliveries_per_cpu_second: None,
            },
        };
        (
            Setup::new(0.0, 0.0, true, 0, &stats),
            Deliveries::new(0, 0, 0, 0.0, &stats),
            Disturbances::new(true, &Received::default(), 0, 0, None),
            Publishing {
                publish_lag_max_us: None,
                publish_error: None,
            },
            usage,
        )
    }

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn fanout_keys_stay_in_order() {
        let (setup, deliveries, disturbances, publishing, usage) = empty_sections();
        let report = FanoutReport {
            heading: Heading::new("fanout", ProtocolKind::Neonex, "ws://127.0.0.1:3000/ws"),
            subscribers: 1,
            threads: 1,
            pace: "rate",
            rate: Some(1.0),
            window: None,
            payload_bytes: 64,
            setup,
            deliveries,
            subscribers_with_loss: 0,
            disturbances,
            publisher_echoes: 0,
            publishing,
            usage,
            nodes: Vec::new(),
            history: None,
            wire: Default::default(),
            ok: true,
        };
        let expected = "scenario protocol url subscribers threads pace rate window payload_bytes \
            setup_seconds setup_upgrade_ms setup_joined_ms settle_seconds settled \
            setup_noise_frames measured_seconds messages_published messages_per_second \
            deliveries deliveries_per_second expected_deliveries latency_us lost duplicated \
            reordered subscribers_with_loss drained disconnects first_disconnect server_errors \
            first_server_error noise_frames_during_run foreign_messages publisher_echoes \
            publish_lag_max_us publish_error server loadgen nodes wire ok";
        assert_eq!(keys(&report), words(expected));
    }

    #[test]
    fn all_to_all_keys_stay_in_order() {
        let (setup, deliveries, disturbances, publishing, usage) = empty_sections();
        let report = AllToAllReport {
            heading: Heading::new("all-to-all", ProtocolKind::Neonex, "ws://127.0.0.1:3000/ws"),
            clients: 2,
            threads: 1,
            rate_per_client: 1.0,
            payload_bytes: 64,
            setup,
            deliveries,
            clients_with_loss: 0,
            disturbances,
            publishing,
            usage,
            ok: true,
        };
        let expected = "scenario protocol url clients threads rate_per_client payload_bytes \
            setup_seconds setup_upgrade_ms setup_joined_ms settle_seconds settled \
            setup_noise_frames measured_seconds messages_published messages_per_second \
            deliveries deliveries_per_second expected_deliveries latency_us lost duplicated \
            reordered clients_with_loss drained disconnects first_disconnect server_errors \
            first_server_error noise_frames_during_run foreign_messages publish_lag_max_us \
            publish_error server loadgen ok";
        assert_eq!(keys(&report), words(expected));
    }
}
