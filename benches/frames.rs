//! Micro-benchmarks of the per-message work: encoding server frames, decoding client
//! frames, and parsing client messages with simd-json (what the shards use) against
//! serde_json on the same real messages.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::borrow::Cow;

use neonex::protocol::{parse_client_message, ClientMessage, ServerMessage};
use neonex::ws::decode::{decode_frame, Decoded};
use neonex::ws::encode;
use serde::Deserialize;
use serde_json::value::RawValue;

const CHAT: &str =
    r#"{"type":"message","room":"general","message":"hello everyone, how is it going?"}"#;
const CHAT_WITH_DATA: &str = r#"{"type":"message","room":"lobby:42","message":"gg","data":{"score":[12,7],"map":"de_dust2","tags":["ranked","eu"]}}"#;
const TYPING: &str = r#"{"type":"typing","room":"general","data":true}"#;

/// The same message read with serde_json the way a serde_json parser would: borrowed
/// strings, and `data` kept as raw JSON text.
#[derive(Deserialize)]
#[allow(dead_code)]
struct SerdeMessage<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    room: Option<Cow<'a, str>>,
    #[serde(borrow)]
    room_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

fn masked_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![0x81];
    if payload.len() < 126 {
        out.push(0x80 | payload.len() as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group.bench_function("chat_message", |b| {
        b.iter(|| {
            encode::json_frame(&ServerMessage::ChatMessage {
                room: black_box("general"),
                user_id: black_box("alice"),
                message: Some(black_box("hello everyone, how is it going?")),
                data: None,
                time: 1_700_000_000,
            })
        })
    });
    let big = "x".repeat(64 * 1024);
    group.throughput(Throughput::Bytes(big.len() as u64));
    group.bench_function("text_64KiB", |b| {
        b.iter(|| encode::text_frame(black_box(&big)))
    });
    group.finish();
}

fn decoding(c: &mut Criterion) {
    let frame = masked_frame(CHAT.as_bytes());
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("chat_frame", |b| {
        let mut buf = frame.clone();
        b.iter(|| {
            buf.copy_from_slice(&frame);
            match decode_frame(black_box(&mut buf), 512 * 1024) {
                Ok(Decoded::Frame(h)) => h.payload_len,
                _ => unreachable!(),
            }
        })
    });
    group.finish();
}

fn parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for (name, text) in [
        ("chat", CHAT),
        ("chat_with_data", CHAT_WITH_DATA),
        ("typing", TYPING),
    ] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::new("simd_json", name), text, |b, text| {
            let mut buffers = simd_json::Buffers::default();
            let mut bytes = text.as_bytes().to_vec();
            b.iter(|| {
                bytes.copy_from_slice(text.as_bytes());
                let parsed = parse_client_message(black_box(&mut bytes), &mut buffers);
                matches!(parsed, Ok(ClientMessage::Message { .. }))
            })
        });
        group.bench_with_input(BenchmarkId::new("serde_json", name), text, |b, text| {
            b.iter(|| {
                let m: SerdeMessage<'_> = serde_json::from_str(black_box(text)).unwrap();
                m.kind == "message" && (m.room.is_some() || m.room_id.is_some())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encoding, decoding, parsing);
criterion_main!(benches);
