//! The parser, measured (issue 16, item 6): neonex's serde_json reading against simd-json
//! on the same inputs, with nothing in src/ changed.
//!
//! - Client messages (the chat line, the chat with `data` and the typing notice of
//!   `benches/frames.rs`): `parse_client_message` (serde_json, borrowed, `data` kept as
//!   `&RawValue`) against simd-json's serde path into the same shape of `Fields`, and
//!   against simd-json's tape with the fields picked from it. simd-json parses in place,
//!   so each of its iterations copies the message into a reused buffer first (the hub
//!   would have to, its read buffer holds the frame) and reuses one `simd_json::Buffers`
//!   (and, for the tape, one tape). simd-json's serde path has no `RawValue`: `data` and
//!   `recover` are read as `simd_json::BorrowedValue` trees, which the hub would have to
//!   write back out to forward `data`; the tape does not keep the text of a value either.
//! - API bodies of 1 KB to 512 KB: `neonex::api::json_body` (UTF-8 check, then serde_json
//!   reading into `IgnoredAny`) against simd-json building its tape into reused buffers,
//!   with the copy; throughput in bytes of body.

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use neonex::ids::is_valid_room_name;
use neonex::protocol::{parse_client_message, ClientMessage};
use serde::Deserialize;
use simd_json::prelude::*;
use simd_json::{BorrowedValue, Buffers};

const CHAT: &str =
    r#"{"type":"message","room":"general","message":"hello everyone, how is it going?"}"#;
const CHAT_WITH_DATA: &str = r#"{"type":"message","room":"lobby:42","message":"gg","data":{"score":[12,7],"map":"de_dust2","tags":["ranked","eu"]}}"#;
const TYPING: &str = r#"{"type":"typing","room":"general","data":true}"#;

const MESSAGES: [(&str, &str); 3] = [
    ("chat", CHAT),
    ("chat_with_data", CHAT_WITH_DATA),
    ("typing", TYPING),
];

/// `Fields` of src/protocol/client.rs, field for field, as simd-json's serde path can read
/// it: strings as `&str` (simd-json unescapes in place, so they always borrow), and the
/// values the hub keeps raw (`data`, `recover`) as value trees, since simd-json has no
/// `RawValue`. As there, a field given as `null` is present.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "type", borrow, default, deserialize_with = "present_str")]
    kind: Option<&'a str>,
    #[serde(borrow, default, deserialize_with = "present_str")]
    room: Option<&'a str>,
    #[serde(borrow, default, deserialize_with = "present_str")]
    room_id: Option<&'a str>,
    #[serde(borrow, default, deserialize_with = "present_str")]
    message: Option<&'a str>,
    #[serde(borrow, default, deserialize_with = "present_value")]
    data: Option<BorrowedValue<'a>>,
    #[serde(borrow, default, deserialize_with = "present_value")]
    recover: Option<BorrowedValue<'a>>,
}

fn present_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de str>, D::Error> {
    <&str>::deserialize(d).map(Some)
}

fn present_value<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<BorrowedValue<'de>>, D::Error> {
    BorrowedValue::deserialize(d).map(Some)
}

/// What the hub learns from a message, the same from every parser: the type, the room
/// (checked), and for `message` whether it has a text or data, for `typing` the flag.
#[derive(Debug, PartialEq, Eq)]
enum Seen<'a> {
    Message(Cow<'a, str>, bool),
    Typing(Cow<'a, str>, bool),
    Other,
}

fn neonex_reads(text: &[u8]) -> Option<Seen<'_>> {
    match parse_client_message(text).ok()? {
        ClientMessage::Message {
            room,
            message,
            data,
        } => {
            black_box(data);
            Some(Seen::Message(room, message.is_some()))
        }
        ClientMessage::Typing { room, typing } => Some(Seen::Typing(room, typing)),
        _ => Some(Seen::Other),
    }
}

fn room_of<'a>(room: Option<&'a str>, room_id: Option<&'a str>) -> Option<Cow<'a, str>> {
    room.or(room_id)
        .filter(|r| is_valid_room_name(r))
        .map(Cow::Borrowed)
}

fn simd_serde_reads<'a>(bytes: &'a mut [u8], buffers: &mut Buffers) -> Option<Seen<'a>> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    let fields: Fields<'a> = simd_json::serde::from_slice_with_buffers(bytes, buffers).ok()?;
    black_box(&fields.recover);
    match fields.kind? {
        "message" => {
            let room = room_of(fields.room, fields.room_id)?;
            let has = fields.message.is_some();
            if !has && fields.data.is_none() {
                return None;
            }
            black_box(&fields.data);
            Some(Seen::Message(room, has))
        }
        "typing" => {
            let room = room_of(fields.room, fields.room_id)?;
            Some(Seen::Typing(room, fields.data?.as_bool()?))
        }
        _ => Some(Seen::Other),
    }
}

fn simd_tape_reads<'a>(
    bytes: &'a mut [u8],
    buffers: &mut Buffers,
    tape: &mut simd_json::Tape<'a>,
) -> Option<Seen<'a>> {
    simd_json::fill_tape(bytes, buffers, tape).ok()?;
    let object = tape.as_value().as_object()?;
    let str_of = |key: &str| object.get(key).and_then(|v| v.into_string());
    match str_of("type")? {
        "message" => {
            let room = room_of(str_of("room"), str_of("room_id"))?;
            let has = str_of("message").is_some();
            let data = object.get("data");
            if !has && data.is_none() {
                return None;
            }
            black_box(data);
            Some(Seen::Message(room, has))
        }
        "typing" => {
            let room = room_of(str_of("room"), str_of("room_id"))?;
            Some(Seen::Typing(room, object.get("data")?.as_bool()?))
        }
        _ => Some(Seen::Other),
    }
}

/// Copies `input` into the reused buffer, as the hub would before parsing in place.
fn copy_into(buf: &mut Vec<u8>, input: &[u8]) {
    buf.clear();
    buf.extend_from_slice(input);
}

fn messages(c: &mut Criterion) {
    let mut group = c.benchmark_group("parser/message");
    for (name, text) in MESSAGES {
        let text = text.as_bytes();
        // The three readers agree on every input before they are timed.
        {
            let expected = neonex_reads(text).expect("neonex parses it");
            let mut buf = text.to_vec();
            assert_eq!(
                simd_serde_reads(&mut buf, &mut Buffers::default()),
                Some(expected)
            );
            let expected = neonex_reads(text);
            let mut buf = text.to_vec();
            let mut tape = simd_json::Tape(Vec::new());
            assert_eq!(
                simd_tape_reads(&mut buf, &mut Buffers::default(), &mut tape),
                expected
            );
        }
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("serde_json", name), text, |b, text| {
            b.iter(|| neonex_reads(black_box(text)).is_some())
        });
        group.bench_with_input(BenchmarkId::new("simd_serde", name), text, |b, text| {
            let mut buffers = Buffers::default();
            let mut buf = Vec::with_capacity(text.len());
            b.iter(|| {
                copy_into(&mut buf, black_box(text));
                simd_serde_reads(&mut buf, &mut buffers).is_some()
            })
        });
        group.bench_with_input(BenchmarkId::new("simd_tape", name), text, |b, text| {
            let mut buffers = Buffers::default();
            let mut buf = Vec::with_capacity(text.len());
            let mut kept = simd_json::Tape(Vec::new());
            b.iter(|| {
                copy_into(&mut buf, black_box(text));
                let mut tape = std::mem::replace(&mut kept, simd_json::Tape(Vec::new())).reset();
                let ok = simd_tape_reads(&mut buf, &mut buffers, &mut tape).is_some();
                kept = tape.reset();
                ok
            })
        });
    }
    group.finish();
}

/// A JSON document of about `size` bytes, as a backend would publish: an object with an
/// array of records of strings, integers, floats, a boolean and a small array.
fn api_body(size: usize) -> Vec<u8> {
    let mut out = String::from(r#"{"event":"scores","room":"dashboard:eu-west","items":["#);
    let mut i = 0u64;
    while out.len() < size.saturating_sub(120) || i == 0 {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"id":{},"user":"player_{:05}","name":"Player {} \"the {}\"","score":{},"ratio":{:.3},"online":{},"tags":["eu","ranked","lvl{}"]}}"#,
            100_000 + i,
            i,
            i,
            i % 7,
            (i * 7919) % 100_000,
            (i % 1000) as f64 / 37.0,
            i % 3 == 0,
            i % 50
        ));
        i += 1;
    }
    out.push_str(r#"],"generated":1765065600123}"#);
    out.into_bytes()
}

fn bodies(c: &mut Criterion) {
    let mut group = c.benchmark_group("parser/api_body");
    for (name, size) in [
        ("1KB", 1 << 10),
        ("16KB", 16 << 10),
        ("128KB", 128 << 10),
        ("512KB", 512 << 10),
    ] {
        let body = api_body(size);
        assert!(neonex::api::json_body(&body).is_ok());
        assert!(simd_json::to_tape(&mut body.clone()).is_ok());
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("serde_json", name), &body, |b, body| {
            b.iter(|| neonex::api::json_body(black_box(body)).is_ok())
        });
        group.bench_with_input(BenchmarkId::new("simd_tape", name), &body, |b, body| {
            let mut buffers = Buffers::new(body.len());
            let mut buf = Vec::with_capacity(body.len());
            let mut kept = simd_json::Tape(Vec::new());
            b.iter(|| {
                copy_into(&mut buf, black_box(body));
                let mut tape = std::mem::replace(&mut kept, simd_json::Tape(Vec::new())).reset();
                let ok = simd_json::fill_tape(&mut buf, &mut buffers, &mut tape).is_ok();
                kept = tape.reset();
                ok
            })
        });
    }
    group.finish();
}

criterion_group!(benches, messages, bodies);
criterion_main!(benches);
