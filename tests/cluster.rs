//! The cluster: real `neonex serve` processes on one real `nats-server`, and real
//! WebSocket clients on each node.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use neonex_testkit::binary::Server;
use neonex_testkit::client::Client;
use neonex_testkit::http::http_call;
use neonex_testkit::nats::Nats;
use neonex_testkit::wait::blocking;
use serde_json::{json, Value};

/// What every node of these tests runs with: two shards, so that frames from NATS cross
/// shards too, and a short node timeout.
const NODE_TIMEOUT: &str = "2s";

struct Cluster {
    nats: Nats,
    nodes: Vec<Server>,
}

impl Cluster {
    /// `n` nodes on a fresh NATS, each knowing all the others.
    async fn start(n: usize, env: &[(&str, &str)]) -> Cluster {
        let nats = Nats::start();
        let mut cluster = Cluster {
            nats,
            nodes: Vec::new(),
        };
        for i in 0..n {
            cluster.add_node(&format!("node-{i}"), env).await;
        }
        cluster.wait_for_nodes(n).await;
        cluster
    }

    async fn add_node(&mut self, name: &str, env: &[(&str, &str)]) -> SocketAddr {
        let url = self.nats.url();
        let mut vars = vec![
            ("NEONEX_CLUSTER_NODE_ID", name),
            ("NEONEX_CLUSTER_NODE_TIMEOUT", NODE_TIMEOUT),
        ];
        vars.extend_from_slice(env);
        let (server, addr) = Server::spawn(&["--shards", "2", "--cluster", &url], &vars).await;
        self.nodes.push(server);
        addr
    }

    fn addr(&self, node: usize) -> SocketAddr {
        self.nodes[node].addr
    }

    /// Waits until every node counts `n` live nodes.
    async fn wait_for_nodes(&self, n: usize) {
        for node in &self.nodes {
            if node.child_alive() {
                wait_for_stats(node.addr, &format!("{n} nodes"), |s| {
                    s["cluster"]["nodes"] == n
                })
                .await;
            }
        }
    }
}

trait Alive {
    fn child_alive(&self) -> bool;
}

impl Alive for Server {
    fn child_alive(&self) -> bool {
        let pid = self.child.id();
        std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    }
}

async fn stats(addr: SocketAddr) -> Value {
    http_call(addr, "GET", "/stats", "", "").await.json()
}

/// Polls `/stats` of `addr` until `pred` holds (10 s at most).
async fn wait_for_stats(addr: SocketAddr, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = stats(addr).await;
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{addr}: no {what} within 10 s; /stats: {}",
            s["cluster"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until node `addr` counts `count` members of `room` in the cluster.
async fn wait_for_room_count(addr: SocketAddr, room: &str, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rooms = http_call(addr, "GET", "/api/rooms", "", "").await.json();
        let found = rooms["rooms"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["name"] == room)
            .and_then(|r| r["members"].as_u64());
        if found == Some(count) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{addr}: room {room} has {found:?} members, not {count}, after 10 s: {rooms}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn general() -> Vec<String> {
    vec!["general".to_owned()]
}

async fn client(addr: SocketAddr, user: &str) -> Client {
    Client::connect(addr, Some(user), &general()).await
}

/// Reads chat messages until `n` have come; fails on a duplicate or a gap in `seq`.
async fn expect_in_order(client: &mut Client, n: usize) {
    for i in 0..n {
        let m = client.expect_type("chat_message").await;
        assert_eq!(
            m["data"]["seq"], i,
            "{}: message {i} out of order or missing: {m}",
            client.id
        );
    }
}

#[tokio::test]
async fn a_rooms_members_on_every_node_get_each_message_once_and_in_order() {
    let burst = [
        ("NEONEX_LIMITS_MESSAGES_PER_SECOND", "100000"),
        ("NEONEX_LIMITS_BURST", "100000"),
    ];
    let cluster = Cluster::start(3, &burst).await;
    let mut clients = Vec::new();
    for node in 0..3 {
        clients.push(client(cluster.addr(node), &format!("user{node}")).await);
    }
    for node in 0..3 {
        wait_for_room_count(cluster.addr(node), "general", 3).await;
    }
    const N: usize = 200;
    for seq in 0..N {
        clients[1]
            .send_json(&json!({"type": "message", "room": "general", "data": {"seq": seq}}))
            .await;
    }
    for c in &mut clients {
        expect_in_order(c, N).await;
        let after = c.ping_pong().await;
        assert!(
            after.iter().all(|m| m["type"] != "chat_message"),
            "{}: a duplicate after the last message: {after:?}",
            c.id
        );
    }
    // Connection ids carry the node's tag, so they differ across nodes.
    let tags: std::collections::HashSet<String> = clients
        .iter()
        .map(|c| c.id.to_string().split('-').next().unwrap().to_owned())
        .collect();
    assert_eq!(tags.len(), 3, "one tag per node: {tags:?}");
    for node in 0..3 {
        let s = stats(cluster.addr(node)).await;
        assert_eq!(s["cluster"]["node_id"], format!("node-{node}"));
        assert_eq!(s["cluster"]["nats"], "connected");
        assert_eq!(s["cluster"]["connections"], 3);
    }
}

#[tokio::test]
async fn counts_and_presence_span_the_nodes() {
    let cluster = Cluster::start(2, &[]).await;
    let (a, b) = (cluster.addr(0), cluster.addr(1));
    let mut ann = client(a, "ann").await;
    assert_eq!(ann.join("lobby").await, 1);
    // Each node hears of the others' connections within milliseconds, not at once.
    wait_for_room_count(b, "lobby", 1).await;
    let mut bob = client(b, "bob").await;
    let online = ann
        .expect("bob online", |m| {
            m["type"] == "presence" && m["user_id"] == "bob"
        })
        .await;
    assert_eq!(online["status"], "online");
    assert_eq!(
        bob.autojoined[0]["count"], 2,
        "general counts ann on the other node"
    );
    assert_eq!(bob.join("lobby").await, 2);
    let joined = ann
        .expect("bob joined lobby", |m| {
            m["type"] == "user_joined" && m["room"] == "lobby"
        })
        .await;
    assert_eq!(
        (joined["user_id"].clone(), joined["count"].clone()),
        (json!("bob"), json!(2))
    );
    // A second connection of bob, on ann's node: no second `online`, and closing one of
    // the two is no `offline`.
    let bob_too = client(a, "bob").await;
    bob_too.close().await;
    let left = ann
        .expect("bob's second connection left general", |m| {
            m["type"] == "user_left" && m["room"] == "general"
        })
        .await;
    assert_eq!(left["count"], 2);
    let left = bob.leave("lobby").await;
    assert_eq!(left["count"], 1);
    let user_left = ann
        .expect("bob left lobby", |m| {
            m["type"] == "user_left" && m["room"] == "lobby"
        })
        .await;
    assert_eq!(user_left["count"], 1);
    bob.close().await;
    let offline = ann
        .expect("bob offline", |m| {
            m["type"] == "presence" && m["user_id"] == "bob"
        })
        .await;
    assert_eq!(
        offline["status"], "offline",
        "only one online and one offline for bob"
    );
}

#[tokio::test]
async fn the_api_on_one_node_reaches_connections_of_another() {
    let cluster = Cluster::start(2, &[]).await;
    let (a, b) = (cluster.addr(0), cluster.addr(1));
    let mut bob = client(b, "bob").await;
    wait_for_room_count(a, "general", 1).await;
    let r = http_call(
        a,
        "POST",
        "/api/broadcast",
        "",
        r#"{"type":"notice","n":1}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(bob.expect_type("notice").await["n"], 1);
    let r = http_call(
        a,
        "POST",
        "/api/rooms/general/broadcast",
        "",
        r#"{"type":"notice","n":2}"#,
    )
    .await;
    assert_eq!(r.json()["queued"], 1, "{}", r.body);
    assert_eq!(bob.expect_type("notice").await["n"], 2);
    let r = http_call(
        a,
        "POST",
        "/api/users/bob/send",
        "",
        r#"{"type":"notice","n":3}"#,
    )
    .await;
    assert_eq!(r.json()["queued"], 1, "{}", r.body);
    assert_eq!(bob.expect_type("notice").await["n"], 3);

    let mut ben = client(b, "ben").await;
    wait_for_room_count(a, "general", 2).await;
    let members = http_call(a, "GET", "/api/rooms/general/members", "", "")
        .await
        .json();
    let mut expected = vec![bob.id.to_string(), ben.id.to_string()];
    expected.sort();
    assert_eq!(members["members"], json!(expected), "{members}");
    let conns = http_call(a, "GET", "/api/users/bob/connections", "", "")
        .await
        .json();
    assert_eq!(conns["connections"], json!([bob.id.to_string()]));

    let except = format!("/api/rooms/general/broadcast?except={}", bob.id);
    let r = http_call(a, "POST", &except, "", r#"{"type":"notice","n":4}"#).await;
    assert_eq!(r.json()["queued"], 1, "{}", r.body);
    assert_eq!(ben.expect_type("notice").await["n"], 4);
    let before_pong = bob.ping_pong().await;
    assert!(
        before_pong.iter().all(|m| m["n"] != 4),
        "the skipped connection got it: {before_pong:?}"
    );

    let r = http_call(a, "PUT", "/api/rooms/announcements", "", "").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rooms = http_call(b, "GET", "/api/rooms", "", "").await.json();
        let made = rooms["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "announcements" && r["persistent"] == true);
        if made {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the room was not made on the other node: {rooms}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let target = format!("/api/connections/{}?code=4001&reason=bye", bob.id);
    let r = http_call(a, "DELETE", &target, "", "").await;
    assert_eq!(r.json()["disconnected"], 1, "{}", r.body);
    assert_eq!(bob.expect_close().await, (4001, "bye".to_owned()));
    let r = http_call(a, "DELETE", "/api/users/ben/connections", "", "").await;
    assert_eq!(r.json()["disconnected"], 1, "{}", r.body);
    assert_eq!(ben.expect_close().await.0, 1008);
}

#[tokio::test]
async fn a_hub_in_a_cluster_acts_on_the_connections_of_other_nodes() {
    let cluster = Cluster::start(1, &[]).await;
    let config = neonex::HubConfig {
        shards: 1,
        cluster: neonex::ClusterConfig {
            nats_url: Some(cluster.nats.url()),
            node_id: Some("library".into()),
            node_timeout: Duration::from_secs(2),
            ..neonex::ClusterConfig::default()
        },
        ..neonex::HubConfig::default()
    };
    let hub = blocking(move || neonex::Hub::new(config).unwrap()).await;
    wait_for_stats(cluster.addr(0), "the library's node", |s| {
        s["cluster"]["nodes"] == 2
    })
    .await;
    let mut cleo = client(cluster.addr(0), "cleo").await;
    let id = cleo.id;
    let h = hub.clone();
    wait_until_blocking("cleo in the library's view", move || {
        h.user_connections("cleo") == [id]
    })
    .await;
    let h = hub.clone();
    let (info, joined, members) = blocking(move || {
        let info = h.connection(id);
        let joined = h.join_room(id, "side");
        let members = h.room_members("side");
        (info, joined, members)
    })
    .await;
    assert_eq!(info.map(|i| i.user_id.to_string()), Some("cleo".to_owned()));
    assert_eq!(joined, Ok(1));
    assert_eq!(members, [id]);
    assert_eq!(cleo.expect_type("joined").await["room"], "side");
    let h = hub.clone();
    wait_until_blocking("cleo in side, in the library's view", move || {
        h.room_has_member("side", id)
    })
    .await;
    let h = hub.clone();
    let sent = blocking(move || {
        h.send_to_connection(id, r#"{"type":"notice","to":"cleo"}"#)
            .unwrap();
        h.send_to_user("cleo", r#"{"type":"notice","to":"user"}"#)
            .unwrap()
    })
    .await;
    assert_eq!(sent, 1);
    assert_eq!(cleo.expect_type("notice").await["to"], "cleo");
    assert_eq!(cleo.expect_type("notice").await["to"], "user");
    let h = hub.clone();
    let left = blocking(move || h.leave_room(id, "side")).await;
    assert_eq!(left, Ok(0));
    let h = hub.clone();
    let gone = blocking(move || h.disconnect(id, 4002, "from the library")).await;
    assert!(gone);
    assert_eq!(
        cleo.expect_close().await,
        (4002, "from the library".to_owned())
    );
    blocking(move || hub.close()).await;
}

/// Polls `f`, a blocking call, until it is true (10 s at most).
async fn wait_until_blocking(what: &str, f: impl Fn() -> bool + Send + Sync + 'static) {
    let f = std::sync::Arc::new(f);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let g = f.clone();
        if blocking(move || g()).await {
            return;
        }
        assert!(Instant::now() < deadline, "no {what} within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_killed_node_is_noticed_within_the_node_timeout() {
    let mut cluster = Cluster::start(3, &[]).await;
    let mut ann = client(cluster.addr(0), "ann").await;
    let _carol = client(cluster.addr(2), "carol").await;
    wait_for_room_count(cluster.addr(0), "general", 2).await;
    let killed = Instant::now();
    cluster.nodes[2].child.kill().unwrap();
    cluster.nodes[2].child.wait().unwrap();
    let left = ann
        .expect("carol left general", |m| {
            m["type"] == "user_left" && m["user_id"] == "carol"
        })
        .await;
    assert_eq!(left["count"], 1);
    let offline = ann
        .expect("carol offline", |m| {
            m["type"] == "presence" && m["user_id"] == "carol"
        })
        .await;
    assert_eq!(offline["status"], "offline");
    let noticed = killed.elapsed();
    assert!(
        noticed < Duration::from_secs(4),
        "noticed after {noticed:?}, more than the node timeout ({NODE_TIMEOUT}) and a heartbeat"
    );
    cluster.wait_for_nodes(2).await;
    let s = stats(cluster.addr(1)).await;
    assert_eq!(
        s["cluster"]["connections"], 1,
        "no ghost of carol: {}",
        s["cluster"]
    );
    wait_for_room_count(cluster.addr(1), "general", 1).await;
}

#[tokio::test]
async fn without_nats_each_node_serves_its_own_and_the_cluster_heals() {
    let mut cluster = Cluster::start(2, &[]).await;
    let (a, b) = (cluster.addr(0), cluster.addr(1));
    let mut ann = client(a, "ann").await;
    let mut amy = client(a, "amy").await;
    let mut bob = client(b, "bob").await;
    wait_for_room_count(a, "general", 3).await;
    cluster.nats.stop();
    for addr in [a, b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let health = http_call(addr, "GET", "/health", "", "").await;
            assert_eq!(health.status, 200);
            if health.json()["status"] == "degraded" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{addr}: not degraded: {}",
                health.body
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let s = stats(a).await;
    assert_eq!(s["cluster"]["nats"], "disconnected");
    let metrics = http_call(a, "GET", "/metrics", "", "").await.body;
    assert!(
        metrics.contains("neonex_cluster_nats_connected{node=\"node-0\"} 0"),
        "{metrics}"
    );
    ann.say("general", "alone").await;
    assert_eq!(amy.expect_type("chat_message").await["message"], "alone");
    cluster.nats.resume();
    for addr in [a, b] {
        wait_for_stats(addr, "NATS back", |s| s["cluster"]["nats"] == "connected").await;
        let health = http_call(addr, "GET", "/health", "", "").await;
        assert_eq!(health.json()["status"], "ok");
    }
    cluster.wait_for_nodes(2).await;
    wait_for_room_count(b, "general", 3).await;
    ann.say("general", "together").await;
    let m = bob
        .expect("the message after the outage", |m| {
            m["type"] == "chat_message" && m["message"] == "together"
        })
        .await;
    assert_eq!(m["user_id"], "ann");
    assert_eq!(amy.expect_type("chat_message").await["message"], "together");
}
