//! Connections' lives: heartbeat, close codes, slow consumers, graceful shutdown (library
//! and the `neonex` binary on SIGTERM).

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use neonex::{HubConfig, SendQueueLimits};
use neonex_testkit::binary::{free_port, run_neonex, Server};
use neonex_testkit::client::{next_chat_message, send_json_within, Client};
use neonex_testkit::clock::assert_time_now;
use neonex_testkit::frames::{frame, masked, masked_close, MASK};
use neonex_testkit::hub::{config, connect_spread, flood_limits, TestHub};
use neonex_testkit::raw::{End, RawClient};
use neonex_testkit::wait::{blocking, wait_until, TIMEOUT};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------------------------------
// Heartbeat
// ---------------------------------------------------------------------------------------

fn heartbeat_config() -> HubConfig {
    HubConfig {
        ping_interval: Duration::from_millis(200),
        pong_timeout: Duration::from_millis(800),
        ..config()
    }
}

#[tokio::test]
async fn a_silent_client_is_dropped_and_cleaned_up() {
    let h = TestHub::start(heartbeat_config());
    let mut watcher = h.connect("watcher").await;
    let started = Instant::now();
    let mut silent = RawClient::upgraded(h.addr, "/ws?user=silent").await;
    // The silent client never reads nor writes from here on.
    let joined = watcher
        .expect("user_joined silent", |m| {
            m["type"] == "user_joined" && m["user_id"] == "silent"
        })
        .await;
    assert_eq!(joined["count"], 2, "{joined}");
    let left = watcher
        .expect("user_left silent", |m| {
            m["type"] == "user_left" && m["user_id"] == "silent"
        })
        .await;
    assert_eq!(
        left,
        json!({"type": "user_left", "room": "general", "user_id": "silent", "count": 1})
    );
    let offline = watcher
        .expect("presence silent", |m| {
            m["type"] == "presence" && m["user_id"] == "silent" && m["status"] == "offline"
        })
        .await;
    assert_time_now(&offline);
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(4),
        "the silent client was dropped only after {elapsed:?} (pong timeout 800ms)"
    );
    h.wait_connections(1).await;
    assert_eq!(h.hub.user_count(), 1);
    assert!(h.hub.stats().dropped_dead >= 1, "{:?}", h.hub.stats());
    // Its socket has been shut: reading it reaches the end of the stream (past whatever
    // pings and close frame the hub had queued for it).
    if let Err(open) = silent.read_until_eof(TIMEOUT).await {
        panic!("the silent client's socket did not end: {open}");
    }
}

#[tokio::test]
async fn a_client_that_answers_pings_stays_connected() {
    let h = TestHub::start(heartbeat_config());
    let mut alive = h.connect("alive").await;
    // Keep reading (tungstenite answers the server's pings while reading) for 2.5 s,
    // three pong timeouts.
    let until = tokio::time::Instant::now() + Duration::from_millis(2500);
    let mut got = Vec::new();
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        match alive.try_recv_message(left).await {
            Err(()) => break,
            Ok(Some(m)) => got.push(m),
            Ok(None) => panic!("the live client was disconnected after {got:?}"),
        }
    }
    assert!(got.is_empty(), "unexpected messages: {got:?}");
    assert!(
        h.connection(alive.id).await.is_some(),
        "the live client was dropped"
    );
    alive.ping_pong().await;
    assert_eq!(h.hub.connection_count(), 1);
    assert_eq!(h.hub.stats().dropped_dead, 0);
}

// ---------------------------------------------------------------------------------------
// Close codes
// ---------------------------------------------------------------------------------------

const SMALL: usize = 1024;

fn small_config() -> HubConfig {
    HubConfig {
        max_message_size: SMALL,
        ..config()
    }
}

/// A JSON ping padded to exactly `len` bytes.
fn padded_ping(len: usize) -> Vec<u8> {
    let head = br#"{"type":"ping","pad":""#;
    let tail = br#""}"#;
    let mut out = head.to_vec();
    out.extend(std::iter::repeat_n(b'a', len - head.len() - tail.len()));
    out.extend_from_slice(tail);
    assert_eq!(out.len(), len);
    out
}

/// Upgrades a raw client, reads the welcome and `joined`, and sends `bytes`; returns the
/// close code the server answers with.
async fn close_code_for(h: &TestHub, bytes: &[u8]) -> u16 {
    let mut raw = RawClient::upgraded(h.addr, "/ws?user=raw").await;
    assert_eq!(raw.recv_json().await["type"], "welcome");
    assert_eq!(raw.recv_json().await["type"], "joined");
    raw.write_lenient(bytes).await;
    let code = raw.expect_close_code().await;
    drop(raw);
    h.wait_connections(0).await;
    code
}

/// A client that sends and ends its side of the stream at once (the bytes and the FIN
/// reach the hub together) still gets the answers to what it sent before the hub lets it
/// go: the pong for its ping and the reply to its close, or the close 1002 for a frame
/// with a reserved opcode.
#[tokio::test]
async fn what_a_client_sent_before_it_half_closed_is_answered_before_it_goes() {
    let h = TestHub::start(config());
    for round in 0..20 {
        let violation = round % 2 == 1;
        let mut raw = RawClient::upgraded(h.addr, "/ws?user=raw").await;
        assert_eq!(raw.recv_json().await["type"], "welcome");
        assert_eq!(raw.recv_json().await["type"], "joined");
        let bytes = if violation {
            masked(0x3, b"reserved")
        } else {
            let mut bytes = masked(0x1, br#"{"type":"ping"}"#);
            bytes.extend(masked_close(1000, "bye"));
            bytes
        };
        raw.write(&bytes).await;
        raw.stream.shutdown().await.expect("half-close");
        if violation {
            assert_eq!(raw.expect_close_code().await, 1002, "round {round}");
        } else {
            // The others' comings and goings (presence) may come between.
            let mut reply = raw.recv_json().await;
            while reply["type"] == "presence" {
                reply = raw.recv_json().await;
            }
            assert_eq!(reply, json!({"type": "pong"}), "round {round}");
            assert_eq!(raw.expect_close_code().await, 1000, "round {round}");
        }
    }
    h.wait_connections(0).await;
}

#[tokio::test]
async fn a_message_of_exactly_max_message_size_is_accepted() {
    let h = TestHub::start(small_config());
    let mut raw = RawClient::upgraded(h.addr, "/ws?user=raw").await;
    raw.recv_json().await;
    raw.recv_json().await;
    raw.write(&masked(0x1, &padded_ping(SMALL))).await;
    assert_eq!(raw.recv_json().await, json!({"type": "pong"}));
    // Also when fragmented.
    let body = padded_ping(SMALL);
    raw.write(&frame(false, 0, 0x1, &body[..500], Some(MASK)))
        .await;
    raw.write(&frame(true, 0, 0x0, &body[500..], Some(MASK)))
        .await;
    assert_eq!(raw.recv_json().await, json!({"type": "pong"}));
}

#[tokio::test]
async fn an_oversize_text_frame_closes_with_1009() {
    let h = TestHub::start(small_config());
    let code = close_code_for(&h, &masked(0x1, &padded_ping(SMALL + 1))).await;
    assert_eq!(code, 1009, "text frame of {} bytes", SMALL + 1);
    let code = close_code_for(&h, &masked(0x1, &vec![b'a'; 4 * SMALL])).await;
    assert_eq!(code, 1009, "text frame of {} bytes", 4 * SMALL);
}

#[tokio::test]
async fn an_oversize_fragmented_message_closes_with_1009() {
    let h = TestHub::start(small_config());
    let body = padded_ping(1200);
    let mut bytes = frame(false, 0, 0x1, &body[..600], Some(MASK));
    bytes.extend(frame(true, 0, 0x0, &body[600..], Some(MASK)));
    let code = close_code_for(&h, &bytes).await;
    assert_eq!(code, 1009, "two fragments of 600 bytes, max {SMALL}");
}

#[tokio::test]
async fn fragments_with_a_ping_between_them_are_reassembled() {
    let h = TestHub::default_hub();
    let mut raw = RawClient::upgraded(h.addr, "/ws?user=raw").await;
    raw.recv_json().await;
    raw.recv_json().await;
    let mut bytes = frame(false, 0, 0x1, br#"{"type":"#, Some(MASK));
    bytes.extend(masked(0x9, b"hb"));
    bytes.extend(frame(false, 0, 0x0, br#""pi"#, Some(MASK)));
    bytes.extend(frame(true, 0, 0x0, br#"ng"}"#, Some(MASK)));
    raw.write(&bytes).await;
    let pong = raw.next_frame(TIMEOUT).await.expect("a pong frame");
    assert_eq!(
        (pong.opcode, pong.payload.as_slice(), pong.fin, pong.masked),
        (0xA, &b"hb"[..], true, false),
        "answer to a ping between fragments"
    );
    let answer = raw.next_frame(TIMEOUT).await.expect("a text frame");
    assert_eq!(answer.json(), json!({"type": "pong"}));
}

#[tokio::test]
async fn invalid_utf8_in_a_text_message_closes_with_1007() {
    let h = TestHub::default_hub();
    let code = close_code_for(&h, &masked(0x1, b"{\"type\":\"\xff\xfe\"}")).await;
    assert_eq!(code, 1007, "text frame with bytes ff fe");
    // Invalid UTF-8 in a fragmented text message.
    let mut bytes = frame(false, 0, 0x1, b"{\"type\":\"\xc3", Some(MASK));
    bytes.extend(frame(true, 0, 0x0, b"\x28\"}", Some(MASK)));
    let code = close_code_for(&h, &bytes).await;
    assert_eq!(
        code, 1007,
        "fragmented text with the invalid sequence c3 28"
    );
}

#[tokio::test]
async fn protocol_violations_close_with_1002() {
    let h = TestHub::default_hub();
    let ping = br#"{"type":"ping"}"#;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked text frame", frame(true, 0, 0x1, ping, None)),
        ("RSV1 set", frame(true, 4, 0x1, ping, Some(MASK))),
        ("RSV3 set", frame(true, 1, 0x1, ping, Some(MASK))),
        ("unknown opcode 0x3", frame(true, 0, 0x3, ping, Some(MASK))),
        ("unknown opcode 0xB", frame(true, 0, 0xB, b"", Some(MASK))),
        (
            "ping with a 126-byte payload",
            frame(true, 0, 0x9, &[b'p'; 126], Some(MASK)),
        ),
        ("fragmented ping", frame(false, 0, 0x9, b"p", Some(MASK))),
        (
            "continuation without a start",
            frame(true, 0, 0x0, ping, Some(MASK)),
        ),
        ("new text message inside a fragmented one", {
            let mut b = frame(false, 0, 0x1, b"{\"type\":", Some(MASK));
            b.extend(frame(true, 0, 0x1, ping, Some(MASK)));
            b
        }),
    ];
    let mut failures = Vec::new();
    for (what, bytes) in &cases {
        let code = close_code_for(&h, bytes).await;
        if code != 1002 {
            failures.push(format!("{what}: close code {code}"));
        }
    }
    assert!(failures.is_empty(), "expected 1002 for: {failures:?}");
}

#[tokio::test]
async fn a_client_close_code_is_echoed() {
    let h = TestHub::default_hub();
    let code = close_code_for(&h, &masked_close(4000, "done")).await;
    assert_eq!(code, 4000, "echo of a raw close 4000");
    let code = close_code_for(&h, &masked_close(1000, "")).await;
    assert_eq!(code, 1000, "echo of a raw close 1000");
    // And through tungstenite.
    let client = h.connect("t").await;
    let echoed = client.close_with(4000, "bye").await;
    assert_eq!(echoed, Some(4000));
    h.wait_connections(0).await;
}

// ---------------------------------------------------------------------------------------
// Slow consumer
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_cut_off_while_a_fast_reader_gets_everything() {
    const N: usize = 2000;
    const PAD: usize = 4000;
    // The publisher keeps at most WINDOW messages ahead of both readers that must get
    // everything (the fast reader and its own echoes), so neither lags by more than
    // WINDOW * PAD bytes, well inside the queue bound, however loaded the machine; the
    // slow client, which reads nothing, falls behind by the whole flood (8 MB).
    const WINDOW: usize = 32;
    let h = TestHub::start(HubConfig {
        max_message_size: 16 * 1024,
        send_queue: SendQueueLimits {
            max_bytes: 512 * 1024,
            max_frames: 16 * 1024,
        },
        limits: flood_limits(),
        ..config()
    });
    let mut publisher = h.connect("publisher").await;
    let mut fast = h.connect("fast").await;
    publisher.join("flood").await;
    fast.join("flood").await;

    let mut slow = RawClient::connect_with_rcvbuf(h.addr, 4096).await;
    slow.upgrade("/ws?user=slow").await;
    let welcome = slow.recv_json().await;
    let slow_id: neonex::ConnectionId = welcome["connection_id"].as_str().unwrap().parse().unwrap();
    let count = h
        .blocking(move |hub| hub.join_room(slow_id, "flood"))
        .await
        .unwrap();
    assert_eq!(count, 3);
    // From here the slow client reads nothing until the flood is over.

    let pad = "x".repeat(PAD);
    let fast_progress = Arc::new(AtomicUsize::new(0));
    let progress = fast_progress.clone();
    let fast_task = tokio::spawn(async move {
        let result = read_flood(&mut fast.ws, N, &progress).await;
        (fast, result)
    });
    let Client {
        ws,
        id: publisher_id,
        ..
    } = publisher;
    let (mut sink, mut stream) = ws.split();
    let echo_progress = Arc::new(AtomicUsize::new(0));
    let progress = echo_progress.clone();
    let echo_task = tokio::spawn(async move {
        let result = read_flood(&mut stream, N, &progress).await;
        (stream, result)
    });
    let mut send_error = None;
    for i in 0..N {
        let paced = tokio::time::timeout(TIMEOUT, async {
            let read = |p: &AtomicUsize| p.load(Ordering::Relaxed);
            while read(&fast_progress).min(read(&echo_progress)) + WINDOW < i {
                tokio::task::yield_now().await;
            }
        });
        if paced.await.is_err() {
            send_error = Some(format!("a reader stalled before message {i}"));
            break;
        }
        let text = json!({"type": "message", "room": "flood", "message": pad, "data": {"i": i}});
        if let Err(e) = send_json_within(&mut sink, &text).await {
            send_error = Some(format!("message {i}: {e}"));
            break;
        }
    }
    let (mut fast, fast_result) = tokio::time::timeout(Duration::from_secs(30), fast_task)
        .await
        .expect("the fast reader's task hung")
        .expect("fast reader task");
    let (stream, echo_result) = tokio::time::timeout(Duration::from_secs(30), echo_task)
        .await
        .expect("the publisher's reader task hung")
        .expect("publisher reader task");
    let stats = h.hub.stats();
    assert!(
        send_error.is_none() && fast_result.is_ok() && echo_result.is_ok(),
        "publisher sending: {send_error:?}; fast reader: {fast_result:?}; \
         publisher's own echoes: {echo_result:?}; hub stats: slow_consumers {}, connections {}",
        stats.slow_consumers,
        stats.total_connections
    );

    let hub = h.hub.clone();
    wait_until("stats().slow_consumers >= 1", TIMEOUT, || {
        hub.stats().slow_consumers >= 1
    })
    .await;
    // The slow client's stream ends with 1008 "slow consumer", or is cut.
    let end = slow.read_to_end(Duration::from_secs(15)).await;
    match &end {
        End::Close(code, reason) => assert_eq!(
            (*code, reason.as_str()),
            (Some(1008), "slow consumer"),
            "slow client's close"
        ),
        End::Eof | End::Reset(_) => {}
    }
    let chats = slow.seen.iter().filter(|f| f.opcode == 0x1).count();
    assert!(
        chats < N + 2,
        "the slow client was not cut off: it got {chats} text frames"
    );
    drop(slow);
    h.wait_gone(slow_id).await;
    h.wait_connections(2).await;
    assert!(!h.hub.room_has_member("flood", slow_id));
    // The others are still connected and working.
    assert!(h.connection(publisher_id).await.is_some());
    fast.ping_pong().await;
    let mut ws = stream.reunite(sink).expect("same stream");
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    loop {
        let m = tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .expect("publisher pong")
            .expect("publisher stream open")
            .expect("publisher read");
        if let Message::Text(t) = m {
            if t.as_str() == r#"{"type":"pong"}"# {
                break;
            }
        }
    }
}

/// Reads the `n` chat messages of the flood, checking `data.i` counts up from 0 and
/// publishing the count in `progress`. Returns how many arrived in order, or what went
/// wrong and after how many.
async fn read_flood<S>(stream: &mut S, n: usize, progress: &AtomicUsize) -> Result<usize, String>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut next = 0usize;
    while next < n {
        let v = next_chat_message(stream, "flood", Duration::from_secs(10))
            .await
            .map_err(|e| format!("after {next} messages in order: {e}"))?;
        if v["data"]["i"] != next {
            return Err(format!(
                "got message {} when expecting {next}",
                v["data"]["i"]
            ));
        }
        next += 1;
        progress.store(next, Ordering::Relaxed);
    }
    Ok(next)
}

// ---------------------------------------------------------------------------------------
// Graceful shutdown
// ---------------------------------------------------------------------------------------

/// Reads `server_shutdown` and then, as the next frame, a close with 1001.
async fn expect_goodbye(client: &mut Client) {
    let goodbye = client.expect_type("server_shutdown").await;
    assert!(goodbye["message"].is_string(), "{goodbye}");
    match client.recv_message_within(TIMEOUT).await {
        Some(Message::Close(Some(frame))) => {
            assert_eq!(u16::from(frame.code), 1001, "close after server_shutdown")
        }
        other => panic!(
            "{}: expected a close 1001 right after server_shutdown, got {other:?}",
            client.id
        ),
    }
}

#[tokio::test]
async fn hub_close_says_server_shutdown_then_closes_with_1001() {
    let h = TestHub::start(HubConfig {
        shutdown_timeout: Duration::from_secs(5),
        ..config()
    });
    let mut clients = connect_spread(&h, "z", 2).await;
    let hub = h.hub.clone();
    let closing = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        hub.close();
        started.elapsed()
    });
    for c in clients.iter_mut() {
        expect_goodbye(c).await;
    }
    // Answer the close frames and hang up, as a well-behaved client does.
    for c in clients {
        c.finish_close().await;
    }
    let took = tokio::time::timeout(Duration::from_secs(10), closing)
        .await
        .expect("hub.close() did not return within 10 s")
        .unwrap();
    assert!(
        took < Duration::from_secs(4),
        "hub.close() took {took:?} though every client answered (shutdown timeout 5 s)"
    );
    assert!(h.hub.is_closed());
    assert!(
        tokio::net::TcpStream::connect(h.addr).await.is_err(),
        "the hub still accepts connections after close()"
    );
}

/// Kills the child process if the test ends before it exits.
#[tokio::test]
async fn the_binary_shuts_down_gracefully_on_sigterm() {
    let (mut child, addr) = Server::spawn(&["--shards", "2"], &[("RUST_LOG", "warn")]).await;
    let mut client = Client::connect(addr, Some("bin"), &["general".to_owned()]).await;
    client.ping_pong().await;
    let pid = child.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid} failed");
    expect_goodbye(&mut client).await;
    client.finish_close().await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "neonex did not exit within 10 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "neonex exited with {status}");
}

// ---------------------------------------------------------------------------------------
// One hub per address
// ---------------------------------------------------------------------------------------

/// A port that is only the local end of a connection in TIME_WAIT is refused by the
/// kernel too; the message must not blame a listener that is not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_held_by_a_connection_in_time_wait_is_refused_without_blaming_a_listener() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free_port();
    let local: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // A client on `port` closes first, so its end of the connection waits in TIME_WAIT.
    let client = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    client.bind(&local.into()).unwrap();
    client
        .connect(&server.local_addr().unwrap().into())
        .unwrap();
    let (mut accepted, _) = server.accept().unwrap();
    client.shutdown(std::net::Shutdown::Both).unwrap();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut accepted, &mut rest).unwrap();
    drop(accepted);
    drop(client);
    std::thread::sleep(Duration::from_millis(100));

    let listen = local.to_string();
    let (code, out, err) =
        blocking(move || run_neonex(&["serve", "--listen", &listen, "--shards", "1"], &[])).await;
    assert_eq!(code, 2, "the port is refused:\n{out}\n{err}");
    assert!(
        err.contains("address already in use")
            && err.contains("nothing listens on")
            && err.contains(&local.to_string())
            && !err.contains("another process listens"),
        "the message says what holds the port:\n{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_a_busy_address_exits_2_and_the_first_keeps_serving() {
    let (first, addr) = Server::spawn(&["--shards", "2"], &[]).await;
    let mut member = Client::connect(addr, Some("stays"), &["general".to_owned()]).await;
    let listen = addr.to_string();
    let (code, out, err) =
        blocking(move || run_neonex(&["serve", "--listen", &listen, "--shards", "2"], &[])).await;
    assert_eq!(
        code, 2,
        "the second server must refuse to start:\n{out}\n{err}"
    );
    assert!(
        err.contains("address already in use") && err.contains(&addr.to_string()),
        "the message names the cause and the address:\n{err}"
    );
    // Every new connection still reaches the one hub, which still has its members.
    for i in 0..8 {
        let mut newcomer =
            Client::connect(addr, Some(&format!("new{i}")), &["general".to_owned()]).await;
        newcomer.say("general", &format!("hello {i}")).await;
        let heard = member.expect_type("chat_message").await;
        assert_eq!(heard["message"], format!("hello {i}"), "{heard}");
    }
    drop(first);
}

#[test]
fn a_hub_refuses_an_address_another_hub_listens_on() {
    let first = neonex::Hub::new(config()).unwrap();
    let addr = first.listen("127.0.0.1:0").unwrap();
    let second = neonex::Hub::new(config()).unwrap();
    let err = second.listen(addr).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    second.close();
    first.close();
}
