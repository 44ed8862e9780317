//! `GET /metrics`: the hub's counters in the Prometheus text exposition format.
//!
//! Names follow Prometheus conventions: the `neonex_` prefix, `_total` on counters, base
//! units (seconds, bytes), a `shard` label on everything a shard counts, and fan-out
//! latency as a histogram with `_bucket`, `_sum` and `_count`. In a cluster the
//! `neonex_cluster_*` families carry the node's name as a `node` label; with backend
//! hooks the `neonex_proxy_*` families carry the hook's name as a `hook` label.

use std::fmt::Write;

use hdrhistogram::Histogram;

use crate::stats::HubStats;
use crate::stats::{ClusterStats, LinkState};
use crate::ProxyStats;

/// The content type of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of the fan-out latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Upper bounds of the hook duration buckets, in seconds: a backend call is a network
/// round trip, from a millisecond to past the 2 s default timeout.
const PROXY_BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0];

/// Renders `stats` as Prometheus text.
pub fn render(stats: &HubStats) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let out = &mut out;

    family(
        out,
        "neonex_users",
        "gauge",
        "Distinct users with an open connection.",
    )
    .sample("", stats.unique_users as f64);
    family(out, "neonex_rooms", "gauge", "Rooms that exist.").sample("", stats.rooms as f64);
    family(
        out,
        "neonex_frames_encoded_total",
        "counter",
        "Broadcast frames encoded; each is shared by all of its recipients.",
    )
    .sample("", stats.frames_encoded as f64);
    family(
        out,
        "neonex_compressions_total",
        "counter",
        "Broadcast frames compressed for permessage-deflate: at most one per broadcast.",
    )
    .sample("", stats.compression.compressions as f64);
    let mut bytes = family(
        out,
        "neonex_compression_bytes_total",
        "counter",
        "Bytes of the compressed broadcast frames, before and after compression.",
    );
    bytes.sample("stage=\"before\"", stats.compression.bytes_before as f64);
    bytes.sample("stage=\"after\"", stats.compression.bytes_after as f64);

    type Pick = fn(&crate::stats::ShardStats) -> f64;
    let per_shard: [(&str, &str, &str, Pick); 11] = [
        (
            "neonex_connections",
            "gauge",
            "Open WebSocket connections.",
            |s| s.connections as f64,
        ),
        (
            "neonex_messages_in_total",
            "counter",
            "Messages received from clients.",
            |s| s.messages_in as f64,
        ),
        (
            "neonex_messages_out_total",
            "counter",
            "Frames queued to clients (one per recipient).",
            |s| s.deliveries as f64,
        ),
        (
            "neonex_bytes_in_total",
            "counter",
            "Bytes read from client sockets.",
            |s| s.bytes_in as f64,
        ),
        (
            "neonex_bytes_out_total",
            "counter",
            "Bytes written to client sockets.",
            |s| s.bytes_out as f64,
        ),
        (
            "neonex_write_calls_total",
            "counter",
            "Write system calls; messages_out / write_calls is the batching achieved.",
            |s| s.write_calls as f64,
        ),
        (
            "neonex_slow_consumers_total",
            "counter",
            "Clients found not reading and closed with 1008.",
            |s| s.slow_consumers as f64,
        ),
        (
            "neonex_accept_errors_total",
            "counter",
            "Accepts that failed, out of file descriptors most likely; the shard backs off while they do.",
            |s| s.accept_errors as f64,
        ),
        (
            "neonex_history_messages",
            "gauge",
            "Positioned messages held by the rooms' streams this shard is home to.",
            |s| s.history.messages as f64,
        ),
        (
            "neonex_history_bytes",
            "gauge",
            "Bytes of the positioned messages held, as frames.",
            |s| s.history.bytes as f64,
        ),
        (
            "neonex_conflated_total",
            "counter",
            "Frames of conflated rooms that replaced an older one in a slow connection's queue, or were skipped for a newer one.",
            |s| s.conflated as f64,
        ),
    ];
    for (name, kind, help, pick) in per_shard {
        let mut f = family(out, name, kind, help);
        for (i, shard) in stats.shards.iter().enumerate() {
            f.sample(&format!("shard=\"{i}\""), pick(shard));
        }
    }

    let mut f = family(
        out,
        "neonex_connections_closed_total",
        "counter",
        "WebSocket connections ended, by reason.",
    );
    for (i, shard) in stats.shards.iter().enumerate() {
        for (reason, n) in &shard.closes {
            f.sample(&format!("shard=\"{i}\",reason=\"{reason}\""), *n as f64);
        }
    }
    let mut f = family(
        out,
        "neonex_recoveries_total",
        "counter",
        "Joins that asked to recover, by outcome: recovered, or why not (epoch, gap, too_many, history_off).",
    );
    for (i, shard) in stats.shards.iter().enumerate() {
        let outcomes = std::iter::once(("recovered", &shard.recoveries.succeeded))
            .chain(shard.recoveries.failed.iter().map(|(k, v)| (*k, v)));
        for (outcome, n) in outcomes {
            f.sample(&format!("shard=\"{i}\",outcome=\"{outcome}\""), *n as f64);
        }
    }
    let mut f = family(
        out,
        "neonex_http_responses_total",
        "counter",
        "HTTP responses by status: 101 is an accepted upgrade, 4xx/5xx refused handshakes and API errors.",
    );
    for (i, shard) in stats.shards.iter().enumerate() {
        for (status, n) in &shard.http_responses {
            f.sample(&format!("shard=\"{i}\",status=\"{status}\""), *n as f64);
        }
    }

    let mut f = family(
        out,
        "neonex_fanout_latency_seconds",
        "histogram",
        "From a broadcast being published to its frame being written to a recipient's socket (the longest wait in each write).",
    );
    for (i, shard) in stats.shards.iter().enumerate() {
        f.histogram(
            &format!("shard=\"{i}\""),
            shard.latency.as_ref(),
            &LATENCY_BUCKETS,
        );
    }
    if let Some(cluster) = &stats.cluster {
        render_cluster(out, cluster);
    }
    if let Some(proxy) = &stats.proxy {
        render_proxy(out, proxy);
    }
    std::mem::take(out)
}

/// The cluster's families, each with this node's name as its `node` label.
fn render_cluster(out: &mut String, cluster: &ClusterStats) {
    let node = format!("node=\"{}\"", cluster.node_id);
    let connected = f64::from(u8::from(cluster.nats == LinkState::Connected));
    type Pick = fn(&ClusterStats) -> f64;
    let families: [(&str, &str, &str, Pick); 9] = [
        (
            "neonex_cluster_nodes",
            "gauge",
            "Live nodes of the cluster, this one included.",
            |c| c.nodes as f64,
        ),
        (
            "neonex_cluster_connections",
            "gauge",
            "Open connections in the whole cluster.",
            |c| c.connections as f64,
        ),
        (
            "neonex_cluster_users",
            "gauge",
            "Distinct users with a connection anywhere in the cluster.",
            |c| c.users as f64,
        ),
        (
            "neonex_cluster_resyncs_total",
            "counter",
            "Snapshots taken of other nodes, after a gap in their events or on meeting them.",
            |c| c.resyncs as f64,
        ),
        (
            "neonex_cluster_nodes_lost_total",
            "counter",
            "Nodes taken for dead after cluster.node_timeout of silence.",
            |c| c.nodes_lost as f64,
        ),
        (
            "neonex_cluster_nats_slow_consumers_total",
            "counter",
            "Times the NATS client dropped messages of a subscription of this node that fell behind.",
            |c| c.nats_slow_consumers as f64,
        ),
        (
            "neonex_cluster_journal_appends_total",
            "counter",
            "Positioned messages this node appended to the JetStream journal (history on).",
            |c| c.journal_appends as f64,
        ),
        (
            "neonex_cluster_journal_conflicts_total",
            "counter",
            "Journal appends that found another node had appended first, and were tried again.",
            |c| c.journal_conflicts as f64,
        ),
        (
            "neonex_cluster_journal_repairs_total",
            "counter",
            "Messages read from the journal to fill a gap before delivering them.",
            |c| c.journal_repairs as f64,
        ),
    ];
    family(
        out,
        "neonex_cluster_nats_connected",
        "gauge",
        "1 while the node is connected to NATS, 0 while it serves alone.",
    )
    .sample(&node, connected);
    for (name, kind, help, pick) in families {
        family(out, name, kind, help).sample(&node, pick(cluster));
    }
    let mut f = family(
        out,
        "neonex_cluster_messages_total",
        "counter",
        "Frames, and connection events with heartbeats, between this node and the others, by direction and kind.",
    );
    for (direction, kind, n) in [
        ("out", "frame", cluster.messages_out),
        ("in", "frame", cluster.messages_in),
        ("out", "event", cluster.events_out),
        ("in", "event", cluster.events_in),
    ] {
        let labels = format!("{node},direction=\"{direction}\",kind=\"{kind}\"");
        f.sample(&labels, n as f64);
    }
    let mut f = family(
        out,
        "neonex_cluster_dropped_total",
        "counter",
        "Frames and events dropped: out, the bridge's queue was full or NATS unreachable; in, a shard's inbox was full.",
    );
    for (direction, n) in [("out", cluster.dropped_out), ("in", cluster.dropped_in)] {
        f.sample(&format!("{node},direction=\"{direction}\""), n as f64);
    }
}

/// The backend hooks' families, each with the hook's name as its `hook` label.
fn render_proxy(out: &mut String, proxy: &ProxyStats) {
    let mut f = family(
        out,
        "neonex_proxy_calls_total",
        "counter",
        "Calls of a backend hook, including those refused at once.",
    );
    for (hook, stats) in &proxy.hooks {
        f.sample(&format!("hook=\"{hook}\""), stats.calls as f64);
    }
    let mut f = family(
        out,
        "neonex_proxy_errors_total",
        "counter",
        "Calls of a backend hook without a usable answer, by reason: timeout, unreachable, server_error (5xx), busy (queue full), bad_answer.",
    );
    for (hook, stats) in &proxy.hooks {
        for (reason, n) in &stats.errors {
            f.sample(&format!("hook=\"{hook}\",reason=\"{reason}\""), *n as f64);
        }
    }
    let mut f = family(
        out,
        "neonex_proxy_duration_seconds",
        "histogram",
        "From a backend hook's request being sent to its answer, failure or timeout.",
    );
    for (hook, stats) in &proxy.hooks {
        f.histogram(
            &format!("hook=\"{hook}\""),
            Some(&stats.latency),
            &PROXY_BUCKETS,
        );
    }
}

fn family<'a>(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    Family {
        out,
        name: name.to_owned(),
    }
}

struct Family<'a> {
    out: &'a mut String,
    name: String,
}

impl Family<'_> {
    fn sample(&mut self, labels: &str, value: f64) {
        self.line(&self.name.clone(), labels, value);
    }

    fn line(&mut self, name: &str, labels: &str, value: f64) {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
        }
    }

    /// A histogram of microseconds, in seconds, with `buckets` as its upper bounds.
    fn histogram(&mut self, labels: &str, h: Option<&Histogram<u64>>, buckets: &[f64]) {
        let name = self.name.clone();
        let sep = if labels.is_empty() { "" } else { "," };
        for &le in buckets {
            let micros = (le * 1e6) as u64;
            let count = h.map_or(0, |h| h.count_between(0, micros));
            let bucket = format!("{labels}{sep}le=\"{le}\"");
            self.line(&format!("{name}_bucket"), &bucket, count as f64);
        }
        let total = h.map_or(0, |h| h.len());
        self.line(
            &format!("{name}_bucket"),
            &format!("{labels}{sep}le=\"+Inf\""),
            total as f64,
        );
        let sum_micros: u64 = h.map_or(0, |h| {
            h.iter_recorded()
                .map(|v| v.value_iterated_to() * v.count_at_value())
                .sum()
        });
        self.line(&format!("{name}_sum"), labels, sum_micros as f64 / 1e6);
        self.line(&format!("{name}_count"), labels, total as f64);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{HookLatency, HookStats};

    fn hook(calls: u64, timeouts: u64, micros: &[u64]) -> HookStats {
        let mut latency = crate::stats::latency_histogram();
        for &m in micros {
            latency.record(m).unwrap();
        }
        let errors = [
            "timeout",
            "unreachable",
            "server_error",
            "busy",
            "bad_answer",
        ]
        .into_iter()
        .map(|reason| (reason, if reason == "timeout" { timeouts } else { 0 }))
        .collect();
        HookStats {
            calls,
            errors,
            latency_us: HookLatency::default(),
            latency,
        }
    }

    #[test]
    fn proxy_families_appear_only_with_a_proxy() {
        let mut stats = HubStats::default();
        assert!(!render(&stats).contains("neonex_proxy_"));
        assert!(serde_json::to_value(&stats).unwrap().get("proxy").is_none());
        stats.proxy = Some(ProxyStats {
            hooks: BTreeMap::from([
                ("connect", hook(3, 1, &[800, 4_000, 3_000_000])),
                ("rpc", hook(0, 0, &[])),
            ]),
        });
        let text = render(&stats);
        let lines: Vec<&str> = text.lines().collect();
        for expected in [
            "# TYPE neonex_proxy_duration_seconds histogram",
            "neonex_proxy_calls_total{hook=\"connect\"} 3",
            "neonex_proxy_calls_total{hook=\"rpc\"} 0",
            "neonex_proxy_errors_total{hook=\"connect\",reason=\"timeout\"} 1",
            "neonex_proxy_errors_total{hook=\"connect\",reason=\"busy\"} 0",
            "neonex_proxy_duration_seconds_bucket{hook=\"connect\",le=\"0.001\"} 1",
            "neonex_proxy_duration_seconds_bucket{hook=\"connect\",le=\"0.005\"} 2",
            "neonex_proxy_duration_seconds_bucket{hook=\"connect\",le=\"2\"} 2",
            "neonex_proxy_duration_seconds_bucket{hook=\"connect\",le=\"5\"} 3",
            "neonex_proxy_duration_seconds_bucket{hook=\"connect\",le=\"+Inf\"} 3",
            "neonex_proxy_duration_seconds_count{hook=\"connect\"} 3",
            "neonex_proxy_duration_seconds_count{hook=\"rpc\"} 0",
        ] {
            assert!(lines.contains(&expected), "no {expected:?} in\n{text}");
        }
        let parsed =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        assert!(parsed
            .samples
            .iter()
            .any(|s| s.metric == "neonex_proxy_duration_seconds_sum"));
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["proxy"]["hooks"]["connect"]["calls"], 3);
        assert_eq!(json["proxy"]["hooks"]["connect"]["errors"]["timeout"], 1);
    }
}
