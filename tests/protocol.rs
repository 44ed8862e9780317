//! Protocol v1 as clients see it: every client message type, every server answer, and
//! every error of PROTOCOL.md.

use neonex::{HubConfig, RoomInfo};
use neonex_testkit::clock::assert_time_now;
use neonex_testkit::hub::{config, connect_spread, flood_limits, TestHub};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Messages of `kind` about `room` in `messages`.
fn of<'a>(messages: &'a [Value], kind: &str, room: &str) -> Vec<&'a Value> {
    messages
        .iter()
        .filter(|m| m["type"] == kind && m["room"] == room)
        .collect()
}

#[tokio::test]
async fn welcome_comes_first_then_joined_general() {
    let h = TestHub::default_hub();
    let alice = h.connect("alice").await;
    assert_eq!(alice.welcome["type"], "welcome");
    assert_eq!(alice.welcome["user_id"], "alice");
    assert_eq!(alice.welcome["connection_id"], alice.id.to_string());
    assert!(alice.id.shard() < 2, "shard of {} out of range", alice.id);
    assert_eq!(
        alice.autojoined[0],
        json!({"type": "joined", "room": "general", "count": 1})
    );

    let anon = h.connect_anonymous().await;
    assert_eq!(anon.user, format!("anon-{}", anon.id), "{}", anon.welcome);
    assert_eq!(anon.autojoined[0]["count"], 2, "{}", anon.autojoined[0]);
    assert_ne!(anon.id, alice.id);

    // The user parameter is percent-decoded.
    let spaced = h.connect("al%20ice").await;
    assert_eq!(spaced.user, "al ice");
    assert_eq!(spaced.autojoined[0]["count"], 3);

    let info = h.connection(alice.id).await.expect("alice is registered");
    assert_eq!(&*info.user_id, "alice");
    assert_eq!(info.id, alice.id);
}

#[tokio::test]
async fn join_room_answers_joined_and_tells_the_others() {
    let h = TestHub::default_hub();
    let mut alice = h.connect("alice").await;
    let mut bob = h.connect("bob").await;

    // Creating a room by joining it.
    assert!(h.hub.room("lobby").is_none());
    alice
        .send_json(&json!({"type": "join_room", "room": "lobby"}))
        .await;
    let joined = alice.expect_type("joined").await;
    assert_eq!(
        joined,
        json!({"type": "joined", "room": "lobby", "count": 1})
    );
    assert_eq!(
        h.hub.room("lobby"),
        Some(RoomInfo {
            name: "lobby".into(),
            members: 1,
            persistent: false
        })
    );

    // A second member: the joiner gets `joined`, the others `user_joined`.
    bob.send_json(&json!({"type": "join_room", "room": "lobby"}))
        .await;
    let joined = bob.expect_type("joined").await;
    assert_eq!(
        joined,
        json!({"type": "joined", "room": "lobby", "count": 2})
    );
    let notice = alice
        .expect("user_joined lobby", |m| {
            m["type"] == "user_joined" && m["room"] == "lobby"
        })
        .await;
    assert_eq!(
        notice,
        json!({"type": "user_joined", "room": "lobby", "user_id": "bob", "count": 2})
    );

    // Joining a room already joined: `joined` again, same count, nobody told.
    alice
        .send_json(&json!({"type": "join_room", "room": "lobby"}))
        .await;
    let again = alice.expect_type("joined").await;
    assert_eq!(
        again,
        json!({"type": "joined", "room": "lobby", "count": 2})
    );
    assert_eq!(h.hub.room("lobby").unwrap().members, 2);
    // A chat message published after the re-join is ordered after anything the re-join
    // could have published, so reading up to it shows what bob was told.
    alice.say("lobby", "after-rejoin").await;
    let mut seen = Vec::new();
    loop {
        let m = bob.recv_json().await;
        if m["type"] == "chat_message" && m["message"] == "after-rejoin" {
            break;
        }
        seen.push(m);
    }
    assert!(
        of(&seen, "user_joined", "lobby").is_empty(),
        "bob was told about a re-join or about himself: {seen:?}"
    );

    // Joining an existing persistent room.
    assert_eq!(bob.join("random").await, 1);
    assert_eq!(h.hub.room("random").unwrap().members, 1);
    assert!(h.hub.room("random").unwrap().persistent);
}

#[tokio::test]
async fn join_of_a_missing_room_without_create_on_join_is_room_not_found() {
    let mut config = config();
    config.rooms.create_on_join = false;
    let h = TestHub::start(config);
    let mut alice = h.connect("alice").await;
    alice
        .send_json(&json!({"type": "join_room", "room": "nowhere"}))
        .await;
    let error = alice.recv_json().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "room_not_found", "{error}");
    assert!(h.hub.room("nowhere").is_none());
    assert_eq!(alice.join("random").await, 1);
}

#[tokio::test]
async fn notify_join_leave_off_sends_no_user_joined_or_user_left() {
    let mut config = config();
    config.rooms.notify_join_leave = false;
    config.presence = neonex::PresenceScope::Off;
    let h = TestHub::start(config);
    let mut alice = h.connect("alice").await;
    let bob = h.connect("bob").await;
    assert_eq!(bob.autojoined[0]["count"], 2);
    let bob_id = bob.id;
    bob.close().await;
    h.wait_gone(bob_id).await;
    let seen = h.barrier(&mut [&mut alice]).await;
    assert!(
        seen[0].is_empty(),
        "with notify_join_leave off alice heard: {:?}",
        seen[0]
    );
}

#[tokio::test]
async fn leave_room_answers_left_and_tells_the_others() {
    let h = TestHub::default_hub();
    let mut alice = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let mut carol = h.connect("carol").await;
    assert_eq!(alice.join("hall").await, 1);
    assert_eq!(bob.join("hall").await, 2);

    let left = bob.leave("hall").await;
    assert_eq!(left, json!({"type": "left", "room": "hall", "count": 1}));
    let notice = alice
        .expect("user_left hall", |m| {
            m["type"] == "user_left" && m["room"] == "hall"
        })
        .await;
    assert_eq!(
        notice,
        json!({"type": "user_left", "room": "hall", "user_id": "bob", "count": 1})
    );
    assert!(!h.hub.room_has_member("hall", bob.id));

    // Leaving a room one is not in, and a room that does not exist.
    for (room, code) in [
        ("hall", "not_in_room"),
        ("random", "not_in_room"),
        ("ghost", "room_not_found"),
    ] {
        carol
            .send_json(&json!({"type": "leave_room", "room": room}))
            .await;
        let error = carol.expect_type("error").await;
        assert_eq!(error["code"], code, "leave_room {room}: {error}");
        assert!(error["error"].is_string(), "{error}");
        carol.ping_pong().await;
    }

    // The last member leaves: a room created by join disappears.
    let left = alice.leave("hall").await;
    assert_eq!(left, json!({"type": "left", "room": "hall", "count": 0}));
    assert!(
        h.hub.room("hall").is_none(),
        "empty join-created room stayed"
    );

    // Leaving an auto-joined persistent room.
    alice
        .send_json(&json!({"type": "leave_room", "room_id": "general"}))
        .await;
    let left = alice.expect_type("left").await;
    assert_eq!(left, json!({"type": "left", "room": "general", "count": 2}));
    let notice = bob
        .expect("user_left general", |m| {
            m["type"] == "user_left" && m["room"] == "general"
        })
        .await;
    assert_eq!(
        notice,
        json!({"type": "user_left", "room": "general", "user_id": "alice", "count": 2})
    );
    assert_eq!(h.hub.room("general").unwrap().members, 2);
}

/// The fields of a chat message other than `time`, which is checked on its own.
fn without_time(m: &Value) -> Value {
    let mut m = m.clone();
    let time = m.as_object_mut().unwrap().remove("time");
    assert!(time.is_some(), "chat_message without time: {m}");
    m
}

#[tokio::test]
async fn message_reaches_every_member_once_with_message_and_data() {
    let h = TestHub::default_hub();
    let mut alice = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let mut carol = h.connect("carol").await;
    alice.join("chat").await;
    bob.join("chat").await;

    let data = json!({
        "n": [1, 2, {"x": null, "y": [true, false]}],
        "s": "é ✓ \"quoted\" \\ \n tab\t",
        "f": 1.5,
        "neg": -42,
        "empty": {},
    });
    // (what alice sends, what every member must get without `time`)
    let from_alice = [
        (
            json!({"type": "message", "room": "chat", "message": "hello"}),
            json!({"type": "chat_message", "room": "chat", "user_id": "alice", "message": "hello"}),
        ),
        (
            json!({"type": "message", "room": "chat", "data": data}),
            json!({"type": "chat_message", "room": "chat", "user_id": "alice", "data": data}),
        ),
        (
            json!({"type": "message", "room_id": "chat", "message": "both", "data": [1, "two", 3.25]}),
            json!({"type": "chat_message", "room": "chat", "user_id": "alice", "message": "both", "data": [1, "two", 3.25]}),
        ),
        (
            json!({"type": "message", "room": "chat", "data": "just a string"}),
            json!({"type": "chat_message", "room": "chat", "user_id": "alice", "data": "just a string"}),
        ),
        (
            json!({"type": "message", "room": "chat", "data": 7}),
            json!({"type": "chat_message", "room": "chat", "user_id": "alice", "data": 7}),
        ),
        (
            json!({"type": "message", "room": "chat", "data": false}),
            json!({"type": "chat_message", "room": "chat", "user_id": "alice", "data": false}),
        ),
        // The client cannot choose its user id.
        (
            json!({"type": "message", "room": "chat", "message": "spoof", "user_id": "mallory"}),
            json!({"type": "chat_message", "room": "chat", "user_id": "alice", "message": "spoof"}),
        ),
    ];
    let from_bob = [(
        json!({"type": "message", "room_id": "chat", "message": "hi alice", "user_id": "alice"}),
        json!({"type": "chat_message", "room": "chat", "user_id": "bob", "message": "hi alice"}),
    )];
    for (sent, _) in &from_alice {
        alice.send_json(sent).await;
    }
    for (sent, _) in &from_bob {
        bob.send_json(sent).await;
    }
    let total = from_alice.len() + from_bob.len();
    let mut received = Vec::new();
    for client in [&mut alice, &mut bob] {
        let mut chats = Vec::new();
        while chats.len() < total {
            let m = client
                .expect("chat_message", |m| m["type"] == "chat_message")
                .await;
            assert_time_now(&m);
            chats.push(without_time(&m));
        }
        received.push(chats);
    }
    // Nothing more (exactly once), and nothing at all for carol, who is not a member.
    let after = h.barrier(&mut [&mut alice, &mut bob, &mut carol]).await;
    for (who, seen) in ["alice", "bob", "carol"].iter().zip(&after) {
        let chats = of(seen, "chat_message", "chat");
        assert!(chats.is_empty(), "{who} got extra chat messages: {chats:?}");
    }
    for (who, chats) in ["alice", "bob"].iter().zip(&received) {
        for (sender, expected) in [("alice", &from_alice[..]), ("bob", &from_bob[..])] {
            let got: Vec<&Value> = chats.iter().filter(|m| m["user_id"] == sender).collect();
            let want: Vec<&Value> = expected.iter().map(|(_, e)| e).collect();
            assert_eq!(got, want, "what {who} got from {sender}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_one_client_arrive_in_order_exactly_once_on_every_shard() {
    let h = TestHub::start(HubConfig {
        limits: flood_limits(),
        ..config()
    });
    let mut clients = connect_spread(&h, "m", 3).await;
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.join("seq").await, i as u64 + 1);
    }
    const N: usize = 200;
    let sender = &mut clients[0];
    for i in 0..N {
        sender
            .send_json(&json!({"type": "message", "room": "seq", "message": i.to_string(), "data": {"i": i}}))
            .await;
    }
    sender.say("seq", "end").await;
    let sender_user = sender.user.clone();
    for c in clients.iter_mut() {
        let mut got = Vec::new();
        loop {
            let m = c
                .expect("chat_message in seq", |m| {
                    m["type"] == "chat_message" && m["room"] == "seq"
                })
                .await;
            assert_eq!(m["user_id"], sender_user.as_str(), "{m}");
            if m["message"] == "end" {
                break;
            }
            got.push(m["data"]["i"].as_u64().unwrap_or(u64::MAX));
        }
        let want: Vec<u64> = (0..N as u64).collect();
        assert_eq!(
            got,
            want,
            "{} (shard {}) got the sequence wrong (len {})",
            c.id,
            c.id.shard(),
            got.len()
        );
    }
}

#[tokio::test]
async fn typing_reaches_the_other_members_only() {
    let h = TestHub::default_hub();
    let mut alice = h.connect("alice").await;
    let mut bob = h.connect("bob").await;

    alice
        .send_json(
            &json!({"type": "typing", "room": "general", "data": true, "user_id": "mallory"}),
        )
        .await;
    let typing = bob.expect_type("typing").await;
    assert_eq!(
        typing,
        json!({"type": "typing", "room": "general", "user_id": "alice", "typing": true})
    );
    alice
        .send_json(&json!({"type": "typing", "room_id": "general", "data": false}))
        .await;
    let typing = bob.expect_type("typing").await;
    assert_eq!(
        typing,
        json!({"type": "typing", "room": "general", "user_id": "alice", "typing": false})
    );

    // The sender is not told: its own later chat message comes with no typing before it.
    alice.say("general", "done typing").await;
    let mut seen = Vec::new();
    loop {
        let m = alice.recv_json().await;
        if m["type"] == "chat_message" {
            assert_eq!(m["message"], "done typing");
            break;
        }
        seen.push(m);
    }
    assert!(
        seen.iter().all(|m| m["type"] != "typing"),
        "the sender got its own typing: {seen:?}"
    );
    // Bob receives the chat message after the typing ones, and no duplicate typing.
    let chat = bob.expect_type("chat_message").await;
    assert_eq!(chat["message"], "done typing");
}

#[tokio::test]
async fn ping_answers_pong() {
    let h = TestHub::default_hub();
    let mut alice = h.connect("alice").await;
    for _ in 0..3 {
        alice.send_json(&json!({"type": "ping"})).await;
        assert_eq!(alice.recv_json().await, json!({"type": "pong"}));
    }
}

#[tokio::test]
async fn malformed_and_refused_messages_get_errors_and_the_connection_stays_open() {
    let h = TestHub::default_hub();
    let mut alice = h.connect("alice").await;
    let long_room = "r".repeat(129);
    let cases: Vec<(String, &str, Option<&str>)> = vec![
        (
            "not json".into(),
            "invalid_message",
            Some("Invalid message format"),
        ),
        (
            "{\"type\":\"ping\"".into(),
            "invalid_message",
            Some("Invalid message format"),
        ),
        (
            "[1,2]".into(),
            "invalid_message",
            Some("Invalid message format"),
        ),
        (
            "\"ping\"".into(),
            "invalid_message",
            Some("Invalid message format"),
        ),
        (
            "{\"room\":\"general\"}".into(),
            "invalid_message",
            Some("Invalid message format"),
        ),
        (
            "{\"type\":7}".into(),
            "invalid_message",
            Some("Invalid message format"),
        ),
        (
            "{\"type\":null}".into(),
            "invalid_message",
            Some("Invalid message format"),
        ),
        (
            "{\"type\":\"dance\"}".into(),
            "unknown_type",
            Some("Unknown message type"),
        ),
        ("{\"type\":\"join_room\"}".into(), "bad_request", None),
        (
            "{\"type\":\"join_room\",\"room\":5}".into(),
            "bad_request",
            None,
        ),
        (
            "{\"type\":\"join_room\",\"room\":\"\"}".into(),
            "bad_request",
            None,
        ),
        (
            "{\"type\":\"join_room\",\"room\":\"has space\"}".into(),
            "bad_request",
            None,
        ),
        (
            "{\"type\":\"join_room\",\"room\":\"sémantique\"}".into(),
            "bad_request",
            None,
        ),
        (
            json!({"type": "join_room", "room": long_room}).to_string(),
            "bad_request",
            None,
        ),
        ("{\"type\":\"leave_room\"}".into(), "bad_request", None),
        (
            "{\"type\":\"message\",\"message\":\"hi\"}".into(),
            "bad_request",
            None,
        ),
        (
            "{\"type\":\"message\",\"room\":\"general\"}".into(),
            "bad_request",
            None,
        ),
        (
            "{\"type\":\"message\",\"room\":\"general\",\"message\":5}".into(),
            "bad_request",
            None,
        ),
        (
            "{\"type\":\"message\",\"room\":\"bad room\",\"message\":\"x\"}".into(),
            "bad_request",
            None,
        ),
        (
            "{\"type\":\"typing\",\"room\":\"general\"}".into(),
            "bad_request",
            None,
        ),
        (
            "{\"type\":\"typing\",\"room\":\"general\",\"data\":\"yes\"}".into(),
            "bad_request",
            None,
        ),
        (
            "{\"type\":\"typing\",\"data\":true}".into(),
            "bad_request",
            None,
        ),
        (
            "{\"type\":\"message\",\"room\":\"random\",\"message\":\"x\"}".into(),
            "not_in_room",
            None,
        ),
        (
            "{\"type\":\"typing\",\"room\":\"random\",\"data\":true}".into(),
            "not_in_room",
            None,
        ),
        (
            "{\"type\":\"message\",\"room\":\"ghost\",\"message\":\"x\"}".into(),
            "room_not_found",
            None,
        ),
        (
            "{\"type\":\"typing\",\"room\":\"ghost\",\"data\":true}".into(),
            "room_not_found",
            None,
        ),
        // A repeated field is read differently by different JSON readers (first or last
        // value): refused, so that nothing in front of the hub can be fooled.
        (
            r#"{"type":"join_room","room":"dup-a","room":"dup-b"}"#.into(),
            "invalid_message",
            Some("Invalid message format"),
        ),
        (
            r#"{"type":"ping","type":"join_room","room":"dup-x"}"#.into(),
            "invalid_message",
            Some("Invalid message format"),
        ),
        (
            r#"{"type":"message","room":"general","message":"one","message":"two"}"#.into(),
            "invalid_message",
            Some("Invalid message format"),
        ),
    ];
    for (text, code, error_text) in &cases {
        alice.send_text(text).await;
        let error = alice.recv_json().await;
        assert_eq!(error["type"], "error", "answer to {text}: {error}");
        assert_eq!(error["code"], *code, "answer to {text}: {error}");
        assert!(error["error"].is_string(), "answer to {text}: {error}");
        if let Some(error_text) = error_text {
            assert_eq!(error["error"], *error_text, "answer to {text}");
        }
        // Still working after the error, and nothing else was sent in between.
        let before = alice.ping_pong().await;
        assert!(before.is_empty(), "after {text}: unexpected {before:?}");
    }
    assert!(h.hub.room_has_member("general", alice.id));
    for room in ["ghost", "dup-a", "dup-b", "dup-x"] {
        assert!(h.hub.room(room).is_none(), "room {room} exists");
    }
    alice.say("general", "still here").await;
    let chat = alice.expect_type("chat_message").await;
    assert_eq!(chat["message"], "still here");
}

#[tokio::test]
async fn binary_message_gets_unsupported_and_the_connection_stays_open() {
    let h = TestHub::default_hub();
    let mut alice = h.connect("alice").await;
    alice.send(Message::binary(vec![1u8, 2, 3, 0xff])).await;
    let error = alice.recv_json().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "unsupported", "{error}");
    assert!(error["error"].is_string(), "{error}");
    let before = alice.ping_pong().await;
    assert!(before.is_empty(), "{before:?}");
    // A binary message that looks like a valid JSON message is still refused.
    alice
        .send(Message::binary(br#"{"type":"ping"}"#.to_vec()))
        .await;
    let error = alice.recv_json().await;
    assert_eq!(error["code"], "unsupported", "{error}");
    alice.ping_pong().await;
    assert_eq!(h.hub.connection_count(), 1);
}

#[tokio::test]
async fn server_messages_carry_the_connections_user_id() {
    // Spoofed user ids in every message that names a user.
    let h = TestHub::start(HubConfig { ..config() });
    let mut alice = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    bob.send_json(&json!({"type": "join_room", "room": "spoof", "user_id": "mallory"}))
        .await;
    bob.expect_type("joined").await;
    alice
        .send_json(&json!({"type": "join_room", "room": "spoof", "user_id": "mallory"}))
        .await;
    let notice = bob.expect_type("user_joined").await;
    assert_eq!(notice["user_id"], "alice", "{notice}");
    alice
        .send_json(&json!({"type": "leave_room", "room": "spoof", "user_id": "mallory"}))
        .await;
    let notice = bob.expect_type("user_left").await;
    assert_eq!(notice["user_id"], "alice", "{notice}");
}
