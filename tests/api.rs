//! The HTTP API for backends: every route, its guard (API key, or loopback only), its
//! effect as real WebSocket clients see it, and its errors.

use std::time::Duration;

use neonex::config::ApiConfig;
use neonex::HubConfig;
use neonex_testkit::client::Client;
use neonex_testkit::http::{http_call, HttpResponse};
use neonex_testkit::hub::{config, connect_spread, TestHub};
use neonex_testkit::raw::RawClient;
use neonex_testkit::wait::blocking;
use serde_json::{json, Value};

const KEY: &str = "api-test-key";

fn keyed_hub() -> TestHub {
    TestHub::start(HubConfig {
        api: ApiConfig {
            key: Some(KEY.into()),
            max_body: 4096,
        },
        ..config()
    })
}

const BEARER: &str = "Authorization: Bearer api-test-key\r\n";

async fn call(h: &TestHub, method: &str, target: &str, body: &str) -> HttpResponse {
    http_call(h.addr, method, target, BEARER, body).await
}

fn assert_error(response: &HttpResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{response:?}");
    let body = response.json();
    assert_eq!(body["code"], code, "{response:?}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{response:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_the_key_by_bearer_or_header() {
    let h = keyed_hub();
    let none = http_call(h.addr, "GET", "/api/rooms", "", "").await;
    assert_error(&none, 401, "unauthorized");
    let wrong = http_call(h.addr, "GET", "/api/rooms", "X-API-Key: nope\r\n", "").await;
    assert_error(&wrong, 401, "unauthorized");
    let bearer = call(&h, "GET", "/api/rooms", "").await;
    assert_eq!(bearer.status, 200, "{bearer:?}");
    let header = http_call(
        h.addr,
        "GET",
        "/api/rooms",
        &format!("X-API-Key: {KEY}\r\n"),
        "",
    )
    .await;
    assert_eq!(header.status, 200, "{header:?}");
    // Health, stats and metrics need no key.
    for path in ["/health", "/stats", "/metrics"] {
        let r = http_call(h.addr, "GET", path, "", "").await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_only_loopback_clients_may_call() {
    // Reach the hub through a non-loopback address of this machine, if it has one.
    let h = TestHub::start(HubConfig { ..config() });
    let local = http_call(h.addr, "GET", "/api/rooms", "", "").await;
    assert_eq!(local.status, 200, "loopback callers need no key: {local:?}");

    let other = neonex::Hub::new(config()).unwrap();
    let addr = other.listen("0.0.0.0:0").unwrap();
    let outside_ip = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("10.255.255.1:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    if let Some(ip) = outside_ip {
        let target = std::net::SocketAddr::new(ip, addr.port());
        let r = http_call(target, "GET", "/api/rooms", "", "").await;
        assert_error(&r, 403, "forbidden");
    }
    blocking(move || other.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_every_connection_as_sent_and_counts_them() {
    let h = keyed_hub();
    let mut clients = connect_spread(&h, "b", 3).await;
    let body = r#"{"type":"notice","text":"maintenance at 5","n":[1,2]}"#;
    let r = call(&h, "POST", "/api/broadcast", body).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["queued"], clients.len());
    for c in &mut clients {
        let got = c.expect_type("notice").await;
        assert_eq!(got, serde_json::from_str::<Value>(body).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_broadcast_reaches_members_but_the_excepted_one() {
    let h = keyed_hub();
    let mut clients = connect_spread(&h, "r", 3).await;
    for c in clients.iter_mut() {
        c.join("news").await;
    }
    let mut outsider = h.connect("outsider").await;
    let skipped = clients[0].id;
    let r = call(
        &h,
        "POST",
        &format!("/api/rooms/news/broadcast?except={skipped}"),
        r#"{"type":"headline","id":7}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["queued"], clients.len() - 1);
    for c in clients.iter_mut().skip(1) {
        assert_eq!(c.expect_type("headline").await["id"], 7);
    }
    // Nothing for the excepted member nor the outsider: a barrier shows what they got.
    let mut watch: Vec<&mut Client> = vec![&mut clients[0], &mut outsider];
    for seen in h.barrier(&mut watch).await {
        assert!(seen.iter().all(|m| m["type"] != "headline"), "{seen:?}");
    }
    let missing = call(&h, "POST", "/api/rooms/nowhere/broadcast", "{}").await;
    assert_error(&missing, 404, "room_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_to_a_user_reaches_all_of_their_connections() {
    let h = keyed_hub();
    let mut ann: Vec<Client> = Vec::new();
    while ann.len() < 2 || ann.iter().all(|c| c.id.shard() == ann[0].id.shard()) {
        ann.push(h.connect("ann").await);
        if ann.len() > 12 {
            break;
        }
    }
    let mut bob = h.connect("bob").await;
    let r = call(
        &h,
        "POST",
        "/api/users/ann/send",
        r#"{"type":"dm","text":"hi"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["queued"], ann.len());
    for c in &mut ann {
        assert_eq!(c.expect_type("dm").await["text"], "hi");
    }
    let mut watch: Vec<&mut Client> = vec![&mut bob];
    assert!(h.barrier(&mut watch).await[0]
        .iter()
        .all(|m| m["type"] != "dm"));
    let nobody = call(&h, "POST", "/api/users/nobody/send", r#"{"x":1}"#).await;
    assert_eq!(nobody.json()["queued"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_can_be_listed_created_inspected_and_removed() {
    let h = keyed_hub();
    let created = call(&h, "PUT", "/api/rooms/lobby", "").await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.json()["room"]["name"], "lobby");
    let again = call(&h, "PUT", "/api/rooms/lobby", "").await;
    assert_eq!(
        (again.status, again.json()["created"].clone()),
        (200, json!(false))
    );

    let mut a = h.connect("a").await;
    let mut b = h.connect("b").await;
    a.join("lobby").await;
    b.join("lobby").await;
    let list = call(&h, "GET", "/api/rooms", "").await.json();
    let lobby = list["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "lobby")
        .cloned()
        .unwrap();
    assert_eq!(
        (lobby["members"].clone(), lobby["persistent"].clone()),
        (json!(2), json!(true))
    );

    let members = call(&h, "GET", "/api/rooms/lobby/members", "").await.json();
    let mut expected = vec![a.id.to_string(), b.id.to_string()];
    expected.sort_by_key(|id| id.parse::<neonex::ConnectionId>().unwrap());
    assert_eq!(members["members"], json!(expected));

    let removed = call(&h, "DELETE", "/api/rooms/lobby", "").await;
    assert_eq!(removed.status, 200, "{removed:?}");
    for c in [&mut a, &mut b] {
        let left = c.expect_type("left").await;
        assert_eq!(
            (left["room"].clone(), left["count"].clone()),
            (json!("lobby"), json!(0))
        );
    }
    assert!(h.hub.room("lobby").is_none());
    assert_error(
        &call(&h, "DELETE", "/api/rooms/lobby", "").await,
        404,
        "room_not_found",
    );
    assert_error(
        &call(&h, "GET", "/api/rooms/lobby/members", "").await,
        404,
        "room_not_found",
    );
    assert_error(
        &call(&h, "PUT", "/api/rooms/bad%20name", "").await,
        400,
        "bad_request",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_can_be_listed_and_closed_with_a_code() {
    let h = keyed_hub();
    let mut carl: Vec<Client> = Vec::new();
    for _ in 0..3 {
        carl.push(h.connect("carl").await);
    }
    let mut dana = h.connect("dana").await;
    let listed = call(&h, "GET", "/api/users/carl/connections", "")
        .await
        .json();
    let mut ids: Vec<String> = carl.iter().map(|c| c.id.to_string()).collect();
    ids.sort_by_key(|id| id.parse::<neonex::ConnectionId>().unwrap());
    assert_eq!(listed["connections"], json!(ids));

    // One connection, with a code of our own, whichever shard it is on.
    let first = carl.remove(0);
    let r = call(
        &h,
        "DELETE",
        &format!("/api/connections/{}?code=4001&reason=kicked", first.id),
        "",
    )
    .await;
    assert_eq!(
        (r.status, r.json()["disconnected"].clone()),
        (200, json!(1)),
        "{r:?}"
    );
    let mut first = first;
    assert_eq!(first.expect_close().await, (4001, "kicked".to_owned()));
    first.finish_close().await;

    // The rest of the user's, with the default 1008.
    let r = call(&h, "DELETE", "/api/users/carl/connections", "").await;
    assert_eq!(r.json()["disconnected"], 2, "{r:?}");
    for c in &mut carl {
        assert_eq!(c.expect_close().await.0, 1008);
    }
    dana.ping_pong().await;

    let unknown = call(&h, "DELETE", "/api/connections/0-999999", "").await;
    assert_error(&unknown, 404, "connection_not_found");
    let unknown = call(&h, "DELETE", "/api/connections/1-999999", "").await;
    assert_error(&unknown, 404, "connection_not_found");
    let bad = call(&h, "DELETE", "/api/connections/zzz", "").await;
    assert_error(&bad, 400, "bad_request");
    let bad_code = call(
        &h,
        "DELETE",
        &format!("/api/connections/{}?code=1006", dana.id),
        "",
    )
    .await;
    assert_error(&bad_code, 400, "bad_request");
    // 1010 asks the server for an extension: only a client may send it.
    let client_only = format!("/api/connections/{}?code=1010", dana.id);
    let client_only = call(&h, "DELETE", &client_only, "").await;
    assert_error(&client_only, 400, "bad_request");
    dana.ping_pong().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors() {
    let h = keyed_hub();
    assert_error(
        &call(&h, "POST", "/api/broadcast", "{not json").await,
        400,
        "invalid_json",
    );
    assert_error(
        &call(&h, "GET", "/api/broadcast", "").await,
        405,
        "method_not_allowed",
    );
    assert_error(
        &call(&h, "GET", "/api/everything", "").await,
        404,
        "not_found",
    );
    // The prefix is taken once: this is no route, not `/api/rooms`.
    assert_error(
        &call(&h, "GET", "/api//api/rooms", "").await,
        404,
        "not_found",
    );
    assert_error(
        &call(&h, "GET", "/api/rooms/%FF%FE/members", "").await,
        400,
        "bad_request",
    );
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000));
    let too_big = call(&h, "POST", "/api/broadcast", &big).await;
    assert_eq!(too_big.status, 413, "{too_big:?}");
    let chunked = RawClient::http(
        h.addr,
        &format!("POST /api/broadcast HTTP/1.1\r\nHost: x\r\n{BEARER}Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"),
    )
    .await;
    assert_eq!(chunked.status, 411, "{chunked:?}");
    // A body that arrives after `Expect: 100-continue` is awaited, not lost.
    let mut raw = RawClient::connect(h.addr).await;
    raw.write(
        format!("POST /api/broadcast HTTP/1.1\r\nHost: x\r\n{BEARER}Content-Length: 2\r\nExpect: 100-continue\r\n\r\n")
            .as_bytes(),
    )
    .await;
    let interim = raw.read_head().await;
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim:?}");
    raw.write(b"{}").await;
    let final_head = raw.read_head().await;
    assert!(final_head.starts_with("HTTP/1.1 200"), "{final_head:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_disconnect_counts_only_the_connections_it_closed() {
    // write_timeout bounds how long a closing connection waits for the client's close
    // reply; a long one keeps the unanswering connection below in the hub (and in the
    // user's list) for the whole test.
    let h = TestHub::start(HubConfig {
        write_timeout: Duration::from_secs(30),
        api: ApiConfig {
            key: Some(KEY.into()),
            max_body: 4096,
        },
        ..config()
    });
    let mut mute = RawClient::upgraded(h.addr, "/ws?user=erin").await;
    let welcome = mute.recv_json().await;
    let mute_id = welcome["connection_id"].as_str().unwrap().to_owned();
    let mut open = h.connect("erin").await;

    // The raw client never answers the close frame, so its connection stays closing.
    let r = call(&h, "DELETE", &format!("/api/connections/{mute_id}"), "").await;
    assert_eq!(r.json()["disconnected"], 1, "{r:?}");
    let listed = call(&h, "GET", "/api/users/erin/connections", "")
        .await
        .json();
    assert_eq!(
        listed["connections"].as_array().map(Vec::len),
        Some(2),
        "the closing connection is still listed: {listed}"
    );

    let r = call(&h, "DELETE", "/api/users/erin/connections", "").await;
    assert_eq!(
        r.json()["disconnected"],
        1,
        "only the open one was closed: {r:?}"
    );
    assert_eq!(open.expect_close().await.0, 1008);
    let again = call(&h, "DELETE", &format!("/api/connections/{mute_id}"), "").await;
    assert_error(&again, 404, "connection_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_no_send_queue_could_hold_is_refused_and_cuts_nobody() {
    // A broadcast goes out as one frame: one bigger than a connection's send queue would
    // close every reader as a slow consumer. api.max_body (1 MiB) allows it, the 64 KiB
    // queue does not.
    let h = TestHub::start(HubConfig {
        max_message_size: 16 * 1024,
        send_queue: neonex::SendQueueLimits {
            max_bytes: 64 * 1024,
            max_frames: 1024,
        },
        api: ApiConfig {
            key: Some(KEY.into()),
            max_body: 1024 * 1024,
        },
        ..config()
    });
    let mut reader = h.connect("reader").await;
    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(100 * 1024));
    let r = call(&h, "POST", "/api/broadcast", &body).await;
    assert_error(&r, 413, "body_too_large");
    let fits = format!(r#"{{"pad":"{}"}}"#, "x".repeat(60 * 1024));
    let r = call(&h, "POST", "/api/broadcast", &fits).await;
    assert_eq!(r.json()["queued"], 1, "{r:?}");
    let got = reader
        .expect("the broadcast that fits", |m| m["pad"].is_string())
        .await;
    assert_eq!(got["pad"].as_str().map(str::len), Some(60 * 1024));
    reader.ping_pong().await;
}
