//! The figures of each node of a fanout run (the report's `nodes`): what its subscribers
//! received, how late and what they missed, and its server's CPU per delivery it made.
//! The run's own figures (`deliveries_per_second`, `latency_us`, `lost`, `server`, …) cover
//! every node together.

use serde::Serialize;

use crate::report::{self, thousands, LatencyUs, ServerUsage};
use crate::scenario::delivery::ReceiverStats;
use crate::scenario::nodes::{Node, PUBLISHER_NODE};

/// One node's figures.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    /// The node's URL.
    pub url: String,
    /// The publisher is connected to this node: its subscribers get each message without
    /// it crossing the cluster.
    pub publisher: bool,
    /// Subscribers connected to this node.
    pub subscribers: usize,
    /// Chat deliveries with our stamp to them (duplicates included).
    pub deliveries: u64,
    /// `deliveries` / the run's measured seconds.
    pub deliveries_per_second: f64,
    /// Publish → receive latency of their first deliveries.
    pub latency_us: LatencyUs,
    /// Deliveries due to them that never arrived.
    pub lost: u64,
    /// Deliveries of a message the subscriber already had.
    pub duplicated: u64,
    /// First deliveries that came after a later message.
    pub reordered: u64,
    /// Of them, subscribers that missed at least one message.
    pub subscribers_with_loss: u64,
    /// Of them, connections the server closed during the run.
    pub disconnects: u64,
    /// The node's server (with its `--server-pid`); `cpu_us_per_delivery` is over this
    /// node's deliveries, so the publishing node's includes sending to the others.
    pub server: Option<ServerUsage>,
}

/// What a run counted for one node's subscribers.
pub struct NodeTally<'a> {
    /// Subscribers connected to the node.
    pub subscribers: usize,
    /// Their deliveries, counted as the run's total is.
    pub deliveries: u64,
    /// Their connections the server closed.
    pub disconnects: u64,
    /// Their latencies and losses, merged over the worker threads.
    pub stats: &'a ReceiverStats,
}

impl NodeReport {
    /// The figures of node number `index`, from what its subscribers counted, the CPU
    /// seconds its server used (if watched) and the run's measured seconds.
    pub fn new(
        index: usize,
        node: &Node,
        tally: NodeTally,
        server_cpu: Option<f64>,
        measured_seconds: f64,
    ) -> Self {
        let stats = tally.stats;
        Self {
            url: node.url.clone(),
            publisher: index == PUBLISHER_NODE,
            subscribers: tally.subscribers,
            deliveries: tally.deliveries,
            deliveries_per_second: report::ratio(tally.deliveries as f64, measured_seconds),
            latency_us: LatencyUs::from_ns(&stats.latency),
            lost: stats.lost,
            duplicated: stats.duplicates,
            reordered: stats.late,
            subscribers_with_loss: stats.receivers_with_loss,
            disconnects: tally.disconnects,
            server: node.server_pid.zip(server_cpu).map(|(pid, cpu)| {
                ServerUsage::measure(pid, cpu, measured_seconds, tally.deliveries)
            }),
        }
    }
}

/// The CPU seconds every node's server had used at one moment: `None` for a node without
/// `--server-pid`, or whose server is gone.
#[derive(Debug, Clone)]
pub struct NodesCpu(Vec<Option<f64>>);

impl NodesCpu {
    /// Reads every node's server now.
    pub fn take(nodes: &[Node]) -> Self {
        Self(
            nodes
                .iter()
                .map(|n| n.server_pid.and_then(report::server_cpu_seconds))
                .collect(),
        )
    }

    /// What each node's server used from this reading to `later`.
    pub fn used_until(&self, later: &NodesCpu) -> Vec<Option<f64>> {
        self.0
            .iter()
            .zip(&later.0)
            .map(|(a, b)| a.zip(*b).map(|(a, b)| (b - a).max(0.0)))
            .collect()
    }
}

/// The servers of every node together, when every node's was measured: what the run's
/// `server` reports.
pub fn all_servers(
    nodes: &[NodeReport],
    measured_seconds: f64,
    deliveries: u64,
) -> Option<ServerUsage> {
    let servers: Option<Vec<ServerUsage>> = nodes.iter().map(|n| n.server.clone()).collect();
    ServerUsage::sum(&servers?, measured_seconds, deliveries)
}

/// Prints a human report's rows for each node, when there are several (one node's figures
/// are the run's).
pub fn print_rows(row: &dyn Fn(&str, String), nodes: &[NodeReport]) {
    if nodes.len() < 2 {
        return;
    }
    for (i, n) in nodes.iter().enumerate() {
        let role = if n.publisher {
            " (the publisher's)"
        } else {
            ""
        };
        row(
            &format!("node {}", i + 1),
            format!(
                "{}{role}: {} subscribers, {} deliveries ({} /s)",
                n.url,
                thousands(n.subscribers as u64),
                thousands(n.deliveries),
                report::rate(n.deliveries_per_second)
            ),
        );
        let l = &n.latency_us;
        row(
            "  latency p50/p99/max",
            format!("{} / {} / {} µs", l.p50, l.p99, l.max),
        );
        row(
            "  lost / dup. / reordered",
            format!("{} / {} / {}", n.lost, n.duplicated, n.reordered),
        );
        if n.disconnects > 0 {
            row("  disconnects", n.disconnects.to_string());
        }
        if let Some(s) = &n.server {
            row("  server CPU", s.cpu_row());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::nodes;

    fn two_nodes(pids: &[u32]) -> Vec<Node> {
        let urls = ["ws://127.0.0.1:3001/ws", "ws://127.0.0.1:3002/ws"].map(String::from);
        nodes::from_args(&urls, pids).unwrap()
    }

    #[test]
    fn a_node_reports_its_own_subscribers_and_server() {
        let me = std::process::id();
        let nodes = two_nodes(&[me, 1]);
        let mut stats = ReceiverStats::new();
        for us in [100u64, 200, 300] {
            stats.latency.record(us * 1000).unwrap();
        }
        stats.finalize_receiver(2, 1, 0);
        stats.finalize_receiver(0, 0, 0);
        let tally = NodeTally {
            subscribers: 2,
            deliveries: 4_000,
            disconnects: 0,
            stats: &stats,
        };
        let first = NodeReport::new(0, &nodes[0], tally, Some(0.002), 2.0);
        assert!(first.publisher);
        assert_eq!((first.subscribers, first.deliveries), (2, 4_000));
        assert_eq!(first.deliveries_per_second, 2_000.0);
        assert_eq!(first.latency_us.samples, 3);
        assert_eq!(
            (first.lost, first.duplicated, first.subscribers_with_loss),
            (2, 1, 1)
        );
        let server = first.server.as_ref().unwrap();
        assert_eq!(server.pid, me);
        assert_eq!(server.cpu_us_per_delivery, Some(0.5));
        // Without a CPU reading (server gone) the node has no server figures.
        let tally = NodeTally {
            subscribers: 1,
            deliveries: 0,
            disconnects: 1,
            stats: &ReceiverStats::new(),
        };
        let second = NodeReport::new(1, &nodes[1], tally, None, 2.0);
        assert!(!second.publisher && second.server.is_none());
        assert_eq!(second.disconnects, 1);
        // The run's servers: only when every node's was measured.
        assert!(all_servers(&[first.clone(), second], 2.0, 4_000).is_none());
        let total = all_servers(std::slice::from_ref(&first), 2.0, 4_000).unwrap();
        assert_eq!(total.cpu_us_per_delivery, Some(0.5));
    }

    #[test]
    fn cpu_used_between_readings() {
        let start = NodesCpu(vec![Some(1.0), None, Some(5.0)]);
        let end = NodesCpu(vec![Some(1.25), Some(3.0), Some(4.0)]);
        assert_eq!(start.used_until(&end), [Some(0.25), None, Some(0.0)]);
        let me = std::process::id();
        let watched = NodesCpu::take(&two_nodes(&[me, u32::MAX]));
        assert!(watched.0[0].is_some(), "this process can be read");
        assert!(watched.0[1].is_none(), "no such process");
        assert!(NodesCpu::take(&two_nodes(&[]))
            .0
            .iter()
            .all(Option::is_none));
    }
}
