//! The HTTP side: health, plain requests, refused upgrades, user id validation, and bytes
//! that follow the upgrade request in the same write.

use neonex_testkit::frames::masked_json;
use neonex_testkit::http::{upgrade_request, upgrade_request_with, WS_ACCEPT};
use neonex_testkit::hub::{config, TestHub};
use neonex_testkit::raw::RawClient;
use neonex_testkit::wait::TIMEOUT;
use serde_json::{json, Value};

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

#[tokio::test]
async fn health_answers_200() {
    let h = TestHub::default_hub();
    let response = RawClient::http(h.addr, &get("/health")).await;
    assert_eq!(response.status, 200, "{response:?}");
    let body: Value = serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("/health body is not JSON ({e}): {response:?}"));
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn plain_get_of_the_websocket_path_answers_426() {
    let h = TestHub::default_hub();
    let response = RawClient::http(h.addr, &get("/ws")).await;
    assert_eq!(response.status, 426, "{response:?}");
    assert_eq!(
        response.header("upgrade").map(|v| v.to_ascii_lowercase()),
        Some("websocket".to_owned()),
        "{response:?}"
    );
    let response = RawClient::http(h.addr, &get("/ws?user=alice")).await;
    assert_eq!(response.status, 426, "{response:?}");
    assert_eq!(h.hub.connection_count(), 0);
}

#[tokio::test]
async fn unknown_paths_answer_404() {
    let h = TestHub::default_hub();
    for path in ["/nope", "/", "/ws/extra", "/wsx"] {
        let response = RawClient::http(h.addr, &get(path)).await;
        assert_eq!(response.status, 404, "GET {path}: {response:?}");
    }
    // An upgrade request to another path is refused too.
    let response = RawClient::http(h.addr, &upgrade_request("/nope")).await;
    assert_eq!(response.status, 404, "upgrade of /nope: {response:?}");
    assert_eq!(h.hub.connection_count(), 0);
}

#[tokio::test]
async fn an_upgrade_with_a_bad_key_answers_400() {
    let h = TestHub::default_hub();
    let with_key = |key_header: &str| {
        format!(
            "GET /ws?user=k HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{key_header}Sec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    for (what, header) in [
        ("a key of 5 bytes", "Sec-WebSocket-Key: c2hvcnQ=\r\n"),
        (
            "a key that is not base64",
            "Sec-WebSocket-Key: !!!not base64!!!\r\n",
        ),
        ("an empty key", "Sec-WebSocket-Key: \r\n"),
        ("no key", ""),
    ] {
        let response = RawClient::http(h.addr, &with_key(header)).await;
        assert_eq!(response.status, 400, "upgrade with {what}: {response:?}");
    }
    assert_eq!(
        h.hub.connection_count(),
        0,
        "a refused upgrade was registered"
    );
}

#[tokio::test]
async fn user_ids_longer_than_128_bytes_answer_400() {
    let h = TestHub::default_hub();
    let too_long = "u".repeat(129);
    let response = RawClient::http(h.addr, &upgrade_request(&format!("/ws?user={too_long}"))).await;
    assert_eq!(response.status, 400, "user of 129 bytes: {response:?}");
    let response = RawClient::http(h.addr, &upgrade_request("/ws?user=")).await;
    assert_eq!(response.status, 400, "empty user: {response:?}");
    // 129 bytes once percent-decoded.
    let encoded = format!("/ws?user={}%20", "u".repeat(128));
    let response = RawClient::http(h.addr, &upgrade_request(&encoded)).await;
    assert_eq!(
        response.status, 400,
        "user of 129 decoded bytes: {response:?}"
    );
    assert_eq!(h.hub.connection_count(), 0);
    assert_eq!(h.hub.user_count(), 0);

    // 128 bytes is fine.
    let longest = "u".repeat(128);
    let client = h.connect(&longest).await;
    assert_eq!(client.user, longest);
    assert_eq!(h.hub.connection_count(), 1);
}

#[tokio::test]
async fn frames_sent_with_the_upgrade_request_are_not_lost() {
    let h = TestHub::default_hub();
    let mut raw = RawClient::connect(h.addr).await;
    let mut bytes = upgrade_request("/ws?user=eager").into_bytes();
    bytes.extend(masked_json(&json!({"type": "ping"})));
    bytes.extend(masked_json(
        &json!({"type": "message", "room": "general", "message": "early"}),
    ));
    raw.write(&bytes).await;
    let head = raw.read_head().await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains(WS_ACCEPT), "{head}");
    let welcome = raw.recv_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["user_id"], "eager");
    let joined = raw.recv_json().await;
    assert_eq!(
        joined,
        json!({"type": "joined", "room": "general", "count": 1})
    );
    let pong = raw.recv_json().await;
    assert_eq!(pong, json!({"type": "pong"}), "the early ping was lost");
    let chat = raw.recv_json().await;
    assert_eq!(chat["type"], "chat_message", "{chat}");
    assert_eq!(chat["message"], "early");
    assert_eq!(chat["user_id"], "eager");
}

#[tokio::test]
async fn an_upgrade_request_split_over_writes_is_served() {
    let h = TestHub::default_hub();
    let mut raw = RawClient::connect(h.addr).await;
    let request = upgrade_request("/ws?user=slowpoke");
    let (first, rest) = request.split_at(20);
    raw.write(first.as_bytes()).await;
    // Wait until the hub has accepted the socket, so the pieces arrive as two reads
    // more often than not; correctness does not depend on it.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    raw.write(rest.as_bytes()).await;
    let head = raw.read_head().await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let welcome = raw.recv_json().await;
    assert_eq!(welcome["user_id"], "slowpoke");
}

const API_KEY: &str = "http-test-key";

/// A hub whose API needs a key, and whose handshake timeout is far past the test's
/// waits: an answer that only comes when the handshake times out fails the test.
fn patient_keyed_hub() -> TestHub {
    TestHub::start(neonex::HubConfig {
        api: neonex::config::ApiConfig {
            key: Some(API_KEY.into()),
            ..Default::default()
        },
        handshake_timeout: std::time::Duration::from_secs(120),
        ..config()
    })
}

/// Sends a request head and nothing after it, and returns the status line and the body
/// of the answer, which must come (and the connection end) within the test timeout.
async fn answer_to_head_alone(h: &TestHub, head: &str) -> (String, Value) {
    let mut raw = RawClient::connect(h.addr).await;
    raw.write(head.as_bytes()).await;
    let answer = raw.read_head().await;
    assert!(
        !answer.starts_with("HTTP/1.1 100 "),
        "the hub asked for the body: {answer:?}"
    );
    let (body, _end) = raw
        .read_until_eof(TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("after {answer:?}: {e}"));
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("the body of {answer:?} is not JSON ({e})"));
    (answer.lines().next().unwrap_or_default().to_owned(), body)
}

/// The body announced by the calls below: within `api.max_body`, so only the key can
/// stop the hub from waiting for it.
const MEGABYTE: usize = 1_000_000;

#[tokio::test]
async fn a_call_with_a_wrong_key_that_expects_100_continue_is_refused_before_its_body() {
    let h = patient_keyed_hub();
    let head = format!(
        "POST /api/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nContent-Type: application/json\r\nContent-Length: {MEGABYTE}\r\nExpect: 100-continue\r\n\r\n"
    );
    let (status, body) = answer_to_head_alone(&h, &head).await;
    assert!(status.starts_with("HTTP/1.1 401 "), "{status:?} {body}");
    assert_eq!(body["code"], "unauthorized", "{body}");
}

#[tokio::test]
async fn a_call_with_a_wrong_key_is_refused_without_waiting_for_its_body() {
    let h = patient_keyed_hub();
    for credentials in ["X-API-Key: wrong\r\n", ""] {
        let head = format!(
            "POST /api/broadcast HTTP/1.1\r\nHost: x\r\n{credentials}Content-Length: {MEGABYTE}\r\n\r\n"
        );
        let (status, body) = answer_to_head_alone(&h, &head).await;
        assert!(
            status.starts_with("HTTP/1.1 401 "),
            "with {credentials:?}: {status:?} {body}"
        );
        assert_eq!(body["code"], "unauthorized", "{body}");
    }
}

#[tokio::test]
async fn requests_outside_the_api_that_announce_a_body_answer_400_at_once() {
    let h = patient_keyed_hub();
    let upgrade =
        upgrade_request("/ws?user=x").replacen("\r\n\r\n", "\r\nContent-Length: 10\r\n\r\n", 1);
    let (status, body) = answer_to_head_alone(&h, &upgrade).await;
    assert!(
        status.starts_with("HTTP/1.1 400 "),
        "upgrade: {status:?} {body}"
    );
    assert_eq!(body["code"], "bad_request", "{body}");
    assert_eq!(h.hub.connection_count(), 0);

    let health = "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n";
    let (status, body) = answer_to_head_alone(&h, health).await;
    assert!(
        status.starts_with("HTTP/1.1 400 "),
        "/health: {status:?} {body}"
    );
    // The body sent along does not change the answer.
    let response = RawClient::http(h.addr, &format!("{health}hello")).await;
    assert_eq!(response.status, 400, "{response:?}");
    let chunked = "GET /stats HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let (status, body) = answer_to_head_alone(&h, chunked).await;
    assert!(
        status.starts_with("HTTP/1.1 400 "),
        "chunked: {status:?} {body}"
    );

    // An empty body is no body.
    let empty = "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
    let response = RawClient::http(h.addr, empty).await;
    assert_eq!(response.status, 200, "{response:?}");
}

#[tokio::test]
async fn a_call_with_the_key_gets_100_continue_and_its_body_may_come_in_pieces() {
    let h = patient_keyed_hub();
    let mut listener = h.connect("listener").await;
    let message = json!({"pad": "p".repeat(100_000)});
    let body = message.to_string();
    let mut raw = RawClient::connect(h.addr).await;
    raw.write(
        format!(
            "POST /api/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    let interim = raw.read_head().await;
    assert!(interim.starts_with("HTTP/1.1 100 "), "{interim:?}");
    for piece in body.as_bytes().chunks(30_000) {
        raw.write(piece).await;
        // Pieces apart arrive as separate reads more often than not.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let answer = raw.read_head().await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:?}");
    listener.expect("the broadcast", |m| *m == message).await;
}

/// Connects with a real client offering `offered` and returns the subprotocol answered.
async fn subprotocol_answered(h: &TestHub, offered: &str) -> Option<String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = h.url(Some("proto")).into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", offered.parse().unwrap());
    let (_ws, response) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request))
        .await
        .expect("connect timed out")
        .unwrap_or_else(|e| panic!("offering {offered:?}: {e}"));
    response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn the_neonex_subprotocol_is_answered_when_offered_alone_or_among_others() {
    let h = TestHub::default_hub();
    for offered in [
        "neonex.v1",
        "chat, neonex.v1",
        "graphql-ws, neonex.v1, chat",
    ] {
        assert_eq!(
            subprotocol_answered(&h, offered).await.as_deref(),
            Some("neonex.v1"),
            "offered {offered:?}"
        );
    }
}

#[tokio::test]
async fn offers_of_only_unknown_subprotocols_are_answered_without_the_header() {
    let h = TestHub::default_hub();
    let headers = "Sec-WebSocket-Protocol: chat, superchat\r\n";
    let mut raw = RawClient::connect(h.addr).await;
    let response = raw
        .exchange(&upgrade_request_with("/ws?user=picky", headers))
        .await;
    assert_eq!(response.status, 101, "{response:?}");
    assert_eq!(
        response.header("sec-websocket-protocol"),
        None,
        "{response:?}"
    );
    assert_eq!(raw.recv_json().await["type"], "welcome");
    // Without any offer, no header either.
    let mut plain = RawClient::connect(h.addr).await;
    let response = plain.exchange(&upgrade_request("/ws?user=plain")).await;
    assert_eq!(
        response.header("sec-websocket-protocol"),
        None,
        "{response:?}"
    );
}

#[tokio::test]
async fn subprotocols_come_from_the_configuration() {
    let h = TestHub::start(neonex::HubConfig {
        subprotocols: vec!["chat.v2".into()],
        ..config()
    });
    assert_eq!(
        subprotocol_answered(&h, "neonex.v1, chat.v2")
            .await
            .as_deref(),
        Some("chat.v2")
    );
}

#[tokio::test]
async fn an_upgrade_in_absolute_form_is_served() {
    let h = TestHub::default_hub();
    let target = format!("http://{}/ws?user=absolute", h.addr);
    let mut raw = RawClient::connect(h.addr).await;
    let response = raw.exchange(&upgrade_request(&target)).await;
    assert_eq!(response.status, 101, "{response:?}");
    let welcome = raw.recv_json().await;
    assert_eq!(welcome["user_id"], "absolute", "{welcome}");
    let health = RawClient::http(h.addr, &get(&format!("http://{}/health", h.addr))).await;
    assert_eq!(health.status, 200, "{health:?}");
}

#[tokio::test]
async fn an_http_1_0_upgrade_answers_400() {
    let h = TestHub::default_hub();
    let request = upgrade_request("/ws?user=old").replace("HTTP/1.1", "HTTP/1.0");
    let response = RawClient::http(h.addr, &request).await;
    assert_eq!(response.status, 400, "{response:?}");
    assert!(response.body.contains("HTTP/1.1"), "{response:?}");
    assert_eq!(h.hub.connection_count(), 0);
}

#[tokio::test]
async fn every_refusal_has_one_shape_with_a_machine_code() {
    let h = TestHub::start(neonex::HubConfig {
        allowed_origins: vec!["https://app.example.com".into()],
        ..config()
    });
    let bad_version = upgrade_request("/ws?user=v").replace("Version: 13", "Version: 8");
    let cases = [
        (bad_version, 400, "bad_request"),
        (
            upgrade_request_with("/ws?user=o", "Origin: https://evil.example\r\n"),
            403,
            "origin_not_allowed",
        ),
        (get("/nowhere"), 404, "not_found"),
        (
            "POST /health HTTP/1.1\r\nHost: localhost\r\n\r\n".to_owned(),
            405,
            "method_not_allowed",
        ),
    ];
    for (request, status, code) in cases {
        let response = RawClient::http(h.addr, &request).await;
        assert_eq!(response.status, status, "{response:?}");
        let body = response.json();
        assert_eq!(body["code"], code, "{body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    assert_eq!(h.hub.connection_count(), 0);
}
