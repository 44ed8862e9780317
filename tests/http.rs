//! The HTTP side: health, plain requests, refused upgrades, user id validation, and bytes
//! that follow the upgrade request in the same write.

mod common;

use common::*;
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
