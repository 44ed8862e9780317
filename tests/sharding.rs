//! Behaviour across shards: delivery between clients of different shards, presence of a
//! user with connections on several shards, one encode per broadcast, the epoll driver.

use neonex::{DriverChoice, HubConfig, PresenceScope};
use neonex_testkit::clock::assert_time_now;
use neonex_testkit::hub::{config, connect_spread, TestHub};
use neonex_testkit::wait::{wait_until, TIMEOUT};
use serde_json::{json, Value};

fn presence_of<'a>(messages: &'a [Value], user: &str) -> Vec<&'a Value> {
    messages
        .iter()
        .filter(|m| m["type"] == "presence" && m["user_id"] == user)
        .collect()
}

/// Two clients, one on each shard, in room `room`: both directions of chat, typing and
/// join/leave notices.
async fn exchange_across_shards(h: &TestHub, room: &str) {
    let mut a = h.connect_on_shard("on-zero", 0).await;
    let mut b = h.connect_on_shard("on-one", 1).await;
    assert_eq!((a.id.shard(), b.id.shard()), (0, 1));

    assert_eq!(a.join(room).await, 1);
    assert_eq!(b.join(room).await, 2);
    let notice = a
        .expect("user_joined", |m| {
            m["type"] == "user_joined" && m["room"] == room
        })
        .await;
    assert_eq!(
        notice,
        json!({"type": "user_joined", "room": room, "user_id": "on-one", "count": 2})
    );

    // Shard 0 to shard 1, and back.
    a.say(room, "from shard 0").await;
    for c in [&mut a, &mut b] {
        let m = c.expect_type("chat_message").await;
        assert_eq!(m["message"], "from shard 0", "{} got {m}", c.id);
        assert_eq!(m["user_id"], "on-zero");
        assert_eq!(m["room"], room);
        assert_time_now(&m);
    }
    b.send_json(&json!({"type": "message", "room": room, "data": {"k": [1, 2]}}))
        .await;
    for c in [&mut a, &mut b] {
        let m = c.expect_type("chat_message").await;
        assert_eq!(m["data"], json!({"k": [1, 2]}), "{} got {m}", c.id);
        assert_eq!(m["user_id"], "on-one");
    }

    // Typing crosses shards too.
    b.send_json(&json!({"type": "typing", "room": room, "data": true}))
        .await;
    let typing = a.expect_type("typing").await;
    assert_eq!(
        typing,
        json!({"type": "typing", "room": room, "user_id": "on-one", "typing": true})
    );

    // A leave on shard 0 is announced on shard 1.
    a.send_json(&json!({"type": "leave_room", "room": room}))
        .await;
    assert_eq!(
        a.expect_type("left").await,
        json!({"type": "left", "room": room, "count": 1})
    );
    let notice = b
        .expect("user_left", |m| {
            m["type"] == "user_left" && m["room"] == room
        })
        .await;
    assert_eq!(
        notice,
        json!({"type": "user_left", "room": room, "user_id": "on-zero", "count": 1})
    );
}

#[tokio::test]
async fn messages_cross_between_shards_both_ways() {
    let h = TestHub::default_hub();
    exchange_across_shards(&h, "bridge").await;
}

#[tokio::test]
async fn the_epoll_driver_serves_across_shards() {
    let h = TestHub::start(HubConfig {
        driver: DriverChoice::Epoll,
        ..config()
    });
    exchange_across_shards(&h, "ep").await;
    // A few more round trips on the epoll driver.
    let mut c = h.connect("third").await;
    for _ in 0..5 {
        let before = c.ping_pong().await;
        assert!(before.iter().all(|m| m["type"] != "error"), "{before:?}");
    }
}

#[tokio::test]
async fn a_user_goes_offline_only_when_the_last_of_its_connections_closes() {
    let h = TestHub::default_hub();
    let mut watcher = h.connect("watcher").await;

    let first = h.connect("pat").await;
    let online = watcher
        .expect("presence of pat", |m| {
            m["type"] == "presence" && m["user_id"] == "pat"
        })
        .await;
    assert_eq!(online["status"], "online", "{online}");
    assert_time_now(&online);

    // The second connection, on the other shard: no second `online`.
    let mut second = h.connect_on_shard("pat", 1 - first.id.shard()).await;
    let ids = h.hub.user_connections("pat");
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_ne!(ids[0].shard(), ids[1].shard());
    assert_eq!(h.hub.user_count(), 2);
    let seen = h.barrier(&mut [&mut watcher]).await;
    let presence = presence_of(&seen[0], "pat");
    assert!(
        presence.is_empty(),
        "presence after pat's second connection: {presence:?}"
    );

    // The first connection closes: pat is still online.
    let first_id = first.id;
    first.close().await;
    h.wait_gone(first_id).await;
    let seen = h.barrier(&mut [&mut watcher, &mut second]).await;
    let presence = presence_of(&seen[0], "pat");
    assert!(
        presence.is_empty(),
        "presence while pat still has a connection: {presence:?}"
    );
    assert_eq!(h.hub.user_count(), 2);

    // The last one closes: exactly one `offline`.
    let second_id = second.id;
    second.close().await;
    let offline = watcher
        .expect("presence of pat", |m| {
            m["type"] == "presence" && m["user_id"] == "pat"
        })
        .await;
    assert_eq!(offline["status"], "offline", "{offline}");
    assert_time_now(&offline);
    h.wait_gone(second_id).await;
    let seen = h.barrier(&mut [&mut watcher]).await;
    let presence = presence_of(&seen[0], "pat");
    assert!(presence.is_empty(), "more presence for pat: {presence:?}");
    let hub = h.hub.clone();
    wait_until("user_count 1", TIMEOUT, || hub.user_count() == 1).await;
}

#[tokio::test]
async fn presence_scope_off_sends_no_presence() {
    let h = TestHub::start(HubConfig {
        presence: PresenceScope::Off,
        ..config()
    });
    let mut watcher = h.connect("watcher").await;
    let other = h.connect("other").await;
    let other_id = other.id;
    other.close().await;
    h.wait_gone(other_id).await;
    let seen = h.barrier(&mut [&mut watcher]).await;
    let presence: Vec<_> = seen[0].iter().filter(|m| m["type"] == "presence").collect();
    assert!(presence.is_empty(), "presence with scope off: {presence:?}");
}

#[tokio::test]
async fn presence_scope_rooms_reaches_only_room_members() {
    let mut config = config();
    config.presence = PresenceScope::Rooms;
    config.rooms.autojoin = vec![];
    let h = TestHub::start(config);
    let mut watcher = h.connect("watcher").await;
    let mut outsider = h.connect("outsider").await;
    let mut newbie = h.connect("newbie").await;
    // newbie is in no room when it opens: nobody hears it come online.
    let seen = h.barrier(&mut [&mut watcher, &mut outsider]).await;
    for s in &seen {
        assert!(presence_of(s, "newbie").is_empty(), "{s:?}");
    }
    watcher.join("x").await;
    newbie.join("x").await;
    let newbie_id = newbie.id;
    newbie.close().await;
    let offline = watcher
        .expect("presence of newbie", |m| {
            m["type"] == "presence" && m["user_id"] == "newbie"
        })
        .await;
    assert_eq!(offline["status"], "offline", "{offline}");
    h.wait_gone(newbie_id).await;
    let seen = h.barrier(&mut [&mut outsider]).await;
    assert!(
        presence_of(&seen[0], "newbie").is_empty(),
        "a client in none of newbie's rooms heard its presence: {:?}",
        seen[0]
    );
}

#[tokio::test]
async fn one_chat_message_is_encoded_once_for_all_its_recipients() {
    let h = TestHub::default_hub();
    let mut clients = connect_spread(&h, "fan", 6).await;
    let n = clients.len();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.join("fan").await, i as u64 + 1);
    }
    // Quiesce: every member has been told of the last join.
    for c in clients.iter_mut().take(n - 1) {
        c.expect("user_joined fan with the full count", |m| {
            m["type"] == "user_joined" && m["room"] == "fan" && m["count"] == n
        })
        .await;
    }
    let before = h.hub.stats();
    clients[0].say("fan", "once").await;
    for c in clients.iter_mut() {
        let m = c.expect_type("chat_message").await;
        assert_eq!(m["message"], "once", "{} got {m}", c.id);
    }
    let after = h.hub.stats();
    assert_eq!(
        after.frames_encoded - before.frames_encoded,
        1,
        "frames encoded for one chat message to {n} members: before {before:?}, after {after:?}"
    );
    assert!(
        after.deliveries - before.deliveries >= n as u64,
        "deliveries rose by {} for {n} members",
        after.deliveries - before.deliveries
    );
    for shard in 0..2 {
        assert!(
            after.shards[shard].deliveries > before.shards[shard].deliveries,
            "shard {shard} delivered nothing though it has members"
        );
    }
    assert!(after.messages_in > before.messages_in);
    assert!(after.bytes_out > before.bytes_out);

    // A hub broadcast to the room: one encode too.
    let before = h.hub.stats();
    let count = h
        .blocking(|hub| hub.broadcast_to_room("fan", r#"{"type":"notice","n":1}"#))
        .await
        .unwrap();
    assert_eq!(count, n);
    for c in clients.iter_mut() {
        c.expect_type("notice").await;
    }
    let after = h.hub.stats();
    assert_eq!(after.frames_encoded - before.frames_encoded, 1);
    assert!(after.deliveries - before.deliveries >= n as u64);
}
