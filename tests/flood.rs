//! Slow consumers under a flood: 50 clients that stop reading are cut off with 1008
//! while the clients that keep reading get every message, and memory stays bounded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use neonex::config::LimitsConfig;
use neonex::{ConnectionId, HubConfig, SendQueueLimits};
use neonex_testkit::client::{next_chat_message, send_json_within};
use neonex_testkit::frames::{masked_json, parse_frame};
use neonex_testkit::hub::{config, vm_rss_kib, TestHub};
use neonex_testkit::raw::{End, RawClient};
use neonex_testkit::wait::{wait_until, wait_until_ok, TIMEOUT};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// Messages the publisher sends.
const MESSAGES: usize = 3000;
/// Bytes of text in each message (the chat_message frame is about 2.1 KiB).
const PAD: usize = 2000;
/// The publisher stays at most this many messages ahead of the slowest reader.
const WINDOW: usize = 32;
const STALLED: usize = 50;
const READERS: usize = 5;

const QUEUE: SendQueueLimits = SendQueueLimits {
    max_bytes: 256 * 1024,
    max_frames: 4096,
};

/// The bound on this process's VmRSS growth during the flood.
///
/// A connection's queue may hold up to the queue bound while its socket refuses data, and
/// up to `BURST_ALLOWANCE` (4) times it within one pass while the socket still takes data
/// (`src/shard/connection.rs`). If nothing were shared, the 50 stalled connections could
/// pin 50 × 4 × 256 KiB = 50 MiB before they are cut; in fact a broadcast frame is
/// encoded once and its bytes are shared by every queue, so the real figure is far lower.
/// 32 MiB of slack covers the test's own clients (5 readers and a publisher running
/// tungstenite in this process), the 50 raw sockets and allocator noise. A leak of each
/// message per recipient (3000 × 2 KiB × 55 = 330 MiB) or unbounded queues (50 × 6 MiB =
/// 300 MiB) would exceed it.
const RSS_GROWTH_BOUND_KIB: u64 = 50 * 4 * 256 + 32 * 1024;

/// Reads the flood's chat messages in order; returns how many arrived.
async fn read_flood<S>(mut stream: S, progress: Arc<AtomicUsize>) -> Result<(S, usize), String>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut next = 0usize;
    while next < MESSAGES {
        let v = next_chat_message(&mut stream, "flood", Duration::from_secs(10))
            .await
            .map_err(|e| format!("before message {next}: {e}"))?;
        if v["data"]["i"].as_u64() != Some(next as u64) {
            return Err(format!("expected message {next}, got {}", v["data"]));
        }
        if v["message"].as_str().map(str::len) != Some(PAD) {
            return Err(format!("message {next} arrived damaged"));
        }
        next += 1;
        progress.store(next, Ordering::SeqCst);
    }
    Ok((stream, next))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_are_cut_while_readers_get_everything() {
    let started = Instant::now();
    let h = TestHub::start(HubConfig {
        max_message_size: 16 * 1024,
        send_queue: QUEUE,
        // A cut client that never reads cannot take its close frame: it is dropped when
        // its write has been stuck this long.
        write_timeout: Duration::from_secs(2),
        limits: LimitsConfig {
            messages_per_second: 1_000_000,
            burst: 1_000_000,
            ..LimitsConfig::default()
        },
        ..config()
    });

    // The stalled clients: a small receive buffer, an upgrade, a join, and no reading
    // from then on.
    let mut stalled = Vec::new();
    for i in 0..STALLED {
        let mut raw = RawClient::connect_with_rcvbuf(h.addr, 4096).await;
        raw.upgrade(&format!("/ws?user=stalled-{i}")).await;
        raw.write(&masked_json(&json!({"type": "join_room", "room": "flood"})))
            .await;
        stalled.push(raw);
    }
    let mut readers = Vec::new();
    for i in 0..READERS {
        let mut reader = h.connect(&format!("reader-{i}")).await;
        reader.join("flood").await;
        readers.push(reader);
    }
    let mut publisher = h.connect("publisher").await;
    publisher.join("flood").await;
    let members = STALLED + READERS + 1;
    let hub = h.hub.clone();
    wait_until("everyone in room flood", TIMEOUT, || {
        hub.room("flood").is_some_and(|r| r.members == members)
    })
    .await;
    h.wait_connections(members).await;
    let stalled_ids: Vec<ConnectionId> = (0..STALLED)
        .map(|i| {
            let ids = h.hub.user_connections(&format!("stalled-{i}"));
            assert_eq!(ids.len(), 1, "stalled-{i} has connections {ids:?}");
            ids[0]
        })
        .collect();

    // Readers and the publisher's own echo read continuously.
    let mut progress = Vec::new();
    let mut tasks = Vec::new();
    for reader in readers {
        let p = Arc::new(AtomicUsize::new(0));
        progress.push(p.clone());
        tasks.push(tokio::spawn(async move {
            read_flood(reader.ws, p).await.map(|(ws, n)| (Some(ws), n))
        }));
    }
    let (mut sink, echo) = publisher.ws.split();
    let p = Arc::new(AtomicUsize::new(0));
    progress.push(p.clone());
    // The echo half is kept alive by the sink; its stream need not be kept.
    tasks.push(tokio::spawn(async move {
        read_flood(echo, p).await.map(|(_, n)| (None, n))
    }));

    // Resident memory, sampled through the flood.
    let rss_before = vm_rss_kib();
    let peak = Arc::new(AtomicUsize::new(rss_before as usize));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::SeqCst) {
                peak.fetch_max(vm_rss_kib() as usize, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let pad = "x".repeat(PAD);
    let mut failure = None;
    for i in 0..MESSAGES {
        // Pacing: the slowest reader is at most WINDOW messages behind.
        let paced = tokio::time::timeout(Duration::from_secs(10), async {
            while progress
                .iter()
                .map(|p| p.load(Ordering::SeqCst))
                .min()
                .unwrap()
                + WINDOW
                < i
            {
                tokio::task::yield_now().await;
            }
        })
        .await;
        if paced.is_err() {
            let at: Vec<usize> = progress.iter().map(|p| p.load(Ordering::SeqCst)).collect();
            failure = Some(format!("the readers stalled before message {i}: {at:?}"));
            break;
        }
        let text = json!({"type": "message", "room": "flood", "message": pad, "data": {"i": i}});
        if let Err(e) = send_json_within(&mut sink, &text).await {
            failure = Some(format!("message {i}: {e}"));
            break;
        }
    }
    let mut results = Vec::new();
    // The readers stay connected to the end.
    let mut keep = Vec::new();
    for task in tasks {
        let result = tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("a reader hung")
            .expect("reader task");
        results.push(result.map(|(ws, n)| {
            keep.push(ws);
            n
        }));
    }
    let flood_took = started.elapsed();
    let stats = h.hub.stats();
    assert!(
        failure.is_none() && results.iter().all(|r| r == &Ok(MESSAGES)),
        "publisher: {failure:?}; readers (the last is the publisher's echo): {results:?}; \
         slow_consumers {}, connections {}",
        stats.slow_consumers,
        h.hub.connection_count()
    );

    // Every stalled client was cut, and only they were.
    let hub = h.hub.clone();
    let mut last = 0;
    let cut = wait_until_ok(TIMEOUT, || {
        last = hub.stats().slow_consumers;
        last >= STALLED as u64
    })
    .await;
    assert!(cut, "slow_consumers is {last}, expected at least {STALLED}");
    h.wait_connections(READERS + 1).await;
    for id in &stalled_ids {
        assert!(
            !h.hub.room_has_member("flood", *id),
            "{id} is still in the room"
        );
    }
    sampling.store(false, Ordering::SeqCst);
    sampler.await.expect("sampler");
    let rss_after = vm_rss_kib();
    let peak = peak.load(Ordering::SeqCst) as u64;

    // Each stalled socket: what it had taken before it stopped, then 1008 or the end.
    // The server's kernel still holds what it took for a cut socket (its send buffer
    // grows up to net.ipv4.tcp_wmem's maximum, megabytes), and with a receive window
    // smaller than the sender's segment size it would trickle out on the persist timer
    // for minutes: each client first opens its window wide, then reads to the end.
    let reading = Instant::now();
    let mut readers_of_stalled = Vec::new();
    for (i, mut raw) in stalled.into_iter().enumerate() {
        readers_of_stalled.push(tokio::spawn(async move {
            socket2::SockRef::from(&raw.stream)
                .set_recv_buffer_size(8 << 20)
                .expect("SO_RCVBUF");
            let got = raw.read_until_eof(Duration::from_secs(15)).await;
            (i, got, reading.elapsed())
        }));
    }
    let mut ends = std::collections::BTreeMap::<String, usize>::new();
    let mut slowest = Duration::ZERO;
    let mut most = 0;
    for task in readers_of_stalled {
        let (i, got, took) = task.await.expect("stalled reader");
        slowest = slowest.max(took);
        let (bytes, end) = got.unwrap_or_else(|e| panic!("stalled-{i}: {e}"));
        let mut rest = &bytes[..];
        let (mut chats, mut close) = (0, None);
        while let Some((frame, used)) = parse_frame(rest) {
            rest = &rest[used..];
            assert!(
                close.is_none(),
                "stalled-{i}: a frame after the close frame"
            );
            match frame.opcode {
                0x1 if frame.payload.len() > PAD => chats += 1,
                0x8 => close = Some((frame.close_code(), frame.close_reason())),
                _ => {}
            }
        }
        // What is left is at most one frame cut short when the server dropped the socket.
        assert!(
            rest.len() < 4 * 1024,
            "stalled-{i}: {} bytes that are no frame",
            rest.len()
        );
        if let Some((code, reason)) = &close {
            assert_eq!(
                (*code, reason.as_str()),
                (Some(1008), "slow consumer"),
                "stalled-{i}'s close"
            );
        }
        assert!(
            chats < MESSAGES,
            "stalled-{i} was not cut off: it got all {MESSAGES} messages"
        );
        most = most.max(chats);
        let key = match (close, end) {
            (Some((code, reason)), _) => format!("close {code:?} {reason}"),
            (None, End::Eof) => "EOF".to_owned(),
            (None, _) => "reset".to_owned(),
        };
        *ends.entry(key).or_default() += 1;
    }
    println!(
        "the stalled sockets had taken at most {most} of the {MESSAGES} messages; \
         they ended within {slowest:?} of being read"
    );

    let growth = peak.saturating_sub(rss_before);
    println!(
        "flood of {MESSAGES} × {PAD} B to {members} members in {flood_took:?}: slow_consumers {}, \
         stalled sockets ended {ends:?}; VmRSS {rss_before} KiB before, peak {peak} KiB, \
         {rss_after} KiB after (+{growth} KiB at the peak, bound {RSS_GROWTH_BOUND_KIB} KiB); \
         total {:?}",
        h.hub.stats().slow_consumers,
        started.elapsed()
    );
    assert!(
        growth < RSS_GROWTH_BOUND_KIB,
        "VmRSS peaked {growth} KiB over its start ({rss_before} KiB -> {peak} KiB), over the \
         bound of {RSS_GROWTH_BOUND_KIB} KiB"
    );
    // The survivors still work.
    let mut fresh = h.connect("after-flood").await;
    fresh.ping_pong().await;
    drop(keep);
    drop(sink);
}
