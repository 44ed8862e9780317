//! Hostile clients at the frame level, over raw TCP, against a two-shard hub.
//!
//! Each case sends what a broken or malicious client sends and asserts the answer the
//! client receives (a close frame with the code RFC 6455 and PROTOCOL.md call for, or an
//! HTTP refusal), then that the server closes the TCP connection and forgets it. Around
//! every case the same invariants are held:
//!
//! - a well-behaved publisher and two readers (one per shard) in a room keep exchanging
//!   messages throughout: after each case the readers must have received messages
//!   published after it, and at the end every message, in order, none missing;
//! - no shard thread panics (a panic hook counts panics on `neonex-*` threads) and at the
//!   end the hub still accepts a connection on each shard and answers its ping;
//! - this process's resident memory (the hub runs in-process) grows by less than
//!   [`RSS_GROWTH_BOUND_KIB`] over the whole hostile run.
//!
//! A last test sends 2000 connections' worth of random hostile streams (seeded, so every
//! failure names the seed that reproduces it) and checks every answer against a reference
//! model of RFC 6455's rules written here.
//!
//! The tests of this file take turns (one hub at a time), so that the memory measure of
//! one is not disturbed by another.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use neonex::config::LimitsConfig;
use neonex::HubConfig;
use neonex_testkit::client::{next_chat_message, send_json_within};
use neonex_testkit::frames::{
    close_payload, frame, masked, masked_close, masked_json, parse_frame, MASK,
};
use neonex_testkit::http::upgrade_request;
use neonex_testkit::hub::{config, connect_spread, vm_rss_kib, TestHub};
use neonex_testkit::raw::{End, RawClient};
use neonex_testkit::wait::{wait_until_ok, TIMEOUT};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// Largest message the hostile hub accepts.
const MAX_MESSAGE: usize = 64 * 1024;

/// Allowed growth of this process's VmRSS over one hostile run. The hub's steady state
/// (threads, read buffers, a handful of watch connections) is in place before the first
/// measure; hostile connections are short-lived and each holds at most one partial frame
/// (< 64 KiB + 14) or fragmented message (< 2 × 64 KiB), and at most 50 exist at once:
/// under 10 MiB even if the allocator kept every byte. 64 MiB leaves room for allocator
/// and test-runtime noise while still catching a leak per connection (2000 × 64 KiB is
/// 125 MiB) or an allocation sized by a hostile length field (2^40).
const RSS_GROWTH_BOUND_KIB: u64 = 64 * 1024;

static TURN_TAKEN: AtomicBool = AtomicBool::new(false);
static SHARD_PANICS: AtomicUsize = AtomicUsize::new(0);

fn hostile_config() -> HubConfig {
    HubConfig {
        max_message_size: MAX_MESSAGE,
        // Short, so that a client that goes silent is dropped within the test.
        ping_interval: Duration::from_millis(250),
        pong_timeout: Duration::from_secs(1),
        limits: LimitsConfig {
            // The hostile connections share one address; the watch publisher sends
            // 50 messages a second for the whole run.
            messages_per_second: 1000,
            burst: 1000,
            ..LimitsConfig::default()
        },
        ..config()
    }
}

/// Counts panics on the hub's threads (a contained panic too: it is still a bug).
fn count_shard_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().map(str::to_owned);
            if name.is_some_and(|n| n.starts_with("neonex")) {
                SHARD_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

// ---------------------------------------------------------------------------------------
// The well-behaved pair that must not notice any of it
// ---------------------------------------------------------------------------------------

/// A publisher on shard 0 sending a numbered message to room `watch` every 20 ms, and
/// readers on shard 0 and shard 1 (and the publisher's own echo) checking that every
/// message arrives, in order.
struct Watch {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    progress: Vec<Arc<AtomicUsize>>,
    publisher: JoinHandle<Result<usize, String>>,
    readers: Vec<JoinHandle<Result<usize, String>>>,
}

/// Reads the `watch` room's messages; returns how many arrived once the end marker does.
async fn read_watch<S>(mut stream: S, progress: Arc<AtomicUsize>) -> Result<usize, String>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut next = 0u64;
    loop {
        let v = next_chat_message(&mut stream, "watch", Duration::from_secs(10))
            .await
            .map_err(|e| format!("after {next} messages: {e}"))?;
        if let Some(end) = v["data"]["end"].as_u64() {
            return if end == next {
                Ok(next as usize)
            } else {
                Err(format!("{end} messages sent, {next} arrived"))
            };
        }
        if v["data"]["i"].as_u64() != Some(next) {
            return Err(format!("expected message {next}, got {v}"));
        }
        next += 1;
        progress.store(next as usize, Ordering::SeqCst);
    }
}

/// Sends one numbered message (or the end marker) to room `watch`.
async fn send_watch<S>(sink: &mut S, data: Value) -> Result<(), String>
where
    S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    send_json_within(
        sink,
        &json!({"type": "message", "room": "watch", "data": data}),
    )
    .await
}

impl Watch {
    async fn start(h: &TestHub) -> Watch {
        let mut publisher = h.connect_on_shard("watch-pub", 0).await;
        let mut a = h.connect_on_shard("watch-a", 0).await;
        let mut b = h.connect_on_shard("watch-b", 1).await;
        for client in [&mut publisher, &mut a, &mut b] {
            client.join("watch").await;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let (mut sink, echo) = publisher.ws.split();
        let mut progress = Vec::new();
        let mut readers = Vec::new();
        for stream in [a.ws, b.ws] {
            let p = Arc::new(AtomicUsize::new(0));
            progress.push(p.clone());
            readers.push(tokio::spawn(read_watch(stream, p)));
        }
        let p = Arc::new(AtomicUsize::new(0));
        progress.push(p.clone());
        readers.push(tokio::spawn(read_watch(echo, p)));
        let (stop2, sent2) = (stop.clone(), sent.clone());
        let publisher = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut i = 0usize;
            while !stop2.load(Ordering::SeqCst) {
                tick.tick().await;
                send_watch(&mut sink, json!({"i": i})).await?;
                i += 1;
                sent2.store(i, Ordering::SeqCst);
            }
            send_watch(&mut sink, json!({"end": i})).await?;
            Ok(i)
        });
        Watch {
            stop,
            sent,
            progress,
            publisher,
            readers,
        }
    }

    /// Every reader receives messages published from now on.
    async fn assert_flowing(&self, after: &str) {
        let target = self.sent.load(Ordering::SeqCst) + 2;
        // Generous: on a loaded machine the publisher's 20 ms ticks and the readers
        // themselves are late, and only a stop must fail this.
        let deadline = Instant::now() + 3 * TIMEOUT;
        loop {
            if self
                .progress
                .iter()
                .all(|p| p.load(Ordering::SeqCst) >= target)
            {
                return;
            }
            let died = self.publisher.is_finished() || self.readers.iter().any(|r| r.is_finished());
            let got: Vec<usize> = self
                .progress
                .iter()
                .map(|p| p.load(Ordering::SeqCst))
                .collect();
            assert!(
                !died && Instant::now() < deadline,
                "after {after}: the watch pair stopped (publisher or reader ended: {died}); \
                 wanted message {target} everywhere, readers are at {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the publisher; every reader must have every message, in order.
    async fn finish(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let sent = tokio::time::timeout(Duration::from_secs(10), self.publisher)
            .await
            .expect("the publisher hung")
            .expect("publisher task")
            .expect("the publisher sent everything");
        for (i, reader) in self.readers.into_iter().enumerate() {
            let got = tokio::time::timeout(Duration::from_secs(15), reader)
                .await
                .expect("a reader hung")
                .expect("reader task");
            assert_eq!(
                got,
                Ok(sent),
                "watch reader {i} (0: shard 0, 1: shard 1, 2: echo)"
            );
        }
        sent
    }
}

// ---------------------------------------------------------------------------------------
// One hostile run: hub, watch pair, invariants
// ---------------------------------------------------------------------------------------

struct Run {
    h: TestHub,
    watch: Watch,
    /// Connections the watch pair holds: the count every case must return to.
    base: usize,
    rss_before: u64,
    started: Instant,
    /// What each case got, for the report.
    log: Vec<String>,
    _turn: Turn,
}

/// One hostile run at a time in this process; released on drop, also when a test fails.
struct Turn;

impl Turn {
    async fn take() -> Turn {
        let deadline = Instant::now() + Duration::from_secs(180);
        while TURN_TAKEN
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "another hostile run held the turn for 3 minutes"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Turn
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        TURN_TAKEN.store(false, Ordering::SeqCst);
    }
}

impl Run {
    async fn begin() -> Run {
        let turn = Turn::take().await;
        count_shard_panics();
        let h = TestHub::start(hostile_config());
        let watch = Watch::start(&h).await;
        h.wait_connections(3).await;
        watch.assert_flowing("start").await;
        Run {
            h,
            watch,
            base: 3,
            rss_before: vm_rss_kib(),
            started: Instant::now(),
            log: Vec::new(),
            _turn: turn,
        }
    }

    /// After a case: the hub forgot the hostile connection, the watch pair still flows,
    /// nothing panicked.
    async fn after_case(&mut self, case: &str) {
        let hub = self.h.hub.clone();
        let base = self.base;
        let mut last = 0;
        let gone = wait_until_ok(TIMEOUT, || {
            last = hub.connection_count();
            last == base
        })
        .await;
        assert!(
            gone,
            "after {case}: the hub still counts {last} connections, expected {base}"
        );
        self.watch.assert_flowing(case).await;
        assert_eq!(
            SHARD_PANICS.load(Ordering::SeqCst),
            0,
            "after {case}: a hub thread panicked"
        );
    }

    async fn end(self, name: &str) {
        let rss_after = vm_rss_kib();
        let Run {
            h,
            watch,
            rss_before,
            started,
            log,
            ..
        } = self;
        let delivered = watch.finish().await;
        assert!(delivered > 0, "the watch publisher never ran");
        // The hub still accepts connections on each shard and answers them.
        let mut fresh = connect_spread(&h, "after", 2).await;
        for client in fresh.iter_mut() {
            client.ping_pong().await;
        }
        assert_eq!(
            SHARD_PANICS.load(Ordering::SeqCst),
            0,
            "a hub thread panicked"
        );
        let growth = rss_after.saturating_sub(rss_before);
        println!(
            "{name}: {} cases in {:?}; watch pair got all {delivered} messages; \
             VmRSS {rss_before} KiB -> {rss_after} KiB (+{growth} KiB, bound {RSS_GROWTH_BOUND_KIB} KiB)",
            log.len(),
            started.elapsed()
        );
        for line in &log {
            println!("  {line}");
        }
        assert!(
            growth < RSS_GROWTH_BOUND_KIB,
            "VmRSS grew by {growth} KiB (from {rss_before} to {rss_after}), over the bound of \
             {RSS_GROWTH_BOUND_KIB} KiB"
        );
    }

    /// An upgraded raw connection that has read its welcome.
    async fn hostile(&self) -> RawClient {
        let mut raw = RawClient::upgraded(self.h.addr, "/ws?user=hostile").await;
        let welcome = raw.recv_json().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        raw
    }

    /// Sends `bytes` on a fresh upgraded connection; the client must get a close frame
    /// with `code`, then the end of the stream, and the hub must forget the connection.
    async fn refused(&mut self, case: &str, bytes: &[u8], code: u16) {
        println!("case: {case}");
        let mut raw = self.hostile().await;
        raw.write_lenient(bytes).await;
        let end = raw.read_to_end(TIMEOUT).await;
        let after = raw.read_until_eof(TIMEOUT).await;
        self.log.push(format!("{case}: {end:?}, then {after:?}"));
        assert!(
            matches!(end, End::Close(Some(c), _) if c == code),
            "{case}: expected close {code}, got {end:?}"
        );
        match after {
            Ok((rest, _)) => assert!(
                rest.is_empty(),
                "{case}: {} bytes arrived after the close frame",
                rest.len()
            ),
            Err(e) => panic!("{case}: after the close frame, {e}"),
        }
        drop(raw);
        self.after_case(case).await;
    }
}

/// A masked frame with any header bits.
fn masked_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, rsv, opcode, payload, Some(MASK))
}

/// A masked frame header announcing `len` bytes with the 64-bit length encoding, and no
/// payload.
fn header_64(b0: u8, len: u64) -> Vec<u8> {
    let mut out = vec![b0, 0x80 | 127];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&MASK);
    out
}

// ---------------------------------------------------------------------------------------
// Framing violations: 1002
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_violations_close_with_1002() {
    let mut run = Run::begin().await;
    let ping = json!({"type": "ping"}).to_string();

    run.refused(
        "unmasked text frame",
        &frame(true, 0, 0x1, ping.as_bytes(), None),
        1002,
    )
    .await;
    run.refused(
        "unmasked close frame",
        &frame(true, 0, 0x8, &close_payload(1000, b""), None),
        1002,
    )
    .await;
    for (rsv, name) in [(4, "RSV1"), (2, "RSV2"), (1, "RSV3"), (7, "RSV1+2+3")] {
        let case = format!("{name} set on a text frame");
        run.refused(&case, &masked_frame(true, rsv, 0x1, ping.as_bytes()), 1002)
            .await;
    }
    run.refused("RSV1 on a ping", &masked_frame(true, 4, 0x9, b""), 1002)
        .await;
    for opcode in (0x3..=0x7).chain(0xB..=0xF) {
        let case = format!("unknown opcode {opcode:#x}");
        run.refused(&case, &masked_frame(true, 0, opcode, b"x"), 1002)
            .await;
    }
    run.refused(
        "fragmented ping (FIN=0)",
        &masked_frame(false, 0, 0x9, b"p"),
        1002,
    )
    .await;
    run.refused(
        "fragmented close (FIN=0)",
        &masked_frame(false, 0, 0x8, &close_payload(1000, b"")),
        1002,
    )
    .await;
    for (opcode, name) in [(0x9, "ping"), (0xA, "pong"), (0x8, "close")] {
        let mut payload = vec![b'a'; 126];
        if opcode == 0x8 {
            payload[..2].copy_from_slice(&1000u16.to_be_bytes());
        }
        let case = format!("{name} with a 126-byte payload");
        run.refused(&case, &masked_frame(true, 0, opcode, &payload), 1002)
            .await;
    }
    // Short control payloads in the longer length encodings.
    let mut ping_126 = vec![0x89, 0x80 | 126, 0, 5];
    ping_126.extend_from_slice(&MASK);
    ping_126.extend_from_slice(b"hello");
    run.refused(
        "ping of 5 bytes in the 16-bit length encoding",
        &ping_126,
        1002,
    )
    .await;
    let mut ping_127 = header_64(0x89, 5);
    ping_127.extend_from_slice(b"hello");
    run.refused(
        "ping of 5 bytes in the 64-bit length encoding",
        &ping_127,
        1002,
    )
    .await;
    run.refused(
        "continuation with no message started",
        &masked_frame(true, 0, 0x0, b"orphan"),
        1002,
    )
    .await;
    run.refused(
        "unfinished continuation with no message started",
        &masked_frame(false, 0, 0x0, b"orphan"),
        1002,
    )
    .await;
    let mut text_in_text = masked_frame(false, 0, 0x1, br#"{"type":"#);
    text_in_text.extend(masked_frame(true, 0, 0x1, ping.as_bytes()));
    run.refused(
        "new text frame while a fragmented message is open",
        &text_in_text,
        1002,
    )
    .await;
    let mut binary_in_text = masked_frame(false, 0, 0x1, br#"{"type":"#);
    binary_in_text.extend(masked_frame(false, 0, 0x2, b"\x00"));
    run.refused(
        "new binary frame while a fragmented text message is open",
        &binary_in_text,
        1002,
    )
    .await;
    // A ping between fragments is allowed; the violation comes after it.
    let mut ping_then_text = masked_frame(false, 0, 0x1, br#"{"type":"#);
    ping_then_text.extend(masked_frame(true, 0, 0x9, b"between"));
    ping_then_text.extend(masked_frame(true, 0, 0x1, ping.as_bytes()));
    run.refused(
        "new text frame after a ping inside a fragmented message",
        &ping_then_text,
        1002,
    )
    .await;
    run.refused(
        "length 2^63 (64-bit length with the top bit set)",
        &header_64(0x82, 1 << 63),
        1002,
    )
    .await;
    run.refused("length 2^64 - 1", &header_64(0x81, u64::MAX), 1002)
        .await;
    run.end("framing_violations_close_with_1002").await;
}

// ---------------------------------------------------------------------------------------
// Close frames, sizes, UTF-8
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_close_frames_oversize_and_invalid_utf8() {
    let mut run = Run::begin().await;
    for code in [
        0u16, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let case = format!("close code {code}");
        run.refused(&case, &masked_close(code, "bye"), 1002).await;
    }
    run.refused("close with a 1-byte payload", &masked(0x8, &[0x03]), 1002)
        .await;
    run.refused(
        "close 1000 with an invalid UTF-8 reason",
        &masked(0x8, &close_payload(1000, b"bad \xff\xfe reason")),
        1007,
    )
    .await;
    run.refused(
        "close 1000 with a truncated UTF-8 reason",
        &masked(0x8, &close_payload(1000, b"caf\xc3")),
        1007,
    )
    .await;
    run.refused("length 2^40, header only", &header_64(0x81, 1 << 40), 1009)
        .await;
    run.refused(
        "length max_message_size + 1, header only",
        &header_64(0x81, MAX_MESSAGE as u64 + 1),
        1009,
    )
    .await;
    let mut small_then_huge = masked_frame(false, 0, 0x1, b"{");
    small_then_huge.extend(header_64(0x80, 1 << 40));
    run.refused(
        "continuation of length 2^40 in a fragmented message",
        &small_then_huge,
        1009,
    )
    .await;
    let mut over_by_fragments = Vec::new();
    let chunk = vec![b'a'; 16 * 1024];
    over_by_fragments.extend(masked_frame(false, 0, 0x1, &chunk));
    for _ in 0..4 {
        over_by_fragments.extend(masked_frame(false, 0, 0x0, &chunk));
    }
    run.refused(
        "fragments adding up to more than max_message_size",
        &over_by_fragments,
        1009,
    )
    .await;
    run.refused(
        "text frame with invalid UTF-8",
        &masked(0x1, b"{\"type\":\"ping\",\"x\":\"\xc3\x28\"}"),
        1007,
    )
    .await;
    run.refused(
        "text frame with a UTF-16 surrogate encoded in UTF-8",
        &masked(0x1, b"\"\xed\xa0\x80\""),
        1007,
    )
    .await;
    run.refused(
        "text frame with an overlong encoding",
        &masked(0x1, b"\"\xc0\xaf\""),
        1007,
    )
    .await;
    let mut split_bad = masked_frame(false, 0, 0x1, b"\"caf\xc3");
    split_bad.extend(masked_frame(true, 0, 0x0, b"(\""));
    run.refused(
        "fragmented text whose fragments join into invalid UTF-8",
        &split_bad,
        1007,
    )
    .await;
    // A character split across fragments is fine: the connection stays open and answers.
    println!("case: UTF-8 character split across fragments");
    let mut raw = run.hostile().await;
    let mut split_ok = masked_frame(false, 0, 0x1, b"{\"type\":\"ping\",\"x\":\"caf\xc3");
    split_ok.extend(masked_frame(true, 0, 0x0, b"\xa9\"}"));
    raw.write(&split_ok).await;
    loop {
        let m = raw.recv_json().await;
        if m["type"] == "pong" {
            break;
        }
    }
    raw.write(&masked_close(1000, "done")).await;
    let end = raw.read_to_end(TIMEOUT).await;
    run.log.push(format!(
        "UTF-8 character split across fragments: pong, then our close 1000 answered with {end:?}"
    ));
    assert!(matches!(end, End::Close(Some(1000), _)), "{end:?}");
    drop(raw);
    run.after_case("UTF-8 character split across fragments")
        .await;
    run.end("bad_close_frames_oversize_and_invalid_utf8").await;
}

// ---------------------------------------------------------------------------------------
// Truncated frames
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frames_are_dropped() {
    let mut run = Run::begin().await;
    // A text frame header promising 100 bytes, and 10 of them.
    let mut truncated = masked_frame(true, 0, 0x1, &[b' '; 100]);
    truncated.truncate(truncated.len() - 90);
    let mut header_cut = header_64(0x81, 100);
    header_cut.truncate(6);
    let key_cut = masked_frame(true, 0, 0x1, b"hi")[..4].to_vec();
    let cases: [(&str, &[u8]); 4] = [
        ("frame promising 100 bytes, 10 sent", &truncated),
        (
            "64-bit length field cut after 4 of its 8 bytes",
            &header_cut,
        ),
        ("a single header byte", &[0x81]),
        ("masking key cut short", &key_cut),
    ];
    let dropped_before = run.h.hub.stats().dropped_dead;
    for (name, bytes) in cases {
        for half_close in [true, false] {
            let case = if half_close {
                format!("{name}, then the client half-closes")
            } else {
                format!("{name}, then the client stays silent")
            };
            println!("case: {case}");
            let mut raw = run.hostile().await;
            raw.write(bytes).await;
            let started = Instant::now();
            if half_close {
                raw.stream.shutdown().await.expect("half-close");
            }
            // Silent: the pong timeout (1 s) drops it; the hub's pings are skipped here.
            let end = raw.read_to_end(Duration::from_secs(5)).await;
            let took = started.elapsed();
            run.log.push(format!("{case}: {end:?} after {took:.1?}"));
            assert!(
                matches!(end, End::Eof | End::Reset(_)),
                "{case}: expected the connection to be dropped, got {end:?}"
            );
            if !half_close {
                assert!(
                    took >= Duration::from_millis(900),
                    "{case}: dropped after {took:?}, before the pong timeout"
                );
            }
            drop(raw);
            run.after_case(&case).await;
        }
    }
    let dropped = run.h.hub.stats().dropped_dead - dropped_before;
    assert!(
        dropped >= 4,
        "the silent clients were not counted as dropped dead ({dropped})"
    );
    run.end("truncated_frames_are_dropped").await;
}

// ---------------------------------------------------------------------------------------
// Garbage around the handshake
// ---------------------------------------------------------------------------------------

/// A small deterministic generator (xorshift64*), so that every random case can be
/// replayed from its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// How a connection that sent garbage before any request was answered.
async fn http_answer(h: &TestHub, bytes: &[u8]) -> (String, Result<(Vec<u8>, End), String>) {
    let mut raw = RawClient::connect(h.addr).await;
    raw.write_lenient(bytes).await;
    let head = raw.read_head().await;
    let rest = raw.read_until_eof(TIMEOUT).await;
    (head, rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_around_the_handshake() {
    let mut run = Run::begin().await;
    let mut rng = Rng::new(0x6a72_6167);

    let mut random = rng.bytes(512);
    random[0] |= 0x80; // not a letter of an HTTP method
    let mut client_hello = vec![
        0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
    ];
    client_hello.extend(rng.bytes(32)); // random
    client_hello.push(0x20); // session id
    client_hello.extend(rng.bytes(32));
    client_hello.extend([0x00, 0x08, 0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2f]);
    client_hello.extend([0x01, 0x00, 0x00, 0x73, 0x00, 0x00, 0x00, 0x0e, 0x00, 0x0c]);
    client_hello.extend(b"\x00\x00\x09localhost");
    let mut frame_first = masked_json(&json!({"type": "ping"}));
    frame_first.extend_from_slice(upgrade_request("/ws").as_bytes());
    let mut long_line = b"GET /ws HTTP/1.1\r\nX-Long: ".to_vec();
    long_line.extend(std::iter::repeat_n(b'a', 9000));
    let cases: [(&str, Vec<u8>, u16); 7] = [
        ("512 random bytes before any request", random, 400),
        ("a TLS ClientHello", client_hello, 400),
        (
            "the HTTP/2 connection preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            400,
        ),
        ("1000 NUL bytes", vec![0; 1000], 400),
        (
            "a WebSocket frame before the upgrade request",
            frame_first,
            400,
        ),
        (
            "an SSH banner",
            b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n".to_vec(),
            400,
        ),
        ("a 9000-byte header line", long_line, 431),
    ];
    for (case, bytes, status) in cases {
        println!("case: {case}");
        let (head, rest) = http_answer(&run.h, &bytes).await;
        let first = head.lines().next().unwrap_or_default().to_owned();
        run.log.push(format!(
            "{case}: {first:?}, then {:?}",
            rest.as_ref()
                .map(|(body, end)| (String::from_utf8_lossy(body).into_owned(), end))
        ));
        assert!(
            first.starts_with(&format!("HTTP/1.1 {status} ")),
            "{case}: expected HTTP {status}, got {head:?}"
        );
        assert!(
            head.to_ascii_lowercase().contains("connection: close"),
            "{case}: {head:?}"
        );
        assert!(
            rest.is_ok(),
            "{case}: the server kept the connection: {rest:?}"
        );
        run.after_case(case).await;
    }

    // Garbage right after the upgrade.
    run.refused(
        "text garbage after the upgrade",
        b"hello, is this thing on?\r\n",
        1002,
    )
    .await;
    run.refused(
        "a second HTTP request after the upgrade",
        upgrade_request("/ws").as_bytes(),
        1002,
    )
    .await;
    let mut random_after = rng.bytes(256);
    random_after[0] |= 0x40; // RSV2 set: a protocol error whatever follows
    run.refused("256 random bytes after the upgrade", &random_after, 1002)
        .await;

    // Garbage in the same packet as the upgrade request: the upgrade is answered, the
    // garbage refused.
    let mut wrong = Vec::new();
    for (case, garbage) in [
        (
            "text garbage in the same write as the upgrade request",
            b"hello, is this thing on?\r\n".to_vec(),
        ),
        (
            "an unmasked frame in the same write as the upgrade request",
            frame(true, 0, 0x1, b"{}", None),
        ),
    ] {
        println!("case: {case}");
        let mut bytes = upgrade_request("/ws?user=hostile").into_bytes();
        bytes.extend_from_slice(&garbage);
        let mut raw = RawClient::connect(run.h.addr).await;
        raw.write(&bytes).await;
        let got = raw.read_until_eof(TIMEOUT).await;
        let (all, _) = got.unwrap_or_else(|e| panic!("{case}: {e}"));
        let answer = Answer::of(&all, true);
        run.log.push(format!("{case}: {answer}"));
        // Checked after the run's invariants, so that a failure here does not hide them.
        if answer.status != Some(101)
            || answer.close != Some(Some(1002))
            || !answer.problems.is_empty()
        {
            wrong.push(format!(
                "{case}: expected HTTP 101 then close 1002, got {answer}"
            ));
        }
        drop(raw);
        run.after_case(case).await;
    }
    run.end("garbage_around_the_handshake").await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Random hostile streams against a reference model
// ---------------------------------------------------------------------------------------

/// What a server that follows RFC 6455 may answer a stream with, after which the client
/// half-closes: one of these close codes (`None`: no close frame, only the end of the
/// stream).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expect(Vec<Option<u16>>);

/// Close codes an endpoint may send (RFC 6455 section 7.4, and 1012-1014 from the IANA
/// registry).
fn code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The reference model: RFC 6455's rules for a server reading `stream` with a message
/// size bound of `max`.
fn predict(stream: &[u8], max: u64) -> Expect {
    // A fragmented text message whose bytes so far can no longer become UTF-8 may be
    // refused with 1007 as soon as that is seen, or when it completes (RFC 6455 8.1).
    let fail = |code: Option<u16>, fragment: &Option<(bool, Vec<u8>)>| {
        let mut codes = vec![code];
        if let Some((true, data)) = fragment {
            if std::str::from_utf8(data).is_err_and(|e| e.error_len().is_some()) {
                codes.push(Some(1007));
            }
        }
        Expect(codes)
    };
    let mut fragment: Option<(bool, Vec<u8>)> = None;
    let mut pos = 0;
    loop {
        let b = &stream[pos..];
        if b.len() < 2 {
            return fail(None, &fragment);
        }
        let fin = b[0] & 0x80 != 0;
        let opcode = b[0] & 0x0f;
        let len7 = b[1] & 0x7f;
        let control = opcode >= 0x8;
        if b[0] & 0x70 != 0
            || !matches!(opcode, 0x0..=0x2 | 0x8..=0xA)
            || b[1] & 0x80 == 0
            || (control && (!fin || len7 > 125))
        {
            return fail(Some(1002), &fragment);
        }
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        if b.len() < 2 + ext {
            return fail(None, &fragment);
        }
        let len = match ext {
            0 => u64::from(len7),
            2 => u64::from(u16::from_be_bytes([b[2], b[3]])),
            _ => u64::from_be_bytes(b[2..10].try_into().unwrap()),
        };
        if len >> 63 != 0 {
            return fail(Some(1002), &fragment);
        }
        if len > max {
            return fail(Some(1009), &fragment);
        }
        let head = 2 + ext + 4;
        if (b.len() as u64) < head as u64 + len {
            return fail(None, &fragment);
        }
        let key = &b[head - 4..head];
        let payload: Vec<u8> = b[head..head + len as usize]
            .iter()
            .enumerate()
            .map(|(i, x)| x ^ key[i % 4])
            .collect();
        pos += head + len as usize;
        match opcode {
            0x9 | 0xA => {}
            0x8 => {
                return match payload.as_slice() {
                    [] => Expect(vec![Some(1000)]),
                    [_] => fail(Some(1002), &fragment),
                    [hi, lo, reason @ ..] => {
                        let code = u16::from_be_bytes([*hi, *lo]);
                        let utf8 = std::str::from_utf8(reason).is_ok();
                        let mut codes = Vec::new();
                        // 1014 is registered by IANA, not defined by RFC 6455: a server
                        // may take it or refuse it.
                        if !code_allowed(code) || code == 1014 {
                            codes.push(Some(1002));
                        }
                        if !utf8 {
                            codes.push(Some(1007));
                        }
                        if code_allowed(code) && utf8 {
                            codes.push(Some(code));
                        }
                        Expect(codes)
                    }
                };
            }
            0x1 | 0x2 => {
                if fragment.is_some() {
                    return fail(Some(1002), &fragment);
                }
                if fin {
                    if opcode == 0x1 && std::str::from_utf8(&payload).is_err() {
                        return Expect(vec![Some(1007)]);
                    }
                } else {
                    fragment = Some((opcode == 0x1, payload));
                }
            }
            _ => {
                let Some((text, data)) = fragment.as_mut() else {
                    return Expect(vec![Some(1002)]);
                };
                if (data.len() + payload.len()) as u64 > max {
                    return fail(Some(1009), &fragment);
                }
                data.extend_from_slice(&payload);
                if fin {
                    if *text && std::str::from_utf8(data).is_err() {
                        return Expect(vec![Some(1007)]);
                    }
                    fragment = None;
                }
            }
        }
    }
}

/// A random frame, mostly well-formed, with the kinds of damage a hostile client sends.
fn random_frame(rng: &mut Rng) -> Vec<u8> {
    let fin = rng.below(4) != 0;
    let rsv = if rng.below(12) == 0 {
        rng.below(8) as u8
    } else {
        0
    };
    let opcode = match rng.below(24) {
        0 => rng.below(16) as u8,
        1..=7 => 0x1,
        8..=9 => 0x2,
        10..=13 => 0x0,
        14..=16 => 0x8,
        17..=20 => 0x9,
        _ => 0xA,
    };
    let payload = match opcode {
        0x8 => match rng.below(12) {
            0 => Vec::new(),
            1 => vec![0x03],
            n => {
                let codes = [
                    0, 999, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1011, 1012, 1015,
                    1016, 2999, 3000, 4000, 4999, 5000,
                ];
                let code = if n == 2 {
                    rng.next() as u16
                } else {
                    codes[rng.below(codes.len() as u64) as usize]
                };
                let reason: &[u8] = match rng.below(6) {
                    0 => b"\xff bad",
                    1 => b"caf\xc3",
                    _ => b"bye",
                };
                close_payload(code, reason)
            }
        },
        0x0..=0x2 => match rng.below(20) {
            0 => vec![b'a'; 60 * 1024 + rng.below(8 * 1024) as usize],
            1..=4 => {
                let n = rng.below(40) as usize;
                rng.bytes(n)
            }
            5..=8 => json!({"type": "ping"}).to_string().into_bytes(),
            9..=10 => json!({"type": "message", "room": "general", "message": "hi"})
                .to_string()
                .into_bytes(),
            11..=13 => {
                // Valid UTF-8, cut anywhere (maybe inside a character).
                let s = "{\"type\":\"ping\",\"x\":\"café ☃ 🦀\"}".as_bytes();
                let cut = rng.below(s.len() as u64 + 1) as usize;
                if rng.below(2) == 0 {
                    s[..cut].to_vec()
                } else {
                    s[cut..].to_vec()
                }
            }
            14 => vec![b'x'; 126 + rng.below(200) as usize],
            _ => b"{\"type\":\"nope\"}".to_vec(),
        },
        _ => {
            let limit = if rng.below(10) == 0 { 140 } else { 20 };
            let n = rng.below(limit) as usize;
            rng.bytes(n)
        }
    };
    let masked = rng.below(25) != 0;
    let key = [
        rng.next() as u8,
        rng.next() as u8,
        rng.next() as u8,
        rng.next() as u8,
    ];
    let b0 = (u8::from(fin) << 7) | (rsv << 4) | opcode;
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut out = vec![b0];
    match rng.below(40) {
        // A huge length and no payload.
        0 => {
            let len = match rng.below(4) {
                0 => 1 << 63,
                1 => 1 << 40,
                2 => MAX_MESSAGE as u64 + 1,
                _ => rng.next(),
            };
            out.push(mask_bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
            if masked {
                out.extend_from_slice(&key);
            }
            return out;
        }
        // A longer length encoding than needed.
        1 => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
        2 if payload.len() <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        _ => {
            let n = payload.len();
            if n <= 125 {
                out.push(mask_bit | n as u8);
            } else if n <= 0xffff {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            } else {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
    }
    if masked {
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(&payload);
    }
    out
}

/// A hostile stream: random frames, random bytes, frames with a flipped bit, and maybe a
/// truncated frame at the end.
fn random_stream(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(6) {
        match rng.below(20) {
            0..=1 => {
                let n = rng.below(64) as usize;
                out.extend(rng.bytes(n));
            }
            2..=3 => {
                let mut f = random_frame(rng);
                let bit = rng.below(f.len().min(16) as u64 * 8) as usize;
                f[bit / 8] ^= 1 << (bit % 8);
                out.extend(f);
            }
            4 => {
                let f = random_frame(rng);
                let cut = rng.below(f.len() as u64) as usize;
                out.extend_from_slice(&f[..cut]);
                break;
            }
            _ => out.extend(random_frame(rng)),
        }
    }
    out
}

/// What the server sent on one connection, read as the client sees it.
#[derive(Debug)]
struct Answer {
    status: Option<u16>,
    /// The close frame's code, if a close frame came (`Some(None)`: no code).
    close: Option<Option<u16>>,
    frames: usize,
    problems: Vec<String>,
}

impl Answer {
    /// Reads `bytes`: an HTTP head first if `with_head`, then server frames.
    fn of(bytes: &[u8], with_head: bool) -> Answer {
        let mut answer = Answer {
            status: None,
            close: None,
            frames: 0,
            problems: Vec::new(),
        };
        let mut rest = bytes;
        if with_head {
            match rest.windows(4).position(|w| w == b"\r\n\r\n") {
                Some(end) if rest.starts_with(b"HTTP/1.1 ") => {
                    let head = String::from_utf8_lossy(&rest[..end]);
                    answer.status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok());
                    rest = &rest[end + 4..];
                }
                // Read on as frames, to tell what else went wrong.
                _ => answer.problems.push(format!(
                    "no HTTP head: the answer starts with {:02x?}",
                    &rest[..rest.len().min(8)]
                )),
            }
        }
        while !rest.is_empty() {
            if answer.close.is_some() {
                answer
                    .problems
                    .push(format!("{} bytes after the close frame", rest.len()));
                break;
            }
            let Some((f, used)) = parse_frame(rest) else {
                answer
                    .problems
                    .push(format!("a truncated server frame of {} bytes", rest.len()));
                break;
            };
            rest = &rest[used..];
            answer.frames += 1;
            if f.masked || f.rsv != 0 || !f.fin {
                answer
                    .problems
                    .push(format!("malformed server frame {f:?}"));
            }
            match f.opcode {
                0x1 => {
                    if serde_json::from_slice::<Value>(&f.payload).is_err() {
                        answer
                            .problems
                            .push(format!("text that is not JSON: {f:?}"));
                    }
                }
                0x8 => {
                    answer.close = Some(f.close_code());
                    if f.payload.len() == 1
                        || std::str::from_utf8(&f.payload[2.min(f.payload.len())..]).is_err()
                    {
                        answer.problems.push(format!("malformed close frame {f:?}"));
                    }
                }
                0x9 | 0xA => {}
                op => answer.problems.push(format!("server sent opcode {op:#x}")),
            }
        }
        answer
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HTTP {:?}, {} frames, close {:?}, problems {:?}",
            self.status, self.frames, self.close, self.problems
        )
    }
}

/// One random hostile connection; `Err` describes what went wrong, with the seed.
async fn random_connection(
    addr: std::net::SocketAddr,
    seed: u64,
) -> Result<Option<u16>, (Vec<String>, String)> {
    let mut rng = Rng::new(seed);
    let stream = random_stream(&mut rng);
    let expect = predict(&stream, MAX_MESSAGE as u64);
    let together = rng.below(2) == 0;
    let request = upgrade_request(&format!("/ws?user=rnd-{seed}"));
    let mut raw = RawClient::connect(addr).await;
    if together {
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(&stream);
        raw.write(&bytes).await;
    } else {
        raw.write(request.as_bytes()).await;
        let head = raw.read_head().await;
        if !head.starts_with("HTTP/1.1 101") {
            let problem = format!("upgrade answered {head:?}");
            return Err((vec![problem.clone()], format!("seed {seed}: {problem}")));
        }
        raw.write_lenient(&stream).await;
    }
    let _ = raw.stream.shutdown().await;
    let (bytes, _) = raw
        .read_until_eof(Duration::from_secs(10))
        .await
        .map_err(|e| {
            let problem = format!("after the client's end of stream: {e}");
            (vec![problem.clone()], format!("seed {seed}: {problem}"))
        })?;
    let answer = Answer::of(&bytes, together);
    let close = answer.close.map(|c| c.unwrap_or(0));
    let mut problems = answer.problems.clone();
    if together && answer.status != Some(101) {
        problems.push("the upgrade was not answered with 101".to_owned());
    }
    if !expect.0.contains(&close) {
        problems.push(format!("expected a close in {:?}, got {close:?}", expect.0));
    }
    if problems.is_empty() {
        Ok(close)
    } else {
        let detail = format!(
            "seed {seed} ({} bytes, sent {}): {problems:?}; stream starts {:02x?}",
            stream.len(),
            if together {
                "with the upgrade"
            } else {
                "after the 101"
            },
            &stream[..stream.len().min(24)]
        );
        Err((problems, detail))
    }
}

/// A problem without its particulars, to count problems by kind.
fn kind_of(problem: &str) -> String {
    problem
        .split([':', '{', '['])
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn the_reference_model_agrees_with_rfc_6455_examples() {
    let max = 1000;
    let ping = masked(0x9, b"p");
    assert_eq!(predict(&ping, max), Expect(vec![None]));
    assert_eq!(predict(&masked(0x3, b""), max), Expect(vec![Some(1002)]));
    assert_eq!(
        predict(&masked_close(4000, "x"), max),
        Expect(vec![Some(4000)])
    );
    assert_eq!(predict(&masked(0x8, b""), max), Expect(vec![Some(1000)]));
    assert_eq!(
        predict(&masked(0x1, b"\xff"), max),
        Expect(vec![Some(1007)])
    );
    assert_eq!(
        predict(&header_64(0x81, 1001), max),
        Expect(vec![Some(1009)])
    );
    let mut open_bad = masked_frame(false, 0, 0x1, b"\xff");
    assert_eq!(predict(&open_bad, max), Expect(vec![None, Some(1007)]));
    open_bad.extend(masked(0x3, b""));
    assert_eq!(
        predict(&open_bad, max),
        Expect(vec![Some(1002), Some(1007)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_hostile_streams() {
    const CONNECTIONS: u64 = 2000;
    const PARALLEL: u64 = 50;
    let mut run = Run::begin().await;
    let addr = run.h.addr;
    let mut workers = Vec::new();
    for w in 0..PARALLEL {
        workers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for k in 0..CONNECTIONS / PARALLEL {
                let seed = 1 + w * (CONNECTIONS / PARALLEL) + k;
                outcomes.push(random_connection(addr, seed).await);
            }
            outcomes
        }));
    }
    // The watch pair keeps flowing while the workers run.
    let mut checks = 0;
    while workers.iter().any(|w| !w.is_finished()) {
        run.watch
            .assert_flowing("random hostile streams (while running)")
            .await;
        checks += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut tally: std::collections::BTreeMap<String, usize> = Default::default();
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    let mut failures = Vec::new();
    for w in workers {
        for outcome in w.await.expect("worker task") {
            match outcome {
                Ok(close) => *tally.entry(format!("{close:?}")).or_default() += 1,
                Err((problems, detail)) => {
                    for p in &problems {
                        *kinds.entry(kind_of(p)).or_default() += 1;
                    }
                    failures.push(detail);
                }
            }
        }
    }
    run.log.push(format!(
        "{CONNECTIONS} random streams, {PARALLEL} at a time: closes {tally:?}; \
         watch pair checked {checks} times while they ran; {} failures {kinds:?}",
        failures.len()
    ));
    run.after_case("random hostile streams").await;
    run.end("random_hostile_streams").await;
    assert!(
        failures.is_empty(),
        "{} of {CONNECTIONS} random connections went wrong; problems by kind: {kinds:#?}\nthe first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(8)].join("\n")
    );
}
