//! Conflation over real sockets: a member that stops reading, in a conflated room and in
//! a plain one, gets the newest message of the first and every message of the second
//! when it reads again, and is never cut for the first; the queue's bound still holds for
//! rooms that are not conflated.

use std::time::Duration;

use neonex::config::HistoryConfig;
use neonex::{ConnectionId, HubConfig, SendQueueLimits};
use neonex_testkit::hub::{config, flood_limits, TestHub};
use neonex_testkit::raw::{End, RawClient};
use serde_json::{json, Value};

/// Ticker messages published while the reader is stalled, each this big.
const TICKS: u64 = 2000;
const PAD: usize = 1000;

fn conflating_hub() -> TestHub {
    TestHub::start(HubConfig {
        rooms: neonex::RoomsConfig {
            conflate: vec!["ticker.*".into()],
            ..neonex::RoomsConfig::default()
        },
        history: HistoryConfig {
            size: 100,
            ..HistoryConfig::default()
        },
        send_queue: SendQueueLimits {
            max_bytes: 600 * 1024,
            max_frames: 64,
        },
        max_message_size: 512 * 1024,
        limits: flood_limits(),
        ..config()
    })
}

/// A client with a 4 KiB receive buffer that reads nothing once it is in `rooms`.
async fn stalled_member(h: &TestHub, user: &str, rooms: &[&str]) -> (RawClient, ConnectionId) {
    let mut raw = RawClient::connect_with_rcvbuf(h.addr, 4096).await;
    raw.upgrade(&format!("/ws?user={user}")).await;
    let welcome = raw.recv_json().await;
    let id: ConnectionId = welcome["connection_id"].as_str().unwrap().parse().unwrap();
    for room in rooms {
        let room = room.to_string();
        h.blocking(move |hub| hub.join_room(id, &room))
            .await
            .expect("joined");
    }
    (raw, id)
}

async fn publish(h: &TestHub, room: &str, value: Value) {
    let room = room.to_owned();
    h.blocking(move |hub| hub.publish_to_room(&room, &value.to_string()))
        .await
        .expect("published");
}

#[tokio::test]
async fn a_stalled_member_gets_the_newest_of_a_conflated_room_and_all_of_the_rest() {
    let h = conflating_hub();
    h.hub.create_room("ticker.ACME").unwrap();
    h.hub.create_room("news").unwrap();
    h.hub.create_room("plain").unwrap();
    let (mut stalled, stalled_id) = stalled_member(&h, "stalled", &["ticker.ACME", "news"]).await;
    let (mut control, control_id) = stalled_member(&h, "control", &["plain"]).await;

    let pad = "x".repeat(PAD);
    let mut news = 0;
    for n in 1..=TICKS {
        publish(&h, "ticker.ACME", json!({ "n": n, "pad": pad })).await;
        publish(&h, "plain", json!({ "n": n, "pad": pad })).await;
        if n % 100 == 0 {
            news += 1;
            publish(&h, "news", json!({ "story": news })).await;
        }
    }
    assert!(
        h.connection(stalled_id).await.is_some(),
        "never cut for a conflated room"
    );

    // Reading again: everything of news, in order; ticker up to its newest value.
    let mut stories = Vec::new();
    let mut ticks = Vec::new();
    let mut marked = 0;
    while stories.len() < news || ticks.last() != Some(&TICKS) {
        let frame = match stalled.next_frame(Duration::from_secs(10)).await {
            Ok(frame) => frame,
            Err(end) => panic!("the stalled member was cut: {end:?}"),
        };
        if frame.opcode != 0x1 {
            continue;
        }
        let m = frame.json();
        if m["type"] != "publication" {
            continue;
        }
        match m["room"].as_str() {
            Some("news") => stories.push(m["data"]["story"].as_u64().unwrap()),
            Some("ticker.ACME") => {
                ticks.push(m["data"]["n"].as_u64().unwrap_or_else(|| panic!("{m}")));
                marked += usize::from(m["conflated"] == true);
            }
            _ => {}
        }
    }
    assert_eq!(stories, (1..=news as u64).collect::<Vec<_>>());
    assert!(
        ticks.windows(2).all(|w| w[0] < w[1]),
        "newer only: {ticks:?}"
    );
    assert!(
        ticks.len() < TICKS as usize / 2 && marked > 0,
        "{} ticker frames, {marked} marked conflated",
        ticks.len()
    );
    assert!(h.hub.stats().conflated > 0);

    // Caught up, it gets the next tick live, unmarked.
    publish(&h, "ticker.ACME", json!({ "n": TICKS + 1 })).await;
    let m = stalled.recv_json().await;
    assert_eq!(m["data"]["n"], TICKS + 1);
    assert!(m.get("conflated").is_none(), "{m}");

    // The same flood in a room that is not conflated overflows the queue's bound.
    match control.read_to_end(Duration::from_secs(10)).await {
        End::Close(Some(1008), reason) => assert_eq!(reason, "slow consumer"),
        other => panic!("the plain room's stalled member should be cut, got {other:?}"),
    }
    drop(control);
    h.wait_gone(control_id).await;
}
