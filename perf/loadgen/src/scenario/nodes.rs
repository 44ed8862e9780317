//! The nodes of one cluster that a fanout run spreads its connections over (`--url` given
//! several times; one `--url` is a cluster of one node).
//!
//! The publisher connects to the first node and subscriber `i` (1, 2, …) to node
//! `(i - 1) mod n`, so every node gets N / n subscribers, give or take one. Only the first
//! node's subscribers then get a message without it crossing the cluster: comparing their
//! figures with the other nodes' shows what the crossing costs.

use crate::target::{self, Target};

/// Most nodes one run spreads over: far more than one machine can host, but a bound.
pub const MAX_NODES: usize = 64;

/// The node the publisher connects to.
pub const PUBLISHER_NODE: usize = 0;

/// One node of the cluster under load.
#[derive(Debug, Clone)]
pub struct Node {
    /// The URL as given.
    pub url: String,
    /// Resolved loopback target.
    pub target: Target,
    /// The node's server process, to measure its CPU.
    pub server_pid: Option<u32>,
}

/// The nodes of `urls`, in order, each with its server PID: `server_pids` is empty or has
/// one PID per URL, in the same order. Two URLs may not name the same address and port,
/// nor two nodes the same PID: either would count one node's figures twice.
pub fn from_args(urls: &[String], server_pids: &[u32]) -> Result<Vec<Node>, String> {
    if urls.is_empty() || urls.len() > MAX_NODES {
        return Err(format!("give 1 to {MAX_NODES} --url"));
    }
    if !server_pids.is_empty() && server_pids.len() != urls.len() {
        return Err(format!(
            "give one --server-pid per --url, in the same order ({} URLs, {} PIDs)",
            urls.len(),
            server_pids.len()
        ));
    }
    let mut nodes: Vec<Node> = Vec::with_capacity(urls.len());
    for (i, url) in urls.iter().enumerate() {
        let target = target::parse(url)?;
        if let Some(other) = nodes.iter().find(|n| n.target.addr == target.addr) {
            return Err(format!(
                "--url {url} and --url {} are the same node ({}): give each node once",
                other.url, target.addr
            ));
        }
        let server_pid = server_pids.get(i).copied();
        if server_pid.is_some() && nodes.iter().any(|n| n.server_pid == server_pid) {
            return Err(format!(
                "--server-pid {} is given twice: give each node's own",
                server_pids[i]
            ));
        }
        nodes.push(Node {
            url: url.clone(),
            target,
            server_pid,
        });
    }
    Ok(nodes)
}

/// The node connection `idx` goes to: 0 is the publisher, 1.. the subscribers.
pub fn node_of(idx: usize, nodes: usize) -> usize {
    match idx {
        0 => PUBLISHER_NODE,
        subscriber => (subscriber - 1) % nodes,
    }
}

/// How many of `subscribers` subscribers [`node_of`] puts on node `node`.
pub fn subscribers_on(node: usize, subscribers: usize, nodes: usize) -> usize {
    subscribers / nodes + usize::from(node < subscribers % nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<String> {
        list.iter().map(|u| u.to_string()).collect()
    }

    #[test]
    fn spreads_subscribers_round_robin() {
        assert_eq!(node_of(0, 3), PUBLISHER_NODE);
        let placed: Vec<usize> = (1..=7).map(|idx| node_of(idx, 3)).collect();
        assert_eq!(placed, [0, 1, 2, 0, 1, 2, 0]);
        for (subscribers, nodes) in [(1000, 2), (7, 3), (1, 1), (5, 5), (1001, 4)] {
            let mut counted = vec![0; nodes];
            for idx in 1..=subscribers {
                counted[node_of(idx, nodes)] += 1;
            }
            let expected: Vec<usize> = (0..nodes)
                .map(|k| subscribers_on(k, subscribers, nodes))
                .collect();
            assert_eq!(counted, expected, "{subscribers} over {nodes}");
            assert_eq!(expected.iter().sum::<usize>(), subscribers);
        }
        // One node: everything on it, as before clusters.
        assert!((0..=10).all(|idx| node_of(idx, 1) == 0));
    }

    #[test]
    fn pairs_urls_with_pids() {
        let two = urls(&["ws://127.0.0.1:3001/ws", "ws://127.0.0.1:3002/ws"]);
        let nodes = from_args(&two, &[11, 22]).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[1].target.addr, "127.0.0.1:3002".parse().unwrap());
        assert_eq!(
            (nodes[0].server_pid, nodes[1].server_pid),
            (Some(11), Some(22))
        );
        let unwatched = from_args(&two, &[]).unwrap();
        assert!(unwatched.iter().all(|n| n.server_pid.is_none()));
        // A PID for some nodes only, or the same node or PID twice, is refused.
        assert!(from_args(&two, &[11]).is_err());
        assert!(from_args(&two, &[11, 11]).is_err());
        let same = urls(&["ws://127.0.0.1:3001/ws", "ws://localhost:3001/other"]);
        assert!(from_args(&same, &[]).is_err());
        // Every URL keeps to loopback.
        let outside = urls(&["ws://127.0.0.1:3001/ws", "ws://10.0.0.1:3002/ws"]);
        assert!(from_args(&outside, &[]).is_err());
        assert!(from_args(&[], &[]).is_err());
        let many: Vec<String> = (0..=MAX_NODES)
            .map(|i| format!("ws://127.0.0.1:{}/ws", 3000 + i))
            .collect();
        assert!(from_args(&many, &[]).is_err());
    }
}
