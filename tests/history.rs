//! History, offsets and recovery over real sockets, on two shards: offsets per room, one
//! order for every member, recovery with no gap and no duplicate while others publish,
//! every way a recovery is refused, the history API, and the v1 wire when it is off.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use neonex::config::HistoryConfig;
use neonex::{HubConfig, HubError, PresenceScope};
use neonex_testkit::client::Client;
use neonex_testkit::http::http_call;
use neonex_testkit::hub::{config, connect_spread, flood_limits, TestHub};
use serde_json::{json, Value};

fn with_history(size: usize) -> HubConfig {
    keeping(HistoryConfig {
        size,
        ..HistoryConfig::default()
    })
}

/// The tests' hub, keeping `history`.
fn keeping(history: HistoryConfig) -> HubConfig {
    HubConfig {
        history,
        limits: flood_limits(),
        // Clients come and go here under one user name: its presence notices would come
        // between a welcome and its `joined`.
        presence: PresenceScope::Off,
        ..config()
    }
}

/// Joins `room` asking to recover from `(offset, epoch)`; returns the `joined`.
async fn join_recovering(client: &mut Client, room: &str, offset: u64, epoch: &str) -> Value {
    let recover = json!({"offset": offset, "epoch": epoch});
    send_join(
        client,
        json!({"type": "join_room", "room": room, "recover": recover}),
    )
    .await
}

/// Joins `room`; returns the `joined`.
async fn join(client: &mut Client, room: &str) -> Value {
    send_join(client, json!({"type": "join_room", "room": room})).await
}

/// Sends the `join_room` message `join`; returns the `joined` for its room.
async fn send_join(client: &mut Client, join: Value) -> Value {
    client.send_json(&join).await;
    let room = join["room"].clone();
    client
        .expect(&format!("joined {room}"), |m| {
            m["type"] == "joined" && m["room"] == room
        })
        .await
}

/// Reads the next positioned message of `room` (skipping notices).
async fn next_positioned(client: &mut Client, room: &str) -> Value {
    client
        .expect(&format!("a positioned message of {room}"), |m| {
            (m["type"] == "chat_message" || m["type"] == "publication") && m["room"] == room
        })
        .await
}

fn offset(m: &Value) -> u64 {
    m["offset"]
        .as_u64()
        .unwrap_or_else(|| panic!("no integer offset: {m}"))
}

/// Publishes `{"n": n}` to `room` through the hub; the offset it got.
async fn publish(h: &TestHub, room: &str, n: u64) -> u64 {
    let room = room.to_owned();
    let published = h
        .blocking(move |hub| hub.publish_to_room(&room, &json!({ "n": n }).to_string()))
        .await
        .expect("published");
    published.offset.expect("positioned")
}

#[tokio::test]
async fn with_defaults_the_wire_is_protocol_v1() {
    let h = TestHub::default_hub();
    let mut a = h.connect("ann").await;
    assert_eq!(
        a.autojoined[0],
        json!({"type": "joined", "room": "general", "count": 1})
    );
    let joined = join(&mut a, "v1room").await;
    assert_eq!(
        joined,
        json!({"type": "joined", "room": "v1room", "count": 1})
    );
    a.say("v1room", "hello").await;
    let chat = next_positioned(&mut a, "v1room").await;
    assert!(chat.get("offset").is_none(), "{chat}");
    // Asking to recover with history off is answered, and nothing is replayed.
    let mut b = h.connect("bob").await;
    let joined = join_recovering(&mut b, "v1room", 3, "whatever").await;
    assert_eq!(
        joined,
        json!({"type": "joined", "room": "v1room", "count": 2, "recovered": false})
    );
    let published = h
        .blocking(|hub| hub.publish_to_room("v1room", r#"{"k":1}"#))
        .await
        .unwrap();
    assert_eq!((published.queued, published.offset), (2, None));
    let publication = next_positioned(&mut b, "v1room").await;
    assert_eq!(publication["type"], "publication");
    assert_eq!(publication["data"], json!({"k": 1}));
    assert!(publication.get("offset").is_none(), "{publication}");
    assert_eq!(
        h.blocking(|hub| hub.history("v1room", 0, None))
            .await
            .unwrap_err(),
        HubError::HistoryOff
    );
}

#[tokio::test]
async fn joined_carries_the_epoch_and_the_top_and_offsets_count_up_by_one() {
    let h = TestHub::start(with_history(100));
    let mut clients = connect_spread(&h, "member", 2).await;
    let mut epochs = Vec::new();
    for c in clients.iter_mut() {
        let joined = join(c, "counted").await;
        assert_eq!(joined["offset"], 0, "{joined}");
        epochs.push(joined["epoch"].as_str().expect("an epoch").to_owned());
    }
    assert!(epochs.windows(2).all(|w| w[0] == w[1]), "{epochs:?}");
    for i in 0..5 {
        clients[i % 2].say("counted", &format!("m{i}")).await;
        for c in clients.iter_mut() {
            let m = next_positioned(c, "counted").await;
            assert_eq!(offset(&m), i as u64 + 1, "{m}");
            assert_eq!(m["message"], format!("m{i}"));
        }
    }
    let mut late = h.connect("late").await;
    let joined = join(&mut late, "counted").await;
    assert_eq!(
        (joined["offset"].as_u64(), &joined["epoch"]),
        (Some(5), &json!(epochs[0]))
    );
}

#[tokio::test]
async fn every_member_sees_one_order_whoever_publishes_from_whichever_shard() {
    const PER_PUBLISHER: usize = 40;
    let h = TestHub::start(with_history(1000));
    let mut publishers = connect_spread(&h, "pub", 6).await;
    // Six of them, still on both shards: the first on each shard come first.
    for shard in 0..2 {
        let at = publishers
            .iter()
            .position(|p| p.id.shard() == shard)
            .unwrap();
        let publisher = publishers.remove(at);
        publishers.insert(shard, publisher);
    }
    publishers.truncate(6);
    assert!(
        (0..2).all(|s| publishers.iter().any(|p| p.id.shard() == s)),
        "publishers on both shards"
    );
    let mut observers = [
        h.connect_on_shard("watch0", 0).await,
        h.connect_on_shard("watch1", 1).await,
    ];
    for c in publishers.iter_mut().chain(observers.iter_mut()) {
        join(c, "order").await;
    }
    let sends = publishers.iter_mut().enumerate().map(|(p, c)| async move {
        for j in 0..PER_PUBLISHER {
            c.say("order", &format!("{p}:{j}")).await;
        }
    });
    futures_util::future::join_all(sends).await;
    let total = 6 * PER_PUBLISHER;
    let mut sequences = Vec::new();
    for c in publishers.iter_mut().chain(observers.iter_mut()) {
        let mut seen = Vec::new();
        for _ in 0..total {
            let m = next_positioned(c, "order").await;
            seen.push((offset(&m), m["message"].as_str().unwrap().to_owned()));
        }
        sequences.push(seen);
    }
    let first = &sequences[0];
    let offsets: Vec<u64> = first.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (1..=total as u64).collect::<Vec<_>>());
    for (i, seq) in sequences.iter().enumerate() {
        assert_eq!(seq, first, "member {i} saw another order");
    }
    for p in 0..6 {
        let mine: Vec<usize> = first
            .iter()
            .filter_map(|(_, text)| {
                let (who, j) = text.split_once(':').unwrap();
                (who == p.to_string()).then(|| j.parse().unwrap())
            })
            .collect();
        assert_eq!(
            mine,
            (0..PER_PUBLISHER).collect::<Vec<_>>(),
            "publisher {p}"
        );
    }
}

/// A subscriber drops while a publisher keeps publishing, and comes back on `shard`
/// with `recover`: it gets every message after the last it saw, the missed ones first,
/// none twice.
async fn recover_while_publishing(shard: usize) {
    let h = TestHub::start(with_history(10_000));
    let room = format!("live{shard}");
    h.hub.create_room(&room).unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let publisher = {
        let (hub, room, running) = (h.hub.clone(), room.clone(), running.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while running.load(Ordering::Relaxed) {
                n += 1;
                let published = hub.publish_to_room(&room, &json!({ "n": n }).to_string());
                assert_eq!(
                    published.unwrap().offset,
                    Some(n),
                    "offsets follow publishing"
                );
                std::thread::sleep(Duration::from_micros(500));
            }
            n
        })
    };
    let mut sub = h.connect_on_shard("sub", 1 - shard).await;
    let joined = join(&mut sub, &room).await;
    let epoch = joined["epoch"].as_str().unwrap().to_owned();
    let mut last = joined["offset"].as_u64().unwrap();
    for _ in 0..30 {
        let m = next_positioned(&mut sub, &room).await;
        assert_eq!(offset(&m), last + 1, "{m}");
        last = offset(&m);
    }
    drop(sub);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut back = h.connect_on_shard("sub", shard).await;
    let joined = join_recovering(&mut back, &room, last, &epoch).await;
    assert_eq!(joined["recovered"], true, "{joined}");
    assert_eq!(joined["epoch"], epoch.as_str());
    let top = joined["offset"].as_u64().unwrap();
    assert!(top > last + 10, "messages were missed: {last} → {top}");
    for expected in last + 1..=top + 50 {
        let m = next_positioned(&mut back, &room).await;
        assert_eq!(offset(&m), expected, "no gap, no duplicate: {m}");
        assert_eq!(m["data"]["n"], expected, "{m}");
    }
    running.store(false, Ordering::Relaxed);
    let published = publisher.join().unwrap();
    for expected in top + 51..=published {
        let m = next_positioned(&mut back, &room).await;
        assert_eq!(offset(&m), expected, "{m}");
    }
    let stats = h.hub.stats();
    assert_eq!(stats.recoveries.attempted, 1);
    assert_eq!(stats.recoveries.succeeded, 1);
}

#[tokio::test]
async fn recovery_on_shard_0_while_publishing_has_no_gap_and_no_duplicate() {
    recover_while_publishing(0).await;
}

#[tokio::test]
async fn recovery_on_shard_1_while_publishing_has_no_gap_and_no_duplicate() {
    recover_while_publishing(1).await;
}

/// Publishes `n` messages to `room`, and has `from` join it with `recover` at
/// `(offset, epoch)`: the `joined`, after which the next positioned message is checked
/// to be live (the one published next), so nothing was replayed.
async fn refused_recovery(
    h: &TestHub,
    room: &str,
    offset_seen: u64,
    epoch: &str,
    reason: &str,
) -> Value {
    let failed_before = h
        .hub
        .stats()
        .recoveries
        .failed
        .get(reason)
        .copied()
        .unwrap_or(0);
    let mut client = h.connect(&format!("refused-{reason}")).await;
    let joined = join_recovering(&mut client, room, offset_seen, epoch).await;
    assert_eq!(joined["recovered"], false, "{reason}: {joined}");
    let top = joined["offset"].as_u64().expect("the top");
    let next = publish(h, room, 0).await;
    assert_eq!(next, top + 1);
    let m = next_positioned(&mut client, room).await;
    assert_eq!(
        offset(&m),
        next,
        "{reason}: nothing replayed, the live one next: {m}"
    );
    let failed = h.hub.stats().recoveries.failed;
    assert_eq!(failed.get(reason), Some(&(failed_before + 1)), "{failed:?}");
    joined
}

#[tokio::test]
async fn a_recovery_is_refused_whole_for_another_epoch_a_gap_too_long_or_a_future_offset() {
    let h = TestHub::start(keeping(HistoryConfig {
        size: 20,
        max_recover: 5,
        ..HistoryConfig::default()
    }));
    h.hub.create_room("refusals").unwrap();
    for n in 1..=30 {
        publish(&h, "refusals", n).await;
    }
    let epoch = h.hub.history("refusals", 0, Some(1)).unwrap().epoch;
    refused_recovery(&h, "refusals", 28, "not-the-epoch", "epoch").await;
    // The last check published 31: from 20, eleven were missed, and at most five may be
    // recovered (though all eleven are held).
    refused_recovery(&h, "refusals", 20, &epoch, "too_many").await;
    refused_recovery(&h, "refusals", 500, &epoch, "epoch").await;
    let mut close = h.connect("close").await;
    let joined = join_recovering(&mut close, "refusals", 30, &epoch).await;
    assert_eq!(
        joined["recovered"], true,
        "three missed, three replayed: {joined}"
    );
    assert_eq!(joined["offset"], 33);
    for expected in 31..=33 {
        assert_eq!(
            offset(&next_positioned(&mut close, "refusals").await),
            expected
        );
    }
}

#[tokio::test]
async fn a_gap_the_ring_has_passed_is_not_recovered() {
    let h = TestHub::start(keeping(HistoryConfig {
        size: 10,
        max_recover: 300,
        ..HistoryConfig::default()
    }));
    h.hub.create_room("ring").unwrap();
    for n in 1..=25 {
        publish(&h, "ring", n).await;
    }
    let epoch = h.hub.history("ring", 0, None).unwrap().epoch;
    refused_recovery(&h, "ring", 10, &epoch, "gap").await;
}

#[tokio::test]
async fn messages_older_than_the_ttl_are_not_recovered() {
    let h = TestHub::start(keeping(HistoryConfig {
        size: 100,
        ttl: Duration::from_millis(300),
        ..HistoryConfig::default()
    }));
    h.hub.create_room("brief").unwrap();
    for n in 1..=3 {
        publish(&h, "brief", n).await;
    }
    let epoch = h.hub.history("brief", 0, None).unwrap().epoch;
    assert_eq!(h.hub.history("brief", 0, None).unwrap().messages.len(), 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(h.hub.history("brief", 0, None).unwrap().messages.is_empty());
    refused_recovery(&h, "brief", 1, &epoch, "gap").await;
}

#[tokio::test]
async fn a_room_removed_and_made_again_has_a_new_epoch() {
    let h = TestHub::start(with_history(100));
    h.hub.create_room("phoenix").unwrap();
    publish(&h, "phoenix", 1).await;
    let old = h.hub.history("phoenix", 0, None).unwrap();
    assert!(h.hub.remove_room("phoenix"));
    h.hub.create_room("phoenix").unwrap();
    assert_eq!(publish(&h, "phoenix", 1).await, 1, "offsets start again");
    let new = h.hub.history("phoenix", 0, None).unwrap();
    assert_ne!(new.epoch, old.epoch);
    refused_recovery(&h, "phoenix", 1, &old.epoch, "epoch").await;
}

#[tokio::test]
async fn an_emptied_room_keeps_its_stream_for_those_who_come_back() {
    let h = TestHub::start(with_history(100));
    let mut only = h.connect_on_shard("only", 1).await;
    let joined = join(&mut only, "adhoc").await;
    let epoch = joined["epoch"].as_str().unwrap().to_owned();
    only.say("adhoc", "one").await;
    assert_eq!(offset(&next_positioned(&mut only, "adhoc").await), 1);
    let id = only.id;
    drop(only);
    h.wait_gone(id).await;
    assert!(
        h.hub.room("adhoc").is_none(),
        "the room went with its last member"
    );
    let mut back = h.connect_on_shard("only", 0).await;
    let joined = join_recovering(&mut back, "adhoc", 0, &epoch).await;
    assert_eq!(joined["recovered"], true, "{joined}");
    let m = next_positioned(&mut back, "adhoc").await;
    assert_eq!((offset(&m), &m["message"]), (1, &json!("one")));
}

#[tokio::test]
async fn a_malformed_recover_is_a_bad_request_and_joins_nothing() {
    let h = TestHub::start(with_history(100));
    let mut c = h.connect("careless").await;
    for recover in [
        json!(5),
        json!({"offset": 1}),
        json!({"offset": -1, "epoch": "e"}),
        json!({"offset": "1", "epoch": "e"}),
        json!({"offset": 1, "epoch": 2}),
    ] {
        c.send_json(&json!({"type": "join_room", "room": "guarded", "recover": recover}))
            .await;
        let error = c.expect_type("error").await;
        assert_eq!(error["code"], "bad_request", "{recover}: {error}");
    }
    assert!(h.hub.room("guarded").is_none(), "no join happened");
    assert!(c.ping_pong().await.is_empty(), "the connection lives");
}

#[tokio::test]
async fn the_api_publishes_positioned_messages_and_reads_them_back() {
    let h = TestHub::start(keeping(HistoryConfig {
        size: 100,
        max_recover: 4,
        ..HistoryConfig::default()
    }));
    let mut member = h.connect("member").await;
    let joined = join(&mut member, "feed").await;
    let mut received = Vec::new();
    for n in 1..=6 {
        let body = json!({ "price": n }).to_string();
        let response = http_call(h.addr, "POST", "/api/rooms/feed/publish", "", &body).await;
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.json(), json!({"queued": 1, "offset": n}));
        let m = next_positioned(&mut member, "feed").await;
        assert_eq!(m["type"], "publication");
        assert_eq!(m["data"], json!({ "price": n }));
        assert_eq!(offset(&m), n);
        received.push(m);
    }
    let response = http_call(
        h.addr,
        "GET",
        "/api/rooms/feed/history?since=1&limit=3",
        "",
        "",
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
    let history = response.json();
    assert_eq!(history["room"], "feed");
    assert_eq!(history["epoch"], joined["epoch"]);
    assert_eq!(history["offset"], 6);
    assert_eq!(
        history["messages"],
        json!(received[1..4]),
        "exactly as received"
    );
    let capped = http_call(h.addr, "GET", "/api/rooms/feed/history", "", "").await;
    assert_eq!(
        capped.json()["messages"],
        json!(received[..4]),
        "max_recover caps"
    );
    let library = h.hub.history("feed", 4, None).unwrap();
    let texts: Vec<Value> = library
        .messages
        .iter()
        .map(|m| serde_json::from_str(m.json()).unwrap())
        .collect();
    assert_eq!(texts, received[4..]);
    assert_eq!(library.messages[0].offset, 5);

    let missing = http_call(h.addr, "GET", "/api/rooms/nowhere/history", "", "").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["code"], "room_not_found");
    let missing = http_call(h.addr, "POST", "/api/rooms/nowhere/publish", "", "{}").await;
    assert_eq!(
        (missing.status, missing.json()["code"].clone()),
        (404, json!("room_not_found"))
    );
    let bad = http_call(h.addr, "POST", "/api/rooms/feed/publish", "", "{nope").await;
    assert_eq!(
        (bad.status, bad.json()["code"].clone()),
        (400, json!("invalid_json"))
    );
}

#[tokio::test]
async fn history_off_answers_404_history_off() {
    let h = TestHub::default_hub();
    let response = http_call(h.addr, "GET", "/api/rooms/general/history", "", "").await;
    assert_eq!(response.status, 404);
    assert_eq!(response.json()["code"], "history_off");
    let response = http_call(h.addr, "POST", "/api/rooms/general/publish", "", "[1,2]").await;
    assert_eq!(response.json(), json!({"queued": 0}));
}

#[tokio::test]
async fn recoveries_and_history_show_in_stats_and_metrics() {
    let h = TestHub::start(with_history(100));
    h.hub.create_room("seen").unwrap();
    publish(&h, "seen", 1).await;
    let epoch = h.hub.history("seen", 0, None).unwrap().epoch;
    let mut c = h.connect("counted").await;
    assert_eq!(
        join_recovering(&mut c, "seen", 0, &epoch).await["recovered"],
        true
    );
    let stats = http_call(h.addr, "GET", "/stats", "", "").await.json();
    assert_eq!(stats["recoveries"]["attempted"], 1, "{stats}");
    assert_eq!(stats["recoveries"]["succeeded"], 1);
    let metrics = http_call(h.addr, "GET", "/metrics", "", "").await;
    let text = metrics.body.clone();
    assert!(
        text.lines()
            .any(|l| l.starts_with("neonex_recoveries_total{")
                && l.contains("outcome=\"recovered\"")
                && l.ends_with(" 1")),
        "{text}"
    );
    // The gauges are published once per housekeeping tick.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let stats = h.hub.stats();
        if stats.history.messages == 1 {
            assert!(stats.history.bytes > 10);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "history gauges: {:?}",
            stats.history
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

mod interleavings {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// Publish this many messages to the room.
        Publish(u64),
        /// Client `i` reads up to `read` of the messages it has not read yet, then drops.
        Drop { i: usize, read: u64 },
        /// Client `i`, if dropped, comes back and joins with `recover`.
        Back(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u64..6).prop_map(Op::Publish),
            (0usize..3, 0u64..8).prop_map(|(i, read)| Op::Drop { i, read }),
            (0usize..3).prop_map(Op::Back),
        ]
    }

    /// One client over all its connections: every offset it got, in order.
    struct Member {
        user: String,
        client: Option<Client>,
        seen: Vec<u64>,
    }

    impl Member {
        fn last(&self) -> u64 {
            self.seen.last().copied().unwrap_or(0)
        }

        async fn read(&mut self, n: u64) {
            let client = self.client.as_mut().expect("connected");
            for _ in 0..n {
                let m = next_positioned(client, "mixed").await;
                self.seen.push(offset(&m));
            }
        }
    }

    async fn run(ops: Vec<Op>) {
        let h = TestHub::start(with_history(10_000));
        h.hub.create_room("mixed").unwrap();
        let mut epoch = String::new();
        let mut members = Vec::new();
        for i in 0..3 {
            let user = format!("m{i}");
            let mut client = h.connect(&user).await;
            epoch = join(&mut client, "mixed").await["epoch"]
                .as_str()
                .unwrap()
                .to_owned();
            members.push(Member {
                user,
                client: Some(client),
                seen: Vec::new(),
            });
        }
        let mut top = 0;
        for op in ops {
            match op {
                Op::Publish(n) => {
                    for _ in 0..n {
                        top = publish(&h, "mixed", top + 1).await;
                    }
                }
                Op::Drop { i, read } => {
                    let member = &mut members[i];
                    if member.client.is_some() {
                        member.read(read.min(top - member.last())).await;
                        member.client = None;
                    }
                }
                Op::Back(i) => {
                    let member = &mut members[i];
                    if member.client.is_none() {
                        let mut client = h.connect(&member.user).await;
                        let last = member.last();
                        let joined = join_recovering(&mut client, "mixed", last, &epoch).await;
                        assert_eq!(joined["recovered"], true, "{joined}");
                        member.client = Some(client);
                    }
                }
            }
        }
        for member in members.iter_mut() {
            if member.client.is_some() {
                member.read(top - member.last()).await;
            }
            let expected: Vec<u64> = (1..=member.last()).collect();
            assert_eq!(
                member.seen, expected,
                "{}: a gap or a duplicate",
                member.user
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        #[test]
        fn no_interleaving_of_publishes_drops_and_recoveries_loses_or_repeats(
            ops in proptest::collection::vec(op(), 1..16)
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(run(ops));
        }
    }
}
