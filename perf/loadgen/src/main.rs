//! `loadgen`: a load generator for WebSocket hubs: neonex and the peer hubs of perf/peers
//! (uWebSockets.js, ws, gorilla/websocket, Socket.IO, nginx + nchan).
//!
//! Many connections per thread on current-thread tokio runtimes, batched 64 KiB reads,
//! hand-rolled client framing, and a protocol trait per hub. Scenarios: fan-out, all-to-all,
//! idle connections (memory per connection), churn (connects per second) and, for neonex with
//! history on, recovery-storm (N clients drop and recover at once). Fan-out also loads the
//! nodes of one cluster (`--url` once per node): subscribers spread over them, the publisher
//! on the first, every check over every subscriber, and each node's figures besides.
//! Only servers on 127.0.0.0/8 are ever targeted, and every run stops by itself.

mod clock;
mod conn;
mod http;
mod inflate;
mod offsets;
mod protocol;
mod report;
mod scenario;
mod seq;
mod stamp;
mod sys;
mod target;
mod tls;
mod workers;
mod ws;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use protocol::ProtocolKind;
use scenario::alltoall::{self, AllToAllConfig};
use scenario::churn::{self, ChurnConfig};
use scenario::fanout::{self, FanoutConfig, Pace};
use scenario::idle::{self, IdleConfig};
use scenario::manyrooms::{self, ManyRoomsConfig};
use scenario::nodes;
use scenario::recovery::{self, DropMode, RecoveryConfig};
use scenario::soak::{self, SoakConfig};

/// Most connections one run may open.
const MAX_CONNECTIONS: usize = 100_000;
/// Longest publishing phase.
const MAX_DURATION_S: f64 = 600.0;
/// Largest server message accepted.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for WebSocket hubs (neonex and peers): fan-out, all-to-all, idle, churn, recovery-storm",
    long_about = "Load generator for WebSocket hubs: neonex protocol v1 and the peer hubs of \
        perf/peers (--protocol uws|ws|gorilla|socketio|nchan).\n\n\
        Opens many WebSocket connections to a hub on this machine, drives a scenario and \
        reports deliveries per second, publish-to-receive latency percentiles, lost and \
        duplicated deliveries, and (with --server-pid) the server's CPU per delivery and \
        memory; or memory per idle connection; or connects per second. Only targets in \
        127.0.0.0/8 are accepted; every run is bounded in time and connection count and \
        stops by itself.\n\n\
        Example:\n  loadgen fanout --url ws://127.0.0.1:3000/ws --subscribers 1000 --window 16 \
        --duration 10 --server-pid $(pgrep -f 'neonex serve')\n\n\
        A cluster of two nodes (subscribers spread over both, the publisher on the first):\n  \
        loadgen fanout --url ws://127.0.0.1:3001/ws --url ws://127.0.0.1:3002/ws \
        --server-pid PID_A --server-pid PID_B --subscribers 1000 --rate 50\n\n\
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
    ///
    /// Given --url several times (the nodes of one cluster), the subscribers are spread over
    /// the nodes round-robin and the publisher connects to the first; loss, duplicates, order
    /// and latency cover every subscriber, and the report adds each node's figures (with one
    /// --server-pid per node, its CPU per delivery).
    Fanout(FanoutArgs),
    /// N clients in one room, each publishing at --rate; every client receives everything.
    ///
    /// Like uWebSockets' broadcast test: N² deliveries per round. Reports deliveries/s,
    /// latency, loss (per publisher), server CPU per delivery.
    AllToAll(AllToAllArgs),
    /// Each subscriber in K rooms, each room with its own publisher at --rate, the
    /// publishers' sends spread evenly in time.
    ///
    /// A subscriber gets K × R messages per second, one at a time: what a hub's write
    /// batching (neonex's hub.write_delay) is for. Reports deliveries/s, latency, loss (per
    /// room), server CPU per delivery.
    ManyRooms(ManyRoomsArgs),
    /// Hold N connections in one room without traffic: server memory per connection.
    ///
    /// The server's VmRSS (process and descendants) is read before the first connection and
    /// again after holding all of them for --hold seconds; the difference over N is reported.
    Idle(IdleArgs),
    /// Connect, join, leave and close at --rate connections per second for --duration.
    ///
    /// Reports connects per second achieved, errors, connect/join/close times and the
    /// server's CPU per connection.
    Churn(ChurnArgs),
    /// N clients in one room drop at once and reconnect at once, recovering what they missed
    /// (neonex with history on).
    ///
    /// A publisher publishes at --rate throughout. After --warmup every client closes its
    /// socket without a close frame, stays away --away, then reconnects and joins with
    /// `recover` {its last offset, the epoch}. Reports how long until every client caught up,
    /// per-client recovery times, recovered:false answers, the server's CPU, and checks that
    /// every client got every offset exactly once across the drop.
    RecoveryStorm(RecoveryStormArgs),
    /// One neonex hub under a mixed load for a long while, checked for leaks (neonex).
    ///
    /// Churn (clients that join a few rooms, chat a little and go), long-lived chat
    /// clients in many rooms, a fan-out room with its publisher, stalled readers the hub
    /// must cut as slow consumers, and API publishes, all at once for --duration. The
    /// hub's RSS, open files and /stats are sampled every second. Passes when RSS and open
    /// files end within --tolerance of their post-warm-up levels (open files at equal
    /// connection counts), nothing was lost or duplicated for well-behaved clients, every
    /// stalled reader was cut with 1008, and the hub's counters add up.
    Soak(SoakArgs),
}

#[derive(Args, Debug)]
struct CommonArgs {
    /// WebSocket URL of the hub; the host must resolve into 127.0.0.0/8 [default:
    /// ws://127.0.0.1:3000/ws; socketio: .../socket.io/; nchan: .../sub (the subscriber
    /// location prefix; the channel is the room, publishing goes to /pub/ROOM)]. fanout
    /// takes it several times, once per node of one cluster: subscribers are spread over
    /// the nodes round-robin and the publisher connects to the first.
    #[arg(long, value_name = "URL")]
    url: Vec<String>,
    /// Wire protocol of the hub.
    #[arg(long, value_enum, default_value_t = ProtocolKind::Neonex)]
    protocol: ProtocolKind,
    /// Worker threads, each a current-thread runtime owning a share of the connections.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// PID of the server: report its CPU time during the measured window and its memory.
    /// fanout with several --url takes one per node, in the order of the URLs.
    #[arg(long, value_name = "PID")]
    server_pid: Vec<u32>,
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
    /// wss://: trust the certificates of this PEM file (the server's self-signed certificate,
    /// or the CA that signed it). The certificate must name the URL's host.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// wss://: accept any server certificate, unchecked. For loopback benchmarks only.
    #[arg(long, conflicts_with = "ca")]
    insecure: bool,
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
    /// Length of each message text (the stamp `SEQ:SEND_NS` padded with `x`; with
    /// `--payload document`, at most this long).
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    payload_bytes: usize,
    /// What follows the stamp: `x` padding, or a JSON market-data snapshot with other values
    /// in every row and message (what compression meets in practice).
    #[arg(long, value_enum, default_value_t = stamp::Payload::Pad)]
    payload: stamp::Payload,
    /// Offer permessage-deflate (`permessage-deflate; client_max_window_bits`) on every
    /// connection and inflate what arrives compressed; the report counts compressed
    /// deliveries. The load generator itself sends uncompressed.
    #[arg(long)]
    deflate: bool,
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
    /// Check the hub's history offsets (neonex with history.size > 0): every subscriber
    /// must get every offset after its `joined` top once and in order; a gap or a duplicate
    /// fails the run.
    #[arg(long)]
    history: bool,
    /// Exit 0 even when deliveries were lost or duplicated.
    #[arg(long)]
    allow_loss: bool,
}

#[derive(Args, Debug)]
struct ManyRoomsArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Subscriber connections.
    #[arg(long, default_value_t = 100, value_name = "N")]
    subscribers: usize,
    /// Rooms, each with a publisher connection of its own.
    #[arg(long, default_value_t = 40, value_name = "M")]
    rooms: usize,
    /// Rooms each subscriber is in.
    #[arg(long, default_value_t = 20, value_name = "K")]
    rooms_per_subscriber: usize,
    /// Messages per second each room's publisher sends.
    #[arg(long, default_value_t = 25.0, value_name = "MSGS_PER_SEC")]
    rate: f64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    duration: f64,
    /// Length of each message text.
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    payload_bytes: usize,
    /// Settled when no non-chat frame came for this long.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    settle_ms: u64,
    /// Stop waiting for quiet after this long.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    settle_max: f64,
    /// After publishing, wait this long at most for late deliveries.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    drain_timeout: f64,
    /// Connections per source address (see fanout).
    #[arg(long, default_value_t = 25_000, value_name = "N")]
    conns_per_source: usize,
    /// Users are named PREFIX-p0.., PREFIX-s0.. [default: lg<pid>].
    #[arg(long, value_name = "PREFIX")]
    user_prefix: Option<String>,
    /// Exit 0 even when deliveries were lost or duplicated.
    #[arg(long)]
    allow_loss: bool,
}

#[derive(Args, Debug)]
struct AllToAllArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Clients; each one publishes and receives every message.
    #[arg(long, default_value_t = 100, value_name = "N")]
    clients: usize,
    /// Room every client joins.
    #[arg(long, default_value = "bench")]
    room: String,
    /// Messages per second each client publishes.
    #[arg(long, default_value_t = 10.0, value_name = "MSGS_PER_SEC")]
    rate: f64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    duration: f64,
    /// Length of each message text.
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    payload_bytes: usize,
    /// Settled when no non-chat frame came for this long.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    settle_ms: u64,
    /// Stop waiting for quiet after this long.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    settle_max: f64,
    /// After publishing, wait this long at most for late deliveries.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    drain_timeout: f64,
    /// Connections per source address (see fanout).
    #[arg(long, default_value_t = 25_000, value_name = "N")]
    conns_per_source: usize,
    /// Users are named PREFIX-c0.. [default: lg<pid>].
    #[arg(long, value_name = "PREFIX")]
    user_prefix: Option<String>,
    /// Exit 0 even when deliveries were lost or duplicated.
    #[arg(long)]
    allow_loss: bool,
}

#[derive(Args, Debug)]
struct IdleArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Connections to hold.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    connections: usize,
    /// Room every connection joins.
    #[arg(long, default_value = "bench")]
    room: String,
    /// Join no room: each connection is held as the upgrade left it.
    #[arg(long, conflicts_with = "room")]
    no_join: bool,
    /// Seconds to hold the connections after setup.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    hold: f64,
    /// Settled when no frame came for this long.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    settle_ms: u64,
    /// Stop waiting for quiet after this long.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    settle_max: f64,
    /// Connections per source address (see fanout).
    #[arg(long, default_value_t = 25_000, value_name = "N")]
    conns_per_source: usize,
    /// Users are named PREFIX-i0.. [default: lg<pid>].
    #[arg(long, value_name = "PREFIX")]
    user_prefix: Option<String>,
}

#[derive(Args, Debug)]
struct ChurnArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Connections started per second.
    #[arg(long, default_value_t = 200.0, value_name = "CONNS_PER_SEC")]
    rate: f64,
    /// Seconds during which connections are started.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    duration: f64,
    /// Most connections in flight at once (a start waits for a free slot).
    #[arg(long, default_value_t = 256, value_name = "N")]
    concurrency: usize,
    /// Milliseconds each connection stays joined before leaving.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    hold_ms: u64,
    /// Close without sending the leave message first.
    #[arg(long)]
    no_leave: bool,
    /// Room each connection joins.
    #[arg(long, default_value = "bench")]
    room: String,
    /// Seconds allowed for the handshake and join (and for the leave's answer).
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    join_timeout: f64,
    /// Seconds to wait for the server to close after our close frame.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    close_timeout: f64,
    /// Connections per source address over the whole run (see fanout).
    #[arg(long, default_value_t = 25_000, value_name = "N")]
    conns_per_source: usize,
    /// Users are named PREFIX-k0.. [default: lg<pid>].
    #[arg(long, value_name = "PREFIX")]
    user_prefix: Option<String>,
}

#[derive(Args, Debug)]
struct RecoveryStormArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Clients that drop and recover (plus one publisher connection).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    clients: usize,
    /// Room every connection joins.
    #[arg(long, default_value = "storm")]
    room: String,
    /// Messages per second, published from the warm-up to the end of the run.
    #[arg(long, default_value_t = 50.0, value_name = "MSGS_PER_SEC")]
    rate: f64,
    /// Seconds of publishing before the drop.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    warmup: f64,
    /// Seconds between the drop and the reconnect (0 reconnects at once).
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    away: f64,
    /// How the clients drop: fin (close without a close frame) or rst (SO_LINGER 0).
    #[arg(long, value_enum, default_value_t = DropMode::Fin)]
    drop: DropMode,
    /// Reconnecting clients between connect and `joined` at once [default: all of them].
    #[arg(long, value_name = "N")]
    reconnect_concurrency: Option<usize>,
    /// Fail when not every client caught up this long after the reconnect start.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    recover_timeout: f64,
    /// Seconds of publishing after every client caught up.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    tail: f64,
    /// Length of each message text.
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    payload_bytes: usize,
    /// Settled when no non-chat frame came for this long.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    settle_ms: u64,
    /// Stop waiting for quiet after this long.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    settle_max: f64,
    /// After publishing, wait this long at most for every client to reach the final top.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    drain_timeout: f64,
    /// Connections per source address over the whole run (each client connects twice; see
    /// fanout).
    #[arg(long, default_value_t = 25_000, value_name = "N")]
    conns_per_source: usize,
    /// Users are named PREFIX-pub and PREFIX-r1.. [default: lg<pid>].
    #[arg(long, value_name = "PREFIX")]
    user_prefix: Option<String>,
}

#[derive(Args, Debug)]
struct SoakArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Seconds of load.
    #[arg(long, default_value_t = 600.0, value_name = "SECS")]
    duration: f64,
    /// Share of the load that is warm-up: the post-warm-up levels are taken at its end.
    #[arg(long, default_value_t = 0.2, value_name = "FRACTION")]
    warmup: f64,
    /// How far above its post-warm-up level RSS may end (and open files; see the README).
    #[arg(long, default_value_t = 0.05, value_name = "FRACTION")]
    tolerance: f64,
    /// Churn clients started per second (0: none).
    #[arg(long, default_value_t = 20.0, value_name = "PER_SEC")]
    churn_rate: f64,
    /// How long each churn client listens after its own messages came back.
    #[arg(long, default_value_t = 200, value_name = "MS")]
    churn_hold_ms: u64,
    /// Long-lived chat clients.
    #[arg(long, default_value_t = 200, value_name = "N")]
    chat_clients: usize,
    /// Chat rooms.
    #[arg(long, default_value_t = 50, value_name = "N")]
    chat_rooms: usize,
    /// Chat rooms each chat client is in.
    #[arg(long, default_value_t = 3, value_name = "N")]
    rooms_per_client: usize,
    /// Each chat client says something every this many seconds.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    chat_interval: f64,
    /// Length of each chat message text.
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    chat_bytes: usize,
    /// Subscribers of the fan-out room.
    #[arg(long, default_value_t = 500, value_name = "N")]
    fanout_subscribers: usize,
    /// Messages per second of the fan-out room's publisher.
    #[arg(long, default_value_t = 20.0, value_name = "PER_SEC")]
    fanout_rate: f64,
    /// Length of each fan-out message text.
    #[arg(long, default_value_t = 512, value_name = "BYTES")]
    fanout_bytes: usize,
    /// Stalled readers in the fan-out room.
    #[arg(long, default_value_t = 5, value_name = "N")]
    stalled: usize,
    /// API publishes per second (`POST /api/rooms/{room}/publish`; 0: none).
    #[arg(long, default_value_t = 10.0, value_name = "PER_SEC")]
    api_rate: f64,
    /// Longest wait for joins, leaves and a churn client's own messages.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    join_timeout: f64,
    /// Longest wait for late deliveries after the load.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    drain_timeout: f64,
    /// Longest wait for the hub to count no connection after the clients closed.
    #[arg(long, default_value_t = 15.0, value_name = "SECS")]
    close_timeout: f64,
    /// Wait this long after that before the last sample.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    settle: f64,
    /// Users and rooms are named PREFIX-... [default: soak<pid>].
    #[arg(long, value_name = "PREFIX")]
    user_prefix: Option<String>,
}

fn seconds(name: &str, v: f64, max: f64) -> Result<Duration, String> {
    if !(v > 0.0 && v <= max) {
        return Err(format!("--{name} must be in (0, {max}] seconds (got {v})"));
    }
    Ok(Duration::from_secs_f64(v))
}

impl CommonArgs {
    /// Every --url given, or the protocol's default one.
    fn urls(&self) -> Vec<String> {
        if self.url.is_empty() {
            vec![self.protocol.default_url().to_owned()]
        } else {
            self.url.clone()
        }
    }

    /// The one --url of a scenario that talks to a single hub.
    fn url(&self) -> Result<String, String> {
        match &self.urls()[..] {
            [url] => Ok(url.clone()),
            _ => Err("only fanout takes --url more than once".into()),
        }
    }

    /// The one --server-pid, if given, of a scenario that talks to a single hub.
    fn server_pid(&self) -> Result<Option<u32>, String> {
        match self.server_pid[..] {
            [] => Ok(None),
            [pid] => Ok(Some(pid)),
            _ => Err("only fanout takes --server-pid more than once".into()),
        }
    }

    fn connect_timeout(&self) -> Result<Duration, String> {
        seconds("connect-timeout", self.connect_timeout, 60.0)
    }

    fn connect_concurrency(&self) -> usize {
        self.connect_concurrency.clamp(1, 10_000)
    }

    fn setup_timeout(&self) -> Result<Duration, String> {
        seconds("setup-timeout", self.setup_timeout, 600.0)
    }

    fn check(&self) -> Result<(), String> {
        if self.threads == 0 || self.threads > 64 {
            return Err("--threads must be 1 to 64".into());
        }
        let trusting = self.ca.is_some() || self.insecure;
        if !trusting && self.urls().iter().any(|u| u.starts_with("wss://")) {
            return Err("wss:// needs --ca FILE (the server's certificate) or --insecure".into());
        }
        for &pid in &self.server_pid {
            sys::cpu_seconds(sys::Proc::Pid(pid))
                .map_err(|e| format!("--server-pid {pid}: cannot read its CPU time ({e})"))?;
        }
        Ok(())
    }
}

fn check_room(r: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&r.len())
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b));
    if !ok {
        return Err("--room must be 1 to 128 of [A-Za-z0-9_.:@-]".into());
    }
    Ok(())
}

fn prefix(given: &Option<String>) -> Result<String, String> {
    let p = given
        .clone()
        .unwrap_or_else(|| format!("lg{}", std::process::id()));
    if p.is_empty() || p.len() > 100 {
        return Err("--user-prefix must be 1 to 100 bytes".into());
    }
    Ok(p)
}

fn fanout_config(a: &FanoutArgs) -> Result<FanoutConfig, String> {
    let c = &a.common;
    let nodes = nodes::from_args(&c.urls(), &c.server_pid)?;
    if a.subscribers == 0 || a.subscribers + 1 > MAX_CONNECTIONS {
        return Err(format!(
            "--subscribers must be 1 to {} (connection cap {MAX_CONNECTIONS})",
            MAX_CONNECTIONS - 1
        ));
    }
    if a.subscribers < nodes.len() {
        return Err(format!(
            "--subscribers must be at least the number of --url ({}): every node gets one",
            nodes.len()
        ));
    }
    c.check()?;
    check_room(&a.room)?;
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
    check_common_limits(a.conns_per_source, a.settle_ms)?;
    if a.history && c.protocol != ProtocolKind::Neonex {
        return Err("--history needs --protocol neonex (the others have no offsets)".into());
    }
    let user_prefix = prefix(&a.user_prefix)?;
    Ok(FanoutConfig {
        nodes,
        protocol: c.protocol,
        subscribers: a.subscribers,
        room: a.room.clone(),
        pace,
        duration,
        messages: a.messages,
        payload_bytes: a.payload_bytes,
        threads: c.threads.min(a.subscribers + 1),
        connect_timeout: c.connect_timeout()?,
        connect_concurrency: c.connect_concurrency(),
        setup_timeout: c.setup_timeout()?,
        settle_quiet: Duration::from_millis(a.settle_ms),
        settle_max: seconds("settle-max", a.settle_max, 120.0)?,
        drain_timeout: seconds("drain-timeout", a.drain_timeout, 60.0)?,
        stall_timeout: seconds("stall-timeout", a.stall_timeout, 60.0)?,
        user_prefix,
        max_message: MAX_MESSAGE,
        conns_per_source: a.conns_per_source,
        history: a.history,
        deflate: a.deflate,
        payload: a.payload,
    })
}

fn check_common_limits(conns_per_source: usize, settle_ms: u64) -> Result<(), String> {
    if conns_per_source == 0 || conns_per_source > 28_000 {
        return Err("--conns-per-source must be 1 to 28000".into());
    }
    if !(1..=10_000).contains(&settle_ms) {
        return Err("--settle-ms must be 1 to 10000".into());
    }
    Ok(())
}

fn manyrooms_config(a: &ManyRoomsArgs) -> Result<ManyRoomsConfig, String> {
    let c = &a.common;
    c.check()?;
    let url = c.url()?;
    let target = target::parse(&url)?;
    if !(1..=MAX_CONNECTIONS / 2).contains(&a.subscribers) {
        return Err(format!(
            "--subscribers must be 1 to {}",
            MAX_CONNECTIONS / 2
        ));
    }
    if !(1..=10_000).contains(&a.rooms) {
        return Err("--rooms must be 1 to 10000".into());
    }
    if !(1..=a.rooms).contains(&a.rooms_per_subscriber) {
        return Err("--rooms-per-subscriber must be 1 to --rooms".into());
    }
    if !(a.rate > 0.0 && a.rate <= 100_000.0) {
        return Err("--rate must be in (0, 100000] messages per second per room".into());
    }
    if a.payload_bytes > 64 * 1024 {
        return Err("--payload-bytes must be at most 65536".into());
    }
    check_common_limits(a.conns_per_source, a.settle_ms)?;
    let connections = a.rooms + a.subscribers;
    Ok(ManyRoomsConfig {
        url,
        target,
        protocol: c.protocol,
        subscribers: a.subscribers,
        rooms: a.rooms,
        rooms_per_subscriber: a.rooms_per_subscriber,
        rate: a.rate,
        duration: seconds("duration", a.duration, MAX_DURATION_S)?,
        payload_bytes: a.payload_bytes,
        threads: c.threads.min(connections),
        connect_timeout: c.connect_timeout()?,
        connect_concurrency: c.connect_concurrency(),
        setup_timeout: c.setup_timeout()?,
        settle_quiet: Duration::from_millis(a.settle_ms),
        settle_max: seconds("settle-max", a.settle_max, 120.0)?,
        drain_timeout: seconds("drain-timeout", a.drain_timeout, 60.0)?,
        server_pid: c.server_pid()?,
        user_prefix: prefix(&a.user_prefix)?,
        max_message: MAX_MESSAGE,
        conns_per_source: a.conns_per_source,
    })
}

fn alltoall_config(a: &AllToAllArgs) -> Result<AllToAllConfig, String> {
    let c = &a.common;
    c.check()?;
    let url = c.url()?;
    let target = target::parse(&url)?;
    // Each client holds a tracker per publisher: N² of them.
    if !(2..=5_000).contains(&a.clients) {
        return Err("--clients must be 2 to 5000 (every client tracks every publisher)".into());
    }
    check_room(&a.room)?;
    if !(a.rate > 0.0 && a.rate <= 100_000.0) {
        return Err("--rate must be in (0, 100000] messages per second per client".into());
    }
    if a.payload_bytes > 64 * 1024 {
        return Err("--payload-bytes must be at most 65536".into());
    }
    check_common_limits(a.conns_per_source, a.settle_ms)?;
    Ok(AllToAllConfig {
        url,
        target,
        protocol: c.protocol,
        clients: a.clients,
        room: a.room.clone(),
        rate: a.rate,
        duration: seconds("duration", a.duration, MAX_DURATION_S)?,
        payload_bytes: a.payload_bytes,
        threads: c.threads.min(a.clients),
        connect_timeout: c.connect_timeout()?,
        connect_concurrency: c.connect_concurrency(),
        setup_timeout: c.setup_timeout()?,
        settle_quiet: Duration::from_millis(a.settle_ms),
        settle_max: seconds("settle-max", a.settle_max, 120.0)?,
        drain_timeout: seconds("drain-timeout", a.drain_timeout, 60.0)?,
        server_pid: c.server_pid()?,
        user_prefix: prefix(&a.user_prefix)?,
        max_message: MAX_MESSAGE,
        conns_per_source: a.conns_per_source,
    })
}

fn idle_config(a: &IdleArgs) -> Result<IdleConfig, String> {
    let c = &a.common;
    c.check()?;
    let url = c.url()?;
    let target = target::parse(&url)?;
    if a.connections == 0 || a.connections > MAX_CONNECTIONS {
        return Err(format!("--connections must be 1 to {MAX_CONNECTIONS}"));
    }
    check_room(&a.room)?;
    if a.no_join && c.protocol == ProtocolKind::Nchan {
        return Err("--no-join: an nchan subscriber is in its channel from the upgrade".into());
    }
    let Some(server_pid) = c.server_pid()? else {
        return Err("idle needs --server-pid (it measures the server's memory)".into());
    };
    check_common_limits(a.conns_per_source, a.settle_ms)?;
    Ok(IdleConfig {
        url,
        target,
        protocol: c.protocol,
        connections: a.connections,
        room: a.room.clone(),
        join: !a.no_join,
        hold: seconds("hold", a.hold, MAX_DURATION_S)?,
        threads: c.threads.min(a.connections),
        connect_timeout: c.connect_timeout()?,
        connect_concurrency: c.connect_concurrency(),
        setup_timeout: c.setup_timeout()?,
        settle_quiet: Duration::from_millis(a.settle_ms),
        settle_max: seconds("settle-max", a.settle_max, 120.0)?,
        server_pid,
        user_prefix: prefix(&a.user_prefix)?,
        max_message: MAX_MESSAGE,
        conns_per_source: a.conns_per_source,
    })
}

/// Most connections one churn run starts.
const MAX_CHURN_ATTEMPTS: f64 = 1_000_000.0;

fn churn_config(a: &ChurnArgs) -> Result<ChurnConfig, String> {
    let c = &a.common;
    c.check()?;
    let url = c.url()?;
    let target = target::parse(&url)?;
    if !(a.rate > 0.0 && a.rate <= 100_000.0) {
        return Err("--rate must be in (0, 100000] connections per second".into());
    }
    let duration = seconds("duration", a.duration, MAX_DURATION_S)?;
    if a.rate * a.duration > MAX_CHURN_ATTEMPTS {
        return Err(format!(
            "--rate x --duration must be at most {MAX_CHURN_ATTEMPTS} connections"
        ));
    }
    if a.concurrency == 0 || a.concurrency > 10_000 {
        return Err("--concurrency must be 1 to 10000".into());
    }
    if a.hold_ms > 60_000 {
        return Err("--hold-ms must be at most 60000".into());
    }
    check_room(&a.room)?;
    check_common_limits(a.conns_per_source, 500)?;
    Ok(ChurnConfig {
        url,
        target,
        protocol: c.protocol,
        rate: a.rate,
        duration,
        concurrency: a.concurrency,
        hold: Duration::from_millis(a.hold_ms),
        leave: !a.no_leave,
        room: a.room.clone(),
        threads: c.threads,
        connect_timeout: c.connect_timeout()?,
        join_timeout: seconds("join-timeout", a.join_timeout, 60.0)?,
        close_timeout: seconds("close-timeout", a.close_timeout, 60.0)?,
        server_pid: c.server_pid()?,
        user_prefix: prefix(&a.user_prefix)?,
        max_message: MAX_MESSAGE,
        conns_per_source: a.conns_per_source,
    })
}

fn recovery_config(a: &RecoveryStormArgs) -> Result<RecoveryConfig, String> {
    let c = &a.common;
    c.check()?;
    let url = c.url()?;
    let target = target::parse(&url)?;
    if c.protocol != ProtocolKind::Neonex {
        return Err("recovery-storm needs --protocol neonex (history and recovery)".into());
    }
    if a.clients == 0 || a.clients + 1 > MAX_CONNECTIONS {
        return Err(format!(
            "--clients must be 1 to {} (connection cap {MAX_CONNECTIONS})",
            MAX_CONNECTIONS - 1
        ));
    }
    check_room(&a.room)?;
    if !(a.rate > 0.0 && a.rate <= 100_000.0) {
        return Err("--rate must be in (0, 100000] messages per second".into());
    }
    if !(0.0..=60.0).contains(&a.away) {
        return Err(format!(
            "--away must be in [0, 60] seconds (got {})",
            a.away
        ));
    }
    let reconnect_concurrency = a.reconnect_concurrency.unwrap_or(a.clients);
    if reconnect_concurrency == 0 || reconnect_concurrency > a.clients {
        return Err("--reconnect-concurrency must be 1 to --clients".into());
    }
    if a.payload_bytes > 64 * 1024 {
        return Err("--payload-bytes must be at most 65536".into());
    }
    check_common_limits(a.conns_per_source, a.settle_ms)?;
    Ok(RecoveryConfig {
        url,
        target,
        protocol: c.protocol,
        clients: a.clients,
        room: a.room.clone(),
        rate: a.rate,
        warmup: seconds("warmup", a.warmup, MAX_DURATION_S)?,
        away: Duration::from_secs_f64(a.away),
        drop: a.drop,
        reconnect_concurrency,
        recover_timeout: seconds("recover-timeout", a.recover_timeout, MAX_DURATION_S)?,
        tail: seconds("tail", a.tail, 60.0)?,
        payload_bytes: a.payload_bytes,
        threads: c.threads.min(a.clients + 1),
        connect_timeout: c.connect_timeout()?,
        connect_concurrency: c.connect_concurrency(),
        setup_timeout: c.setup_timeout()?,
        settle_quiet: Duration::from_millis(a.settle_ms),
        settle_max: seconds("settle-max", a.settle_max, 120.0)?,
        drain_timeout: seconds("drain-timeout", a.drain_timeout, 60.0)?,
        server_pid: c.server_pid()?,
        user_prefix: prefix(&a.user_prefix)?,
        max_message: MAX_MESSAGE,
        conns_per_source: a.conns_per_source,
    })
}

fn soak_config(a: &SoakArgs) -> Result<SoakConfig, String> {
    let c = &a.common;
    c.check()?;
    let url = c.url()?;
    let target = target::parse(&url)?;
    if c.protocol != ProtocolKind::Neonex {
        return Err("soak needs --protocol neonex (its API and /stats)".into());
    }
    if target.tls.is_some() {
        return Err("soak speaks plain ws:// (its API calls and /stats are plain HTTP)".into());
    }
    let Some(server_pid) = c.server_pid()? else {
        return Err("soak needs --server-pid (it watches the hub's memory and files)".into());
    };
    let fraction = |name: &str, v: f64| {
        if v > 0.0 && v < 1.0 {
            Ok(v)
        } else {
            Err(format!("--{name} must be in (0, 1) (got {v})"))
        }
    };
    let rate = |name: &str, v: f64, max: f64| {
        if (0.0..=max).contains(&v) {
            Ok(v)
        } else {
            Err(format!("--{name} must be in [0, {max}] (got {v})"))
        }
    };
    if !(1..=1000).contains(&a.chat_rooms) || !(1..=a.chat_rooms).contains(&a.rooms_per_client) {
        return Err("--chat-rooms must be 1 to 1000, --rooms-per-client 1 to --chat-rooms".into());
    }
    if a.chat_clients + a.fanout_subscribers + a.stalled > 20_000 {
        return Err("at most 20000 long-lived and stalled clients".into());
    }
    if !(1.0..=1000.0).contains(&a.fanout_rate) {
        return Err("--fanout-rate must be 1 to 1000 messages per second".into());
    }
    if a.chat_bytes > 16 * 1024 || a.fanout_bytes > 16 * 1024 {
        return Err("--chat-bytes and --fanout-bytes must be at most 16384".into());
    }
    let user_prefix = a
        .user_prefix
        .clone()
        .unwrap_or_else(|| format!("soak{}", std::process::id()));
    check_room(&format!("{user_prefix}-fanout"))?;
    Ok(SoakConfig {
        url,
        target,
        server_pid,
        duration: seconds("duration", a.duration, MAX_DURATION_S)?,
        warmup: fraction("warmup", a.warmup)?,
        tolerance: fraction("tolerance", a.tolerance)?,
        churn_rate: rate("churn-rate", a.churn_rate, 1000.0)?,
        churn_hold: Duration::from_millis(a.churn_hold_ms.min(60_000)),
        chat_clients: a.chat_clients,
        chat_rooms: a.chat_rooms,
        rooms_per_client: a.rooms_per_client,
        chat_interval: seconds("chat-interval", a.chat_interval, 3600.0)?,
        chat_bytes: a.chat_bytes,
        fanout_subscribers: a.fanout_subscribers,
        fanout_rate: a.fanout_rate,
        fanout_bytes: a.fanout_bytes,
        fanout_room: format!("{user_prefix}-fanout"),
        stalled: a.stalled,
        api_rate: rate("api-rate", a.api_rate, 1000.0)?,
        threads: c.threads,
        connect_timeout: c.connect_timeout()?,
        join_timeout: seconds("join-timeout", a.join_timeout, 60.0)?,
        setup_timeout: c.setup_timeout()?,
        drain_timeout: seconds("drain-timeout", a.drain_timeout, 60.0)?,
        close_timeout: seconds("close-timeout", a.close_timeout, 60.0)?,
        settle: seconds("settle", a.settle, 60.0)?,
        user_prefix,
        max_message: MAX_MESSAGE,
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
    let report = fanout::run(cfg)?;
    fanout::print(&report);
    write_json(&a.common.json, &report)?;
    Ok(report.ok || a.allow_loss)
}

fn write_json<T: serde::Serialize>(path: &Option<PathBuf>, report: &T) -> Result<(), String> {
    match path {
        Some(p) => report::write_json(p, report),
        None => Ok(()),
    }
}

fn run_alltoall(a: &AllToAllArgs) -> Result<bool, String> {
    let cfg = alltoall_config(a)?;
    // nchan clients also hold an HTTP publisher connection each.
    check_fd_limit(cfg.clients * 2)?;
    start_watchdog(cfg.run_budget());
    let report = alltoall::run(cfg)?;
    alltoall::print(&report);
    write_json(&a.common.json, &report)?;
    Ok(report.ok || a.allow_loss)
}

fn run_manyrooms(a: &ManyRoomsArgs) -> Result<bool, String> {
    let cfg = manyrooms_config(a)?;
    // nchan publishers also hold an HTTP publisher connection each.
    check_fd_limit(cfg.connections() + cfg.rooms)?;
    start_watchdog(cfg.run_budget());
    let report = manyrooms::run(cfg)?;
    manyrooms::print(&report);
    write_json(&a.common.json, &report)?;
    Ok(report.ok || a.allow_loss)
}

fn run_idle(a: &IdleArgs) -> Result<bool, String> {
    let cfg = idle_config(a)?;
    check_fd_limit(cfg.connections)?;
    start_watchdog(cfg.run_budget());
    let report = idle::run(cfg)?;
    idle::print(&report);
    write_json(&a.common.json, &report)?;
    Ok(report.ok)
}

fn run_churn(a: &ChurnArgs) -> Result<bool, String> {
    let cfg = churn_config(a)?;
    check_fd_limit(cfg.concurrency)?;
    start_watchdog(cfg.run_budget());
    let report = churn::run(cfg)?;
    churn::print(&report);
    write_json(&a.common.json, &report)?;
    Ok(report.ok)
}

fn run_recovery(a: &RecoveryStormArgs) -> Result<bool, String> {
    let cfg = recovery_config(a)?;
    check_fd_limit(cfg.clients + 1)?;
    let missed = cfg.rate * cfg.away.as_secs_f64();
    if missed > 300.0 {
        eprintln!(
            "loadgen: note: about {missed:.0} messages are published while the clients are \
             away; above the hub's history.max_recover (300 by default) it answers \
             recovered:false"
        );
    }
    start_watchdog(cfg.run_budget());
    let report = recovery::run(cfg)?;
    recovery::print(&report);
    write_json(&a.common.json, &report)?;
    Ok(report.ok)
}

fn run_soak(a: &SoakArgs) -> Result<bool, String> {
    let cfg = soak_config(a)?;
    check_fd_limit(cfg.peak_connections())?;
    start_watchdog(cfg.run_budget());
    let report = soak::run(cfg)?;
    soak::print(&report);
    write_json(&a.common.json, &report)?;
    Ok(report.ok)
}

/// Sets up wss:// for the whole run, when `--ca` or `--insecure` is given.
fn install_tls(c: &CommonArgs) -> Result<(), String> {
    let trust = match (&c.ca, c.insecure) {
        (Some(path), _) => tls::Trust::CaFile(path),
        (None, true) => tls::Trust::Anything,
        (None, false) => return Ok(()),
    };
    tls::install(tls::client_config(trust)?)
}

fn main() -> ExitCode {
    clock::init();
    let cli = Cli::parse();
    let common = match &cli.command {
        Command::Fanout(a) => &a.common,
        Command::AllToAll(a) => &a.common,
        Command::ManyRooms(a) => &a.common,
        Command::Idle(a) => &a.common,
        Command::Churn(a) => &a.common,
        Command::RecoveryStorm(a) => &a.common,
        Command::Soak(a) => &a.common,
    };
    if let Err(e) = install_tls(common) {
        eprintln!("loadgen: error: {e}");
        return ExitCode::from(2);
    }
    let result = match &cli.command {
        Command::Fanout(a) => run_fanout(a),
        Command::AllToAll(a) => run_alltoall(a),
        Command::ManyRooms(a) => run_manyrooms(a),
        Command::Idle(a) => run_idle(a),
        Command::Churn(a) => run_churn(a),
        Command::RecoveryStorm(a) => run_recovery(a),
        Command::Soak(a) => run_soak(a),
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
        let Command::Fanout(a) = cli.command else {
            unreachable!("parsed a fanout command")
        };
        fanout_config(&a)
    }

    #[test]
    fn wss_needs_a_trust_choice() {
        let wss = ["--url", "wss://localhost:3443/ws"];
        let err = fanout(&wss).unwrap_err();
        assert!(err.contains("--ca FILE"), "{err}");
        assert!(fanout(&[&wss[..], &["--insecure"]].concat()).is_ok());
        assert!(fanout(&[&wss[..], &["--ca", "cert.pem"]].concat()).is_ok());
        assert!(fanout(&[&wss[..], &["--ca", "cert.pem", "--insecure"]].concat()).is_err());
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
        let c = fanout(&["--protocol", "socketio"]).unwrap();
        assert_eq!(c.publisher_node().url, "ws://127.0.0.1:3000/socket.io/");
        let c = fanout(&["--protocol", "nchan", "--url", "ws://127.0.0.1:9/sub"]).unwrap();
        assert_eq!(c.protocol, ProtocolKind::Nchan);
        assert!(!c.history);
        assert!(fanout(&["--history"]).unwrap().history);
        assert!(fanout(&["--history", "--protocol", "uws"]).is_err());
    }

    #[test]
    fn fanout_over_the_nodes_of_a_cluster() {
        let one = fanout(&["--url", "ws://127.0.0.1:3001/ws"]).unwrap();
        assert_eq!(one.nodes.len(), 1);
        assert_eq!(one.nodes[0].server_pid, None);
        let me = std::process::id().to_string();
        let two = fanout(&[
            "--url",
            "ws://127.0.0.1:3001/ws",
            "--url",
            "ws://127.0.0.1:3002/ws",
            "--server-pid",
            &me,
            "--server-pid",
            "1",
        ])
        .unwrap();
        let urls: Vec<&str> = two.nodes.iter().map(|n| n.url.as_str()).collect();
        assert_eq!(urls, ["ws://127.0.0.1:3001/ws", "ws://127.0.0.1:3002/ws"]);
        assert_eq!(two.publisher_node().url, "ws://127.0.0.1:3001/ws");
        let pids: Vec<Option<u32>> = two.nodes.iter().map(|n| n.server_pid).collect();
        assert_eq!(pids, [Some(std::process::id()), Some(1)]);
        let two_urls = [
            "--url",
            "ws://127.0.0.1:3001/ws",
            "--url",
            "ws://127.0.0.1:3002/ws",
        ];
        // One PID for two nodes, or fewer subscribers than nodes, is refused.
        assert!(fanout(&[&two_urls[..], &["--server-pid", &me]].concat()).is_err());
        assert!(fanout(&[&two_urls[..], &["--subscribers", "1"]].concat()).is_err());
        assert!(fanout(&[&two_urls[..], &["--subscribers", "2"]].concat()).is_ok());
        // A PID that is no process is refused before the run.
        let gone = ["--server-pid", "4294967295", "--server-pid", "1"];
        assert!(fanout(&[&two_urls[..], &gone].concat()).is_err());
    }

    #[test]
    fn only_fanout_takes_several_nodes() {
        let two_urls = [
            "--url",
            "ws://127.0.0.1:3001/ws",
            "--url",
            "ws://127.0.0.1:3002/ws",
        ];
        let Ok(Command::AllToAll(a)) = parse(&[&["all-to-all"][..], &two_urls].concat()) else {
            panic!("all-to-all")
        };
        assert!(alltoall_config(&a).is_err());
        let Ok(Command::Churn(a)) = parse(&["churn", "--server-pid", "1", "--server-pid", "1"])
        else {
            panic!("churn")
        };
        assert!(churn_config(&a).is_err());
        let Ok(Command::Churn(a)) = parse(&["churn", "--url", "ws://127.0.0.1:3001/ws"]) else {
            panic!("churn")
        };
        assert_eq!(churn_config(&a).unwrap().url, "ws://127.0.0.1:3001/ws");
    }

    fn parse(args: &[&str]) -> Result<Command, String> {
        let mut argv = vec!["loadgen"];
        argv.extend_from_slice(args);
        Ok(Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .command)
    }

    #[test]
    fn soak_defaults_and_limits() {
        let soak = |args: &[&str]| {
            let Ok(Command::Soak(a)) = parse(&[&["soak"][..], args].concat()) else {
                panic!("soak")
            };
            soak_config(&a)
        };
        let me = std::process::id().to_string();
        let c = soak(&["--server-pid", &me]).unwrap();
        assert_eq!(c.duration, Duration::from_secs(600));
        assert_eq!(
            (c.churn_rate, c.api_rate, c.fanout_rate),
            (20.0, 10.0, 20.0)
        );
        assert_eq!(
            (c.chat_clients, c.chat_rooms, c.rooms_per_client),
            (200, 50, 3)
        );
        assert_eq!(
            (c.fanout_subscribers, c.stalled, c.long_lived()),
            (500, 5, 701)
        );
        assert!(c.fanout_room.ends_with("-fanout"));
        // It watches the hub: no PID, no run; and only neonex, on loopback, for 600 s at most.
        assert!(soak(&[]).is_err());
        for bad in [
            &["--protocol", "uws"][..],
            &["--duration", "601"],
            &["--warmup", "1"],
            &["--rooms-per-client", "51"],
            &["--url", "ws://10.0.0.1:3000/ws"],
        ] {
            assert!(
                soak(&[&["--server-pid", &me][..], bad].concat()).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn other_scenarios() {
        let Ok(Command::AllToAll(a)) = parse(&["all-to-all", "--clients", "50"]) else {
            panic!("all-to-all")
        };
        let c = alltoall_config(&a).unwrap();
        assert_eq!((c.clients, c.rate), (50, 10.0));
        let Ok(Command::AllToAll(a)) = parse(&["all-to-all", "--clients", "1"]) else {
            panic!("all-to-all")
        };
        assert!(alltoall_config(&a).is_err());
        let Ok(Command::AllToAll(a)) = parse(&["all-to-all", "--url", "ws://192.168.0.1:3000/ws"])
        else {
            panic!("all-to-all")
        };
        assert!(alltoall_config(&a).is_err());
        // idle needs the server's PID.
        let Ok(Command::Idle(a)) = parse(&["idle", "--connections", "10"]) else {
            panic!("idle")
        };
        assert!(idle_config(&a).is_err());
        let me = std::process::id().to_string();
        let Ok(Command::Idle(a)) = parse(&["idle", "--server-pid", &me]) else {
            panic!("idle")
        };
        assert_eq!(idle_config(&a).unwrap().connections, 10_000);
        let Ok(Command::Churn(a)) = parse(&["churn", "--rate", "100", "--duration", "3"]) else {
            panic!("churn")
        };
        let c = churn_config(&a).unwrap();
        assert_eq!(c.attempts(), 300);
        assert!(c.leave);
        let Ok(Command::Churn(a)) = parse(&["churn", "--rate", "100000", "--duration", "600"])
        else {
            panic!("churn")
        };
        assert!(churn_config(&a).is_err());
        let Ok(Command::RecoveryStorm(a)) = parse(&["recovery-storm", "--clients", "500"]) else {
            panic!("recovery-storm")
        };
        let c = recovery_config(&a).unwrap();
        assert_eq!(
            (c.clients, c.reconnect_concurrency, c.rate),
            (500, 500, 50.0)
        );
        assert_eq!((c.away, c.drop), (Duration::from_secs(1), DropMode::Fin));
        for bad in [
            &["recovery-storm", "--protocol", "uws"][..],
            &["recovery-storm", "--clients", "0"],
            &[
                "recovery-storm",
                "--clients",
                "10",
                "--reconnect-concurrency",
                "11",
            ],
            &["recovery-storm", "--away=-1"],
            &["recovery-storm", "--url", "ws://10.0.0.1:3000/ws"],
        ] {
            let Ok(Command::RecoveryStorm(a)) = parse(bad) else {
                panic!("recovery-storm")
            };
            assert!(recovery_config(&a).is_err(), "{bad:?}");
        }
        let Ok(Command::RecoveryStorm(a)) =
            parse(&["recovery-storm", "--away", "0", "--drop", "rst"])
        else {
            panic!("recovery-storm")
        };
        let c = recovery_config(&a).unwrap();
        assert_eq!((c.away, c.drop), (Duration::ZERO, DropMode::Rst));
    }

    #[test]
    fn many_rooms() {
        let config = |args: &[&str]| {
            let Ok(Command::ManyRooms(a)) = parse(&[&["many-rooms"][..], args].concat()) else {
                panic!("many-rooms")
            };
            manyrooms_config(&a)
        };
        let c = config(&[]).unwrap();
        assert_eq!(
            (c.subscribers, c.rooms, c.rooms_per_subscriber),
            (100, 40, 20)
        );
        assert_eq!((c.rate, c.connections()), (25.0, 140));
        assert!(config(&["--rooms", "5", "--rooms-per-subscriber", "6"]).is_err());
        assert!(config(&["--rooms", "0"]).is_err());
        assert!(config(&["--rate", "0"]).is_err());
    }
}
