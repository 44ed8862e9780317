//! Backpressure over real sockets: what a client that stops reading may cost the hub,
//! and how long it may hold the hub up.
//!
//! - The kernel holds at most `socket_unsent_bytes` unsent for a socket
//!   (`TCP_NOTSENT_LOWAT`), so a stalled client's backlog stays in its connection's queue,
//!   where the queue bounds see it and cut the client as a slow consumer.
//! - The queue is bounded in frames as well as in bytes.
//! - A graceful shutdown waits at most `shutdown_timeout` for a client that never answers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use neonex::{ConnectionId, HubConfig, SendQueueLimits};
use neonex_testkit::client::{next_chat_message, send_json_within, Client, Ws};
use neonex_testkit::frames::parse_frame;
use neonex_testkit::hub::{config, flood_limits, TestHub};
use neonex_testkit::raw::{End, RawClient};
use neonex_testkit::wait::{wait_until, TIMEOUT};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// The publisher stays at most this many messages ahead of the slowest reader, so the
/// readers never lag by more than a few dozen frames.
const WINDOW: usize = 32;

/// A flood is over: the stalled client (not read from since its upgrade) and the clients
/// that read everything, still connected.
struct Flooded {
    stalled: RawClient,
    stalled_id: ConnectionId,
    reader: Client,
    publisher: Ws,
}

/// Connects a reader and a publisher (both in room `flood`) and a stalled raw client
/// (receive buffer 4 KiB, joined to `flood` by the hub API, never read from), then
/// publishes `n` messages of `pad` bytes of text paced by the reader and by the
/// publisher's own echo. Panics unless both got all `n` in order.
async fn flood_past_a_stalled_client(h: &TestHub, n: usize, pad: usize) -> Flooded {
    let mut reader = h.connect("reader").await;
    let mut publisher = h.connect("publisher").await;
    reader.join("flood").await;
    publisher.join("flood").await;

    let mut stalled = RawClient::connect_with_rcvbuf(h.addr, 4096).await;
    stalled.upgrade("/ws?user=stalled").await;
    let welcome = stalled.recv_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let stalled_id: ConnectionId = welcome["connection_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("welcome without a connection id: {welcome}"));
    let count = h
        .blocking(move |hub| hub.join_room(stalled_id, "flood"))
        .await
        .expect("the stalled client joins flood");
    assert_eq!(count, 3, "members of flood");
    // From here the stalled client reads nothing until the flood is over.

    let reader_progress = Arc::new(AtomicUsize::new(0));
    let echo_progress = Arc::new(AtomicUsize::new(0));
    let progress = reader_progress.clone();
    let reader_task = tokio::spawn(async move {
        let result = read_flood(&mut reader.ws, n, pad, &progress).await;
        (reader, result)
    });
    let Client { ws, .. } = publisher;
    let (mut sink, mut echo) = ws.split();
    let progress = echo_progress.clone();
    let echo_task = tokio::spawn(async move {
        let result = read_flood(&mut echo, n, pad, &progress).await;
        (echo, result)
    });

    let text = "x".repeat(pad);
    let mut send_error = None;
    for i in 0..n {
        let paced = tokio::time::timeout(TIMEOUT, async {
            while reader_progress
                .load(Ordering::Relaxed)
                .min(echo_progress.load(Ordering::Relaxed))
                + WINDOW
                < i
            {
                tokio::task::yield_now().await;
            }
        });
        if paced.await.is_err() {
            send_error = Some(format!("the readers stalled before message {i}"));
            break;
        }
        let message =
            json!({"type": "message", "room": "flood", "message": text, "data": {"i": i}});
        if let Err(e) = send_json_within(&mut sink, &message).await {
            send_error = Some(format!("message {i}: {e}"));
            break;
        }
    }
    let (reader, reader_result) = tokio::time::timeout(Duration::from_secs(15), reader_task)
        .await
        .expect("the reader's task hung")
        .expect("reader task");
    let (echo, echo_result) = tokio::time::timeout(Duration::from_secs(15), echo_task)
        .await
        .expect("the publisher's reader task hung")
        .expect("publisher reader task");
    let stats = h.hub.stats();
    assert!(
        send_error.is_none() && reader_result == Ok(n) && echo_result == Ok(n),
        "publisher sending: {send_error:?}; reader: {reader_result:?}; publisher's own \
         echoes: {echo_result:?}; hub: slow_consumers {}, closes {:?}",
        stats.slow_consumers,
        stats.closes
    );
    Flooded {
        stalled,
        stalled_id,
        reader,
        publisher: echo.reunite(sink).expect("the halves of one stream"),
    }
}

/// Reads the `n` chat messages of the flood, checking that `data.i` counts up from 0 and
/// that the text is whole, publishing the count in `progress`.
async fn read_flood<S>(
    stream: &mut S,
    n: usize,
    pad: usize,
    progress: &AtomicUsize,
) -> Result<usize, String>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut next = 0usize;
    while next < n {
        let v = next_chat_message(stream, "flood", Duration::from_secs(10))
            .await
            .map_err(|e| format!("after {next} messages in order: {e}"))?;
        if v["data"]["i"] != next {
            return Err(format!("got message {} when expecting {next}", v["data"]));
        }
        if v["message"].as_str().map(str::len) != Some(pad) {
            return Err(format!("message {next} arrived damaged: {v}"));
        }
        next += 1;
        progress.store(next, Ordering::Relaxed);
    }
    Ok(next)
}

/// What a stalled client found once it read to the end of its stream.
#[derive(Debug)]
struct StalledEnd {
    /// Chat messages (text frames longer than the message text) before the close frame.
    chats: usize,
    /// Bytes of frames before the close frame.
    bytes_before_close: usize,
    /// The close frame's code and reason.
    close: Option<(Option<u16>, String)>,
    /// Frames after the close frame, and bytes that are no whole frame.
    after_close: usize,
    rest: usize,
    end: End,
}

/// Opens the stalled client's receive window wide and reads to the end of its stream.
///
/// The server's kernel still holds what it took before the cut, and with the 4 KiB
/// window it would trickle out on the persist timer; a large buffer lets it flow.
async fn read_stalled_to_end(stalled: &mut RawClient, pad: usize) -> StalledEnd {
    socket2::SockRef::from(&stalled.stream)
        .set_recv_buffer_size(8 << 20)
        .expect("SO_RCVBUF");
    let (bytes, end) = stalled
        .read_until_eof(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("the stalled client's stream did not end: {e}"));
    let mut got = StalledEnd {
        chats: 0,
        bytes_before_close: 0,
        close: None,
        after_close: 0,
        rest: 0,
        end,
    };
    let mut rest = &bytes[..];
    while let Some((frame, used)) = parse_frame(rest) {
        rest = &rest[used..];
        if got.close.is_some() {
            got.after_close += 1;
            continue;
        }
        match frame.opcode {
            0x8 => got.close = Some((frame.close_code(), frame.close_reason())),
            0x1 if frame.payload.len() > pad => got.chats += 1,
            _ => {}
        }
        if got.close.is_none() {
            got.bytes_before_close += used;
        }
    }
    got.rest = rest.len();
    got
}

/// After the flood: the stalled client was cut as a slow consumer, and only it; once it
/// read, it found a close 1008 "slow consumer" and the end of the stream; once it hung
/// up, the hub forgot it; the reader and the publisher still work. Returns what the
/// stalled client got.
async fn expect_stalled_cut(h: &TestHub, mut f: Flooded, n: usize, pad: usize) -> StalledEnd {
    let hub = h.hub.clone();
    wait_until("stats().slow_consumers >= 1", TIMEOUT, || {
        hub.stats().slow_consumers >= 1
    })
    .await;
    let stats = h.hub.stats();
    assert_eq!(
        stats.slow_consumers, 1,
        "only the stalled client is a slow consumer; closes {:?}",
        stats.closes
    );

    let got = read_stalled_to_end(&mut f.stalled, pad).await;
    println!("the stalled client found: {got:?}");
    assert_eq!(
        got.close,
        Some((Some(1008), "slow consumer".to_owned())),
        "the stalled client's close frame ({got:?})"
    );
    assert_eq!(
        (got.after_close, got.rest, &got.end),
        (0, 0, &End::Eof),
        "after the close frame: frames, stray bytes, how the stream ended ({got:?})"
    );
    assert!(
        got.chats < n,
        "the stalled client was not cut off: it got all {n} messages"
    );

    // It hangs up; the hub forgets it.
    drop(f.stalled);
    h.wait_gone(f.stalled_id).await;
    assert!(
        !h.hub.room_has_member("flood", f.stalled_id),
        "the stalled client is still in flood"
    );
    assert_eq!(h.hub.room_members("flood").len(), 2, "flood's members");
    let stats = h.hub.stats();
    assert_eq!(stats.slow_consumers, 1, "closes {:?}", stats.closes);
    assert_eq!(
        stats.closes.get("slow_consumer"),
        Some(&1),
        "closes {:?}",
        stats.closes
    );

    // The others are connected and working.
    f.reader.ping_pong().await;
    f.publisher
        .send(Message::text(r#"{"type":"ping"}"#))
        .await
        .expect("the publisher sends a ping");
    loop {
        let m = tokio::time::timeout(TIMEOUT, f.publisher.next())
            .await
            .expect("the publisher's pong")
            .expect("the publisher's stream is open")
            .expect("the publisher reads");
        if m.to_text().is_ok_and(|t| t == r#"{"type":"pong"}"#) {
            break;
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsent_bytes_are_capped_in_the_kernel() {
    // What this guards: the hub caps what the kernel holds unsent for a socket
    // (TCP_NOTSENT_LOWAT = socket_unsent_bytes, 16 KiB here). The slow-consumer judgement
    // looks only at the connection's own queue, i.e. at what the socket refused. Without
    // the cap, Linux grows a loopback socket's send buffer (up to tcp_wmem's maximum,
    // 4 MiB by default; a loopback socket whose peer reads nothing took about 2.9 MB when
    // this test was written) and the socket takes the whole 2 MiB flood although the
    // client reads none of it: the queue never passes its 256 KiB, nobody is cut
    // (slow_consumers stays 0), and once the client reads it finds all 1000 messages and
    // no close frame. With socket_unsent_bytes set to 1 GiB, this test fails on
    // `slow_consumers >= 1`. (On a kernel whose tcp_wmem maximum is below ~2.5 MiB the
    // flood would overflow the send buffer even without the cap; the test would still
    // pass with the cap, but would no longer tell the cap from the queue bound alone.)
    //
    // With the cap, the client is cut with a close 1008 "slow consumer": the hub drops
    // the frames it had not started, finishes the one it had, and queues the close
    // frame. The client's 4 KiB window cannot take it then, but the write timeout is
    // 30 s, so the close frame waits in the queue until the client opens its window and
    // reads; so the close frame is asserted, always. What came before it is bounded by
    // what the kernels hold (16 KiB unsent plus the segment being built, in flight and
    // the client's receive buffer) plus a frame: far below 2 MiB, and below the
    // unsent cap + the queue bound + 64 KiB of slack.
    const N: usize = 1000;
    const PAD: usize = 2000;
    const UNSENT: usize = 16 * 1024;
    const QUEUE_BYTES: usize = 256 * 1024;
    let started = Instant::now();
    let h = TestHub::start(HubConfig {
        // The queue bound must hold the largest message.
        max_message_size: 16 * 1024,
        socket_unsent_bytes: UNSENT,
        send_queue: SendQueueLimits {
            max_bytes: QUEUE_BYTES,
            max_frames: 1 << 20,
        },
        write_timeout: Duration::from_secs(30),
        limits: flood_limits(),
        ..config()
    });
    let f = flood_past_a_stalled_client(&h, N, PAD).await;
    let flood_took = started.elapsed();
    let got = expect_stalled_cut(&h, f, N, PAD).await;
    let bound = UNSENT + QUEUE_BYTES + 64 * 1024;
    assert!(
        got.bytes_before_close < bound,
        "{} bytes of frames reached the stalled client before its close frame (bound \
         {bound}): the kernel held more than socket_unsent_bytes",
        got.bytes_before_close
    );
    println!(
        "flood of {N} × {PAD} B in {flood_took:?}; the stalled client got {} messages \
         ({} bytes) before its close; total {:?}",
        got.chats,
        got.bytes_before_close,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_of_too_many_frames_is_cut() {
    // What this guards: the send queue is bounded in frames (max_frames = 64) as well as
    // in bytes. The flood is 5000 tiny messages, about 0.7 MB in all, far inside the
    // 64 MiB byte bound, and the kernel holds at most 4 KiB unsent (plus the segment
    // being built), so nearly all of it waits in the stalled client's queue. Only the
    // frame count can cut it; were max_frames ignored (or set to 1 << 20), the stalled
    // client would stay open until the 30 s write timeout, slow_consumers would stay 0
    // and the test would fail on `slow_consumers >= 1`.
    const N: usize = 5000;
    const PAD: usize = 8;
    let started = Instant::now();
    let h = TestHub::start(HubConfig {
        socket_unsent_bytes: 4 * 1024,
        send_queue: SendQueueLimits {
            max_bytes: 64 << 20,
            max_frames: 64,
        },
        write_timeout: Duration::from_secs(30),
        limits: flood_limits(),
        ..config()
    });
    let f = flood_past_a_stalled_client(&h, N, PAD).await;
    let flood_took = started.elapsed();
    let got = expect_stalled_cut(&h, f, N, PAD).await;
    println!(
        "flood of {N} tiny messages in {flood_took:?}; the stalled client got {} of them \
         ({} bytes) before its close; total {:?}",
        got.chats,
        got.bytes_before_close,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_forever_for_a_client_that_never_answers() {
    // What this guards: a graceful shutdown waits for clients to answer their close
    // frames for at most shutdown_timeout (1 s here), then cuts the rest. The mute client
    // below never reads and never answers, so without the deadline `hub.close()` would
    // wait for it forever and the 6 s timeout below fails the test (as it does with
    // shutdown_timeout = 60 s). The lower bound on how long close() took shows the mute
    // client really held the shutdown up, so the test does not pass vacuously.
    const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);
    let h = TestHub::start(HubConfig {
        shutdown_timeout: SHUTDOWN_TIMEOUT,
        ..config()
    });
    let mut normal = h.connect("normal").await;
    let mut mute = RawClient::upgraded(h.addr, "/ws?user=mute").await;
    // The mute client is open once the other sees it arrive.
    normal
        .expect("user_joined mute", |m| {
            m["type"] == "user_joined" && m["user_id"] == "mute"
        })
        .await;
    h.wait_connections(2).await;

    let hub = h.hub.clone();
    let closing = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        hub.close();
        started.elapsed()
    });
    // The normal client hears server_shutdown, then a close 1001, and answers it.
    let goodbye = normal.expect_type("server_shutdown").await;
    assert!(goodbye["message"].is_string(), "{goodbye}");
    match normal.recv_message_within(TIMEOUT).await {
        Some(Message::Close(Some(frame))) => assert_eq!(
            u16::from(frame.code),
            1001,
            "the close after server_shutdown"
        ),
        other => panic!("expected a close 1001 right after server_shutdown, got {other:?}"),
    }
    normal.finish_close().await;

    let took = tokio::time::timeout(Duration::from_secs(6), closing)
        .await
        .expect("hub.close() did not return within 6 s (shutdown_timeout 1 s)")
        .expect("the closing task");
    println!("hub.close() took {took:?} with a client that never answers");
    assert!(
        took >= SHUTDOWN_TIMEOUT.mul_f32(0.9),
        "hub.close() took only {took:?}: the mute client did not hold it up"
    );
    assert!(h.hub.is_closed());
    assert_eq!(
        h.hub.connection_count(),
        0,
        "connections left after close()"
    );

    // The mute client's kernel took the goodbye too: it finds server_shutdown, then the
    // close 1001, though it never answered.
    let mut texts = Vec::new();
    let end = loop {
        match mute.next_frame(TIMEOUT).await {
            Ok(frame) if frame.opcode == 0x1 => texts.push(frame.json()["type"].clone()),
            Ok(frame) if frame.opcode == 0x8 => {
                break End::Close(frame.close_code(), frame.close_reason())
            }
            Ok(_) => {}
            Err(end) => break end,
        }
    };
    assert_eq!(
        texts.last(),
        Some(&json!("server_shutdown")),
        "the mute client's last text messages: {texts:?}"
    );
    assert!(
        matches!(end, End::Close(Some(1001), _)),
        "the mute client's stream ended with {end:?} after {texts:?}"
    );
}
