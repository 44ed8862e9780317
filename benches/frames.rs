//! Micro-benchmarks of the per-message work: encoding server frames, decoding client
//! frames, and parsing client messages: neonex's parser (serde_json, `data` kept raw)
//! against simd-json reading the same messages into its value tree with reused buffers,
//! on chat lines and on dashboard updates of growing size.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use neonex::protocol::{parse_client_message, ClientMessage, ServerMessage};
use neonex::ws::decode::{decode_frame, Decoded};
use neonex::ws::encode;
use simd_json::prelude::*;

const CHAT: &str =
    r#"{"type":"message","room":"general","message":"hello everyone, how is it going?"}"#;
const CHAT_WITH_DATA: &str = r#"{"type":"message","room":"lobby:42","message":"gg","data":{"score":[12,7],"map":"de_dust2","tags":["ranked","eu"]}}"#;
const TYPING: &str = r#"{"type":"typing","room":"general","data":true}"#;

/// The same job with simd-json: parse in place with reused buffers into a value tree,
/// then pick the fields the hub needs. True for a `message` with a room.
fn simd_json_reads(bytes: &mut [u8], buffers: &mut simd_json::Buffers) -> bool {
    let Ok(value) = simd_json::to_borrowed_value_with_buffers(bytes, buffers) else {
        return false;
    };
    let kind = value.get("type").and_then(|t| t.as_str());
    let room = value
        .get("room")
        .or_else(|| value.get("room_id"))
        .and_then(|r| r.as_str());
    black_box(value.get("data"));
    kind == Some("message") && room.is_some()
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
                offset: None,
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

/// A message whose `data` is a list of `n` small records, as a dashboard update might be.
fn message_with_records(n: usize) -> String {
    let records: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"id":{i},"name":"sensor-{i}","value":{}.5,"ok":true}}"#,
                i * 7
            )
        })
        .collect();
    format!(
        r#"{{"type":"message","room":"dash","data":{{"rows":[{}]}}}}"#,
        records.join(",")
    )
}

fn parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    let larger: Vec<(String, String)> = [16usize, 256, 4096]
        .into_iter()
        .map(|n| (format!("records_{n}"), message_with_records(n)))
        .collect();
    let mut inputs = vec![
        ("chat", CHAT),
        ("chat_with_data", CHAT_WITH_DATA),
        ("typing", TYPING),
    ];
    inputs.extend(larger.iter().map(|(n, t)| (n.as_str(), t.as_str())));
    for (name, text) in inputs {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("neonex_serde_json", name),
            text,
            |b, text| {
                b.iter(|| {
                    let parsed = parse_client_message(black_box(text.as_bytes()));
                    matches!(parsed, Ok(ClientMessage::Message { .. }))
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("simd_json", name), text, |b, text| {
            let mut buffers = simd_json::Buffers::default();
            let mut bytes = text.as_bytes().to_vec();
            b.iter(|| {
                bytes.copy_from_slice(text.as_bytes());
                simd_json_reads(black_box(&mut bytes), &mut buffers)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encoding, decoding, parsing);
criterion_main!(benches);
