//! Pieces of reports shared by scenarios: the heading every report starts with, latency
//! summaries, what the server did to the connections, CPU and memory of the server and of
//! the load generator, number formatting, JSON output.
//!
//! A scenario's report embeds these pieces with `#[serde(flatten)]`, so their fields are
//! keys of the report itself, in the order the report declares them.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::protocol::ProtocolKind;
use crate::sys::{self, Proc};

/// The first keys of every report: what ran, in which protocol, against which hub.
#[derive(Debug, Clone, Serialize)]
pub struct Heading {
    /// The scenario: `fanout`, `all-to-all`, `idle` or `churn`.
    pub scenario: &'static str,
    /// Wire protocol.
    pub protocol: &'static str,
    /// Target URL (fanout over the nodes of a cluster: the first, the publisher's).
    pub url: String,
}

impl Heading {
    pub fn new(scenario: &'static str, protocol: ProtocolKind, url: &str) -> Self {
        Self {
            scenario,
            protocol: protocol.name(),
            url: url.to_owned(),
        }
    }

    /// The first line of a human report.
    pub fn print_title(&self) {
        println!(
            "loadgen {}  {}  (protocol {})",
            self.scenario, self.url, self.protocol
        );
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyUs {
    /// Recorded deliveries.
    pub samples: u64,
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl LatencyUs {
    /// Summarises a histogram of nanoseconds.
    pub fn from_ns(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
        if h.is_empty() {
            return Self {
                samples: 0,
                min: 0.0,
                mean: 0.0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
            };
        }
        Self {
            samples: h.len(),
            min: us(h.min()),
            mean: (h.mean() / 100.0).round() / 10.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// A short summary of a histogram of nanoseconds, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct MsSummary {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl MsSummary {
    /// Summarises a histogram of nanoseconds.
    pub fn from_ns(h: &Histogram<u64>) -> Self {
        let ms = |ns: u64| (ns as f64 / 1e4).round() / 100.0;
        if h.is_empty() {
            return Self {
                p50: 0.0,
                p99: 0.0,
                max: 0.0,
            };
        }
        Self {
            p50: ms(h.value_at_quantile(0.5)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

/// CPU seconds of the load generator and, if watched, of the server (the process and its
/// descendants, e.g. nginx's workers), at one moment.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    /// This process.
    pub me: f64,
    /// The server process.
    pub server: Option<f64>,
}

impl CpuSample {
    /// Reads both now. A server that is gone is reported (once per call) and left out.
    pub fn take(server_pid: Option<u32>) -> Result<Self, String> {
        Ok(Self {
            me: sys::cpu_seconds(Proc::Me)?,
            server: server_pid.and_then(server_cpu_seconds),
        })
    }
}

/// CPU seconds of the server `pid` and its descendants now; `None`, with a warning, when it
/// is gone.
pub fn server_cpu_seconds(pid: u32) -> Option<f64> {
    match sys::tree_cpu_seconds(pid) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("loadgen: warning: server CPU not available: {e}");
            None
        }
    }
}

/// The server's use of CPU and memory over the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct ServerUsage {
    /// The watched process.
    pub pid: u32,
    /// utime + stime during the measured window.
    pub cpu_seconds: f64,
    /// `cpu_seconds` / measured seconds: cores kept busy.
    pub cpu_cores: f64,
    /// Server CPU microseconds per delivery.
    pub cpu_us_per_delivery: Option<f64>,
    /// Peak resident memory (VmHWM), KiB, at the end (summed over the process tree).
    pub peak_rss_kib: Option<u64>,
    /// Resident memory (VmRSS), KiB, at the end (summed over the process tree).
    pub rss_kib: Option<u64>,
}

impl ServerUsage {
    /// The CPU it used, as a report's row shows it: seconds, share of a core, and per
    /// delivery.
    pub fn cpu_row(&self) -> String {
        format!(
            "{:.2} s ({:.0}% of a core), {} µs/delivery",
            self.cpu_seconds,
            self.cpu_cores * 100.0,
            self.cpu_us_per_delivery
                .map_or("-".into(), |x| format!("{x:.3}"))
        )
    }

    /// The usage of server `pid`, which used `cpu` seconds over `seconds` for `deliveries`;
    /// its memory is read now.
    pub fn measure(pid: u32, cpu: f64, seconds: f64, deliveries: u64) -> Self {
        Self {
            pid,
            cpu_seconds: cpu,
            cpu_cores: ratio(cpu, seconds),
            cpu_us_per_delivery: per_delivery_us(cpu, deliveries),
            peak_rss_kib: sys::tree_status_kib(pid, "VmHWM"),
            rss_kib: sys::tree_status_kib(pid, "VmRSS"),
        }
    }

    /// The usage of several servers that together made `deliveries` over `seconds` (the
    /// nodes of one cluster): CPU and memory add up, and the CPU per delivery is the sum
    /// over all their deliveries. `pid` is the first server's. `None` for no servers.
    pub fn sum(parts: &[ServerUsage], seconds: f64, deliveries: u64) -> Option<Self> {
        let first = parts.first()?;
        let cpu: f64 = parts.iter().map(|p| p.cpu_seconds).sum();
        // Memory is summed only when every server's could be read.
        let memory = |pick: fn(&ServerUsage) -> Option<u64>| parts.iter().map(pick).sum();
        Some(Self {
            pid: first.pid,
            cpu_seconds: cpu,
            cpu_cores: ratio(cpu, seconds),
            cpu_us_per_delivery: per_delivery_us(cpu, deliveries),
            peak_rss_kib: memory(|p| p.peak_rss_kib),
            rss_kib: memory(|p| p.rss_kib),
        })
    }
}

/// Microseconds of `cpu` seconds per delivery; `None` without deliveries.
fn per_delivery_us(cpu: f64, deliveries: u64) -> Option<f64> {
    (deliveries > 0).then(|| cpu * 1e6 / deliveries as f64)
}

/// The load generator's own CPU use over the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct LoadgenUsage {
    /// utime + stime of this process (all threads) during the measured window.
    pub cpu_seconds: f64,
    /// `cpu_seconds` / measured seconds.
    pub cpu_cores: f64,
    /// Deliveries per CPU-second of the load generator: its own ceiling, per core.
    pub deliveries_per_cpu_second: Option<f64>,
}

impl LoadgenUsage {
    /// The load generator's use between its CPU readings `start` and `end` (seconds), over
    /// `seconds` in which `deliveries` arrived.
    pub fn between(start: f64, end: f64, seconds: f64, deliveries: u64) -> Self {
        let me = (end - start).max(0.0);
        Self {
            cpu_seconds: me,
            cpu_cores: ratio(me, seconds),
            deliveries_per_cpu_second: (me > 0.0).then(|| deliveries as f64 / me),
        }
    }
}

/// What the server did to the connections a run held: closed them, or sent errors.
#[derive(Debug, Clone, Serialize)]
pub struct ServerTrouble {
    /// Connections the server closed during the run.
    pub disconnects: u64,
    /// The first of them.
    pub first_disconnect: Option<String>,
    /// Error messages (or refused HTTP publishes) from the server.
    pub server_errors: u64,
    /// The first of them.
    pub first_server_error: Option<String>,
}

/// The CPU of both processes, and the server's memory, over the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    /// The server's CPU and memory (with `--server-pid`).
    pub server: Option<ServerUsage>,
    /// The load generator's own CPU.
    pub loadgen: LoadgenUsage,
}

/// Usage of both processes between two samples.
pub fn usage(
    start: CpuSample,
    end: CpuSample,
    server_pid: Option<u32>,
    seconds: f64,
    deliveries: u64,
) -> Usage {
    let server = server_pid
        .zip(start.server.zip(end.server))
        .map(|(pid, (a, b))| ServerUsage::measure(pid, (b - a).max(0.0), seconds, deliveries));
    let loadgen = LoadgenUsage::between(start.me, end.me, seconds, deliveries);
    Usage { server, loadgen }
}

/// Prints the server and load generator usage rows of a human report.
pub fn print_usage(row: &dyn Fn(&str, String), usage: &Usage) {
    let Usage { server, loadgen } = usage;
    if let Some(s) = server {
        print_server_usage(row, s, "delivery", 3);
    }
    row(
        "loadgen CPU",
        format!(
            "{:.2} s ({:.0}% of a core), {} deliveries per loadgen CPU-s",
            loadgen.cpu_seconds,
            loadgen.cpu_cores * 100.0,
            loadgen.deliveries_per_cpu_second.map_or("-".into(), rate)
        ),
    );
}

/// Prints the server's CPU and memory rows of a human report; its CPU per unit of work
/// (`cpu_us_per_delivery`) is labelled `µs/{unit}` and shown with `decimals` decimals.
pub fn print_server_usage(
    row: &dyn Fn(&str, String),
    s: &ServerUsage,
    unit: &str,
    decimals: usize,
) {
    row(
        "server CPU",
        format!(
            "{:.2} s ({:.0}% of a core), {} µs/{unit}",
            s.cpu_seconds,
            s.cpu_cores * 100.0,
            s.cpu_us_per_delivery
                .map_or("-".into(), |x| format!("{x:.decimals$}"))
        ),
    );
    let kib = |k: Option<u64>| k.map_or("-".into(), |k| format!("{} KiB", thousands(k)));
    row(
        "server RSS peak / now",
        format!("{} / {}", kib(s.peak_rss_kib), kib(s.rss_kib)),
    );
}

/// Prints the last row of a human report: whether the run passed.
pub fn print_result(row: &dyn Fn(&str, String), ok: bool) {
    let result = if ok { "OK" } else { "FAILED (see above)" };
    row("result", result.into());
}

/// `a / b`, or 0 when `b` is 0.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate with thousands separators and one decimal.
pub fn rate(x: f64) -> String {
    let whole = x.max(0.0).floor();
    format!(
        "{}.{}",
        thousands(whole as u64),
        ((x - whole) * 10.0).floor() as u64 % 10
    )
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json<T: Serialize>(path: &std::path::Path, value: &T) -> Result<(), String> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(rate(1234.56), "1,234.5");
        assert_eq!(rate(0.0), "0.0");
    }

    #[test]
    fn latency_summary() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let l = LatencyUs::from_ns(&h);
        assert_eq!(l.samples, 1000);
        assert!((l.p50 - 500.0).abs() < 1.0, "{}", l.p50);
        assert!((l.max - 1000.0).abs() < 1.0, "{}", l.max);
        assert_eq!(LatencyUs::from_ns(&Histogram::new(3).unwrap()).samples, 0);
    }

    fn server(pid: u32, cpu: f64, rss: Option<u64>) -> ServerUsage {
        ServerUsage {
            pid,
            cpu_seconds: cpu,
            cpu_cores: 0.0,
            cpu_us_per_delivery: None,
            peak_rss_kib: rss,
            rss_kib: rss,
        }
    }

    #[test]
    fn sums_the_servers_of_a_cluster() {
        assert!(ServerUsage::sum(&[], 1.0, 10).is_none());
        let parts = [server(7, 1.5, Some(100)), server(8, 0.5, Some(50))];
        let total = ServerUsage::sum(&parts, 4.0, 1_000_000).unwrap();
        assert_eq!(total.pid, 7);
        assert_eq!(total.cpu_seconds, 2.0);
        assert_eq!(total.cpu_cores, 0.5);
        assert_eq!(total.cpu_us_per_delivery, Some(2.0));
        assert_eq!((total.peak_rss_kib, total.rss_kib), (Some(150), Some(150)));
        // One server's memory unknown: the sum is unknown, not too small.
        let parts = [server(7, 1.0, Some(100)), server(8, 1.0, None)];
        let total = ServerUsage::sum(&parts, 1.0, 0).unwrap();
        assert_eq!((total.rss_kib, total.cpu_us_per_delivery), (None, None));
        // One server: what it measured alone.
        let alone = ServerUsage::measure(std::process::id(), 0.25, 0.5, 1000);
        let total = ServerUsage::sum(std::slice::from_ref(&alone), 0.5, 1000).unwrap();
        assert_eq!(total.cpu_us_per_delivery, alone.cpu_us_per_delivery);
        assert_eq!(total.cpu_us_per_delivery, Some(250.0));
        assert_eq!(total.cpu_cores, 0.5);
    }

    #[test]
    fn loadgen_usage_between_readings() {
        let u = LoadgenUsage::between(1.0, 1.5, 2.0, 1000);
        assert_eq!((u.cpu_seconds, u.cpu_cores), (0.5, 0.25));
        assert_eq!(u.deliveries_per_cpu_second, Some(2000.0));
        // A reading lower than the one before it counts as no CPU, never as negative.
        assert_eq!(LoadgenUsage::between(2.0, 1.0, 1.0, 5).cpu_seconds, 0.0);
    }
}
