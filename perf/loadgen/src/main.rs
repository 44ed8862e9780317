//! `loadgen`: a load generator for WebSocket hubs, neonex first.
//!
//! Many connections per thread on current-thread tokio runtimes, batched 64 KiB reads,
//! hand-rolled client framing, and a protocol trait so that other hubs can be driven later.
//! Only servers on 127.0.0.0/8 are ever targeted, and every run stops by itself.

mod clock;
mod conn;
mod protocol;
mod report;
mod scenario;
mod seq;
mod stamp;
mod sys;
mod target;
mod workers;
mod ws;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use protocol::ProtocolKind;
use scenario::fanout::{self, FanoutConfig, Pace};

/// Most connections one run may open.
const MAX_CONNECTIONS: usize = 100_000;
/// Longest publishing phase.
const MAX_DURATION_S: f64 = 600.0;

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for WebSocket hubs (neonex): fan-out throughput, latency and loss",
    long_about = "Load generator for WebSocket hubs (neonex protocol v1 for now).\n\n\
        Opens many WebSocket connections to a hub on this machine, drives a scenario and \
        reports deliveries per second, publish-to-receive latency percentiles, lost and \
        duplicated deliveries, and (with --server-pid) the server's CPU per delivery and \
        memory. Only targets in 127.0.0.0/8 are accepted; every run is bounded in time and \
        connection count and stops by itself.\n\n\
        Example:\n  loadgen fanout --url ws://127.0.0.1:3000/ws --subscribers 1000 --window 16 \
        --duration 10 --server-pid $(pgrep -f 'neonex serve')\n\n\
        Exit status: 0 when the run passed (no loss, no duplicates, no disconnects), 1 when \
        it completed but failed those checks, 2 on errors (bad arguments, refused target, setup \
        failure), 3 when the watchdog ended a run that overstayed its time budget."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One publisher and N subscribers in one room: deliveries/s, latency, loss.
    ///
    /// N subscribers and one publisher connect and join the room; once every connection
    /// got `joined` and the join/presence notices have stopped, the publisher sends stamped
    /// messages at a fixed --rate or keeping a --window of messages in flight (a message is
    /// complete when every subscriber got it). Without either, --rate 50.
    Fanout(FanoutArgs),
}

#[derive(Args, Debug)]
struct CommonArgs {
    /// WebSocket URL of the hub; the host must resolve into 127.0.0.0/8.
    #[arg(long, default_value = "ws://127.0.0.1:3000/ws")]
    url: String,
    /// Wire protocol of the hub.
    #[arg(long, value_enum, default_value_t = ProtocolKind::Neonex)]
    protocol: ProtocolKind,
    /// Worker threads, each a current-thread runtime owning a share of the connections.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// PID of the server: report its CPU time during the measured window and its memory.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Seconds allowed for one connection's TCP connect and WebSocket upgrade.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    connect_timeout: f64,
    /// Connections between connect and `joined` at once (all threads together).
    #[arg(long, default_value_t = 64, value_name = "N")]
    connect_concurrency: usize,
    /// Abort when connecting and joining everything takes longer than this.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    setup_timeout: f64,
}

#[derive(Args, Debug)]
struct FanoutArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Subscriber connections (plus one publisher connection).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    subscribers: usize,
    /// Room every connection joins.
    #[arg(long, default_value = "bench")]
    room: String,
    /// Publish this many messages per second (open loop).
    #[arg(long, value_name = "MSGS_PER_SEC", conflicts_with = "window")]
    rate: Option<f64>,
    /// Keep this many messages in flight: a message is complete when every subscriber
    /// received it (closed loop; measures peak throughput).
    #[arg(long, value_name = "W")]
    window: Option<u32>,
    /// Seconds of publishing [default: 10; with --messages: up to 600].
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Stop after publishing this many messages.
    #[arg(long, value_name = "COUNT")]
    messages: Option<u64>,
    /// Length of each message text (the stamp `SEQ:SEND_NS` padded with `x`).
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    payload_bytes: usize,
    /// The join/presence storm has settled when no non-chat frame came for this long.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    settle_ms: u64,
    /// Stop waiting for the storm to settle after this long (the report says so).
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    settle_max: f64,
    /// After publishing, wait this long at most for late deliveries before counting losses.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    drain_timeout: f64,
    /// Window mode: give up when the oldest message in flight made no progress this long.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    stall_timeout: f64,
    /// Connections per source address; above this, sources 127.0.0.2, 127.0.0.3, ... are
    /// used (each source address has about 28k ephemeral ports).
    #[arg(long, default_value_t = 25_000, value_name = "N")]
    conns_per_source: usize,
    /// Users are named PREFIX-pub and PREFIX-s1.. [default: lg<pid>].
    #[arg(long, value_name = "PREFIX")]
    user_prefix: Option<String>,
    /// Exit 0 even when deliveries were lost or duplicated.
    #[arg(long)]
    allow_loss: bool,
}

fn seconds(name: &str, v: f64, max: f64) -> Result<Duration, String> {
    if !(v > 0.0 && v <= max) {
        return Err(format!("--{name} must be in (0, {max}] seconds (got {v})"));
    }
    Ok(Duration::from_secs_f64(v))
}

fn fanout_config(a: &FanoutArgs) -> Result<FanoutConfig, String> {
    let c = &a.common;
    let target = target::parse(&c.url)?;
    if a.subscribers == 0 || a.subscribers + 1 > MAX_CONNECTIONS {
        return Err(format!(
            "--subscribers must be 1 to {} (connection cap {MAX_CONNECTIONS})",
            MAX_CONNECTIONS - 1
        ));
    }
    if c.threads == 0 || c.threads > 64 {
        return Err("--threads must be 1 to 64".into());
    }
    let room_ok = |r: &str| {
        (1..=128).contains(&r.len())
            && r.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b))
    };
    if !room_ok(&a.room) {
        return Err("--room must be 1 to 128 of [A-Za-z0-9_.:@-]".into());
    }
    let pace = match (a.rate, a.window) {
        (Some(r), None) if r > 0.0 && r <= 1_000_000.0 => Pace::Rate(r),
        (Some(_), None) => return Err("--rate must be in (0, 1000000]".into()),
        (None, Some(w)) if (1..=65_536).contains(&w) => Pace::Window(w),
        (None, Some(_)) => return Err("--window must be 1 to 65536".into()),
        (None, None) => Pace::Rate(50.0),
        (Some(_), Some(_)) => return Err("give --rate or --window, not both".into()),
    };
    let duration = match (a.duration, a.messages) {
        (Some(d), _) => seconds("duration", d, MAX_DURATION_S)?,
        (None, Some(_)) => Duration::from_secs_f64(MAX_DURATION_S),
        (None, None) => Duration::from_secs(10),
    };
    if a.messages == Some(0) {
        return Err("--messages must be at least 1".into());
    }
    if a.payload_bytes > 64 * 1024 {
        return Err("--payload-bytes must be at most 65536".into());
    }
    if a.conns_per_source == 0 || a.conns_per_source > 28_000 {
        return Err("--conns-per-source must be 1 to 28000".into());
    }
    if !(1..=10_000).contains(&a.settle_ms) {
        return Err("--settle-ms must be 1 to 10000".into());
    }
    let user_prefix = a
        .user_prefix
        .clone()
        .unwrap_or_else(|| format!("lg{}", std::process::id()));
    if user_prefix.is_empty() || user_prefix.len() > 100 {
        return Err("--user-prefix must be 1 to 100 bytes".into());
    }
    if let Some(pid) = c.server_pid {
        sys::cpu_seconds(sys::Proc::Pid(pid))
            .map_err(|e| format!("--server-pid {pid}: cannot read its CPU time ({e})"))?;
    }
    Ok(FanoutConfig {
        url: c.url.clone(),
        target,
        protocol: c.protocol,
        subscribers: a.subscribers,
        room: a.room.clone(),
        pace,
        duration,
        messages: a.messages,
        payload_bytes: a.payload_bytes,
        threads: c.threads.min(a.subscribers + 1),
        connect_timeout: seconds("connect-timeout", c.connect_timeout, 60.0)?,
        connect_concurrency: c.connect_concurrency.clamp(1, 10_000),
        setup_timeout: seconds("setup-timeout", c.setup_timeout, 600.0)?,
        settle_quiet: Duration::from_millis(a.settle_ms),
        settle_max: seconds("settle-max", a.settle_max, 120.0)?,
        drain_timeout: seconds("drain-timeout", a.drain_timeout, 60.0)?,
        stall_timeout: seconds("stall-timeout", a.stall_timeout, 60.0)?,
        server_pid: c.server_pid,
        user_prefix,
        max_message: 16 * 1024 * 1024,
        conns_per_source: a.conns_per_source,
    })
}

/// Raises the open-file limit and checks it covers `connections`.
fn check_fd_limit(connections: usize) -> Result<(), String> {
    let limit = sys::raise_fd_limit()?;
    let needed = connections as u64 + 64;
    if limit < needed {
        return Err(format!(
            "open-file limit is {limit} even after raising the soft limit to the hard limit; \
             {connections} connections need about {needed}: raise the hard limit (e.g. \
             `ulimit -Hn {needed}` as root, or limits.conf) and retry"
        ));
    }
    Ok(())
}

/// Ends the process if the run overstays its budget, whatever it is doing.
fn start_watchdog(budget: Duration) {
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            std::thread::sleep(budget);
            eprintln!("loadgen: watchdog: the run exceeded {budget:?}; aborting");
            std::process::exit(3);
        })
        .expect("watchdog thread");
}

fn run_fanout(a: &FanoutArgs) -> Result<bool, String> {
    let cfg = fanout_config(a)?;
    check_fd_limit(cfg.subscribers + 1)?;
    start_watchdog(cfg.run_budget());
    let json = a.common.json.clone();
    let report = fanout::run(cfg)?;
    fanout::print(&report);
    if let Some(path) = json {
        report::write_json(&path, &report)?;
    }
    Ok(report.ok || a.allow_loss)
}

fn main() -> ExitCode {
    clock::init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Fanout(a) => run_fanout(a),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("loadgen: error: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    fn fanout(args: &[&str]) -> Result<FanoutConfig, String> {
        let mut argv = vec!["loadgen", "fanout"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let Command::Fanout(a) = cli.command;
        fanout_config(&a)
    }

    #[test]
    fn defaults_and_limits() {
        let c = fanout(&[]).unwrap();
        assert_eq!(c.subscribers, 1000);
        assert_eq!(c.pace, Pace::Rate(50.0));
        assert_eq!(c.duration, Duration::from_secs(10));
        assert_eq!(c.room, "bench");
        assert_eq!(fanout(&["--window", "16"]).unwrap().pace, Pace::Window(16));
        assert!(fanout(&["--rate", "5", "--window", "16"]).is_err());
        assert!(fanout(&["--duration", "601"]).is_err());
        assert!(fanout(&["--subscribers", "100000"]).is_err());
        assert!(fanout(&["--subscribers", "0"]).is_err());
        assert!(fanout(&["--url", "ws://10.1.2.3:3000/ws"]).is_err());
        assert!(fanout(&["--room", "bad room"]).is_err());
        let c = fanout(&["--messages", "100"]).unwrap();
        assert_eq!(c.duration, Duration::from_secs(600));
    }
}
