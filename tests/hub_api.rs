//! The library API of `Hub`: publishing, rooms, users, counts, disconnecting.

use neonex::{ConnectionId, HubError, RoomInfo};
use neonex_testkit::client::Client;
use neonex_testkit::hub::{connect_spread, TestHub};
use serde_json::{json, Value};

/// How many of `messages` equal `value`.
fn count(messages: &[Value], value: &Value) -> usize {
    messages.iter().filter(|m| *m == value).count()
}

#[tokio::test]
async fn broadcast_and_broadcast_json_reach_every_connection() {
    let h = TestHub::default_hub();
    let mut clients = connect_spread(&h, "b", 3).await;
    let n = clients.len();
    let text = r#"{"type":"notice","text":"hello everyone","n":[1,2]}"#;
    let sent = h.blocking(move |hub| hub.broadcast(text)).await.unwrap();
    assert_eq!(sent, n);
    let value = json!({"type": "announcement", "text": "json broadcast", "nested": {"ok": true}});
    let v = value.clone();
    let sent = h.blocking(move |hub| hub.broadcast_json(&v)).await.unwrap();
    assert_eq!(sent, n);
    let notice: Value = serde_json::from_str(text).unwrap();
    let mut refs: Vec<&mut Client> = clients.iter_mut().collect();
    let seen = h.barrier(&mut refs).await;
    for (c, seen) in clients.iter().zip(&seen) {
        assert_eq!(count(seen, &notice), 1, "{} got {seen:?}", c.id);
        assert_eq!(count(seen, &value), 1, "{} got {seen:?}", c.id);
        let at_notice = seen.iter().position(|m| *m == notice).unwrap();
        let at_value = seen.iter().position(|m| *m == value).unwrap();
        assert!(
            at_notice < at_value,
            "hub broadcasts out of order for {}",
            c.id
        );
    }
}

#[tokio::test]
async fn broadcast_except_skips_only_the_given_connection() {
    let h = TestHub::default_hub();
    let mut clients = connect_spread(&h, "e", 3).await;
    let n = clients.len();
    let skipped = clients[1].id;
    let text = r#"{"type":"notice","text":"not for you"}"#;
    let sent = h
        .blocking(move |hub| hub.broadcast_except(text, skipped))
        .await
        .unwrap();
    assert_eq!(sent, n - 1);
    let notice: Value = serde_json::from_str(text).unwrap();
    let mut refs: Vec<&mut Client> = clients.iter_mut().collect();
    let seen = h.barrier(&mut refs).await;
    for (c, seen) in clients.iter().zip(&seen) {
        let expected = usize::from(c.id != skipped);
        assert_eq!(
            count(seen, &notice),
            expected,
            "{} (skipped: {skipped}) got {seen:?}",
            c.id
        );
    }
}

#[tokio::test]
async fn broadcast_to_room_reaches_its_members_only() {
    let h = TestHub::default_hub();
    let mut clients = connect_spread(&h, "r", 3).await;
    clients[0].join("news").await;
    clients[1].join("news").await;
    let text = r#"{"type":"news","headline":"rooms work"}"#;
    let sent = h
        .blocking(move |hub| hub.broadcast_to_room("news", text))
        .await
        .unwrap();
    assert_eq!(sent, 2);
    let value = json!({"type": "news", "headline": "as JSON"});
    let v = value.clone();
    let sent = h
        .blocking(move |hub| hub.broadcast_to_room_json("news", &v))
        .await
        .unwrap();
    assert_eq!(sent, 2);
    let except = clients[0].id;
    let text_except = r#"{"type":"news","headline":"all but the first"}"#;
    let sent = h
        .blocking(move |hub| hub.broadcast_to_room_except("news", text_except, except))
        .await
        .unwrap();
    assert_eq!(sent, 1);
    let missing = h
        .blocking(|hub| hub.broadcast_to_room("no-such-room", "{}"))
        .await;
    assert_eq!(missing, Err(HubError::RoomNotFound));

    let notice: Value = serde_json::from_str(text).unwrap();
    let notice_except: Value = serde_json::from_str(text_except).unwrap();
    let mut refs: Vec<&mut Client> = clients.iter_mut().collect();
    let seen = h.barrier(&mut refs).await;
    for (i, (c, seen)) in clients.iter().zip(&seen).enumerate() {
        let member = usize::from(i < 2);
        assert_eq!(count(seen, &notice), member, "{} got {seen:?}", c.id);
        assert_eq!(count(seen, &value), member, "{} got {seen:?}", c.id);
        assert_eq!(
            count(seen, &notice_except),
            usize::from(i == 1),
            "{} got {seen:?}",
            c.id
        );
    }
}

#[tokio::test]
async fn send_to_user_reaches_all_of_its_connections_across_shards() {
    let h = TestHub::default_hub();
    let mut first = h.connect("multi").await;
    let mut second = h.connect_on_shard("multi", 1 - first.id.shard()).await;
    let mut other = h.connect("other").await;
    let text = r#"{"type":"direct","text":"for multi"}"#;
    let sent = h
        .blocking(move |hub| hub.send_to_user("multi", text))
        .await
        .unwrap();
    assert_eq!(sent, 2);
    let value = json!({"type": "direct", "text": "json for multi"});
    let v = value.clone();
    let sent = h
        .blocking(move |hub| hub.send_to_user_json("multi", &v))
        .await
        .unwrap();
    assert_eq!(sent, 2);
    let sent = h
        .blocking(|hub| hub.send_to_user("nobody", "{}"))
        .await
        .unwrap();
    assert_eq!(sent, 0);
    // send_to_connection: exactly one connection.
    let only = second.id;
    let text_one = r#"{"type":"direct","text":"for one connection"}"#;
    h.blocking(move |hub| hub.send_to_connection(only, text_one))
        .await
        .unwrap();
    // An id of a shard that does not exist is refused; a closed (or never opened)
    // connection of a real shard may be refused or dropped, but reaches nobody.
    let no_shard: ConnectionId = "9-1".parse().unwrap();
    let err = h
        .blocking(move |hub| hub.send_to_connection(no_shard, "{}"))
        .await;
    assert_eq!(err, Err(HubError::UnknownConnection(no_shard)));
    let unknown: ConnectionId = format!("{}-999999", only.shard()).parse().unwrap();
    let text_nobody = r#"{"type":"direct","text":"for nobody"}"#;
    let result = h
        .blocking(move |hub| hub.send_to_connection(unknown, text_nobody))
        .await;
    assert!(
        matches!(result, Ok(()) | Err(HubError::UnknownConnection(_))),
        "{result:?}"
    );

    let notice: Value = serde_json::from_str(text).unwrap();
    let notice_one: Value = serde_json::from_str(text_one).unwrap();
    let seen = h.barrier(&mut [&mut first, &mut second, &mut other]).await;
    for (who, seen, expected, one) in [
        ("first", &seen[0], 1, 0),
        ("second", &seen[1], 1, 1),
        ("other", &seen[2], 0, 0),
    ] {
        assert_eq!(count(seen, &notice), expected, "{who} got {seen:?}");
        assert_eq!(count(seen, &value), expected, "{who} got {seen:?}");
        assert_eq!(count(seen, &notice_one), one, "{who} got {seen:?}");
        let nobody: Value = serde_json::from_str(text_nobody).unwrap();
        assert_eq!(count(seen, &nobody), 0, "{who} got {seen:?}");
    }
}

#[tokio::test]
async fn join_room_and_leave_room_through_the_hub() {
    let h = TestHub::default_hub();
    let mut clients = connect_spread(&h, "j", 2).await;
    let (a_id, b_id) = (clients[0].id, clients[1].id);

    let count = h
        .blocking(move |hub| hub.join_room(a_id, "ops"))
        .await
        .unwrap();
    assert_eq!(count, 1);
    let joined = clients[0].expect_type("joined").await;
    assert_eq!(joined, json!({"type": "joined", "room": "ops", "count": 1}));

    let count = h
        .blocking(move |hub| hub.join_room(b_id, "ops"))
        .await
        .unwrap();
    assert_eq!(count, 2);
    let joined = clients[1].expect_type("joined").await;
    assert_eq!(joined, json!({"type": "joined", "room": "ops", "count": 2}));
    let b_user = clients[1].user.clone();
    let notice = clients[0]
        .expect("user_joined ops", |m| {
            m["type"] == "user_joined" && m["room"] == "ops"
        })
        .await;
    assert_eq!(
        notice,
        json!({"type": "user_joined", "room": "ops", "user_id": b_user, "count": 2})
    );

    assert_eq!(
        h.hub.room("ops"),
        Some(RoomInfo {
            name: "ops".into(),
            members: 2,
            persistent: false
        })
    );
    let mut both = vec![a_id, b_id];
    both.sort();
    assert_eq!(h.hub.room_members("ops"), both);
    assert!(h.hub.room_has_member("ops", a_id));
    assert!(h.hub.room_has_member("ops", b_id));
    assert!(!h.hub.room_has_member("random", a_id));
    assert!(h.hub.room_members("no-such-room").is_empty());
    let names: Vec<String> = h.hub.rooms().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["general", "ops", "random"]);
    assert_eq!(h.hub.room_count(), 3);

    let count = h
        .blocking(move |hub| hub.leave_room(a_id, "ops"))
        .await
        .unwrap();
    assert_eq!(count, 1);
    let left = clients[0].expect_type("left").await;
    assert_eq!(left, json!({"type": "left", "room": "ops", "count": 1}));
    let a_user = clients[0].user.clone();
    let notice = clients[1]
        .expect("user_left ops", |m| {
            m["type"] == "user_left" && m["room"] == "ops"
        })
        .await;
    assert_eq!(
        notice,
        json!({"type": "user_left", "room": "ops", "user_id": a_user, "count": 1})
    );
    assert!(!h.hub.room_has_member("ops", a_id));
    assert_eq!(h.hub.room_members("ops"), vec![b_id]);

    // Refusals.
    let unknown: ConnectionId = "0-999999".parse().unwrap();
    let results = h
        .blocking(move |hub| {
            (
                hub.leave_room(a_id, "ops"),
                hub.leave_room(a_id, "no-such-room"),
                hub.join_room(a_id, "bad name"),
                hub.join_room(unknown, "ops"),
            )
        })
        .await;
    assert_eq!(results.0, Err(HubError::NotInRoom));
    assert_eq!(results.1, Err(HubError::RoomNotFound));
    assert_eq!(results.2, Err(HubError::InvalidRoomName));
    assert_eq!(results.3, Err(HubError::UnknownConnection(unknown)));
    // The refused calls told the client nothing.
    let seen = h.barrier(&mut [&mut clients[0]]).await;
    assert!(
        seen[0].iter().all(|m| m["room"] != "ops"),
        "refused hub calls sent {:?}",
        seen[0]
    );

    // The last member drops: the join-created room goes away.
    let b = clients.remove(1);
    b.close().await;
    h.wait_gone(b_id).await;
    assert!(h.hub.room("ops").is_none());
}

#[tokio::test]
async fn counts_follow_connects_joins_leaves_and_drops() {
    let h = TestHub::default_hub();
    assert_eq!(h.hub.connection_count(), 0);
    assert_eq!(h.hub.user_count(), 0);
    assert_eq!(h.hub.room("general").unwrap().members, 0);

    let a = h.connect("u1").await;
    let b = h.connect("u1").await;
    let mut c = h.connect("u2").await;
    assert_eq!(h.hub.connection_count(), 3);
    assert_eq!(h.hub.user_count(), 2);
    assert_eq!(h.hub.room("general").unwrap().members, 3);
    let stats = h.hub.stats();
    assert_eq!(
        (stats.total_connections, stats.unique_users, stats.rooms),
        (3, 2, 2)
    );
    assert_eq!(stats.shards.len(), 2);
    assert_eq!(
        stats.shards.iter().map(|s| s.connections).sum::<u64>(),
        3,
        "{stats:?}"
    );
    let mut ids = vec![a.id, b.id];
    ids.sort();
    assert_eq!(h.hub.user_connections("u1"), ids);
    assert_eq!(h.hub.user_connections("u2"), vec![c.id]);
    assert!(h.hub.user_connections("nobody").is_empty());

    // Joins and leaves.
    c.join("side").await;
    assert_eq!(h.hub.room("side").unwrap().members, 1);
    assert_eq!(h.hub.room_count(), 3);
    c.leave("general").await;
    assert_eq!(h.hub.room("general").unwrap().members, 2);
    assert!(!h.hub.room_has_member("general", c.id));

    // A client that closes properly.
    let c_id = c.id;
    c.close().await;
    h.wait_gone(c_id).await;
    assert_eq!(h.hub.connection_count(), 2);
    assert_eq!(h.hub.user_count(), 1);
    assert!(
        h.hub.room("side").is_none(),
        "empty join-created room stayed"
    );

    // A client whose TCP connection just goes away.
    let a_id = a.id;
    drop(a);
    h.wait_gone(a_id).await;
    assert_eq!(h.hub.connection_count(), 1);
    assert_eq!(h.hub.user_count(), 1, "u1 still has a connection");
    assert_eq!(h.hub.room("general").unwrap().members, 1);
    assert_eq!(h.hub.room_members("general"), vec![b.id]);

    let b_id = b.id;
    b.close().await;
    h.wait_gone(b_id).await;
    assert_eq!(h.hub.connection_count(), 0);
    assert_eq!(h.hub.user_count(), 0);
    let general = h.hub.room("general").unwrap();
    assert_eq!((general.members, general.persistent), (0, true));
    let stats = h.hub.stats();
    assert_eq!((stats.total_connections, stats.unique_users), (0, 0));
}

#[tokio::test]
async fn create_room_and_remove_room() {
    let h = TestHub::default_hub();
    assert_eq!(h.hub.create_room("hall"), Ok(true));
    assert_eq!(h.hub.create_room("hall"), Ok(false));
    assert_eq!(
        h.hub.create_room("bad name"),
        Err(HubError::InvalidRoomName)
    );
    assert_eq!(
        h.hub.room("hall"),
        Some(RoomInfo {
            name: "hall".into(),
            members: 0,
            persistent: true
        })
    );
    assert_eq!(h.hub.room_count(), 3);

    let mut clients = connect_spread(&h, "h", 2).await;
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.join("hall").await, i as u64 + 1);
    }
    // A persistent room stays when its last member leaves.
    assert!(h.hub.remove_room("hall"));
    for c in clients.iter_mut() {
        let left = c
            .expect("left hall", |m| m["type"] == "left" && m["room"] == "hall")
            .await;
        assert_eq!(left, json!({"type": "left", "room": "hall", "count": 0}));
    }
    assert!(h.hub.room("hall").is_none());
    assert!(!h.hub.remove_room("hall"));
    for c in clients.iter_mut() {
        assert!(!h.hub.room_has_member("hall", c.id));
        c.say("hall", "anyone?").await;
        let error = c.expect_type("error").await;
        assert_eq!(error["code"], "room_not_found", "{error}");
    }

    // create_room on a room created by a join makes it persistent.
    let c = &mut clients[0];
    c.join("temp").await;
    assert_eq!(h.hub.create_room("temp"), Ok(false));
    assert!(h.hub.room("temp").unwrap().persistent);
    let left = c.leave("temp").await;
    assert_eq!(left, json!({"type": "left", "room": "temp", "count": 0}));
    assert_eq!(
        h.hub.room("temp"),
        Some(RoomInfo {
            name: "temp".into(),
            members: 0,
            persistent: true
        })
    );
    // An empty persistent room can be removed.
    assert!(h.hub.remove_room("temp"));
    assert!(h.hub.room("temp").is_none());
}

#[tokio::test]
async fn unregister_and_disconnect_close_with_their_codes() {
    let h = TestHub::default_hub();
    let mut a = h.connect("a").await;
    let mut b = h.connect("b").await;
    let (a_id, b_id) = (a.id, b.id);
    let mut watcher = h.connect("watcher").await;

    assert!(h.blocking(move |hub| hub.unregister(a_id)).await);
    let (code, _) = a.expect_close().await;
    assert_eq!(code, 1000, "unregister closes with 1000");
    a.finish_close().await;
    h.wait_gone(a_id).await;
    assert!(
        !h.blocking(move |hub| hub.unregister(a_id)).await,
        "unregister of a gone connection"
    );

    assert!(
        h.blocking(move |hub| hub.disconnect(b_id, 4001, "kicked"))
            .await
    );
    let (code, reason) = b.expect_close().await;
    assert_eq!((code, reason.as_str()), (4001, "kicked"));
    b.finish_close().await;
    h.wait_gone(b_id).await;
    assert!(
        !h.blocking(move |hub| hub.disconnect(b_id, 4001, "again"))
            .await
    );

    for user in ["a", "b"] {
        let notice = watcher
            .expect("user_left", |m| {
                m["type"] == "user_left" && m["user_id"] == user
            })
            .await;
        assert_eq!(notice["room"], "general");
    }
    assert_eq!(h.hub.connection_count(), 1);
    assert_eq!(h.hub.room("general").unwrap().members, 1);
}
