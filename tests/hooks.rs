//! An embedding application hears its clients: events, custom messages, decisions on
//! joins and publishes, raw mode. Each test runs a real hub with an application thread
//! reading `Hub::events()`, and real WebSocket clients.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use neonex::{Application, HubConfig, HubEvent};
use neonex_testkit::client::Client;
use neonex_testkit::frames::masked_json;
use neonex_testkit::hub::{config, TestHub};
use neonex_testkit::raw::RawClient;
use neonex_testkit::wait::{wait_until, TIMEOUT};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A hub whose application answers each event with `handle` on a thread of its own.
fn hub_with(application: Application, handle: impl FnMut(HubEvent) + Send + 'static) -> TestHub {
    hub_configured(application, config(), handle)
}

fn hub_configured(
    application: Application,
    config: HubConfig,
    mut handle: impl FnMut(HubEvent) + Send + 'static,
) -> TestHub {
    let hub = TestHub::start(HubConfig {
        application: Some(application),
        ..config
    });
    let events = hub.hub.events();
    std::thread::spawn(move || {
        for event in events {
            handle(event);
        }
    });
    hub
}

/// A short, comparable description of an event.
fn describe(event: &HubEvent) -> String {
    match event {
        HubEvent::Connected { user, headers, .. } => format!("connected {user} {headers:?}"),
        HubEvent::Disconnected { user, cause, .. } => format!("disconnected {user} {cause}"),
        HubEvent::Joined { user, room, .. } => format!("joined {user} {room}"),
        HubEvent::Left { user, room, .. } => format!("left {user} {room}"),
        HubEvent::Published {
            user,
            room,
            message,
            data,
            ..
        } => format!("published {user} {room} {message:?} {data:?}"),
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn the_application_hears_connect_join_chat_leave_and_disconnect_in_order() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let hub = hub_with(Application::new().headers(["X-Team"]), move |event| {
        log.lock().unwrap().push(describe(&event));
    });
    let request = {
        let mut request = hub.url(Some("ann")).into_client_request().unwrap();
        request
            .headers_mut()
            .insert("x-team", "blue".parse().unwrap());
        request
    };
    let mut ann = Client::open(request, &hub.hub.config().rooms.autojoin).await;
    ann.join("lobby").await;
    ann.send_json(&json!({"type": "message", "room": "lobby", "message": "hi", "data": {"n": 1}}))
        .await;
    ann.expect_type("chat_message").await;
    ann.leave("lobby").await;
    ann.close().await;
    let expected = [
        r#"connected ann [("x-team", "blue")]"#,
        "joined ann general",
        "joined ann lobby",
        r#"published ann lobby Some("hi") Some("{\"n\":1}")"#,
        "left ann lobby",
        "left ann general",
        "disconnected ann client_closed",
    ];
    wait_until("every event", TIMEOUT, || {
        seen.lock().unwrap().len() >= expected.len()
    })
    .await;
    assert_eq!(*seen.lock().unwrap(), expected);
    assert_eq!(hub.hub.stats().application.unwrap().events, 7);
}

#[tokio::test]
async fn a_custom_message_reaches_the_application_and_its_reply_reaches_the_client() {
    let hub = hub_with(
        Application::new().custom_types(["recent", "secret"]),
        |event| {
            if let HubEvent::Custom {
                kind, json, reply, ..
            } = event
            {
                match kind.as_str() {
                    "recent" => {
                        let asked: Value = serde_json::from_str(&json).unwrap();
                        let answer =
                            json!({"type": "recent", "for": asked["room"], "messages": []});
                        reply.send(&answer.to_string());
                    }
                    _ => reply.refuse("Not for you"),
                }
            }
        },
    );
    let mut bob = hub.connect("bob").await;
    bob.send_json(&json!({"type": "recent", "room": "general"}))
        .await;
    assert_eq!(
        bob.recv_json().await,
        json!({"type": "recent", "for": "general", "messages": []})
    );
    bob.send_json(&json!({"type": "secret"})).await;
    let refused = bob.expect_type("error").await;
    assert_eq!(
        (refused["code"].as_str(), refused["error"].as_str()),
        (Some("forbidden"), Some("Not for you"))
    );
    // A type nobody claimed is still unknown.
    bob.send_json(&json!({"type": "dance"})).await;
    assert_eq!(bob.expect_type("error").await["code"], "unknown_type");
}

#[tokio::test]
async fn a_join_the_application_refuses_gets_forbidden_and_joins_nothing() {
    let hub = hub_with(Application::new().authorize_joins(), |event| {
        if let HubEvent::JoinRequest { room, decision, .. } = event {
            match room.starts_with("vip") {
                true => decision.refuse("Members only"),
                false => decision.allow(),
            }
        }
    });
    let mut cat = hub.connect("cat").await;
    cat.send_json(&json!({"type": "join_room", "room": "vip-lounge"}))
        .await;
    let refused = cat.expect_type("error").await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    assert_eq!(refused["error"], "Members only");
    let (h, id) = (hub.hub.clone(), cat.id);
    assert!(!h.room_has_member("vip-lounge", id));
    assert!(
        h.room("vip-lounge").is_none(),
        "a refused join creates no room"
    );
    assert_eq!(cat.join("hall").await, 1, "an allowed join goes ahead");
}

#[tokio::test]
async fn a_publish_is_rewritten_or_refused_by_the_application() {
    let hub = hub_with(Application::new().authorize_publishes(), |event| {
        if let HubEvent::PublishRequest {
            message, decision, ..
        } = event
        {
            match message.as_deref() {
                Some("spam") => decision.refuse("No spam"),
                _ => decision
                    .allow_with_data(r#"{"checked":true}"#)
                    .expect("valid JSON"),
            }
        }
    });
    let mut dan = hub.connect("dan").await;
    let mut eve = hub.connect("eve").await;
    dan.say("general", "spam").await;
    assert_eq!(dan.expect_type("error").await["code"], "forbidden");
    dan.send_json(&json!({"type": "message", "room": "general", "message": "hello", "data": {"checked": false}}))
        .await;
    let got = eve
        .expect("dan's message", |m| m["type"] == "chat_message")
        .await;
    assert_eq!(
        (got["message"].as_str(), &got["data"]),
        (Some("hello"), &json!({"checked": true}))
    );
    // Nothing of the refused one reached anyone.
    let before = hub.barrier(&mut [&mut eve]).await;
    assert!(
        before[0].iter().all(|m| m["message"] != "spam"),
        "{before:?}"
    );
}

#[tokio::test]
async fn a_slow_decision_holds_only_its_own_connection_and_keeps_its_order() {
    let hub = hub_with(Application::new().authorize_publishes(), |event| {
        if let HubEvent::PublishRequest { user, decision, .. } = event {
            if &*user == "slow" {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(1500));
                    decision.allow();
                });
            } else {
                decision.allow();
            }
        }
    });
    let mut slow = hub.connect("slow").await;
    let mut quick = hub.connect("quick").await;
    for n in 0..3 {
        slow.say("general", &format!("slow {n}")).await;
    }
    let started = Instant::now();
    quick.say("general", "quick").await;
    quick
        .expect("quick's own message", |m| m["message"] == "quick")
        .await;
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(700),
        "quick waited {waited:?} behind slow"
    );
    let mut order = Vec::new();
    while order.len() < 3 {
        let m = slow.expect_type("chat_message").await;
        if m["user_id"] == "slow" {
            order.push(m["message"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(order, ["slow 0", "slow 1", "slow 2"]);
}

#[tokio::test]
async fn an_unanswered_question_gets_its_default_at_the_deadline_and_the_rest_goes_on() {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let keep = kept.clone();
    let application = Application::new()
        .authorize_joins()
        .decision_timeout(Duration::from_millis(300));
    let hub = hub_with(application, move |event| {
        if let HubEvent::JoinRequest { decision, .. } = event {
            keep.lock().unwrap().push(decision);
        }
    });
    let mut fay = hub.connect("fay").await;
    let started = Instant::now();
    fay.send_json(&json!({"type": "join_room", "room": "late"}))
        .await;
    fay.send_json(&json!({"type": "ping"})).await;
    let refused = fay.expect_type("error").await;
    let waited = started.elapsed();
    assert_eq!(refused["code"], "forbidden", "{refused}");
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_millis(1500),
        "refused after {waited:?}"
    );
    fay.expect_type("pong").await;
    assert_eq!(hub.hub.stats().application.unwrap().decisions_timed_out, 1);
    // The answer that comes after the deadline changes nothing.
    for decision in kept.lock().unwrap().drain(..) {
        decision.allow();
    }
    let before = fay.ping_pong().await;
    assert!(before.is_empty(), "{before:?}");
    assert!(!hub.hub.room_has_member("late", fay.id));
}

#[tokio::test]
async fn a_close_sent_behind_a_pending_decision_comes_after_the_messages_before_it() {
    let hub = hub_with(Application::new().authorize_publishes(), |event| {
        if let HubEvent::PublishRequest { decision, .. } = event {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                decision.allow();
            });
        }
    });
    let mut gil = hub.connect("gil").await;
    let mut hal = hub.connect("hal").await;
    gil.say("general", "last words").await;
    gil.ws.close(None).await.unwrap();
    let heard = hal
        .expect("gil's message", |m| m["type"] == "chat_message")
        .await;
    assert_eq!(heard["message"], "last words");
    let mut echoed = false;
    while let Some(Ok(message)) = gil.ws.next().await {
        match message {
            Message::Text(text) => {
                let m: Value = serde_json::from_str(&text).unwrap();
                assert!(!echoed, "{m} came after the close");
                echoed |= m["message"] == "last words";
            }
            Message::Close(_) => {
                assert!(echoed, "the close came before the message sent before it");
                return;
            }
            _ => {}
        }
    }
    panic!("no close frame came back");
}

#[tokio::test]
async fn the_end_of_the_stream_behind_a_pending_decision_loses_nothing_sent_before_it() {
    let hub = hub_with(Application::new().authorize_publishes(), |event| {
        if let HubEvent::PublishRequest { decision, .. } = event {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                decision.allow();
            });
        }
    });
    let mut jon = hub.connect("jon").await;
    // A client that sends two messages and ends its side of the stream (FIN) at once.
    let mut ivy = RawClient::upgraded(hub.addr, "/ws?user=ivy").await;
    let welcome = ivy.recv_json().await;
    let id = welcome["connection_id"].as_str().unwrap().parse().unwrap();
    for text in ["one", "two"] {
        ivy.write(&masked_json(
            &json!({"type": "message", "room": "general", "message": text}),
        ))
        .await;
    }
    ivy.stream.shutdown().await.unwrap();
    for text in ["one", "two"] {
        let m = jon
            .expect("ivy's messages", |m| m["type"] == "chat_message")
            .await;
        assert_eq!(m["message"], text);
    }
    hub.wait_gone(id).await;
}

#[tokio::test]
async fn raw_mode_hands_every_message_to_the_application_and_sends_nothing_of_its_own() {
    let hub = TestHub::start(HubConfig {
        application: Some(Application::raw()),
        ..config()
    });
    let echo = hub.hub.clone();
    let events = hub.hub.events();
    std::thread::spawn(move || {
        for event in events {
            match event {
                HubEvent::Text { conn, text, .. } => echo
                    .send_to_connection(conn, &format!("text:{text}"))
                    .unwrap(),
                HubEvent::Binary { conn, data, .. } => {
                    echo.send_binary_to_connection(conn, &data).unwrap()
                }
                _ => {}
            }
        }
    });
    let (mut ws, _) = tokio_tungstenite::connect_async(hub.url(Some("raw")))
        .await
        .unwrap();
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    ws.send(Message::binary(vec![0u8, 159, 255, 1]))
        .await
        .unwrap();
    ws.send(Message::text("not json at all")).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let message = tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .expect("an echo in time")
            .unwrap()
            .unwrap();
        match message {
            Message::Text(text) => got.push(text.as_str().to_owned()),
            Message::Binary(data) => got.push(format!("{:?}", &data[..])),
            _ => {}
        }
    }
    assert_eq!(
        got,
        [
            r#"text:{"type":"ping"}"#,
            "[0, 159, 255, 1]",
            "text:not json at all"
        ],
        "no welcome, no pong, no error: only the application speaks"
    );
}

#[tokio::test]
async fn raw_mode_says_nothing_to_a_client_over_its_rate() {
    let mut config = config();
    config.limits.messages_per_second = 1;
    config.limits.burst = 2;
    let delivered = Arc::new(Mutex::new(0usize));
    let count = delivered.clone();
    let hub = hub_configured(Application::raw(), config, move |event| {
        if let HubEvent::Text { .. } = event {
            *count.lock().unwrap() += 1;
        }
    });
    let (mut ws, _) = tokio_tungstenite::connect_async(hub.url(Some("fast")))
        .await
        .unwrap();
    for n in 0..5 {
        ws.send(Message::text(format!("m{n}"))).await.unwrap();
    }
    wait_until("the burst to arrive", TIMEOUT, || {
        *delivered.lock().unwrap() == 2
    })
    .await;
    let deadline = Instant::now() + Duration::from_millis(300);
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline.into(), ws.next()).await {
        assert!(message.is_ping(), "the hub spoke in raw mode: {message:?}");
    }
}

#[tokio::test]
async fn an_application_that_does_not_read_loses_events_and_its_questions_get_the_default_at_once()
{
    // Room for one event, and a reader that never comes: the Connected event fills it.
    let application = Application {
        event_capacity: 1,
        ..Application::new()
            .authorize_joins()
            .decision_timeout(Duration::from_secs(10))
    };
    let hub = TestHub::start(HubConfig {
        application: Some(application),
        ..config()
    });
    let mut kim = hub.connect("kim").await;
    let started = Instant::now();
    kim.send_json(&json!({"type": "join_room", "room": "unheard"}))
        .await;
    let refused = kim.expect_type("error").await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(2),
        "the dropped question waited {waited:?}, not its default at once"
    );
    assert!(!hub.hub.room_has_member("unheard", kim.id));
    let stats = hub.hub.stats().application.unwrap();
    assert_eq!(stats.events, 1, "{stats:?}");
    assert!(stats.events_dropped >= 2, "{stats:?}");
    assert_eq!(stats.decisions_timed_out, 0, "{stats:?}");
}
