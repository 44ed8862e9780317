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
use tokio_tungstenite::tungstenite::Message;

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
        Cluster::start_on(Nats::start(), n, env).await
    }

    /// `n` nodes on `nats`.
    async fn start_on(nats: Nats, n: usize, env: &[(&str, &str)]) -> Cluster {
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
    let metrics = http_call(cluster.addr(0), "GET", "/metrics", "", "")
        .await
        .body;
    for name in dashboard_cluster_metrics() {
        assert!(
            metrics.contains(&format!("\n{name}{{")),
            "the dashboard's cluster row uses {name}, which /metrics of a node does not have"
        );
    }
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
    let calls = [
        ("/api/broadcast", None),
        ("/api/rooms/general/broadcast", Some(1)),
        ("/api/users/bob/send", Some(1)),
    ];
    for (n, (target, queued)) in calls.into_iter().enumerate() {
        let body = json!({"type": "notice", "n": n}).to_string();
        let r = http_call(a, "POST", target, "", &body).await;
        assert_eq!(r.status, 200, "{target}: {}", r.body);
        if let Some(queued) = queued {
            assert_eq!(r.json()["queued"], queued, "{target}: {}", r.body);
        }
        assert_eq!(bob.expect_type("notice").await["n"], n, "{target}");
    }

    let mut ben = client(b, "ben").await;
    wait_for_room_count(a, "general", 2).await;
    let members = http_call(a, "GET", "/api/rooms/general/members", "", "")
        .await
        .json();
    // Listed in connection id order: by node, shard, then number (9 before 10).
    let mut expected = [bob.id, ben.id];
    expected.sort();
    let expected: Vec<String> = expected.iter().map(ToString::to_string).collect();
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
    // Each node's own figures, for the dashboard: cleo is on node 0, none on the library.
    let h = hub.clone();
    let members = blocking(move || h.stats().cluster.unwrap().members).await;
    let figures: Vec<(usize, usize)> = members.iter().map(|m| (m.connections, m.users)).collect();
    assert_eq!(members.len(), 2, "{members:?}");
    let library = members.iter().position(|m| m.node_id == "library");
    assert_eq!(figures[1 - library.unwrap()], (1, 1), "{members:?}");
    assert_eq!(figures[library.unwrap()], (0, 0), "{members:?}");
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

/// History on: a room's positioned messages live in JetStream.
const HISTORY: [(&str, &str); 3] = [
    ("NEONEX_HISTORY_SIZE", "1000"),
    ("NEONEX_LIMITS_MESSAGES_PER_SECOND", "100000"),
    ("NEONEX_LIMITS_BURST", "100000"),
];

/// Joins `room` and returns the `joined` answer.
async fn join(client: &mut Client, room: &str, recover: Option<&Value>) -> Value {
    let mut request = json!({"type": "join_room", "room": room});
    if let Some(recover) = recover {
        request["recover"] = recover.clone();
    }
    client.send_json(&request).await;
    client
        .expect(&format!("joined {room}"), |m| {
            m["type"] == "joined" && m["room"] == room
        })
        .await
}

/// Reads `n` chat messages of `room`; returns (offset, text) of each.
async fn chat_messages(client: &mut Client, room: &str, n: usize) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        let m = client
            .expect("a chat message", |m| {
                m["type"] == "chat_message" && m["room"] == room
            })
            .await;
        let offset = m["offset"]
            .as_u64()
            .unwrap_or_else(|| panic!("no offset: {m}"));
        got.push((offset, m["message"].as_str().unwrap_or_default().to_owned()));
    }
    got
}

#[tokio::test]
async fn with_history_every_member_on_every_node_sees_one_order_of_offsets() {
    let cluster = Cluster::start(3, &HISTORY).await;
    let mut clients = Vec::new();
    for node in 0..3 {
        let mut c = client(cluster.addr(node), &format!("u{node}")).await;
        let joined = join(&mut c, "h", None).await;
        assert!(joined["epoch"].is_string(), "{joined}");
        clients.push((c, joined));
    }
    let epochs: std::collections::HashSet<String> = clients
        .iter()
        .map(|(_, j)| j["epoch"].to_string())
        .collect();
    assert_eq!(epochs.len(), 1, "one epoch on every node: {epochs:?}");
    for node in 0..3 {
        wait_for_room_count(cluster.addr(node), "h", 3).await;
    }
    // Two publishers on two nodes at once.
    const EACH: usize = 60;
    for i in 0..EACH {
        clients[0].0.say("h", &format!("a{i}")).await;
        clients[2].0.say("h", &format!("c{i}")).await;
    }
    let mut orders = Vec::new();
    for (c, joined) in &mut clients {
        let top = joined["offset"].as_u64().unwrap();
        let got = chat_messages(c, "h", 2 * EACH).await;
        let offsets: Vec<u64> = got.iter().map(|(o, _)| *o).collect();
        let expected: Vec<u64> = (top + 1..=top + 2 * EACH as u64).collect();
        assert_eq!(offsets, expected, "{}: offsets not contiguous", c.id);
        let texts: Vec<String> = got.into_iter().map(|(_, t)| t).collect();
        for prefix in ["a", "c"] {
            let own: Vec<&String> = texts.iter().filter(|t| t.starts_with(prefix)).collect();
            let sent: Vec<String> = (0..EACH).map(|i| format!("{prefix}{i}")).collect();
            assert_eq!(own, sent.iter().collect::<Vec<_>>(), "a publisher's order");
        }
        orders.push(texts);
    }
    assert!(orders.windows(2).all(|w| w[0] == w[1]), "one order for all");
    let mut appends = 0;
    for node in 0..3 {
        let c = stats(cluster.addr(node)).await["cluster"].clone();
        appends += c["journal_appends"].as_u64().unwrap();
    }
    assert_eq!(appends, 2 * EACH as u64, "each message appended once");
}

#[tokio::test]
async fn a_client_whose_node_died_recovers_on_another_node() {
    let mut cluster = Cluster::start(3, &HISTORY).await;
    let mut publisher = client(cluster.addr(0), "pub").await;
    join(&mut publisher, "h", None).await;
    let mut dora = client(cluster.addr(2), "dora").await;
    let joined = join(&mut dora, "h", None).await;
    let epoch = joined["epoch"].clone();
    wait_for_room_count(cluster.addr(0), "h", 2).await;
    for i in 0..5 {
        publisher.say("h", &format!("before {i}")).await;
    }
    let seen = chat_messages(&mut dora, "h", 5).await;
    let last = seen.last().unwrap().0;
    cluster.nodes[2].child.kill().unwrap();
    cluster.nodes[2].child.wait().unwrap();
    for i in 0..7 {
        publisher.say("h", &format!("while away {i}")).await;
    }
    chat_messages(&mut publisher, "h", 12).await;
    let mut back = client(cluster.addr(1), "dora").await;
    let recover = json!({"offset": last, "epoch": epoch});
    let joined = join(&mut back, "h", Some(&recover)).await;
    assert_eq!(joined["recovered"], true, "{joined}");
    assert_eq!(joined["epoch"], epoch, "the epoch outlives the node");
    assert_eq!(joined["offset"], last + 7);
    let missed = chat_messages(&mut back, "h", 7).await;
    let expected: Vec<(u64, String)> = (0..7)
        .map(|i| (last + 1 + i as u64, format!("while away {i}")))
        .collect();
    assert_eq!(missed, expected);
    publisher.say("h", "live").await;
    let live = chat_messages(&mut back, "h", 1).await;
    assert_eq!(live, [(last + 8, "live".to_owned())]);
}

#[tokio::test]
async fn with_history_the_api_publishes_on_one_node_and_reads_on_another() {
    let cluster = Cluster::start(2, &HISTORY).await;
    let (a, b) = (cluster.addr(0), cluster.addr(1));
    let mut eve = client(b, "eve").await;
    let joined = join(&mut eve, "scores", None).await;
    wait_for_room_count(a, "scores", 1).await;
    let r = http_call(a, "POST", "/api/rooms/scores/publish", "", r#"{"home":1}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let offset = r.json()["offset"].as_u64().expect("an offset");
    assert_eq!(offset, joined["offset"].as_u64().unwrap() + 1);
    let publication = eve.expect_type("publication").await;
    assert_eq!(publication["offset"], offset);
    assert_eq!(publication["data"], json!({"home": 1}));
    let history = http_call(a, "GET", "/api/rooms/scores/history", "", "")
        .await
        .json();
    assert_eq!(history["epoch"], joined["epoch"]);
    assert_eq!(history["offset"], offset);
    assert_eq!(history["messages"], json!([publication]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_that_stops_reading_never_blocks_a_shard() {
    let burst = [
        ("NEONEX_LIMITS_MESSAGES_PER_SECOND", "1000000"),
        ("NEONEX_LIMITS_BURST", "1000000"),
        // Amy's reader may fall behind on a loaded machine: she is no slow consumer here.
        ("NEONEX_HUB_SEND_QUEUE_FRAMES", "200000"),
        ("NEONEX_HUB_SEND_QUEUE_BYTES", "64MiB"),
        // Long enough that no node is taken for dead while NATS is frozen: what heals the
        // view below is the gap the lost event leaves, not a node met again.
        ("NEONEX_CLUSTER_NODE_TIMEOUT", "9s"),
    ];
    let cluster = Cluster::start(2, &burst).await;
    let a = cluster.addr(0);
    let mut ann = client(a, "ann").await;
    let amy = client(a, "amy").await;
    let _bob = client(cluster.addr(1), "bob").await;
    wait_for_room_count(a, "general", 3).await;
    // Frozen, NATS keeps its sockets open and reads nothing: the node's writes to it
    // back up, and then its bridge's queue.
    cluster.nats.freeze();
    // `typing` goes to the room's other members, and to the other nodes, and not back to
    // the sender, which therefore need not read.
    const N: usize = 100_000;
    let sent = Instant::now();
    let reader = tokio::spawn(count_messages(amy.ws, "typing", N));
    let typing = json!({"type": "typing", "room": "general", "data": true}).to_string();
    for _ in 0..N {
        ann.send_text(&typing).await;
    }
    assert_eq!(reader.await.unwrap(), N, "amy got every local message");
    let took = sent.elapsed();
    let health = http_call(a, "GET", "/health", "", "").await;
    assert_eq!(health.status, 200);
    // The bridge's queue is full: ann's join is lost on its way to the other node, and
    // with it the subscription to the room's subject.
    assert_eq!(ann.join("late").await, 1);
    let s = stats(a).await;
    cluster.nats.thaw();
    assert!(
        took < Duration::from_secs(20),
        "local delivery took {took:?} while NATS was frozen"
    );
    assert!(
        s["cluster"]["dropped_out"].as_u64().unwrap() > 0,
        "the bridge's queue overflowed and dropped: {}",
        s["cluster"]
    );
    // The next heartbeat shows the gap, and the other node resynchronises; a's heartbeat
    // also finds the room it has a member of and no subscription for.
    let b = cluster.addr(1);
    wait_for_room_count(b, "late", 1).await;
    let mut bea = client(b, "bea").await;
    assert_eq!(bea.join("late").await, 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        bea.say("late", "anyone?").await;
        let heard = ann
            .try_recv_message(Duration::from_millis(200))
            .await
            .ok()
            .flatten()
            .is_some_and(|m| m.to_text().is_ok_and(|t| t.contains("anyone?")));
        if heard {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a never subscribed to the room again"
        );
    }
}

/// Reads `ws` until `n` messages of type `kind` have come (20 s at most); how many came.
async fn count_messages(mut ws: neonex_testkit::client::Ws, kind: &str, n: usize) -> usize {
    let needle = format!("\"type\":\"{kind}\"");
    let mut count = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while count < n {
        match tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut ws)).await {
            Ok(Some(Ok(Message::Text(text)))) => count += usize::from(text.contains(&needle)),
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    count
}

/// The `neonex_cluster_*` metrics the Grafana dashboard charts.
fn dashboard_cluster_metrics() -> Vec<String> {
    let dashboard: Value =
        serde_json::from_str(include_str!("../deploy/grafana/neonex-dashboard.json")).unwrap();
    let mut names = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let mut rest = target["expr"].as_str().unwrap();
            while let Some(at) = rest.find("neonex_cluster_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                names.push(name);
            }
        }
    }
    assert!(names.len() >= 8, "the dashboard has a cluster row");
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_learns_thousands_of_connections_from_a_snapshot_in_pages() {
    // No notices: these clients never read, and 2,500 of them hearing of each other would
    // fill their sockets until the write timeout cut the first ones, on a slow machine.
    let quiet = [
        ("NEONEX_ROOMS_NOTIFY_JOIN_LEAVE", "false"),
        ("NEONEX_PRESENCE_SCOPE", "off"),
    ];
    let mut cluster = Cluster::start(1, &quiet).await;
    let a = cluster.addr(0);
    // More than one page (2000 connections) of a snapshot.
    const N: usize = 2500;
    let mut clients = Vec::with_capacity(N);
    for i in 0..N {
        let url = neonex_testkit::client::ws_url(a, Some(&format!("crowd{i}")));
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        clients.push(ws);
    }
    wait_for_stats(a, "every connection", |s| s["total_connections"] == N).await;
    // A node that comes now hears of them only from the snapshot it asks for.
    let b = cluster.add_node("late", &quiet).await;
    cluster.wait_for_nodes(2).await;
    let s = wait_for_stats(b, "the crowd", |s| s["cluster"]["connections"] == N).await;
    assert_eq!(s["cluster"]["users"], N);
    wait_for_room_count(b, "general", N as u64).await;
    drop(clients);
}

#[tokio::test]
async fn a_node_shut_down_says_goodbye_and_one_started_again_is_a_new_node() {
    // Finn's client does not answer the close: the drain lasts the whole timeout.
    let quick = [("NEONEX_SHUTDOWN_TIMEOUT", "1s")];
    let mut cluster = Cluster::start(2, &quick).await;
    let a = cluster.addr(0);
    let mut ann = client(a, "ann").await;
    let _finn = client(cluster.addr(1), "finn").await;
    wait_for_room_count(a, "general", 2).await;
    let pid = cluster.nodes[1].child.id().to_string();
    let stopped = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let left = ann
        .expect("finn left general", |m| {
            m["type"] == "user_left" && m["user_id"] == "finn"
        })
        .await;
    assert_eq!(left["count"], 1);
    wait_for_stats(a, "one node", |s| s["cluster"]["nodes"] == 1).await;
    let gone = stopped.elapsed();
    assert!(
        gone < Duration::from_secs(2),
        "a goodbye is heard at once, not after the node timeout: {gone:?}"
    );
    assert!(cluster.nodes[1].child.wait().unwrap().success());
    // The same name again: another node, which starts with nothing.
    let b = cluster.add_node("node-1", &quick).await;
    wait_for_stats(a, "two nodes again", |s| s["cluster"]["nodes"] == 2).await;
    wait_for_stats(b, "ann, and no ghost of finn", |s| {
        s["cluster"]["connections"] == 1 && s["cluster"]["nodes"] == 2
    })
    .await;
    let mut finn = client(b, "finn").await;
    assert_eq!(finn.autojoined[0]["count"], 2);
    let online = ann
        .expect("finn online again", |m| {
            m["type"] == "presence" && m["user_id"] == "finn" && m["status"] == "online"
        })
        .await;
    assert_eq!(online["status"], "online");
    finn.say("general", "back").await;
    let m = ann.expect_type("chat_message").await;
    assert_eq!(m["message"], "back");
}

#[tokio::test]
async fn nodes_log_in_to_a_nats_with_the_user_and_password_of_its_address() {
    let nats = Nats::start_with_password("neo", "s3cret");
    let cluster = Cluster::start_on(nats, 2, &[]).await;
    let _gus = client(cluster.addr(1), "gus").await;
    wait_for_room_count(cluster.addr(0), "general", 1).await;
}

#[tokio::test]
async fn with_history_leaving_and_joining_again_repeats_nothing() {
    let cluster = Cluster::start(2, &HISTORY).await;
    let (a, b) = (cluster.addr(0), cluster.addr(1));
    let mut hal = client(a, "hal").await;
    for _ in 0..3 {
        join(&mut hal, "h", None).await;
        hal.leave("h").await;
    }
    let joined = join(&mut hal, "h", None).await;
    let top = joined["offset"].as_u64().unwrap();
    let mut ida = client(b, "ida").await;
    join(&mut ida, "h", None).await;
    wait_for_room_count(b, "h", 2).await;
    for i in 0..5 {
        ida.say("h", &format!("m{i}")).await;
    }
    let got = chat_messages(&mut hal, "h", 5).await;
    let expected: Vec<(u64, String)> = (0..5).map(|i| (top + 1 + i, format!("m{i}"))).collect();
    assert_eq!(got, expected);
    let after = hal.ping_pong().await;
    assert!(
        after.iter().all(|m| m["type"] != "chat_message"),
        "a message came twice: {after:?}"
    );
}

#[tokio::test]
async fn with_history_offsets_go_on_for_members_after_every_message_expired() {
    let env = [("NEONEX_HISTORY_SIZE", "100"), ("NEONEX_HISTORY_TTL", "1s")];
    let cluster = Cluster::start(2, &env).await;
    let mut jo = client(cluster.addr(0), "jo").await;
    let joined = join(&mut jo, "h", None).await;
    let mut kim = client(cluster.addr(1), "kim").await;
    join(&mut kim, "h", None).await;
    wait_for_room_count(cluster.addr(1), "h", 2).await;
    let top = joined["offset"].as_u64().unwrap();
    jo.say("h", "first").await;
    assert_eq!(chat_messages(&mut kim, "h", 1).await[0].0, top + 1);
    // Long enough for JetStream to let every message of the room expire.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    kim.say("h", "after").await;
    let got = chat_messages(&mut jo, "h", 2).await;
    assert_eq!(got[1], (top + 2, "after".to_owned()), "{got:?}");
    // A newcomer is in the same stream, and cannot recover what expired.
    let mut lee = client(cluster.addr(1), "lee").await;
    let recover = json!({"offset": top, "epoch": joined["epoch"]});
    let again = join(&mut lee, "h", Some(&recover)).await;
    assert_eq!(again["epoch"], joined["epoch"]);
    assert_eq!(again["offset"], top + 2);
    assert_eq!(again["recovered"], false, "{again}");
}

#[tokio::test]
async fn with_history_a_join_while_jetstream_is_unreachable_gets_unavailable_and_no_join() {
    let mut cluster = Cluster::start(2, &HISTORY).await;
    let a = cluster.addr(0);
    let mut mo = client(a, "mo").await;
    cluster.nats.stop();
    wait_for_stats(a, "NATS gone", |s| s["cluster"]["nats"] == "disconnected").await;
    mo.send_json(&json!({"type": "join_room", "room": "h2"}))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let refused = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match mo.try_recv_message(left).await {
            Ok(Some(Message::Text(text))) => {
                let m: Value = serde_json::from_str(&text).unwrap();
                assert_ne!(
                    m["type"], "joined",
                    "a join with no stream to place it in: {m}"
                );
                if m["type"] == "error" {
                    break m;
                }
            }
            other => panic!("no answer to the join within 15 s: {other:?}"),
        }
    };
    assert_eq!(refused["code"], "unavailable", "{refused}");
    let rooms = http_call(a, "GET", "/api/rooms", "", "").await.json();
    let h2 = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "h2" && r["members"] != 0);
    assert!(!h2, "the refused join left no member: {rooms}");
    let publish = http_call(a, "POST", "/api/rooms/general/publish", "", r#"{"n":1}"#).await;
    assert_eq!(publish.status, 503, "{}", publish.body);
    assert_eq!(publish.json()["code"], "unavailable");
    // The connection lives.
    mo.ping_pong().await;
}

/// A member that answers `user_joined` at once reaches the joiner, though with history
/// on in a cluster every join waits for JetStream to place it in the room's stream: the
/// others hear of a join once it is in the room, never before.
#[tokio::test]
async fn with_history_a_member_answering_user_joined_at_once_reaches_the_joiner() {
    let cluster = Cluster::start(1, &HISTORY).await;
    let a = cluster.addr(0);
    let mut member = client(a, "member").await;
    join(&mut member, "hall", None).await;
    for round in 0..10 {
        let mut joiner = client(a, &format!("joiner{round}")).await;
        joiner
            .send_json(&json!({"type": "join_room", "room": "hall"}))
            .await;
        member
            .expect("user_joined hall", |m| {
                m["type"] == "user_joined" && m["room"] == "hall"
            })
            .await;
        member
            .send_json(&json!({"type": "typing", "room": "hall", "data": true}))
            .await;
        joiner
            .expect(&format!("round {round}: the member's typing"), |m| {
                m["type"] == "typing"
            })
            .await;
        joiner.close().await;
        member
            .expect("user_left hall", |m| {
                m["type"] == "user_left" && m["room"] == "hall"
            })
            .await;
    }
}
