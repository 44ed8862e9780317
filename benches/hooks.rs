//! What hooks add to one message's latency on loopback. One client does round trips, one
//! at a time, against a one-shard hub without hooks (the baseline) and then with each kind
//! of hook, one hub after the other in the same process, and prints the round trips'
//! percentiles with what each hook adds to the baseline's.
//!
//! `HOOKS_BENCH_N` sets the measured round trips per hub (20,000). Run without `--bench`
//! (as `cargo test --benches` runs it), it does a short smoke run instead.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use neonex::config::{LimitsConfig, ProxyConfig};
use neonex::{Application, Hub, HubConfig, HubEvent};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const DEFAULT_N: usize = 20_000;
const WARM_UP: usize = 1_000;
const SMOKE_N: usize = 200;
const SMOKE_WARM_UP: usize = 20;
/// Far above any loopback round trip: past it the message was lost, and the run stops.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames of other kinds (pings, notices) a round trip may skip before the run stops: a
/// refused message comes back as an `error`, which must not be waited past forever.
const MAX_SKIPPED: usize = 16;

const CHAT: &str = r#"{"type":"message","room":"general","message":"x"}"#;
/// As long as `CHAT`, so both round trips carry the same bytes.
const ECHO: &str = r#"{"type":"echo","room":"general","message":"x"}"#;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Baseline,
    DecidedPublish,
    CustomReply,
    HttpPublishHook,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::Baseline,
        Kind::DecidedPublish,
        Kind::CustomReply,
        Kind::HttpPublishHook,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Baseline => "no application (baseline)",
            Kind::DecidedPublish => "publish decided by the application",
            Kind::CustomReply => "custom type replied by the application †",
            Kind::HttpPublishHook => "publish hook over HTTP",
        }
    }

    /// What the client sends, and the `type` of the answer it waits for.
    fn exchange(self) -> (&'static str, &'static str) {
        match self {
            Kind::CustomReply => (ECHO, "echo"),
            _ => (CHAT, "chat_message"),
        }
    }
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let (n, warm_up) = if measuring {
        let n = match std::env::var("HOOKS_BENCH_N") {
            Ok(v) => v
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .unwrap_or_else(|| panic!("HOOKS_BENCH_N={v:?} is not a positive number")),
            Err(_) => DEFAULT_N,
        };
        (n, WARM_UP)
    } else {
        (SMOKE_N, SMOKE_WARM_UP)
    };
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the client's runtime starts");

    println!("load average before: {}", load_average());
    let mut results = Vec::new();
    for kind in Kind::ALL {
        let histogram = run(kind, &client, n, warm_up);
        results.push((kind, histogram));
    }
    println!("load average after: {}", load_average());
    println!();
    println!(
        "{n} round trips per hub after {warm_up} to warm up; one client, one shard, \
         127.0.0.1; µs"
    );
    println!();
    print_table(&results);
    println!();
    println!(
        "† compared with the baseline's chat round trip (`message` to its own \
         `chat_message`), not with ping/pong"
    );
}

/// Starts `kind`'s hub and what answers its hooks, measures, and stops them all.
fn run(kind: Kind, client: &tokio::runtime::Runtime, n: usize, warm_up: usize) -> Histogram<u64> {
    let backend = (kind == Kind::HttpPublishHook).then(Backend::start);
    let application = match kind {
        Kind::Baseline | Kind::HttpPublishHook => None,
        Kind::DecidedPublish => Some(Application::new().authorize_publishes()),
        Kind::CustomReply => Some(Application::new().custom_types(["echo"])),
    };
    let config = HubConfig {
        shards: 1,
        // The client sends as fast as the hub answers; the default rate would throttle it.
        limits: LimitsConfig {
            messages_per_second: 100_000_000,
            burst: 100_000_000,
            ..LimitsConfig::default()
        },
        application,
        proxy: ProxyConfig {
            publish_url: backend.as_ref().map(|b| b.url.clone()),
            ..ProxyConfig::default()
        },
        shutdown_timeout: Duration::from_secs(2),
        ..HubConfig::default()
    };
    let hub = Hub::new(config).expect("the hub starts");
    let addr = hub.listen("127.0.0.1:0").expect("the hub listens");
    let answering = (kind == Kind::DecidedPublish || kind == Kind::CustomReply)
        .then(|| ApplicationThread::start(&hub));

    let (send, expect) = kind.exchange();
    let measured = client.block_on(round_trips(addr, send, expect, n, warm_up));

    hub.close();
    if let Some(application) = answering {
        application.stop();
    }
    if let Some(backend) = backend {
        backend.stop();
    }
    measured.unwrap_or_else(|e| panic!("{}: {e}", kind.name()))
}

/// Connects, warms up, and times `n` round trips of `send` answered by a message of type
/// `expect`, in nanoseconds.
async fn round_trips(
    addr: SocketAddr,
    send: &'static str,
    expect: &str,
    n: usize,
    warm_up: usize,
) -> Result<Histogram<u64>, String> {
    let url = format!("ws://{addr}/ws?user=bench");
    let (mut ws, _) =
        tokio::time::timeout(ROUND_TRIP_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .map_err(|_| "connecting timed out".to_owned())?
            .map_err(|e| format!("connecting failed: {e}"))?;
    // Nagle would hold each small frame for the previous one's ACK.
    if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    }
    wait_for(&mut ws, "welcome").await?;
    wait_for(&mut ws, "joined").await?;

    // Three significant digits from 1 ns to a minute: 0.1 % resolution at any latency.
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
    for i in 0..warm_up + n {
        let started = Instant::now();
        ws.send(Message::Text(Utf8Bytes::from_static(send)))
            .await
            .map_err(|e| format!("sending failed: {e}"))?;
        wait_for(&mut ws, expect).await?;
        let took = started.elapsed();
        if i >= warm_up {
            histogram.saturating_record(took.as_nanos().max(1) as u64);
        }
    }

    let _ = ws.close(None).await;
    for _ in 0..MAX_SKIPPED {
        match tokio::time::timeout(ROUND_TRIP_TIMEOUT, ws.next()).await {
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    Ok(histogram)
}

/// Reads up to the next text message of type `kind`.
async fn wait_for(ws: &mut Ws, kind: &str) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow)]
        kind: &'a str,
    }
    for _ in 0..=MAX_SKIPPED {
        let message = tokio::time::timeout(ROUND_TRIP_TIMEOUT, ws.next())
            .await
            .map_err(|_| format!("no {kind} within {ROUND_TRIP_TIMEOUT:?}"))?;
        match message {
            Some(Ok(Message::Text(text))) => {
                let typed: Typed = serde_json::from_str(&text)
                    .map_err(|e| format!("not a typed JSON message ({e}): {text}"))?;
                if typed.kind == kind {
                    return Ok(());
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("reading failed: {e}")),
            None => return Err("the hub closed the connection".to_owned()),
        }
    }
    Err(format!("more than {MAX_SKIPPED} messages before a {kind}"))
}

/// An application that allows every publish and echoes every custom message at once.
struct ApplicationThread {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl ApplicationThread {
    fn start(hub: &Hub) -> Self {
        let events = hub.events();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("application".into())
            .spawn(move || {
                // The queue outlives the hub's shards, so the flag, not its end, stops the
                // thread; the timeout only bounds how late the flag is seen.
                while !stopping.load(Ordering::Relaxed) {
                    match events.recv_timeout(Duration::from_millis(50)) {
                        Ok(HubEvent::PublishRequest { decision, .. }) => decision.allow(),
                        Ok(HubEvent::Custom { json, reply, .. }) => reply.send(&json),
                        Ok(_) => {}
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                    }
                }
            })
            .expect("the application thread starts");
        Self { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// A backend answering `200 {}` to every request at once: an HTTP/1.1 server on
/// 127.0.0.1, on a thread with a current-thread tokio runtime of its own.
struct Backend {
    url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl Backend {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("the backend binds");
        listener
            .set_nonblocking(true)
            .expect("the backend's socket is non-blocking");
        let url = format!(
            "http://{}/publish",
            listener.local_addr().expect("the backend's address")
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("backend".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the backend's runtime starts");
                runtime.block_on(serve(listener, stopped));
            })
            .expect("the backend thread starts");
        Self { url, stop, thread }
    }

    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Accepts until `stopped`; dropping the runtime afterwards ends the connections.
async fn serve(listener: std::net::TcpListener, mut stopped: tokio::sync::oneshot::Receiver<()>) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("the backend listens");
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { return };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(allow))
                        .await;
                });
            }
        }
    }
}

async fn allow(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    // Read to the end, as a real backend would, so the connection stays reusable.
    request.into_body().collect().await?;
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("a valid response"))
}

fn print_table(results: &[(Kind, Histogram<u64>)]) {
    let us = |ns: u64| ns as f64 / 1_000.0;
    let (p50_base, p99_base) = results
        .iter()
        .find(|(kind, _)| *kind == Kind::Baseline)
        .map(|(_, h)| (us(h.value_at_quantile(0.5)), us(h.value_at_quantile(0.99))))
        .expect("the baseline ran");
    println!("| hub | p50 | p99 | p99.9 | max | added p50 / p99 vs baseline |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (kind, h) in results {
        let (p50, p99) = (us(h.value_at_quantile(0.5)), us(h.value_at_quantile(0.99)));
        let added = if *kind == Kind::Baseline {
            "—".to_owned()
        } else {
            format!("{:+.1} / {:+.1}", p50 - p50_base, p99 - p99_base)
        };
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {added} |",
            kind.name(),
            p50,
            p99,
            us(h.value_at_quantile(0.999)),
            us(h.max()),
        );
    }
}

/// The 1, 5 and 15 minute load averages, to tell a quiet run from a busy one.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}
