//! permessage-deflate (RFC 7692) over real sockets: what the hub answers each offer, a
//! broadcast compressed once for every recipient that negotiated it and sent plain to the
//! rest, `compression.min_size`, clients' compressed messages, and the limits that hold
//! while inflating. The client side compresses and inflates with flate2 directly.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use neonex::config::CompressionConfig;
use neonex::{HubConfig, HubStats, PresenceScope};
use neonex_testkit::frames::{frame, masked_json, Frame};
use neonex_testkit::http::upgrade_request_with;
use neonex_testkit::hub::{config, flood_limits, TestHub};
use neonex_testkit::raw::RawClient;
use neonex_testkit::wait::TIMEOUT;
use serde_json::{json, Value};

/// Chrome's offer (Safari, Node `ws` and Python `websockets` send the same).
const CHROME: &str = "permessage-deflate; client_max_window_bits";
/// What the hub answers an offer it accepts.
const ACCEPTED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// A hub that compresses, and sends no notices, so that what clients read is what the
/// tests publish.
fn compressing_hub(min_size: usize) -> TestHub {
    let mut config = HubConfig {
        compression: CompressionConfig {
            enabled: true,
            min_size,
        },
        limits: flood_limits(),
        presence: PresenceScope::Off,
        ..config()
    };
    config.rooms.notify_join_leave = false;
    TestHub::start(config)
}

/// A client that offers `offer` (none when empty); returns it with the 101's
/// `Sec-WebSocket-Extensions`, past its welcome and autojoin.
async fn connect(hub: &TestHub, user: &str, offer: &str) -> (RawClient, Option<String>) {
    let headers = match offer {
        "" => String::new(),
        offer => format!("Sec-WebSocket-Extensions: {offer}\r\n"),
    };
    let mut client = RawClient::connect(hub.addr).await;
    let request = upgrade_request_with(&format!("/ws?user={user}"), &headers);
    let response = client.exchange(&request).await;
    assert_eq!(response.status, 101, "{response:?}");
    let answered = response.header("sec-websocket-extensions");
    assert_eq!(client.recv_json().await["type"], "welcome");
    assert_eq!(client.recv_json().await["type"], "joined");
    (client, answered)
}

/// Inflates a compressed message's payload as a client would.
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut inflater = Decompress::new(false);
    let mut out = Vec::with_capacity(payload.len() * 20 + 1024);
    inflater
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .expect("the hub's frame inflates");
    assert_eq!(inflater.total_in() as usize, input.len(), "all of it");
    out
}

/// Deflates `message` as a client would, without the sync flush's tail.
fn deflate(message: &[u8]) -> Vec<u8> {
    let mut compressor = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(message.len() + 64);
    compressor
        .compress_vec(message, &mut out, FlushCompress::Sync)
        .unwrap();
    assert_eq!(compressor.total_in() as usize, message.len());
    out.truncate(out.len() - 4);
    out
}

/// The next data frame, its text inflated if it came compressed: (compressed, text).
async fn next_message(client: &mut RawClient) -> (bool, String) {
    loop {
        let frame: Frame = client.next_frame(TIMEOUT).await.expect("a frame");
        match frame.opcode {
            0x9 | 0xA => continue,
            0x1 if frame.rsv & 4 != 0 => {
                return (true, String::from_utf8(inflate(&frame.payload)).unwrap())
            }
            0x1 => return (false, String::from_utf8(frame.payload).unwrap()),
            _ => panic!("not a text frame: {frame:?}"),
        }
    }
}

/// A realistic JSON document of about `len` bytes.
fn document(len: usize) -> Value {
    let row =
        json!({"symbol": "ACME", "bid": 101.25, "ask": 101.5, "volume": 12000, "venue": "XNAS"});
    let rows = len / row.to_string().len() + 1;
    json!({"type": "quotes", "rows": vec![row; rows]})
}

fn stats(hub: &TestHub) -> HubStats {
    hub.hub.stats()
}

#[tokio::test]
async fn the_offers_of_browsers_and_libraries_are_answered_and_others_declined() {
    let hub = compressing_hub(512);
    for (offer, answer) in [
        (CHROME, Some(ACCEPTED)),
        ("permessage-deflate", Some(ACCEPTED)), // Firefox
        (
            "permessage-deflate; client_max_window_bits=12; server_no_context_takeover",
            Some(ACCEPTED),
        ),
        ("permessage-deflate; server_max_window_bits=10", None),
        (
            "permessage-deflate; server_max_window_bits=10, permessage-deflate",
            Some(ACCEPTED),
        ),
        ("permessage-deflate; mystery", None),
        ("x-webkit-deflate-frame", None),
        ("", None),
    ] {
        let (_client, answered) = connect(&hub, "offer", offer).await;
        assert_eq!(answered.as_deref(), answer, "offer {offer:?}");
    }
    let off = TestHub::start(config());
    let (_client, answered) = connect(&off, "offer", CHROME).await;
    assert_eq!(answered, None, "compression.enabled is off by default");
}

#[tokio::test]
async fn a_broadcast_is_compressed_once_and_each_client_decodes_the_same_text() {
    let hub = compressing_hub(512);
    // The kernel picks each client's shard by a hash of its address: clients connect
    // until both shards have some (six at least), so that both compress.
    let mut deflating = Vec::new();
    let spread = |hub: &TestHub| -> usize {
        let members = hub.hub.room_members("general");
        let shards: std::collections::HashSet<usize> =
            members.iter().map(|id| id.shard()).collect();
        shards.len()
    };
    while deflating.len() < 6 || (spread(&hub) < 2 && deflating.len() < 40) {
        let (client, answered) = connect(&hub, &format!("z{}", deflating.len()), CHROME).await;
        assert!(answered.is_some());
        deflating.push(client);
    }
    assert_eq!(
        spread(&hub),
        2,
        "the deflating clients are spread over both shards"
    );
    let (mut plain, _) = connect(&hub, "plain", "").await;
    let before = stats(&hub).compression;
    let sent: Vec<String> = (0..3)
        .map(|n| {
            let mut doc = document(2048);
            doc["n"] = json!(n);
            doc.to_string()
        })
        .collect();
    for text in &sent {
        let (h, text) = (hub.hub.clone(), text.clone());
        hub.blocking(move |_| h.broadcast_to_room("general", &text).unwrap())
            .await;
    }
    for client in &mut deflating {
        for text in &sent {
            assert_eq!(next_message(client).await, (true, text.clone()));
        }
    }
    for text in &sent {
        assert_eq!(next_message(&mut plain).await, (false, text.clone()));
    }
    let after = stats(&hub).compression;
    assert_eq!(
        after.compressions - before.compressions,
        3,
        "one per broadcast: {after:?}"
    );
    assert!(after.ratio > 3.0, "{after:?}");
}

#[tokio::test]
async fn a_message_under_min_size_goes_out_plain_and_is_not_compressed() {
    let hub = compressing_hub(1024);
    let (mut client, _) = connect(&hub, "small", CHROME).await;
    let small = document(600).to_string();
    assert!(small.len() < 1024);
    let h = hub.hub.clone();
    let text = small.clone();
    hub.blocking(move |_| h.broadcast_to_room("general", &text).unwrap())
        .await;
    assert_eq!(next_message(&mut client).await, (false, small));
    assert_eq!(stats(&hub).compression.compressions, 0);
}

#[tokio::test]
async fn a_clients_compressed_message_is_read_like_any_other() {
    let hub = compressing_hub(512);
    let (mut sender, _) = connect(&hub, "sender", CHROME).await;
    let (mut listener, _) = connect(&hub, "listener", "").await;
    let text = "hello ".repeat(500);
    let message = json!({"type": "message", "room": "general", "message": text}).to_string();
    // Compressed, in two fragments: RSV1 on the first only.
    let compressed = deflate(message.as_bytes());
    let (first, rest) = compressed.split_at(compressed.len() / 2);
    let mut bytes = frame(false, 4, 0x1, first, Some([1, 2, 3, 4]));
    bytes.extend(frame(true, 0, 0x0, rest, Some([5, 6, 7, 8])));
    sender.write(&bytes).await;
    let heard: Value = loop {
        let (_, got) = next_message(&mut listener).await;
        let got: Value = serde_json::from_str(&got).unwrap();
        if got["type"] == "chat_message" {
            break got;
        }
    };
    assert_eq!(heard["message"], text);
    // And it still speaks plain.
    sender.write(&masked_json(&json!({"type": "ping"}))).await;
    loop {
        let (_, got) = next_message(&mut sender).await;
        if got.contains("pong") {
            break;
        }
    }
}

#[tokio::test]
async fn an_inflate_bomb_is_closed_with_1009_without_inflating_it_whole() {
    let hub = compressing_hub(512);
    let (mut bomber, _) = connect(&hub, "bomber", CHROME).await;
    let (mut bystander, _) = connect(&hub, "bystander", CHROME).await;
    // 64 MiB of one byte deflates to about 64 KiB: over the 512 KiB bound once inflated.
    let bomb = deflate(&vec![b' '; 64 << 20]);
    assert!(bomb.len() < 128 * 1024, "{}", bomb.len());
    let rss_before = rss_kib();
    bomber
        .write_lenient(&frame(true, 4, 0x1, &bomb, Some([9, 9, 9, 9])))
        .await;
    assert_eq!(bomber.expect_close_code().await, 1009);
    let grew = rss_kib().saturating_sub(rss_before);
    assert!(grew < 16 * 1024, "the hub's process grew {grew} KiB");
    // Everyone else is fine.
    bystander
        .write(&masked_json(&json!({"type": "ping"})))
        .await;
    loop {
        let (_, got) = next_message(&mut bystander).await;
        if got.contains("pong") {
            break;
        }
    }
}

#[tokio::test]
async fn rsv1_is_a_protocol_error_without_the_extension_and_on_control_frames() {
    let hub = compressing_hub(512);
    let (mut plain, _) = connect(&hub, "plain", "").await;
    plain
        .write(&frame(true, 4, 0x1, &deflate(b"{}"), Some([1, 1, 1, 1])))
        .await;
    assert_eq!(plain.expect_close_code().await, 1002);
    let (mut deflating, _) = connect(&hub, "deflating", CHROME).await;
    deflating
        .write(&frame(true, 4, 0x9, b"", Some([1, 1, 1, 1])))
        .await;
    assert_eq!(deflating.expect_close_code().await, 1002);
    let (mut garbled, _) = connect(&hub, "garbled", CHROME).await;
    garbled
        .write(&frame(true, 4, 0x1, &[0xff; 40], Some([1, 1, 1, 1])))
        .await;
    assert_eq!(garbled.expect_close_code().await, 1007);
}

/// The resident memory of this process (the hub runs in it), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}
