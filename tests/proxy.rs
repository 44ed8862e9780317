//! The backend hooks (`proxy.*`, PROTOCOL.md "Proxy hooks") against a real HTTP/1.1
//! backend: a hyper server on 127.0.0.1 in the test, which records every request it
//! gets (path and JSON body) and answers as each test says (status, body, delay). The
//! hub is the in-process one, or the real binary for what operators read.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use neonex::config::{LimitsConfig, ProxyConfig};
use neonex::HubConfig;
use neonex_testkit::binary::{free_port, Server};
use neonex_testkit::client::{ws_url, Client};
use neonex_testkit::frames::masked_json;
use neonex_testkit::http::{http_call, upgrade_request};
use neonex_testkit::hub::{config, TestHub};
use neonex_testkit::raw::RawClient;
use neonex_testkit::wait::{wait_until, TIMEOUT};
use prometheus_parse::{Scrape, Value as Metric};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::MaybeTlsStream;

// ---------------------------------------------------------------------------------------
// The backend
// ---------------------------------------------------------------------------------------

/// What the backend got: one request's path and JSON body.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    body: Value,
}

/// How the backend answers one request.
struct Answer {
    status: u16,
    body: String,
    /// Waits this long before answering.
    delay: Duration,
    /// Waits for [`Backend::release`] before answering.
    held: bool,
}

fn answer(status: u16, body: Value) -> Answer {
    Answer {
        status,
        body: body.to_string(),
        delay: Duration::ZERO,
        held: false,
    }
}

impl Answer {
    fn after(self, delay: Duration) -> Answer {
        Answer { delay, ..self }
    }

    fn held(self) -> Answer {
        Answer { held: true, ..self }
    }
}

type Answering = dyn Fn(&Seen) -> Answer + Send + Sync;

/// A keep-alive HTTP/1.1 backend on a thread of its own (so that a test blocking its own
/// runtime never stalls it), stopped when dropped.
struct Backend {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    release: watch::Sender<bool>,
    stop: watch::Sender<bool>,
}

impl Backend {
    fn start(answering: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Backend {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let backend = Backend {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            release: watch::channel(false).0,
            stop: watch::channel(false).0,
        };
        let answering: Arc<Answering> = Arc::new(answering);
        let seen = backend.seen.clone();
        let release = backend.release.subscribe();
        let mut stop = backend.stop.subscribe();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let stream = tokio::select! {
                        _ = stop.wait_for(|s| *s) => break,
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => stream,
                            Err(_) => continue,
                        },
                    };
                    let (answering, seen, release) =
                        (answering.clone(), seen.clone(), release.clone());
                    let service = service_fn(move |request| {
                        serve(request, answering.clone(), seen.clone(), release.clone())
                    });
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service),
                    );
                }
            });
            // Dropping the runtime ends the connections still open.
        });
        backend
    }

    /// The URL of `path` on this backend.
    fn url(&self, path: &str) -> Option<String> {
        Some(format!("http://{}{path}", self.addr))
    }

    /// The bodies of the requests to `path` so far, in the order they came.
    fn bodies(&self, path: &str) -> Vec<Value> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|s| s.path == path)
            .map(|s| s.body.clone())
            .collect()
    }

    /// Waits until `n` requests to `path` have come.
    async fn wait_calls(&self, path: &str, n: usize) {
        wait_until(&format!("{n} calls of {path}"), TIMEOUT, || {
            self.bodies(path).len() >= n
        })
        .await;
    }

    /// Lets every held answer go.
    fn release(&self) {
        self.release.send_replace(true);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.release.send_replace(true);
        self.stop.send_replace(true);
    }
}

/// One request: recorded before any delay, so a test can wait for it to have arrived.
async fn serve(
    request: Request<Incoming>,
    answering: Arc<Answering>,
    seen: Arc<Mutex<Vec<Seen>>>,
    mut release: watch::Receiver<bool>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let bytes = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    let request = Seen { path, body };
    let answer = answering(&request);
    seen.lock().unwrap().push(request);
    if answer.held {
        let _ = release.wait_for(|r| *r).await;
    }
    tokio::time::sleep(answer.delay).await;
    let response = Response::builder()
        .status(answer.status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(answer.body)))
        .unwrap();
    Ok(response)
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A hub (two shards) with the backend hooks of `proxy`.
fn hub_with(proxy: ProxyConfig) -> TestHub {
    TestHub::start(HubConfig { proxy, ..config() })
}

/// The connect hook's usual answer: the user the client named in `?user=`.
fn user_from_query(seen: &Seen) -> Answer {
    answer(200, json!({"user_id": seen.body["query"]["user"]}))
}

fn general() -> Vec<String> {
    vec!["general".to_owned()]
}

/// The next answer to a question (`rpc_result`, `rpc_error`, `error`), skipping the
/// notices other connections cause.
async fn next_answer(client: &mut Client) -> Value {
    client
        .expect("an answer", |m| {
            ["rpc_result", "rpc_error", "error"].contains(&m["type"].as_str().unwrap_or(""))
        })
        .await
}

/// The next answer is `error` `forbidden`.
async fn expect_forbidden(client: &mut Client) {
    let refused = next_answer(client).await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("forbidden")),
        "{refused}"
    );
}

async fn has_member(hub: &TestHub, room: &'static str, client: &Client) -> bool {
    let id = client.id;
    hub.blocking(move |hub| hub.room_has_member(room, id)).await
}

// ---------------------------------------------------------------------------------------
// connect
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_accepted_connect_names_the_user_its_rooms_and_its_welcome_data() {
    let backend = Backend::start(|_| {
        answer(
            200,
            json!({"user_id": "u1", "rooms": ["lobby"], "data": {"plan": "pro"}}),
        )
    });
    let hub = hub_with(ProxyConfig {
        connect_url: backend.url("/connect"),
        ..ProxyConfig::default()
    });
    let mut request = format!("ws://{}/ws?token=abc", hub.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("X-Tenant-Name", "Blue Team".parse().unwrap());
    // `open` checks that `joined` general (autojoin) then `joined` lobby (the backend's)
    // come right after the welcome.
    let client = Client::open(request, &["general".to_owned(), "lobby".to_owned()]).await;
    assert_eq!(client.welcome["user_id"], "u1", "{}", client.welcome);
    assert_eq!(
        client.welcome["data"],
        json!({"plan": "pro"}),
        "{}",
        client.welcome
    );
    assert_eq!(client.user, "u1");
    assert!(has_member(&hub, "lobby", &client).await);

    let local = match client.ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp.local_addr().unwrap(),
        _ => unreachable!("ws:// is plain TCP"),
    };
    let bodies = backend.bodies("/connect");
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let asked = &bodies[0];
    assert_eq!(asked["remote"], local.to_string(), "{asked}");
    assert_eq!(asked["query"], json!({"token": "abc"}), "{asked}");
    let headers = asked["headers"].as_object().expect("headers is an object");
    assert_eq!(headers["x-tenant-name"], "Blue Team", "{asked}");
    assert_eq!(headers["upgrade"], "websocket", "{asked}");
    assert!(
        headers.keys().all(|k| *k == k.to_lowercase()),
        "header names are lower-case: {asked}"
    );
}

#[tokio::test]
async fn a_refused_connect_answers_the_backends_status_and_body_before_the_upgrade() {
    let backend = Backend::start(|_| answer(401, json!({"error": "no"})));
    let hub = hub_with(ProxyConfig {
        connect_url: backend.url("/connect"),
        ..ProxyConfig::default()
    });
    let response = RawClient::http(hub.addr, &upgrade_request("/ws?token=bad")).await;
    assert_eq!(response.status, 401, "{response:?}");
    assert_eq!(response.json(), json!({"error": "no"}), "{response:?}");
    assert_eq!(backend.bodies("/connect").len(), 1);
    assert_eq!(hub.hub.connection_count(), 0);
}

#[tokio::test]
async fn a_connect_hook_that_is_down_answers_503() {
    let closed = free_port();
    let hub = hub_with(ProxyConfig {
        connect_url: Some(format!("http://127.0.0.1:{closed}/connect")),
        ..ProxyConfig::default()
    });
    let response = RawClient::http(hub.addr, &upgrade_request("/ws?user=ann")).await;
    assert_eq!(response.status, 503, "{response:?}");
    assert_eq!(
        response.json()["code"],
        "backend_unavailable",
        "{response:?}"
    );
    assert_eq!(hub.hub.connection_count(), 0);
}

#[tokio::test]
async fn a_slow_connect_hook_answers_503_at_the_timeout_and_lets_others_in_meanwhile() {
    let timeout = Duration::from_millis(300);
    let backend = Backend::start(|seen| {
        let answer = user_from_query(seen);
        match seen.body["query"]["speed"].as_str() {
            Some("slow") => answer.after(Duration::from_secs(3)),
            _ => answer,
        }
    });
    let hub = hub_with(ProxyConfig {
        connect_url: backend.url("/connect"),
        timeout,
        ..ProxyConfig::default()
    });
    let addr = hub.addr;
    let started = Instant::now();
    let slow = tokio::spawn(async move {
        let response = RawClient::http(addr, &upgrade_request("/ws?speed=slow&user=sam")).await;
        (response, Instant::now())
    });
    backend.wait_calls("/connect", 1).await;
    let request = format!("{}&speed=fast", ws_url(addr, Some("fay")))
        .into_client_request()
        .unwrap();
    let fast = Client::open(request, &general()).await;
    let fast_in = Instant::now();
    assert_eq!(fast.user, "fay");

    let (response, refused) = slow.await.unwrap();
    assert_eq!(response.status, 503, "{response:?}");
    assert!(
        fast_in < refused,
        "the fast client got in {:?} after the slow one was refused",
        fast_in - refused
    );
    let waited = refused - started;
    assert!(
        waited >= timeout && waited < Duration::from_secs(2),
        "refused after {waited:?}, proxy.timeout is {timeout:?}"
    );
    assert_eq!(hub.hub.connection_count(), 1);
}

// ---------------------------------------------------------------------------------------
// join, publish, rpc
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_join_hook_allows_or_refuses_a_join() {
    let backend = Backend::start(|seen| match seen.body["room"].as_str() {
        Some("vault") => answer(403, json!({"error": "members only"})),
        _ => answer(200, json!({})),
    });
    let hub = hub_with(ProxyConfig {
        join_url: backend.url("/join"),
        ..ProxyConfig::default()
    });
    let mut ann = hub.connect("ann").await;
    ann.join("open").await;
    assert!(has_member(&hub, "open", &ann).await);

    ann.send_json(&json!({"type": "join_room", "room": "vault"}))
        .await;
    expect_forbidden(&mut ann).await;
    assert!(!has_member(&hub, "vault", &ann).await);
    // Nothing joined on the quiet: the connection goes on, and no `joined` vault came.
    let before_pong = ann.ping_pong().await;
    assert!(
        !before_pong.iter().any(|m| m["room"] == "vault"),
        "{before_pong:?}"
    );

    let asked: Vec<Value> = backend
        .bodies("/join")
        .into_iter()
        .filter(|b| b["room"] == "open" || b["room"] == "vault")
        .collect();
    let conn = ann.id.to_string();
    assert_eq!(
        asked,
        [
            json!({"connection_id": conn, "user_id": "ann", "room": "open"}),
            json!({"connection_id": conn, "user_id": "ann", "room": "vault"}),
        ]
    );
}

#[tokio::test]
async fn the_publish_hook_allows_replaces_or_refuses_a_message() {
    let backend = Backend::start(|seen| match seen.body["message"].as_str() {
        Some("dirty") => answer(200, json!({"data": {"clean": true}})),
        Some("blocked") => answer(403, json!({})),
        _ => answer(200, json!({})),
    });
    let hub = hub_with(ProxyConfig {
        publish_url: backend.url("/publish"),
        ..ProxyConfig::default()
    });
    let mut ann = hub.connect("ann").await;
    let mut bob = hub.connect("bob").await;
    let chat = |m: &Value| m["type"] == "chat_message";

    ann.send_json(
        &json!({"type": "message", "room": "general", "message": "plain", "data": {"n": 1}}),
    )
    .await;
    for client in [&mut ann, &mut bob] {
        let m = client.expect("the plain message", chat).await;
        assert_eq!(
            (&m["room"], &m["user_id"], &m["message"], &m["data"]),
            (
                &json!("general"),
                &json!("ann"),
                &json!("plain"),
                &json!({"n": 1})
            ),
            "{m}"
        );
    }
    assert_eq!(
        backend.bodies("/publish")[0],
        json!({"connection_id": ann.id.to_string(), "user_id": "ann", "room": "general",
               "message": "plain", "data": {"n": 1}})
    );

    ann.send_json(
        &json!({"type": "message", "room": "general", "message": "dirty", "data": {"word": "@#!"}}),
    )
    .await;
    for client in [&mut ann, &mut bob] {
        let m = client.expect("the cleaned message", chat).await;
        assert_eq!(m["message"], "dirty", "{m}");
        assert_eq!(m["data"], json!({"clean": true}), "{m}");
    }

    ann.send_json(&json!({"type": "message", "room": "general", "message": "blocked"}))
        .await;
    expect_forbidden(&mut ann).await;
    let before = hub.barrier(&mut [&mut ann, &mut bob]).await;
    for seen in before {
        assert!(
            !seen.iter().any(chat),
            "the refused message went out: {seen:?}"
        );
    }
    assert_eq!(backend.bodies("/publish").len(), 3);
}

#[tokio::test]
async fn rpc_goes_to_the_backend_and_its_answer_or_failure_comes_back() {
    let backend = Backend::start(|seen| {
        let body = &seen.body;
        match body["method"].as_str() {
            Some("sum") => {
                let sum: i64 = body["data"]
                    .as_array()
                    .map(|xs| xs.iter().filter_map(Value::as_i64).sum())
                    .unwrap_or(0);
                answer(200, json!({"data": sum}))
            }
            Some("deny") => answer(403, json!({})),
            Some("boom") => answer(500, json!({})),
            Some("slow") => answer(200, json!({"data": 0})).after(Duration::from_secs(3)),
            _ => answer(404, json!({})),
        }
    });
    let hub = hub_with(ProxyConfig {
        rpc_url: backend.url("/rpc"),
        timeout: Duration::from_millis(500),
        ..ProxyConfig::default()
    });
    let mut ann = hub.connect("ann").await;

    ann.send_json(&json!({"type": "rpc", "id": "a1", "method": "sum", "data": [1, 2]}))
        .await;
    assert_eq!(
        next_answer(&mut ann).await,
        json!({"type": "rpc_result", "id": "a1", "data": 3})
    );
    assert_eq!(
        backend.bodies("/rpc"),
        [
            json!({"connection_id": ann.id.to_string(), "user_id": "ann", "id": "a1",
                "method": "sum", "data": [1, 2]})
        ]
    );

    ann.send_json(&json!({"type": "rpc", "id": 7, "method": "sum", "data": [3, 4]}))
        .await;
    assert_eq!(
        next_answer(&mut ann).await,
        json!({"type": "rpc_result", "id": 7, "data": 7})
    );
    assert_eq!(backend.bodies("/rpc")[1]["id"], 7);

    for (id, method, code) in [
        ("d", "deny", "forbidden"),
        ("b", "boom", "unavailable"),
        ("s", "slow", "timeout"),
    ] {
        ann.send_json(&json!({"type": "rpc", "id": id, "method": method, "data": null}))
            .await;
        let failed = next_answer(&mut ann).await;
        assert_eq!(
            (&failed["type"], &failed["id"], &failed["code"]),
            (&json!("rpc_error"), &json!(id), &json!(code)),
            "{method}: {failed}"
        );
    }

    ann.send_json(&json!({"type": "rpc", "method": "sum", "data": [1]}))
        .await;
    let malformed = next_answer(&mut ann).await;
    assert_eq!(
        (malformed["type"].as_str(), malformed["code"].as_str()),
        (Some("error"), Some("bad_request")),
        "{malformed}"
    );
    assert_eq!(
        backend.bodies("/rpc").len(),
        5,
        "a malformed rpc is not asked"
    );
}

#[tokio::test]
async fn without_an_rpc_url_rpc_is_an_unknown_type() {
    let backend = Backend::start(|_| answer(200, json!({"data": 1})));
    // Another hook on, so the proxy runs; just not rpc.
    let hub = hub_with(ProxyConfig {
        join_url: backend.url("/join"),
        ..ProxyConfig::default()
    });
    let mut ann = hub.connect("ann").await;
    ann.send_json(&json!({"type": "rpc", "id": "a1", "method": "sum", "data": [1, 2]}))
        .await;
    let unknown = next_answer(&mut ann).await;
    assert_eq!(
        (unknown["type"].as_str(), unknown["code"].as_str()),
        (Some("error"), Some("unknown_type")),
        "{unknown}"
    );
    assert!(backend.bodies("/rpc").is_empty());
}

// ---------------------------------------------------------------------------------------
// Order
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn messages_behind_a_slow_publish_keep_their_order() {
    let backend = Backend::start(|seen| match seen.body["message"].as_str() {
        Some("first") => answer(200, json!({})).after(Duration::from_millis(400)),
        _ => answer(200, json!({})),
    });
    let hub = hub_with(ProxyConfig {
        publish_url: backend.url("/publish"),
        ..ProxyConfig::default()
    });
    let mut ann = hub.connect_on_shard("ann", 0).await;
    let mut bob = hub.connect_on_shard("bob", 0).await;
    let mut cy = hub.connect_on_shard("cy", 1).await;

    ann.say("general", "first").await;
    ann.say("general", "second").await;
    ann.send_json(&json!({"type": "ping"})).await;

    let mut ann_saw = Vec::new();
    loop {
        let m = ann
            .expect("chat or pong", |m| {
                m["type"] == "chat_message" || m["type"] == "pong"
            })
            .await;
        let pong = m["type"] == "pong";
        ann_saw.push(m["message"].as_str().unwrap_or("pong").to_owned());
        if pong {
            break;
        }
    }
    assert_eq!(ann_saw, ["first", "second", "pong"]);
    for client in [&mut bob, &mut cy] {
        for text in ["first", "second"] {
            let m = client
                .expect("ann's messages", |m| m["type"] == "chat_message")
                .await;
            assert_eq!(m["message"], text, "{}: {m}", client.user);
        }
    }
    let asked: Vec<Value> = backend
        .bodies("/publish")
        .iter()
        .map(|b| b["message"].clone())
        .collect();
    assert_eq!(asked, [json!("first"), json!("second")]);
}

#[tokio::test]
async fn a_ping_in_the_upgrades_own_write_is_answered_after_the_welcome() {
    let backend = Backend::start(|seen| user_from_query(seen).after(Duration::from_millis(100)));
    let hub = hub_with(ProxyConfig {
        connect_url: backend.url("/connect"),
        ..ProxyConfig::default()
    });
    let mut raw = RawClient::connect(hub.addr).await;
    let mut bytes = upgrade_request("/ws?user=eve").into_bytes();
    bytes.extend(masked_json(&json!({"type": "ping"})));
    raw.write(&bytes).await;
    let head = raw.read_head().await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut kinds = Vec::new();
    loop {
        let m = raw.recv_json().await;
        let kind = m["type"].as_str().unwrap_or("?").to_owned();
        if kind == "welcome" {
            assert_eq!(m["user_id"], "eve", "{m}");
        }
        kinds.push(kind);
        if m["type"] == "pong" {
            break;
        }
    }
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("welcome"),
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "joined"), "{kinds:?}");
    assert_eq!(backend.bodies("/connect").len(), 1);
}

// ---------------------------------------------------------------------------------------
// Caps
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_upgrade_waiting_on_the_connect_hook_counts_under_the_ip_cap() {
    let backend = Backend::start(|seen| {
        let answer = user_from_query(seen);
        match seen.body["query"]["hold"].as_str() {
            Some(_) => answer.held(),
            None => answer,
        }
    });
    let hub = TestHub::start(HubConfig {
        proxy: ProxyConfig {
            connect_url: backend.url("/connect"),
            timeout: Duration::from_secs(10),
            ..ProxyConfig::default()
        },
        limits: LimitsConfig {
            connections_per_ip: Some(1),
            ..LimitsConfig::default()
        },
        ..config()
    });
    let addr = hub.addr;
    let first = tokio::spawn(async move {
        let mut raw = RawClient::connect(addr).await;
        let response = raw.exchange(&upgrade_request("/ws?user=one&hold=1")).await;
        (raw, response)
    });
    backend.wait_calls("/connect", 1).await;

    let second = RawClient::http(addr, &upgrade_request("/ws?user=two")).await;
    assert_eq!(second.status, 429, "{second:?}");
    assert_eq!(
        backend.bodies("/connect").len(),
        1,
        "a refused upgrade is not asked"
    );

    backend.release();
    let (mut raw, response) = first.await.unwrap();
    assert_eq!(response.status, 101, "{response:?}");
    let welcome = raw.recv_json().await;
    assert_eq!(
        (welcome["type"].as_str(), welcome["user_id"].as_str()),
        (Some("welcome"), Some("one")),
        "{welcome}"
    );
}

// ---------------------------------------------------------------------------------------
// The real binary: what operators read
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_binary_counts_hook_calls_in_metrics_and_stats() {
    let backend = Backend::start(|seen| match seen.body["room"].as_str() {
        Some("vault") => answer(403, json!({})),
        _ => answer(200, json!({})),
    });
    let join_url = backend.url("/join").unwrap();
    let (_server, addr) = Server::spawn(
        &["--shards", "2"],
        &[
            ("NEONEX_PROXY_JOIN_URL", join_url.as_str()),
            ("NEONEX_PROXY_TIMEOUT", "2s"),
        ],
    )
    .await;
    let mut ann = Client::connect(addr, Some("ann"), &general()).await;
    ann.join("a").await;
    ann.join("b").await;
    ann.send_json(&json!({"type": "join_room", "room": "vault"}))
        .await;
    assert_eq!(next_answer(&mut ann).await["code"], "forbidden");
    assert_eq!(backend.bodies("/join").len(), 3);

    let metrics = http_call(addr, "GET", "/metrics", "", "").await;
    assert_eq!(metrics.status, 200, "{metrics:?}");
    let scrape = Scrape::parse(metrics.body.lines().map(|l| Ok(l.to_owned())))
        .expect("the exposition format parses");
    let join = |s: &&prometheus_parse::Sample| s.labels.get("hook") == Some("join");
    let calls: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "neonex_proxy_calls_total")
        .filter(join)
        .map(|s| match s.value {
            Metric::Counter(v) | Metric::Untyped(v) => v,
            ref other => panic!("calls_total is not a counter: {other:?}"),
        })
        .collect();
    assert_eq!(calls, [3.0], "{}", metrics.body);
    assert!(
        metrics
            .body
            .contains("# TYPE neonex_proxy_duration_seconds histogram"),
        "{}",
        metrics.body
    );
    let histogram = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "neonex_proxy_duration_seconds")
        .find(join)
        .unwrap_or_else(|| panic!("no join histogram: {}", metrics.body));
    let Metric::Histogram(buckets) = &histogram.value else {
        panic!("not a histogram: {histogram:?}");
    };
    let last = buckets.last().expect("buckets");
    assert!(last.less_than.is_infinite(), "{buckets:?}");
    assert_eq!(last.count, 3.0, "{buckets:?}");
    assert!(
        buckets.windows(2).all(|w| w[0].count <= w[1].count),
        "{buckets:?}"
    );

    let stats = http_call(addr, "GET", "/stats", "", "").await;
    assert_eq!(stats.status, 200, "{stats:?}");
    let stats = stats.json();
    assert_eq!(stats["proxy"]["hooks"]["join"]["calls"], 3, "{stats}");
}
