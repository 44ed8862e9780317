//! `hub.write_delay`: broadcasts to a connection wait up to the delay and leave together
//! in fewer writes, in order and complete; replies (a pong) and closes do not wait; with
//! no delay every broadcast leaves at once, as it always did.

use std::time::{Duration, Instant};

use neonex::{HubConfig, SendQueueLimits};
use neonex_testkit::client::Client;
use neonex_testkit::hub::{config, TestHub};
use neonex_testkit::wait::blocking;
use serde_json::json;

const ROOM: &str = "delayed";

/// One shard, so that `/stats` counts only this test's writes, and `delay`.
fn delayed(delay: Duration) -> HubConfig {
    HubConfig {
        shards: 1,
        write_delay: delay,
        ..config()
    }
}

/// A client in `ROOM`, with every frame of its setup already written.
async fn member(h: &TestHub, user: &str) -> Client {
    let mut client = h.connect(user).await;
    client.join(ROOM).await;
    client
}

async fn broadcast(h: &TestHub, n: usize) {
    h.blocking(move |hub| hub.broadcast_to_room_json(ROOM, &json!({"type": "t", "n": n})))
        .await
        .expect("broadcast");
}

/// Write calls and deliveries so far, once the shard has counted what it just wrote.
async fn writes_and_deliveries(h: &TestHub) -> (u64, u64) {
    tokio::time::sleep(Duration::from_millis(50)).await;
    let hub = h.hub.clone();
    blocking(move || {
        let stats = hub.stats();
        (stats.write_calls, stats.deliveries)
    })
    .await
}

/// Reads broadcasts `from..to`, in order; returns when the first of them arrived.
async fn expect_broadcasts(client: &mut Client, from: usize, to: usize) -> Instant {
    let mut first = None;
    for n in from..to {
        let m = client.expect_type("t").await;
        first.get_or_insert_with(Instant::now);
        assert_eq!(m["n"], n, "broadcasts arrive in order, none lost");
    }
    first.expect("at least one broadcast")
}

#[tokio::test]
async fn broadcasts_within_the_delay_leave_in_one_write_after_it() {
    let delay = Duration::from_millis(100);
    let h = TestHub::start(delayed(delay));
    let mut client = member(&h, "reader").await;
    let (writes_before, deliveries_before) = writes_and_deliveries(&h).await;

    let published = Instant::now();
    for n in 0..10 {
        broadcast(&h, n).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let first = expect_broadcasts(&mut client, 0, 10).await;
    let waited = first - published;
    assert!(
        waited >= delay - Duration::from_millis(1),
        "the first broadcast waited the delay: {waited:?}"
    );
    assert!(
        waited < delay + Duration::from_secs(1),
        "and not much more: {waited:?}"
    );

    let (writes, deliveries) = writes_and_deliveries(&h).await;
    assert_eq!(deliveries - deliveries_before, 10);
    assert!(
        writes - writes_before <= 3,
        "10 broadcasts within the delay took {} writes",
        writes - writes_before
    );
}

#[tokio::test]
async fn many_bursts_arrive_complete_and_in_order() {
    let h = TestHub::start(delayed(Duration::from_millis(20)));
    let mut readers = vec![member(&h, "a").await, member(&h, "b").await];
    let (writes_before, _) = writes_and_deliveries(&h).await;
    let publisher = {
        let hub = h.hub.clone();
        tokio::spawn(blocking(move || {
            for n in 0..300 {
                hub.broadcast_to_room_json(ROOM, &json!({"type": "t", "n": n}))
                    .expect("broadcast");
                if n % 30 == 29 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }))
    };
    for reader in &mut readers {
        expect_broadcasts(reader, 0, 300).await;
    }
    publisher.await.unwrap();
    let (writes, _) = writes_and_deliveries(&h).await;
    assert!(
        writes - writes_before < 300,
        "600 deliveries took {} writes",
        writes - writes_before
    );
}

#[tokio::test]
async fn without_a_delay_each_broadcast_leaves_at_once() {
    let h = TestHub::start(delayed(Duration::ZERO));
    let mut client = member(&h, "reader").await;
    let (writes_before, _) = writes_and_deliveries(&h).await;
    for n in 0..10 {
        broadcast(&h, n).await;
        expect_broadcasts(&mut client, n, n + 1).await;
    }
    let (writes, _) = writes_and_deliveries(&h).await;
    assert_eq!(writes - writes_before, 10, "one write per broadcast");
}

#[tokio::test]
async fn a_reply_does_not_wait_and_takes_the_waiting_broadcasts_along() {
    let delay = Duration::from_secs(1);
    let h = TestHub::start(delayed(delay));
    let mut client = member(&h, "reader").await;
    let (_, delivered) = writes_and_deliveries(&h).await;
    broadcast(&h, 0).await;
    // The handle's broadcast reaches the shard through its inbox: wait until it is queued.
    let queued = async { while writes_and_deliveries(&h).await.1 == delivered {} };
    tokio::time::timeout(Duration::from_secs(10), queued)
        .await
        .expect("the broadcast is queued");
    let asked = Instant::now();
    let before: Vec<_> = client
        .ping_pong()
        .await
        .into_iter()
        .filter(|m| m["type"] == "t")
        .collect();
    assert!(
        asked.elapsed() < delay / 2,
        "the pong came after {:?}",
        asked.elapsed()
    );
    assert_eq!(before.len(), 1, "the broadcast came first: {before:?}");
    assert_eq!(before[0]["n"], 0);
}

#[tokio::test]
async fn shutdown_writes_the_waiting_broadcasts_before_the_close() {
    let delay = Duration::from_secs(1);
    let h = TestHub::start(delayed(delay));
    let mut client = member(&h, "reader").await;
    broadcast(&h, 0).await;
    let closing = Instant::now();
    let hub = h.hub.clone();
    std::thread::spawn(move || hub.close());
    expect_broadcasts(&mut client, 0, 1).await;
    client.expect_type("server_shutdown").await;
    let (code, _) = client.expect_close().await;
    assert_eq!(code, 1001);
    assert!(
        closing.elapsed() < delay / 2,
        "the close came after {:?}",
        closing.elapsed()
    );
}

#[tokio::test]
async fn the_send_queue_bounds_apply_to_waiting_broadcasts() {
    let h = TestHub::start(HubConfig {
        send_queue: SendQueueLimits {
            max_frames: 8,
            ..SendQueueLimits::default()
        },
        ..delayed(Duration::from_secs(1))
    });
    let mut client = member(&h, "reader").await;
    for n in 0..100 {
        broadcast(&h, n).await;
    }
    let started = Instant::now();
    let (code, reason) = client.expect_close().await;
    assert_eq!((code, reason.as_str()), (1008, "slow consumer"));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "closed at once"
    );
}

#[test]
fn a_delay_over_a_second_is_refused() {
    let refused = HubConfig {
        write_delay: Duration::from_millis(1001),
        ..HubConfig::default()
    }
    .check();
    let error = refused.err().expect("refused").to_string();
    assert!(error.contains("hub.write_delay"), "{error}");
    let accepted = HubConfig {
        write_delay: Duration::from_secs(1),
        ..HubConfig::default()
    };
    assert!(accepted.check().is_ok());
}
