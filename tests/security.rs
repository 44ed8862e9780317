//! Who may connect and how much they may do: JWT authentication, the origin allow-list,
//! rate limits, room and connection caps, handshake hardening, and a bug in one
//! connection's handling contained to that connection. Every refusal is checked for its
//! exact status or close code, and for leaving a well-behaved client on the same hub
//! untouched.

use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use neonex::config::{AuthConfig, LimitsConfig};
use neonex::HubConfig;
use neonex_testkit::client::Client;
use neonex_testkit::clock::now_secs;
use neonex_testkit::http::{HttpResponse, WS_KEY};
use neonex_testkit::hub::{config, TestHub};
use neonex_testkit::raw::{End, RawClient};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "test-secret-for-hs256";

fn hs256(claims: Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: Value) -> String {
    encode(&Header::new(alg), &claims, key).unwrap()
}

fn valid_claims(sub: Value) -> Value {
    json!({"sub": sub, "exp": now_secs() + 300})
}

fn auth_hub(auth: AuthConfig) -> TestHub {
    TestHub::start(HubConfig { auth, ..config() })
}

fn hs256_auth() -> AuthConfig {
    AuthConfig {
        jwt_secret: Some(SECRET.into()),
        leeway: Duration::from_secs(5),
        ..AuthConfig::default()
    }
}

/// A client already connected, in room `watch` with a publisher, that must keep receiving
/// whatever the other tests do to the hub.
struct Bystander {
    listener: Client,
    publisher: Client,
    sent: usize,
}

impl Bystander {
    async fn start(h: &TestHub, listener: Client, publisher: Client) -> Bystander {
        let mut b = Bystander {
            listener,
            publisher,
            sent: 0,
        };
        b.listener.join("watch").await;
        b.publisher.join("watch").await;
        b.listener.expect_type("user_joined").await;
        let _ = h;
        b
    }

    /// Publishes one message and checks the listener gets it.
    async fn still_served(&mut self) {
        let text = format!("still-here-{}", self.sent);
        self.sent += 1;
        self.publisher.say("watch", &text).await;
        let got = self
            .listener
            .expect("the bystander's chat message", |m| {
                m["type"] == "chat_message" && m["message"] == text.as_str()
            })
            .await;
        assert_eq!(got["room"], "watch");
    }
}

/// The status a raw upgrade of `target` with extra `headers` gets.
async fn upgrade_status(h: &TestHub, target: &str, headers: &str) -> HttpResponse {
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    );
    RawClient::http(h.addr, &request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_hs256_token_by_query_or_bearer_header_names_the_user() {
    let h = auth_hub(hs256_auth());
    let token = hs256(valid_claims(json!("ann")));
    let url = format!("ws://{}/ws?token={token}&user=mallory", h.addr);
    let by_query = Client::open(url.into_client_request().unwrap(), &["general".into()]).await;
    assert_eq!(
        by_query.user, "ann",
        "the token, not ?user=, names the user"
    );

    let mut request = format!("ws://{}/ws", h.addr).into_client_request().unwrap();
    let numeric = hs256(valid_claims(json!(42)));
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {numeric}").parse().unwrap(),
    );
    let by_header = Client::open(request, &["general".into()]).await;
    assert_eq!(by_header.user, "42", "a numeric sub is a user id too");
    h.wait_connections(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_gets_401_before_the_upgrade_and_registers_nothing() {
    let h = auth_hub(hs256_auth());
    let good = |sub: &str| {
        let url = format!(
            "ws://{}/ws?token={}",
            h.addr,
            hs256(valid_claims(json!(sub)))
        );
        url.into_client_request().unwrap()
    };
    let autojoin = ["general".to_string()];
    let listener = Client::open(good("listener"), &autojoin).await;
    let publisher = Client::open(good("publisher"), &autojoin).await;
    let mut bystander = Bystander::start(&h, listener, publisher).await;

    let now = now_secs();
    let rsa = EncodingKey::from_rsa_pem(include_bytes!("keys/rsa_private.pem")).unwrap();
    let wrong_secret = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"not-the-secret"),
        valid_claims(json!("eve")),
    );
    let alg_none = {
        let b64 = |v: &Value| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&valid_claims(json!("eve")))
        )
    };
    let cases: Vec<(&str, String)> = vec![
        ("no token at all", String::new()),
        ("garbage", "token=not.a.jwt".into()),
        ("a bad signature", format!("token={wrong_secret}")),
        ("alg none", format!("token={alg_none}")),
        (
            "another algorithm (RS256 when HS256 is configured)",
            format!(
                "token={}",
                sign(Algorithm::RS256, &rsa, valid_claims(json!("eve")))
            ),
        ),
        (
            "an expired token",
            format!("token={}", hs256(json!({"sub": "eve", "exp": now - 60}))),
        ),
        (
            "a token not valid yet",
            format!(
                "token={}",
                hs256(json!({"sub": "eve", "exp": now + 600, "nbf": now + 300}))
            ),
        ),
        (
            "a token without exp",
            format!("token={}", hs256(json!({"sub": "eve"}))),
        ),
        (
            "a token without sub",
            format!("token={}", hs256(json!({"exp": now + 60}))),
        ),
        (
            "a sub that is not a user id",
            format!("token={}", hs256(valid_claims(json!({"a": 1})))),
        ),
        ("only ?user=", "user=eve".into()),
    ];
    for (what, query) in &cases {
        let response = upgrade_status(&h, &format!("/ws?{query}"), "").await;
        assert_eq!(response.status, 401, "{what}: {response:?}");
        assert!(
            response.body.contains("token"),
            "{what}: the body should say what is wrong: {response:?}"
        );
    }
    let bearer_garbage = upgrade_status(&h, "/ws", "Authorization: Bearer x.y.z\r\n").await;
    assert_eq!(bearer_garbage.status, 401, "{bearer_garbage:?}");

    assert_eq!(h.hub.connection_count(), 2, "nothing was registered");
    assert_eq!(h.hub.user_count(), 2);
    bystander.still_served().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_es256_tokens_are_checked_with_a_pem_public_key() {
    for (alg, public, private) in [
        (
            Algorithm::RS256,
            &include_bytes!("keys/rsa_public.pem")[..],
            EncodingKey::from_rsa_pem(include_bytes!("keys/rsa_private.pem")).unwrap(),
        ),
        (
            Algorithm::ES256,
            &include_bytes!("keys/ec_public.pem")[..],
            EncodingKey::from_ec_pem(include_bytes!("keys/ec_private.pem")).unwrap(),
        ),
    ] {
        let h = auth_hub(AuthConfig {
            jwt_public_key: Some(String::from_utf8(public.to_vec()).unwrap()),
            leeway: Duration::from_secs(5),
            ..AuthConfig::default()
        });
        let token = sign(alg, &private, valid_claims(json!("kim")));
        let url = format!("ws://{}/ws?token={token}", h.addr);
        let client = Client::open(url.into_client_request().unwrap(), &["general".into()]).await;
        assert_eq!(client.user, "kim", "{alg:?}");
        // An HS256 token signed with the public key's text must not pass (key confusion).
        let confused = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(public),
            valid_claims(json!("kim")),
        );
        let response = upgrade_status(&h, &format!("/ws?token={confused}"), "").await;
        assert_eq!(
            response.status, 401,
            "{alg:?} hub, HS256 token: {response:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audience_issuer_and_leeway() {
    let h = auth_hub(AuthConfig {
        audience: Some("neonex".into()),
        issuer: Some("https://auth.test".into()),
        ..hs256_auth()
    });
    let now = now_secs();
    let claims =
        |aud: &str, iss: &str, exp: i64| json!({"sub": "lee", "aud": aud, "iss": iss, "exp": exp});
    let status = |claims: Value| {
        let h = &h;
        async move {
            let token = hs256(claims);
            let response = upgrade_status(h, &format!("/ws?token={token}"), "").await;
            response.status
        }
    };
    assert_eq!(
        status(claims("neonex", "https://auth.test", now + 60)).await,
        101
    );
    assert_eq!(
        status(claims("neonex", "https://auth.test", now - 2)).await,
        101,
        "2 s past exp is inside the 5 s leeway"
    );
    assert_eq!(
        status(claims("neonex", "https://auth.test", now - 30)).await,
        401
    );
    assert_eq!(
        status(claims("other", "https://auth.test", now + 60)).await,
        401
    );
    assert_eq!(
        status(claims("neonex", "https://evil.test", now + 60)).await,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_origins_may_connect() {
    let h = TestHub::start(HubConfig {
        allowed_origins: vec!["https://app.example.com".into(), "*.example.org".into()],
        ..config()
    });
    let mut bystander = Bystander::start(
        &h,
        h.connect("listener").await,
        h.connect("publisher").await,
    )
    .await;
    for (origin, expected) in [
        ("https://app.example.com", 101),
        ("https://chat.example.org", 101),
        ("http://a.b.example.org:8080", 101),
        ("https://evil.example.com", 403),
        ("https://app.example.com.evil.io", 403),
        ("https://example.org", 403),
        ("null", 403),
    ] {
        let response = upgrade_status(&h, "/ws?user=o", &format!("Origin: {origin}\r\n")).await;
        assert_eq!(response.status, expected, "Origin: {origin}: {response:?}");
    }
    let no_origin = upgrade_status(&h, "/ws?user=o", "").await;
    assert_eq!(
        no_origin.status, 101,
        "clients that are not browsers send no Origin"
    );
    bystander.still_served().await;
}

fn limited(limits: LimitsConfig) -> TestHub {
    TestHub::start(HubConfig { limits, ..config() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_the_rate_get_rate_limited_and_the_connection_lives() {
    let h = limited(LimitsConfig {
        messages_per_second: 2,
        burst: 5,
        ..LimitsConfig::default()
    });
    let mut c = h.connect("fast").await;
    for _ in 0..8 {
        c.send_json(&json!({"type": "ping"})).await;
    }
    let mut answers = Vec::new();
    while answers.len() < 8 {
        let m = c.recv_json().await;
        match m["type"].as_str() {
            Some("pong") => answers.push("pong".to_owned()),
            Some("error") => {
                assert_eq!(m["code"], "rate_limited", "{m}");
                assert_eq!(m["error"], "Rate limit exceeded", "{m}");
                answers.push("rate_limited".to_owned());
            }
            _ => {}
        }
    }
    // The bucket held 5; the other 3 came faster than 2 per second.
    let pongs = answers.iter().filter(|a| *a == "pong").count();
    assert!(
        (5..=6).contains(&pongs),
        "expected the burst of 5 (maybe one refilled) to pass: {answers:?}"
    );
    assert_eq!(&answers[..5], &["pong"; 5], "{answers:?}");
    // A token comes back after half a second.
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.ping_pong().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_abuse_is_closed_with_1008_and_others_are_unaffected() {
    let h = limited(LimitsConfig {
        messages_per_second: 5,
        burst: 5,
        abuse_close_after: Duration::from_millis(800),
        ..LimitsConfig::default()
    });
    let mut bystander = Bystander::start(
        &h,
        h.connect("listener").await,
        h.connect("publisher").await,
    )
    .await;
    let abuser = h.connect("abuser").await;
    let id = abuser.id;
    let (mut sink, mut stream) = futures_util::StreamExt::split(abuser.ws);
    let hammer = tokio::spawn(async move {
        use futures_util::SinkExt;
        let ping = tokio_tungstenite::tungstenite::Message::text(r#"{"type":"ping"}"#);
        for _ in 0..4000 {
            if sink.send(ping.clone()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let code = loop {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => break u16::from(frame.code),
            Ok(Some(Ok(_))) => continue,
            other => panic!("the abuser was not closed with a close frame: {other:?}"),
        }
    };
    assert_eq!(code, 1008);
    hammer.abort();
    // The client hangs up; the server then forgets the connection.
    let _ = hammer.await;
    drop(stream);
    h.wait_gone(id).await;
    bystander.still_served().await;
}

#[tokio::test]
async fn a_connection_may_be_in_at_most_rooms_per_connection_rooms() {
    let h = limited(LimitsConfig {
        rooms_per_connection: 3,
        ..LimitsConfig::default()
    });
    let mut c = h.connect("roomy").await;
    // `general` (auto-joined) is the first.
    assert_eq!(c.join("a").await, 1);
    assert_eq!(c.join("b").await, 1);
    c.send_json(&json!({"type": "join_room", "room": "c"}))
        .await;
    let refused = c.expect_type("error").await;
    assert_eq!(refused["code"], "limit_exceeded", "{refused}");
    assert!(!h.hub.room_has_member("c", c.id));
    c.leave("a").await;
    assert_eq!(c.join("c").await, 1, "leaving a room frees a place");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_answer_503_and_429_with_a_clear_body() {
    // In total.
    let h = limited(LimitsConfig {
        max_connections: Some(2),
        ..LimitsConfig::default()
    });
    let first = h.connect("a").await;
    let _second = h.connect("b").await;
    let refused = upgrade_status(&h, "/ws?user=c", "").await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(refused.body.contains("connection limit"), "{refused:?}");
    assert_eq!(h.hub.connection_count(), 2);
    let id = first.id;
    first.close().await;
    h.wait_gone(id).await;
    h.wait_connections(1).await;
    let _third = h.connect("c").await;

    // Per user.
    let h = limited(LimitsConfig {
        connections_per_user: Some(2),
        ..LimitsConfig::default()
    });
    let _a1 = h.connect("ann").await;
    let _a2 = h.connect("ann").await;
    let refused = upgrade_status(&h, "/ws?user=ann", "").await;
    assert_eq!(refused.status, 429, "{refused:?}");
    assert!(refused.body.contains("this user"), "{refused:?}");
    let _bob = h.connect("bob").await;
    assert_eq!(h.hub.user_connections("ann").len(), 2);

    // Per IP (every test client comes from 127.0.0.1).
    let h = limited(LimitsConfig {
        connections_per_ip: Some(2),
        ..LimitsConfig::default()
    });
    let mut bystander = Bystander::start(&h, h.connect("x").await, h.connect("y").await).await;
    let refused = upgrade_status(&h, "/ws?user=z", "").await;
    assert_eq!(refused.status, 429, "{refused:?}");
    assert!(refused.body.contains("this address"), "{refused:?}");
    assert_eq!(h.hub.connection_count(), 2);
    bystander.still_served().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_oversize_and_malformed_handshakes_are_refused() {
    let h = TestHub::start(HubConfig {
        handshake_timeout: Duration::from_millis(300),
        ..config()
    });
    let mut bystander = Bystander::start(
        &h,
        h.connect("listener").await,
        h.connect("publisher").await,
    )
    .await;

    // Slowloris: half a request, then silence.
    let mut slow = RawClient::connect(h.addr).await;
    slow.write(b"GET /ws?user=slow HTTP/1.1\r\nHost: localhost\r\nUpgr")
        .await;
    let started = std::time::Instant::now();
    match slow.read_to_end(Duration::from_secs(5)).await {
        End::Eof | End::Reset(_) => {}
        other => panic!("a stalled handshake should be dropped, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "dropped after {:?}",
        started.elapsed()
    );

    // Headers over the bound.
    let huge = format!("X-Padding: {}\r\n", "a".repeat(9000));
    let response = upgrade_status(&h, "/ws?user=big", &huge).await;
    assert_eq!(response.status, 431, "{response:?}");

    // A bad version.
    let request = format!(
        "GET /ws?user=v HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 8\r\n\r\n"
    );
    let response = RawClient::http(h.addr, &request).await;
    assert_eq!(response.status, 400, "{response:?}");

    assert_eq!(h.hub.connection_count(), 2, "none of them registered");
    bystander.still_served().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bug_in_one_connections_handling_closes_only_that_connection_with_1011() {
    let h = TestHub::start(HubConfig {
        fault_injection: true,
        ..config()
    });
    // Everyone on one shard, so the shard that hit the bug is the one that must live on.
    let listener = h.connect_on_shard("listener", 0).await;
    let publisher = h.connect_on_shard("publisher", 0).await;
    let mut bystander = Bystander::start(&h, listener, publisher).await;
    let mut victim = h.connect_on_shard("victim", 0).await;
    let id = victim.id;

    victim.send_text(r#"{"type":"__panic__"}"#).await;
    let (code, _) = victim.expect_close().await;
    assert_eq!(code, 1011);
    victim.finish_close().await;
    h.wait_gone(id).await;

    bystander.still_served().await;
    let mut newcomer = h.connect_on_shard("newcomer", 0).await;
    newcomer.ping_pong().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_as_an_application_builds_it_has_no_fault_to_inject() {
    // The embedding example's configuration: `HubConfig::default()` and additions.
    let h = TestHub::start(HubConfig {
        shards: 1,
        ..HubConfig::default()
    });
    let mut client = h.connect("curious").await;
    client.send_text(r#"{"type":"__panic__"}"#).await;
    let error = client.expect_type("error").await;
    assert_eq!(error["code"], "unknown_type", "{error}");
    client.ping_pong().await;
}
