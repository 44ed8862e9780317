//! The proxy thread against a real HTTP/1.1 backend on 127.0.0.1: what reaches the
//! backend, what comes back, and every bound and failure the shards rely on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::*;

/// What the backend saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// How the backend answers a request.
struct Reply {
    status: u16,
    body: &'static str,
    /// Waits this long before answering.
    delay: Duration,
    /// Waits for [`Backend::release`] before answering.
    hold: bool,
}

fn reply(status: u16, body: &'static str) -> Reply {
    Reply {
        status,
        body,
        delay: Duration::ZERO,
        hold: false,
    }
}

/// A keep-alive HTTP/1.1 server on its own thread, counting connections and requests in
/// progress.
struct Backend {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    in_progress: Arc<AtomicUsize>,
    most_in_progress: Arc<AtomicUsize>,
    release: watch::Sender<bool>,
    shutdown: watch::Sender<bool>,
}

impl Backend {
    fn start(answer: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Backend {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let backend = Backend {
            addr,
            accepts: Arc::default(),
            seen: Arc::default(),
            in_progress: Arc::default(),
            most_in_progress: Arc::default(),
            release: watch::channel(false).0,
            shutdown: watch::channel(false).0,
        };
        let shared = Shared {
            answer: Arc::new(answer),
            seen: backend.seen.clone(),
            in_progress: backend.in_progress.clone(),
            most_in_progress: backend.most_in_progress.clone(),
            release: backend.release.subscribe(),
        };
        let accepts = backend.accepts.clone();
        let mut shutdown = backend.shutdown.subscribe();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    tokio::select! {
                        _ = shutdown.wait_for(|s| *s) => break,
                        accepted = listener.accept() => {
                            let (stream, _) = accepted.unwrap();
                            accepts.fetch_add(1, Ordering::SeqCst);
                            tokio::spawn(serve_connection(stream, shared.clone()));
                        }
                    }
                }
            });
        });
        backend
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn release(&self) {
        self.release.send_replace(true);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.release();
        self.shutdown.send_replace(true);
    }
}

#[derive(Clone)]
struct Shared {
    answer: Arc<dyn Fn(&Seen) -> Reply + Send + Sync>,
    seen: Arc<Mutex<Vec<Seen>>>,
    in_progress: Arc<AtomicUsize>,
    most_in_progress: Arc<AtomicUsize>,
    release: watch::Receiver<bool>,
}

async fn serve_connection(mut stream: tokio::net::TcpStream, mut shared: Shared) {
    let mut buffer = Vec::new();
    loop {
        let (seen, used) = loop {
            if let Some(request) = parse(&buffer) {
                break request;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        buffer.drain(..used);
        let now = shared.in_progress.fetch_add(1, Ordering::SeqCst) + 1;
        shared.most_in_progress.fetch_max(now, Ordering::SeqCst);
        shared.seen.lock().unwrap().push(seen.clone());
        let reply = (shared.answer)(&seen);
        if reply.hold {
            let _ = shared.release.wait_for(|r| *r).await;
        }
        tokio::time::sleep(reply.delay).await;
        shared.in_progress.fetch_sub(1, Ordering::SeqCst);
        let response = format!(
            "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
            reply.status,
            reply.body.len(),
            reply.body
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A whole request at the start of `buffer`, and its length.
fn parse(buffer: &[u8]) -> Option<(Seen, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head) = request.parse(buffer).ok()? else {
        return None;
    };
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    let length: usize = header("content-length").map_or(0, |l| l.parse().unwrap());
    let body = buffer.get(head..head + length)?.to_vec();
    let seen = Seen {
        method: request.method?.to_owned(),
        path: request.path?.to_owned(),
        content_type: header("content-type"),
        body,
    };
    Some((seen, head + length))
}

fn config(url: String) -> ProxyConfig {
    ProxyConfig {
        connect_url: Some(url.clone()),
        join_url: Some(url.clone()),
        publish_url: Some(url.clone()),
        rpc_url: Some(url),
        ..ProxyConfig::default()
    }
}

fn start(config: &ProxyConfig, bounds: Bounds) -> Proxy {
    Proxy::start_with(config, bounds).unwrap().unwrap()
}

/// An outcome, with the name of the thread its completion ran on.
type Heard = std_mpsc::Receiver<(Outcome, Option<String>)>;

/// A completion that sends the outcome, with the name of the thread it ran on.
fn sender() -> (Box<dyn FnOnce(Outcome) + Send>, Heard) {
    let (tx, rx) = std_mpsc::channel();
    let done = Box::new(move |outcome| {
        let thread = std::thread::current().name().map(str::to_owned);
        let _ = tx.send((outcome, thread));
    });
    (done, rx)
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn wait(rx: &Heard) -> Outcome {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the call completes")
        .0
}

fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn without_a_url_there_is_no_proxy() {
    assert!(Proxy::start(&ProxyConfig::default()).unwrap().is_none());
    let backend = Backend::start(|_| reply(200, "{}"));
    let proxy = Proxy::start(&ProxyConfig {
        join_url: Some(backend.url("/join")),
        ..ProxyConfig::default()
    })
    .unwrap()
    .unwrap();
    assert!(proxy.has(Hook::Join));
    assert!(!proxy.has(Hook::Rpc));
    let (done, rx) = sender();
    proxy.call(Hook::Rpc, b"{}".to_vec(), soon(), done);
    assert_eq!(
        rx.try_recv().unwrap().0,
        Outcome::Failed(Failure::Unreachable),
        "a hook without a URL fails at once"
    );
    assert_eq!(
        proxy.stats().hooks.keys().copied().collect::<Vec<_>>(),
        ["join"]
    );
    proxy.stop();
}

#[test]
fn a_call_reaches_the_backend_and_its_answer_comes_back() {
    let backend = Backend::start(|seen| match seen.path.as_str() {
        "/hooks/join" => reply(200, r#"{"ok":true}"#),
        _ => reply(404, "{}"),
    });
    let proxy = start(&config(backend.url("/hooks/join")), Bounds::default());
    let body = join_body("c-1", "alice", "lobby");
    let (done, rx) = sender();
    proxy.call(Hook::Join, body.clone(), soon(), done);
    let (outcome, thread) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        outcome,
        Outcome::Answered {
            status: 200,
            body: bytes::Bytes::from_static(br#"{"ok":true}"#)
        }
    );
    assert_eq!(thread.as_deref(), Some("neonex-proxy"));
    let seen = backend.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/hooks/join");
    assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(seen[0].body, body);
    let stats = proxy.stats();
    let join = &stats.hooks["join"];
    assert_eq!(join.calls, 1);
    assert!(join.errors.values().all(|n| *n == 0), "{:?}", join.errors);
    assert!(join.latency_us.max > 0);
    proxy.stop();
}

#[test]
fn sequential_calls_keep_one_connection() {
    let backend = Backend::start(|_| reply(200, r#"{"data":1}"#));
    let proxy = start(&config(backend.url("/rpc")), Bounds::default());
    for _ in 0..20 {
        let (done, rx) = sender();
        proxy.call(Hook::Rpc, b"{}".to_vec(), soon(), done);
        assert!(matches!(wait(&rx), Outcome::Answered { status: 200, .. }));
    }
    assert_eq!(backend.seen().len(), 20);
    assert_eq!(backend.accepts.load(Ordering::SeqCst), 1, "keep-alive");
    proxy.stop();
}

#[test]
fn a_slow_backend_times_out_at_the_timeout_or_the_deadline() {
    let backend = Backend::start(|_| Reply {
        delay: Duration::from_secs(5),
        ..reply(200, "{}")
    });
    let proxy = start(
        &ProxyConfig {
            timeout: Duration::from_millis(200),
            ..config(backend.url("/slow"))
        },
        Bounds::default(),
    );
    for (deadline_in, expected) in [
        (Duration::from_secs(10), Duration::from_millis(200)),
        (Duration::from_millis(100), Duration::from_millis(100)),
    ] {
        let started = Instant::now();
        let (done, rx) = sender();
        proxy.call(Hook::Join, b"{}".to_vec(), started + deadline_in, done);
        assert_eq!(wait(&rx), Outcome::Failed(Failure::Timeout));
        let took = started.elapsed();
        assert!(
            took >= expected && took < expected + Duration::from_millis(700),
            "{took:?} for {expected:?}"
        );
    }
    // A call whose deadline has passed is not made.
    let before = backend.seen().len();
    let (done, rx) = sender();
    proxy.call(Hook::Join, b"{}".to_vec(), Instant::now(), done);
    assert_eq!(wait(&rx), Outcome::Failed(Failure::Timeout));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(backend.seen().len(), before);
    assert_eq!(proxy.stats().hooks["join"].errors["timeout"], 3);
    proxy.stop();
}

#[test]
fn a_closed_port_is_unreachable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let proxy = start(
        &config(format!("http://127.0.0.1:{port}/x")),
        Bounds::default(),
    );
    let (done, rx) = sender();
    proxy.call(Hook::Connect, b"{}".to_vec(), soon(), done);
    assert_eq!(wait(&rx), Outcome::Failed(Failure::Unreachable));
    assert_eq!(proxy.stats().hooks["connect"].errors["unreachable"], 1);
    proxy.stop();
}

#[test]
fn server_errors_and_bad_answers_are_failures_other_statuses_answers() {
    let backend = Backend::start(|seen| match seen.path.as_str() {
        "/503" => reply(503, r#"{"error":"down"}"#),
        "/403" => reply(403, "no"),
        _ => reply(200, "not json"),
    });
    let call = |url: &str, hook: Hook| {
        let proxy = start(&config(backend.url(url)), Bounds::default());
        let (done, rx) = sender();
        proxy.call(hook, b"{}".to_vec(), soon(), done);
        let outcome = wait(&rx);
        let errors = proxy.stats().hooks[hook.name()].errors.clone();
        proxy.stop();
        (outcome, errors)
    };
    let (outcome, errors) = call("/503", Hook::Publish);
    assert_eq!(outcome, Outcome::Failed(Failure::ServerError(503)));
    assert_eq!(errors["server_error"], 1);
    let (outcome, errors) = call("/bad", Hook::Rpc);
    assert_eq!(outcome, Outcome::Failed(Failure::BadAnswer));
    assert_eq!(errors["bad_answer"], 1);
    let (outcome, errors) = call("/403", Hook::Join);
    assert_eq!(
        outcome,
        Outcome::Answered {
            status: 403,
            body: bytes::Bytes::from_static(b"no")
        }
    );
    assert!(errors.values().all(|n| *n == 0));
}

#[test]
fn no_more_calls_are_in_flight_than_the_bound() {
    let backend = Backend::start(|_| Reply {
        hold: true,
        ..reply(200, "{}")
    });
    let bounds = Bounds {
        queue: 64,
        in_flight: 4,
    };
    let proxy = start(&config(backend.url("/held")), bounds);
    let receivers: Vec<_> = (0..12)
        .map(|_| {
            let (done, rx) = sender();
            proxy.call(Hook::Join, b"{}".to_vec(), soon(), done);
            rx
        })
        .collect();
    wait_until("4 requests at the backend", || {
        backend.in_progress.load(Ordering::SeqCst) == 4
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(backend.seen().len(), 4, "the others wait in the queue");
    backend.release();
    for rx in &receivers {
        assert!(matches!(wait(rx), Outcome::Answered { status: 200, .. }));
    }
    assert_eq!(backend.seen().len(), 12);
    assert_eq!(backend.most_in_progress.load(Ordering::SeqCst), 4);
    proxy.stop();
}

#[test]
fn a_full_queue_refuses_at_once_on_the_callers_thread() {
    let backend = Backend::start(|_| Reply {
        hold: true,
        ..reply(200, "{}")
    });
    let bounds = Bounds {
        queue: 2,
        in_flight: 1,
    };
    let proxy = start(&config(backend.url("/held")), bounds);
    let (done, first) = sender();
    proxy.call(Hook::Publish, b"{}".to_vec(), soon(), done);
    wait_until("the first call at the backend", || {
        backend.seen().len() == 1
    });
    let queued: Vec<_> = (0..2)
        .map(|_| {
            let (done, rx) = sender();
            proxy.call(Hook::Publish, b"{}".to_vec(), soon(), done);
            rx
        })
        .collect();
    let (done, refused) = sender();
    let started = Instant::now();
    proxy.call(Hook::Publish, b"{}".to_vec(), soon(), done);
    let (outcome, thread) = refused.try_recv().expect("completed before call returned");
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(outcome, Outcome::Failed(Failure::Busy));
    assert_eq!(thread, std::thread::current().name().map(str::to_owned));
    backend.release();
    for rx in std::iter::once(&first).chain(&queued) {
        assert!(matches!(wait(rx), Outcome::Answered { status: 200, .. }));
    }
    let publish = &proxy.stats().hooks["publish"];
    assert_eq!((publish.calls, publish.errors["busy"]), (4, 1));
    proxy.stop();
}

#[test]
fn stopping_completes_the_calls_waiting_and_in_flight() {
    let backend = Backend::start(|_| Reply {
        hold: true,
        ..reply(200, "{}")
    });
    let bounds = Bounds {
        queue: 8,
        in_flight: 2,
    };
    let proxy = start(&config(backend.url("/held")), bounds);
    let receivers: Vec<_> = (0..5)
        .map(|_| {
            let (done, rx) = sender();
            proxy.call(Hook::Rpc, b"{}".to_vec(), soon(), done);
            rx
        })
        .collect();
    wait_until("2 requests at the backend", || backend.seen().len() == 2);
    let started = Instant::now();
    proxy.stop();
    for rx in &receivers {
        assert_eq!(
            rx.try_recv().expect("completed when stop returns").0,
            Outcome::Failed(Failure::Unreachable)
        );
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    proxy.stop();
    let (done, rx) = sender();
    proxy.call(Hook::Rpc, b"{}".to_vec(), soon(), done);
    assert_eq!(
        rx.try_recv().unwrap().0,
        Outcome::Failed(Failure::Unreachable)
    );
    assert_eq!(proxy.stats().hooks["rpc"].errors["unreachable"], 6);
}
