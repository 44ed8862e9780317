//! Behind a reverse proxy: who a request comes from (`http.trusted_proxies`), as the keyless
//! HTTP API and the per-IP caps see it. Peers other than 127.0.0.1 are other addresses of
//! the loopback range, so a test can play a proxy on 127.0.0.2 and an outsider on 127.0.0.3.

use std::net::IpAddr;

use neonex::config::LimitsConfig;
use neonex::HubConfig;
use neonex_testkit::http::upgrade_request_with;
use neonex_testkit::hub::{config, TestHub};
use neonex_testkit::raw::RawClient;

const PROXY: &str = "127.0.0.2";
const OUTSIDER: &str = "127.0.0.3";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn trusting(proxies: &[&str], limits: LimitsConfig) -> TestHub {
    TestHub::start(HubConfig {
        trusted_proxies: proxies.iter().map(|p| p.to_string()).collect(),
        limits,
        ..config()
    })
}

/// `GET /api/rooms` from `source` with extra `headers`: the status.
async fn list_rooms_from(h: &TestHub, source: &str, headers: &str) -> u16 {
    let request = format!("GET /api/rooms HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n");
    let response = RawClient::connect_from(h.addr, ip(source))
        .await
        .exchange(&request)
        .await;
    if response.status == 403 {
        assert_eq!(response.json()["code"], "forbidden", "{response:?}");
    }
    response.status
}

/// Upgrades from `source` with extra `headers`; on 101 the connection is kept, with its id.
async fn upgrade_from(
    h: &TestHub,
    source: &str,
    user: &str,
    headers: &str,
) -> Result<(RawClient, String), u16> {
    let mut raw = RawClient::connect_from(h.addr, ip(source)).await;
    let response = raw
        .exchange(&upgrade_request_with(&format!("/ws?user={user}"), headers))
        .await;
    if response.status != 101 {
        return Err(response.status);
    }
    let welcome = raw.recv_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    Ok((raw, welcome["connection_id"].as_str().unwrap().to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trusted_proxies_a_relayed_request_is_never_loopback_to_the_keyless_api() {
    let h = TestHub::default_hub();
    assert_eq!(
        list_rooms_from(&h, "127.0.0.1", "").await,
        200,
        "a direct local call"
    );
    for headers in [
        "X-Forwarded-For: 203.0.113.9\r\n",
        "X-Forwarded-For: 127.0.0.1\r\n",
        "Forwarded: for=127.0.0.1\r\n",
        "X-Real-IP: 127.0.0.1\r\n",
        "Via: 1.1 nginx\r\n",
    ] {
        let status = list_rooms_from(&h, "127.0.0.1", headers).await;
        assert_eq!(status, 403, "a loopback proxy relayed {headers:?}");
    }
    // What the proxy would have let anyone do.
    let delete = "DELETE /api/rooms/random HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n";
    let response = RawClient::http(h.addr, delete).await;
    assert_eq!(response.status, 403, "{response:?}");
    assert!(h.hub.room("random").is_some(), "the room survived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_names_the_client_the_keyless_api_judges() {
    let h = trusting(&[PROXY], LimitsConfig::default());
    // The proxy relays a remote client: refused, as that client would be directly.
    let remote = "X-Forwarded-For: 203.0.113.9\r\n";
    assert_eq!(list_rooms_from(&h, PROXY, remote).await, 403);
    // A client that writes a loopback hop before the proxy appends its real address.
    let spoofed = "X-Forwarded-For: 127.0.0.1, 203.0.113.9\r\n";
    assert_eq!(list_rooms_from(&h, PROXY, spoofed).await, 403);
    // A proxy that writes Forwarded, and a client that added X-Forwarded-For itself.
    let both = "X-Forwarded-For: 127.0.0.1\r\nForwarded: for=203.0.113.9\r\n";
    assert_eq!(list_rooms_from(&h, PROXY, both).await, 403);
    // A trusted proxy that names nobody proves nothing.
    assert_eq!(list_rooms_from(&h, PROXY, "").await, 403);
    // A local client through the proxy, by either header.
    assert_eq!(
        list_rooms_from(&h, PROXY, "X-Forwarded-For: 127.0.0.1\r\n").await,
        200
    );
    assert_eq!(
        list_rooms_from(&h, PROXY, "Forwarded: for=127.0.0.1\r\n").await,
        200
    );
    // Another loopback peer is no proxy: its headers make it remote.
    assert_eq!(
        list_rooms_from(&h, OUTSIDER, "X-Forwarded-For: 127.0.0.1\r\n").await,
        403
    );
    assert_eq!(list_rooms_from(&h, OUTSIDER, "").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_the_key_decides_whoever_relays() {
    let h = TestHub::start(HubConfig {
        api: neonex::config::ApiConfig {
            key: Some("k3y".into()),
            ..Default::default()
        },
        ..config()
    });
    let relayed = "X-Forwarded-For: 203.0.113.9\r\n";
    assert_eq!(list_rooms_from(&h, "127.0.0.1", relayed).await, 401);
    let keyed = format!("{relayed}X-API-Key: k3y\r\n");
    assert_eq!(list_rooms_from(&h, "127.0.0.1", &keyed).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_caps_count_the_client_a_trusted_proxy_names_and_ignore_others_headers() {
    let h = trusting(
        &[PROXY],
        LimitsConfig {
            connections_per_ip: Some(1),
            ..LimitsConfig::default()
        },
    );
    // Two clients behind one proxy each have their own budget.
    let (_a, a_id) = upgrade_from(&h, PROXY, "a", "X-Forwarded-For: 198.51.100.1\r\n")
        .await
        .expect("the first client of the proxy");
    let (_b, _) = upgrade_from(&h, PROXY, "b", "X-Forwarded-For: 198.51.100.2\r\n")
        .await
        .expect("a second client behind the same proxy is another address");
    let again = upgrade_from(&h, PROXY, "a2", "X-Forwarded-For: 198.51.100.1\r\n").await;
    assert_eq!(again.err(), Some(429), "198.51.100.1 is at its cap");
    let id = a_id.parse().unwrap();
    let info = h.connection(id).await.expect("a is open");
    assert_eq!(
        info.remote_addr.ip(),
        ip("198.51.100.1"),
        "the hub knows the client, not the proxy"
    );

    // An untrusted peer is counted as itself, whatever it claims.
    let (_c, c_id) = upgrade_from(&h, OUTSIDER, "c", "X-Forwarded-For: 198.51.100.3\r\n")
        .await
        .expect("the outsider's first connection");
    let spoofed = upgrade_from(&h, OUTSIDER, "d", "X-Forwarded-For: 198.51.100.4\r\n").await;
    assert_eq!(
        spoofed.err(),
        Some(429),
        "a new claimed address buys no new budget"
    );
    let info = h
        .connection(c_id.parse().unwrap())
        .await
        .expect("c is open");
    assert_eq!(info.remote_addr.ip(), ip(OUTSIDER));
    assert_eq!(h.hub.connection_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_with_invalid_bytes_still_mark_a_request_relayed() {
    // A proxy appends the real client to whatever the client sent, bytes that are not
    // UTF-8 included: the header must not be skipped, or the request would look direct.
    let h = TestHub::default_hub();
    for header in [
        &b"X-Forwarded-For: \xff, 203.0.113.9\r\n"[..],
        b"Forwarded: for=\xfe, for=203.0.113.9\r\n",
        b"X-Real-IP: \xfd\r\n",
    ] {
        let mut request = b"GET /api/rooms HTTP/1.1\r\nHost: localhost\r\n".to_vec();
        request.extend_from_slice(header);
        request.extend_from_slice(b"\r\n");
        let mut raw = RawClient::connect(h.addr).await;
        raw.write(&request).await;
        let head = raw.read_head().await;
        assert!(
            head.starts_with("HTTP/1.1 403"),
            "{:?} from a loopback proxy: {head}",
            String::from_utf8_lossy(header)
        );
    }
    assert_eq!(list_rooms_from(&h, "127.0.0.1", "").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_client_of_a_trusted_proxy_on_another_host_is_not_local() {
    // The local proxy heard from 10.0.0.5, a trusted proxy on another host, which heard
    // from its own loopback: that is 10.0.0.5's machine, not this one.
    let h = trusting(&["127.0.0.1", "10.0.0.0/8"], LimitsConfig::default());
    let through_remote = "X-Forwarded-For: 127.0.0.1, 10.0.0.5\r\n";
    assert_eq!(list_rooms_from(&h, "127.0.0.1", through_remote).await, 403);
    let local = "X-Forwarded-For: 127.0.0.1\r\n";
    assert_eq!(list_rooms_from(&h, "127.0.0.1", local).await, 200);
}
