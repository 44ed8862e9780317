//! What operators watch: `/stats` values after known activity, `/metrics` read by a real
//! Prometheus parser, and the server's log lines.

use neonex::HubConfig;
use neonex_testkit::binary::Server;
use neonex_testkit::client::Client;
use neonex_testkit::clock::now_secs;
use neonex_testkit::frames::{frame, masked};
use neonex_testkit::http::{http_call, HttpResponse};
use neonex_testkit::hub::{config, TestHub};
use neonex_testkit::raw::RawClient;
use neonex_testkit::wait::{wait_until, TIMEOUT};
use prometheus_parse::{Scrape, Value as Metric};
use serde_json::{json, Value};

async fn get(h: &TestHub, path: &str) -> HttpResponse {
    let r = http_call(h.addr, "GET", path, "", "").await;
    assert_eq!(r.status, 200, "GET {path}: {r:?}");
    r
}

/// A hub with two clients in room `obs` that have exchanged three chat messages, and a
/// third client that closed normally.
async fn after_known_activity() -> (TestHub, Vec<Client>) {
    let h = TestHub::start(HubConfig {
        stats_log_interval: std::time::Duration::from_secs(3600),
        ..config()
    });
    let mut a = h.connect("ann").await;
    let mut b = h.connect("bob").await;
    let leaver = h.connect("cy").await;
    let gone = leaver.id;
    leaver.close().await;
    h.wait_gone(gone).await;
    a.join("obs").await;
    b.join("obs").await;
    for i in 0..3 {
        a.say("obs", &format!("m{i}")).await;
    }
    for c in [&mut a, &mut b] {
        for i in 0..3 {
            let m = c.expect_type("chat_message").await;
            assert_eq!(m["message"], format!("m{i}"));
        }
    }
    (h, vec![a, b])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_what_happened() {
    let (h, _clients) = after_known_activity().await;
    // Latency and rates are published on the shards' next tick.
    let mut stats = Value::Null;
    for _ in 0..100 {
        stats = get(&h, "/stats").await.json();
        if stats["fanout_latency_us"]["count"].as_u64() > Some(0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(stats["total_connections"], 2, "{stats}");
    assert_eq!(stats["unique_users"], 2);
    assert_eq!(stats["rooms"], 3, "general, random and obs");
    let now = now_secs();
    let ts = stats["timestamp"].as_i64().unwrap();
    assert!(
        (now - 5..=now + 1).contains(&ts),
        "timestamp {ts} vs now {now}"
    );
    // 3 messages and 2 joins from the clients.
    assert!(stats["messages_in"].as_u64().unwrap() >= 5, "{stats}");
    // Each chat message reached both members: at least 6 deliveries.
    assert!(stats["deliveries"].as_u64().unwrap() >= 6, "{stats}");
    assert!(stats["frames_encoded"].as_u64().unwrap() >= 3, "{stats}");
    assert!(stats["messages_in_per_sec"].is_number());
    assert_eq!(stats["closes"]["client_closed"], 1, "{stats}");
    assert_eq!(stats["http_responses"]["101"], 3, "{stats}");
    let latency = &stats["fanout_latency_us"];
    assert!(latency["count"].as_u64().unwrap() > 0, "{stats}");
    assert!(
        latency["p50"].as_u64() <= latency["p99"].as_u64(),
        "{latency}"
    );
    assert!(
        latency["p99"].as_u64() <= latency["max"].as_u64(),
        "{latency}"
    );
    let shards = stats["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2);
    let per_shard: u64 = shards
        .iter()
        .map(|s| s["connections"].as_u64().unwrap())
        .sum();
    assert_eq!(per_shard, 2);

    // Every status the API answers is counted as itself: 201 for a room it created.
    let created = http_call(h.addr, "PUT", "/api/rooms/made", "", "").await;
    assert_eq!(created.status, 201, "{created:?}");
    let stats = get(&h, "/stats").await.json();
    assert_eq!(stats["http_responses"]["201"], 1, "{stats}");
    assert_eq!(stats["http_responses"]["other"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_match_the_activity() {
    let (h, _clients) = after_known_activity().await;
    let response = get(&h, "/metrics").await;
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{response:?}"
    );
    let scrape = Scrape::parse(response.body.lines().map(|l| Ok(l.to_owned())))
        .expect("the exposition format parses");
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => v,
                _ => panic!("{name} is not a single value"),
            })
            .sum()
    };
    for (name, kind) in [
        ("neonex_connections", "gauge"),
        ("neonex_users", "gauge"),
        ("neonex_rooms", "gauge"),
        ("neonex_messages_in_total", "counter"),
        ("neonex_messages_out_total", "counter"),
        ("neonex_bytes_in_total", "counter"),
        ("neonex_bytes_out_total", "counter"),
        ("neonex_connections_closed_total", "counter"),
        ("neonex_http_responses_total", "counter"),
        ("neonex_fanout_latency_seconds", "histogram"),
    ] {
        assert!(scrape.docs.contains_key(name), "no HELP for {name}");
        assert!(
            response.body.contains(&format!("# TYPE {name} {kind}")),
            "{name} should be a {kind}"
        );
    }
    assert_eq!(value("neonex_connections", &[]), 2.0);
    assert_eq!(value("neonex_users", &[]), 2.0);
    assert!(value("neonex_messages_in_total", &[]) >= 5.0);
    assert!(value("neonex_messages_out_total", &[]) >= 6.0);
    assert_eq!(
        value(
            "neonex_connections_closed_total",
            &[("reason", "client_closed")]
        ),
        1.0
    );
    assert_eq!(
        value("neonex_http_responses_total", &[("status", "101")]),
        3.0
    );
    let shards: std::collections::BTreeSet<&str> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "neonex_connections")
        .filter_map(|s| s.labels.get("shard"))
        .collect();
    assert_eq!(shards.into_iter().collect::<Vec<_>>(), ["0", "1"]);
    // Histogram buckets are cumulative and end at +Inf with the count.
    for sample in scrape
        .samples
        .iter()
        .filter(|s| s.metric == "neonex_fanout_latency_seconds")
    {
        let Metric::Histogram(buckets) = &sample.value else {
            panic!("not a histogram: {sample:?}");
        };
        assert!(
            buckets.windows(2).all(|w| w[0].count <= w[1].count),
            "{buckets:?}"
        );
        assert!(buckets.last().unwrap().less_than.is_infinite());
    }
    assert!(response
        .body
        .contains("neonex_fanout_latency_seconds_sum{shard=\"0\"}"));
    assert!(response
        .body
        .contains("neonex_fanout_latency_seconds_count{shard=\"1\"}"));
}

#[tokio::test]
async fn the_server_logs_connections_at_debug_and_stats_periodically() {
    let (server, addr) = Server::spawn(
        &["--log-format", "json"],
        &[
            ("RUST_LOG", "neonex=debug"),
            ("NEONEX_LOG_STATS_INTERVAL", "200ms"),
        ],
    )
    .await;
    let client = Client::connect(addr, Some("logged"), &["general".to_owned()]).await;
    client.close().await;
    let parse = |line: &str| serde_json::from_str::<Value>(line).ok();
    let opened = server
        .wait_for_log("connection opened", |l| l.contains("connection opened"))
        .await;
    let opened = parse(&opened).expect("JSON log lines");
    assert_eq!(opened["fields"]["user"], "logged", "{opened}");
    let closed = server
        .wait_for_log("connection closed", |l| l.contains("connection closed"))
        .await;
    assert_eq!(parse(&closed).unwrap()["fields"]["cause"], "client_closed");
    let stats = server
        .wait_for_log("stats", |l| {
            parse(l).is_some_and(|v| v["fields"]["message"] == "stats")
        })
        .await;
    let stats = parse(&stats).unwrap();
    assert_eq!(stats["level"], "INFO");
    assert!(stats["fields"]["connections"].is_number(), "{stats}");

    // At info level nothing is logged per connection or per message. The periodic stats
    // lines tell when the hub has seen the client come and go, so the log is read only
    // once everything it could have said about the client is in it.
    let (quiet, quiet_addr) = Server::spawn(
        &["--log-format", "json"],
        &[("NEONEX_LOG_STATS_INTERVAL", "200ms")],
    )
    .await;
    let connections_logged = |log: &str| -> Vec<u64> {
        log.lines()
            .filter_map(parse)
            .filter(|v| v["fields"]["message"] == "stats")
            .filter_map(|v| v["fields"]["connections"].as_u64())
            .collect()
    };
    let mut c = Client::connect(quiet_addr, Some("q"), &["general".to_owned()]).await;
    for _ in 0..5 {
        c.send_json(&json!({"type": "message", "room": "general", "message": "x"}))
            .await;
    }
    c.expect_type("chat_message").await;
    wait_until("a stats line with the client connected", TIMEOUT, || {
        connections_logged(&quiet.log()).contains(&1)
    })
    .await;
    c.close().await;
    wait_until("a stats line after the client left", TIMEOUT, || {
        let counts = connections_logged(&quiet.log());
        counts
            .iter()
            .position(|&n| n == 1)
            .is_some_and(|i| counts[i..].contains(&0))
    })
    .await;
    let log = quiet.log();
    assert!(
        !log.contains("connection opened") && !log.contains("chat"),
        "info level must not log per connection or message:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_uses_only_metrics_that_exist() {
    let (h, _clients) = after_known_activity().await;
    let metrics = get(&h, "/metrics").await.body;
    let dashboard: Value =
        serde_json::from_str(include_str!("../deploy/grafana/neonex-dashboard.json"))
            .expect("the dashboard is JSON");
    let mut used = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("neonex_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name.starts_with("neonex_cluster_") {
                    // A cluster's node has them (tests/cluster.rs checks).
                    rest = &rest[at + name.len()..];
                    continue;
                }
                assert!(
                    metrics.contains(&format!("\n{name}{{"))
                        || metrics.contains(&format!("\n{name} ")),
                    "panel {:?} uses {name}, which /metrics does not have",
                    panel["title"]
                );
                used += 1;
                rest = &rest[at + name.len()..];
            }
        }
    }
    assert!(used >= 10, "the dashboard should chart the hub's metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cause_of_a_close_is_counted_as_itself() {
    let h = TestHub::start(HubConfig {
        max_message_size: 1024,
        ..config()
    });
    // One connection ended each way, each waited for until the hub has forgotten it.
    let cases: [(&str, &[u8]); 3] = [
        ("protocol_error", &frame(true, 0, 0x1, b"unmasked", None)),
        ("invalid_data", &masked(0x1, b"caf\xc3")),
        ("too_big", &masked(0x1, &[b' '; 2048])),
    ];
    for (user, bytes) in cases {
        let mut raw = RawClient::upgraded(h.addr, &format!("/ws?user={user}")).await;
        let id = raw.recv_json().await["connection_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        raw.write(bytes).await;
        raw.read_until_eof(TIMEOUT)
            .await
            .expect("the hub closes it");
        drop(raw);
        h.wait_gone(id).await;
    }
    let gone = RawClient::upgraded(h.addr, "/ws?user=gone").await;
    h.wait_connections(1).await;
    drop(gone);
    h.wait_connections(0).await;
    let polite = h.connect("polite").await;
    let id = polite.id;
    polite.close().await;
    h.wait_gone(id).await;
    let mut kicked = h.connect("kicked").await;
    let r = http_call(
        h.addr,
        "DELETE",
        &format!("/api/connections/{}", kicked.id),
        "",
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(kicked.expect_close().await.0, 1008);
    let id = kicked.id;
    kicked.finish_close().await;
    h.wait_gone(id).await;

    let expected = [
        ("protocol_error", 1),
        ("invalid_data", 1),
        ("too_big", 1),
        ("client_gone", 1),
        ("client_closed", 1),
        ("disconnected", 1),
        ("slow_consumer", 0),
        ("timeout", 0),
    ];
    let stats = get(&h, "/stats").await.json();
    let scrape = Scrape::parse(
        get(&h, "/metrics")
            .await
            .body
            .lines()
            .map(|l| Ok(l.to_owned())),
    )
    .expect("the exposition format parses");
    for (cause, n) in expected {
        assert_eq!(stats["closes"][cause], n, "{cause} in /stats: {stats}");
        let in_metrics: f64 = scrape
            .samples
            .iter()
            .filter(|s| s.metric == "neonex_connections_closed_total")
            .filter(|s| s.labels.get("reason") == Some(cause))
            .map(|s| match s.value {
                Metric::Counter(v) => v,
                _ => panic!("neonex_connections_closed_total is a counter"),
            })
            .sum();
        assert_eq!(in_metrics, n as f64, "{cause} in /metrics");
    }
}

#[tokio::test]
async fn text_logs_have_colours_only_on_a_terminal_or_when_asked() {
    // The test reads the log through a pipe, as a file or a log collector would.
    let (piped, _) = Server::spawn(&[], &[]).await;
    let line = piped
        .wait_for_log("serving", |l| l.contains("neonex is serving"))
        .await;
    assert!(
        !piped.log().contains('\u{1b}'),
        "escape codes in a piped log: {line:?}"
    );
    let (asked, _) = Server::spawn(&[], &[("NEONEX_LOG_COLOR", "always")]).await;
    asked
        .wait_for_log("serving", |l| l.contains("serving"))
        .await;
    assert!(
        asked.log().contains("\u{1b}["),
        "log.color = always: {}",
        asked.log()
    );
}

#[tokio::test]
async fn the_start_says_once_how_the_api_is_guarded() {
    let (open, _) = Server::spawn(&[], &[]).await;
    open.wait_for_log("the API guard", |l| l.contains("HTTP API: no api.key"))
        .await;
    let said = open.log().matches("HTTP API:").count();
    assert_eq!(said, 1, "said once, not per shard:\n{}", open.log());
    let (keyed, _) = Server::spawn(&[], &[("NEONEX_API_KEY", "k")]).await;
    keyed
        .wait_for_log("the API guard", |l| {
            l.contains("every /api/* call needs api.key")
        })
        .await;
    let (proxied, _) = Server::spawn(&[], &[("NEONEX_HTTP_TRUSTED_PROXIES", "127.0.0.2")]).await;
    proxied
        .wait_for_log("the trusted proxies", |l| {
            l.contains("trusted_proxies") && l.contains("127.0.0.2")
        })
        .await;
}

/// Every recipient of a broadcast counts once in the fan-out latency, though the
/// recipients one pass drains together go into the histogram in one step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_recipient_of_a_broadcast_counts_once_in_the_fanout_latency() {
    let h = TestHub::start(HubConfig {
        // No pings: they would count while the test reads.
        ping_interval: std::time::Duration::from_secs(3600),
        pong_timeout: std::time::Duration::from_secs(3600),
        ..config()
    });
    let mut members = Vec::new();
    for i in 0..20 {
        let mut member = h.connect(&format!("wide{i}")).await;
        member.join("wide").await;
        members.push(member);
    }
    let before = settled_latency_count(&h).await;
    let r = http_call(
        h.addr,
        "POST",
        "/api/rooms/wide/broadcast",
        "",
        r#"{"type":"notice"}"#,
    )
    .await;
    assert_eq!(r.json()["queued"], 20, "{}", r.body);
    for member in &mut members {
        member.expect_type("notice").await;
    }
    assert_eq!(settled_latency_count(&h).await, before + 20);
}

/// The fan-out latency count of `/stats`, once two readings more than a tick apart agree.
async fn settled_latency_count(h: &TestHub) -> u64 {
    let mut last = None;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let stats = get(h, "/stats").await.json();
        let count = stats["fanout_latency_us"]["count"].as_u64().unwrap_or(0);
        if last == Some(count) {
            return count;
        }
        assert!(std::time::Instant::now() < deadline, "{stats}");
        last = Some(count);
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
}
