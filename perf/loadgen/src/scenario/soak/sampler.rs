//! The hub seen from outside, once a second: its resident memory (`VmRSS` of
//! /proc/PID/status), its open files (the entries of /proc/PID/fd) and its own counters
//! (`GET /stats`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::Serialize;

use super::api::parse_answer;
use crate::sys::{self, Proc};

/// How long one `/stats` call may take.
const STATS_TIMEOUT: Duration = Duration::from_secs(5);

/// The hub's counters that the soak holds against its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HubCounters {
    /// Open WebSocket connections (`total_connections`).
    pub connections: u64,
    pub messages_in: u64,
    pub deliveries: u64,
    pub slow_consumers: u64,
    /// `closes.slow_consumer`.
    pub slow_consumer_closes: u64,
}

/// One sample.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the load began (negative before).
    pub t: f64,
    /// The run's phase then: `before`, `setup`, `load`, `drain`, `close`, `after`.
    pub phase: &'static str,
    pub rss_kib: u64,
    pub fds: u64,
    #[serde(flatten)]
    pub hub: HubCounters,
}

/// Takes a sample of hub `pid`, answering HTTP on `addr`: the open files are counted
/// before `/stats` is asked, so that its own connection is not among them.
pub fn sample(pid: u32, addr: SocketAddr, t: f64, phase: &'static str) -> Result<Sample, String> {
    let fds = open_files(pid)?;
    let rss_kib = sys::status_kib(Proc::Pid(pid), "VmRSS")
        .ok_or_else(|| format!("cannot read VmRSS of {pid}"))?;
    let hub = stats(addr)?;
    Ok(Sample {
        t,
        phase,
        rss_kib,
        fds,
        hub,
    })
}

/// Entries of /proc/PID/fd.
pub fn open_files(pid: u32) -> Result<u64, String> {
    let dir = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))?;
    Ok(entries.count() as u64)
}

/// `GET /stats`.
pub fn stats(addr: SocketAddr) -> Result<HubCounters, String> {
    let mut s = TcpStream::connect_timeout(&addr, STATS_TIMEOUT)
        .map_err(|e| format!("/stats: connect: {e}"))?;
    s.set_read_timeout(Some(STATS_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(STATS_TIMEOUT)))
        .map_err(|e| format!("/stats: {e}"))?;
    let request = format!("GET /stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes())
        .map_err(|e| format!("/stats: write: {e}"))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .map_err(|e| format!("/stats: read: {e}"))?;
    let (status, body) = parse_answer(&answer)?;
    if status != 200 {
        return Err(format!("/stats answered {status}: {body}"));
    }
    parse_stats(&body)
}

/// The counters of a `/stats` body.
pub fn parse_stats(body: &str) -> Result<HubCounters, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("/stats is not JSON: {e}"))?;
    let field = |path: &[&str]| -> Result<u64, String> {
        let mut at = &v;
        for key in path {
            at = &at[key];
        }
        at.as_u64()
            .ok_or_else(|| format!("/stats has no integer {}", path.join(".")))
    };
    Ok(HubCounters {
        connections: field(&["total_connections"])?,
        messages_in: field(&["messages_in"])?,
        deliveries: field(&["deliveries"])?,
        slow_consumers: field(&["slow_consumers"])?,
        slow_consumer_closes: field(&["closes", "slow_consumer"])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stats_and_proc() {
        let body = r#"{"total_connections":3,"messages_in":10,"deliveries":99,
            "slow_consumers":2,"closes":{"client_closed":5,"slow_consumer":2}}"#;
        let c = parse_stats(body).unwrap();
        assert_eq!(
            (c.connections, c.messages_in, c.deliveries, c.slow_consumers),
            (3, 10, 99, 2)
        );
        assert_eq!(c.slow_consumer_closes, 2);
        assert!(parse_stats(r#"{"total_connections":1}"#).is_err());
        assert!(open_files(std::process::id()).unwrap() >= 3);
    }
}
