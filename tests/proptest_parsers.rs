//! Property tests of the parsers that see untrusted bytes: the WebSocket frame decoder,
//! the fragment assembler, the HTTP request head parser and the client message parser.
//!
//! Every parser must take any input without panicking, and must read what a reference
//! written in the tests (from RFC 6455, RFC 9112 and PROTOCOL.md, not from the server's
//! code; frames come from `neonex_testkit::frames::frame`) produces. Case counts are
//! modest so that the whole file runs in a few seconds; set `PROPTEST_CASES` to run more.

use fastwebsockets::OpCode;
use neonex::http::{accept_key, parse_head, HeadError, MAX_HEAD_BYTES};
use neonex::protocol::{parse_client_message, ClientMessage, ErrorCode};
use neonex::ws::assemble::{Assembler, Message, Payload};
use neonex::ws::decode::{decode_frame, Decoded, FrameHeader};
use neonex_testkit::frames::frame;
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{json, Value};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases),
        // Failures are reported with their minimal input; no files are written.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Bytes of header before the masking key: 2, then 2 or 8 for an extended length.
fn length_field_end(payload_len: usize) -> usize {
    match payload_len {
        0..=125 => 2,
        126..=0xffff => 4,
        _ => 10,
    }
}

fn opcode_of(code: u8) -> OpCode {
    match code {
        0x0 => OpCode::Continuation,
        0x1 => OpCode::Text,
        0x2 => OpCode::Binary,
        0x8 => OpCode::Close,
        0x9 => OpCode::Ping,
        0xA => OpCode::Pong,
        _ => unreachable!("not an opcode of RFC 6455: {code:#x}"),
    }
}

/// A payload length: mostly short, sometimes around the 125/126 and 65535/65536
/// boundaries of the length encodings.
fn payload_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..=130,
        1 => 120usize..=300,
        1 => 65_530usize..=65_540,
        1 => 65_536usize..=70_000,
    ]
}

/// A valid client frame: fin, opcode, payload, key. Control frames are final and short.
fn valid_frame() -> impl Strategy<Value = (bool, u8, Vec<u8>, [u8; 4])> {
    let data = (
        any::<bool>(),
        prop::sample::select(vec![0x0u8, 0x1, 0x2]),
        payload_len(),
    );
    let control = (
        Just(true),
        prop::sample::select(vec![0x8u8, 0x9, 0xA]),
        0usize..=125,
    );
    prop_oneof![3 => data, 1 => control].prop_flat_map(|(fin, op, len)| {
        (Just(fin), Just(op), vec(any::<u8>(), len), any::<[u8; 4]>())
    })
}

proptest! {
    #![proptest_config(config(256))]

    /// Any bytes, any bound: an answer, never a panic. A whole frame lies inside the
    /// buffer and within the bound; an incomplete one announces more than is there.
    #[test]
    fn decode_frame_takes_any_bytes(
        mut bytes in vec(any::<u8>(), 0..200),
        max in prop_oneof![0usize..300, Just(usize::MAX >> 1)],
    ) {
        let len = bytes.len();
        match decode_frame(&mut bytes, max) {
            Ok(Decoded::Frame(h)) => {
                prop_assert!(h.frame_len() <= len);
                prop_assert!(h.payload_len <= max);
            }
            Ok(Decoded::Incomplete { frame_len: Some(n) }) => prop_assert!(n > len),
            Ok(Decoded::Incomplete { frame_len: None }) => prop_assert!(len < 14),
            Err(reason) => prop_assert!(matches!(reason.code, 1002 | 1009), "{reason:?}"),
        }
    }

    /// Random headers over a first byte with any RSV bits and any opcode, with or without
    /// mask: what the decoder refuses is exactly what RFC 6455 forbids.
    #[test]
    fn decode_frame_refuses_exactly_the_bad_headers(
        // Any first byte, or a valid one half of the time.
        b0 in prop_oneof![
            any::<u8>(),
            (any::<bool>(), prop::sample::select(vec![0x0u8, 0x1, 0x2, 0x8, 0x9, 0xA]))
                .prop_map(|(fin, op)| (u8::from(fin) << 7) | op),
        ],
        masked in prop::bool::weighted(0.8),
        // The extended length encodings, and their top bit, half of the time.
        len7 in prop_oneof![2 => 0u8..=127, 1 => Just(126u8), 1 => Just(127u8)],
        top in prop_oneof![any::<u8>(), 0x80u8..=0xff],
        more in vec(any::<u8>(), 11),
    ) {
        let mut rest = vec![top];
        rest.extend_from_slice(&more);
        let mut bytes = vec![b0, (u8::from(masked) << 7) | len7];
        bytes.extend_from_slice(&rest);
        let opcode = b0 & 0x0f;
        let known = matches!(opcode, 0x0..=0x2 | 0x8..=0xA);
        let control = opcode >= 0x8;
        let fin = b0 & 0x80 != 0;
        let ext_top_bit = len7 == 127 && rest[0] & 0x80 != 0;
        let must_refuse = b0 & 0x70 != 0
            || !known
            || !masked
            || (control && (!fin || len7 > 125))
            || ext_top_bit;
        let got = decode_frame(&mut bytes, usize::MAX >> 1);
        if must_refuse {
            prop_assert_eq!(got.map_err(|r| r.code), Err(1002));
        } else {
            prop_assert!(got.is_ok(), "refused a good header: {:?}", got);
        }
    }

    /// A frame from the reference encoder decodes to its own fields, and its payload is
    /// unmasked in place; bytes after it are left alone.
    #[test]
    fn decode_frame_round_trips(
        (fin, op, payload, key) in valid_frame(),
        after in vec(any::<u8>(), 0..20),
    ) {
        let mut bytes = frame(fin, 0, op, &payload, Some(key));
        let frame_len = bytes.len();
        bytes.extend_from_slice(&after);
        let got = decode_frame(&mut bytes, 1 << 20).expect("a valid frame");
        let Decoded::Frame(h) = got else {
            return Err(TestCaseError::fail(format!("not a whole frame: {got:?}")));
        };
        prop_assert_eq!(
            h,
            FrameHeader {
                fin,
                opcode: opcode_of(op),
                compressed: false,
                header_len: length_field_end(payload.len()) + 4,
                payload_len: payload.len(),
            }
        );
        prop_assert_eq!(h.frame_len(), frame_len);
        prop_assert_eq!(&bytes[h.header_len..h.frame_len()], &payload[..]);
        prop_assert_eq!(&bytes[frame_len..], &after[..]);
    }

    /// Every strict prefix of a valid frame is `Incomplete`, with the frame's full size
    /// as soon as the length field is there.
    #[test]
    fn every_prefix_of_a_frame_is_incomplete(
        (fin, op, payload, key) in valid_frame(),
        cut_seed in any::<prop::sample::Index>(),
    ) {
        let full = frame(fin, 0, op, &payload, Some(key));
        let known_at = length_field_end(payload.len());
        // Every cut inside the header, and one random cut in the payload.
        let mut cuts: Vec<usize> = (0..(known_at + 4).min(full.len())).collect();
        cuts.push(cut_seed.index(full.len()));
        for cut in cuts {
            let mut part = full[..cut].to_vec();
            let expected = Decoded::Incomplete {
                frame_len: (cut >= known_at).then_some(full.len()),
            };
            prop_assert_eq!(decode_frame(&mut part, 1 << 20), Ok(expected), "cut at {}", cut);
        }
    }

    /// A data frame longer than the bound is refused with 1009 from its header alone,
    /// however much of its payload has arrived.
    #[test]
    fn oversize_frames_are_refused_with_1009(
        op in prop::sample::select(vec![0x0u8, 0x1, 0x2]),
        fin in any::<bool>(),
        max in 0usize..100_000,
        excess in prop_oneof![1u64..1000, 1u64..(1 << 40), Just((1u64 << 63) - 1)],
        sent in 0usize..64,
    ) {
        let len = (max as u64).saturating_add(excess).min((1u64 << 63) - 1);
        prop_assume!(len > max as u64);
        let mut bytes = vec![(u8::from(fin) << 7) | op];
        if len <= 125 {
            bytes.push(0x80 | len as u8);
        } else if len <= 0xffff {
            bytes.push(0x80 | 126);
            bytes.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            bytes.push(0x80 | 127);
            bytes.extend_from_slice(&len.to_be_bytes());
        }
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        bytes.extend(std::iter::repeat_n(b'a', sent));
        prop_assert_eq!(decode_frame(&mut bytes, max).map_err(|r| r.code), Err(1009));
    }
}

// ---------------------------------------------------------------------------------------
// Assembler
// ---------------------------------------------------------------------------------------

fn header(fin: bool, opcode: OpCode, len: usize) -> FrameHeader {
    FrameHeader {
        fin,
        opcode,
        compressed: false,
        header_len: 6,
        payload_len: len,
    }
}

/// Split points of a message of `len` bytes into `n` fragments (some may be empty).
fn split(len: usize, mut cuts: Vec<usize>) -> Vec<std::ops::Range<usize>> {
    for c in cuts.iter_mut() {
        *c %= len + 1;
    }
    cuts.sort_unstable();
    let mut ranges = Vec::new();
    let mut start = 0;
    for c in cuts {
        ranges.push(start..c);
        start = c;
    }
    ranges.push(start..len);
    ranges
}

proptest! {
    #![proptest_config(config(256))]

    /// A text or binary message cut into any fragments, with pings and pongs between
    /// them, comes out whole once: the concatenation, nothing before the last fragment.
    #[test]
    fn fragments_reassemble_to_the_concatenation(
        text in ".{0,200}",
        binary in any::<bool>(),
        cuts in vec(any::<usize>(), 0..8),
        controls in vec(prop::option::of(vec(any::<u8>(), 0..10)), 0..9),
    ) {
        let message = text.as_bytes();
        let ranges = split(message.len(), cuts);
        let first_op = if binary { OpCode::Binary } else { OpCode::Text };
        let mut a = Assembler::default();
        let last = ranges.len() - 1;
        for (i, range) in ranges.into_iter().enumerate() {
            if let Some(Some(ping)) = controls.get(i) {
                let mut p = ping.clone();
                let got = a.push(header(true, OpCode::Ping, p.len()), &mut p, 1 << 20);
                prop_assert_eq!(got, Ok(Some(Message::Ping(&ping[..]))));
                let got = a.push(header(true, OpCode::Pong, 0), &mut [], 1 << 20);
                prop_assert_eq!(got, Ok(Some(Message::Pong)));
            }
            let op = if i == 0 { first_op } else { OpCode::Continuation };
            let mut fragment = message[range].to_vec();
            let got = a
                .push(header(i == last, op, fragment.len()), &mut fragment, 1 << 20)
                .map_err(|r| r.code);
            if i < last {
                prop_assert_eq!(got, Ok(None));
                prop_assert!(a.in_progress());
            } else {
                let bytes = match got {
                    Ok(Some(Message::Binary(Payload::InPlace(b)))) if binary => b.to_vec(),
                    Ok(Some(Message::Binary(Payload::Reassembled(b)))) if binary => b,
                    Ok(Some(Message::Text(Payload::InPlace(b)))) if !binary => b.to_vec(),
                    Ok(Some(Message::Text(Payload::Reassembled(b)))) if !binary => b,
                    other => {
                        return Err(TestCaseError::fail(format!("not the message sent: {other:?}")))
                    }
                };
                prop_assert_eq!(&bytes[..], message);
            }
        }
        prop_assert!(!a.in_progress());
        prop_assert_eq!(a.held_bytes(), 0);
    }

    /// Any sequence of frames: no panic, a fragment never holds more than twice the bound,
    /// every text message is valid UTF-8 within the bound, and errors are 1002, 1007, 1009.
    #[test]
    fn assembler_takes_any_frame_sequence(
        frames in vec(
            (
                any::<bool>(),
                prop::sample::select(vec![0x0u8, 0x1, 0x2, 0x8, 0x9, 0xA]),
                vec(any::<u8>(), 0..40),
            ),
            0..30,
        ),
        max in 1usize..100,
    ) {
        let mut a = Assembler::default();
        for (fin, op, mut payload) in frames {
            let h = header(fin, opcode_of(op), payload.len());
            match a.push(h, &mut payload, max) {
                Ok(Some(Message::Text(mut text))) => {
                    let bytes = text.as_mut_slice();
                    prop_assert!(bytes.len() <= max || h.fin && h.opcode == OpCode::Text);
                    prop_assert!(std::str::from_utf8(bytes).is_ok());
                }
                Ok(_) => {}
                Err(r) => {
                    prop_assert!(matches!(r.code, 1002 | 1007 | 1009), "{r:?}");
                    // The shard closes the connection here; a new one starts afresh.
                    a = Assembler::default();
                }
            }
            prop_assert!(a.held_bytes() <= (2 * max).max(256), "{} held", a.held_bytes());
        }
    }

    /// Close payloads: empty, or a code RFC 6455 allows and a UTF-8 reason.
    #[test]
    fn close_payloads_follow_rfc_6455(code in any::<u16>(), reason in vec(any::<u8>(), 0..20)) {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(&reason);
        let allowed = matches!(code, 1000..=1003 | 1007..=1013 | 3000..=4999);
        let utf8 = std::str::from_utf8(&reason).is_ok();
        let mut a = Assembler::default();
        let got = a
            .push(header(true, OpCode::Close, payload.len()), &mut payload, 1 << 20)
            .map_err(|r| r.code);
        let expected = match (allowed, utf8) {
            (false, _) => Err(1002),
            (true, false) => Err(1007),
            (true, true) => Ok(Some(Message::Close(Some(code)))),
        };
        prop_assert_eq!(got, expected);
    }
}

// ---------------------------------------------------------------------------------------
// HTTP request head
// ---------------------------------------------------------------------------------------

/// A header name: an RFC 9110 token.
fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}"
}

/// A header value: visible ASCII and spaces inside, no leading or trailing space.
fn header_value() -> impl Strategy<Value = String> {
    "[!-~]([ !-~]{0,40}[!-~])?"
}

/// Randomises the case of ASCII letters.
fn any_case(s: &str, flips: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if flips >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    /// Extra headers the hub ignores.
    extra: Vec<(String, String)>,
    upgrade: bool,
    key: Option<[u8; 16]>,
    version: Option<String>,
    origin: Option<String>,
    authorization: Option<String>,
    flips: u64,
}

impl Request {
    fn query_string(&self) -> Option<String> {
        (!self.query.is_empty()).then(|| {
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&self.query)
                .finish()
        })
    }

    fn key(&self) -> Option<String> {
        use base64::Engine;
        self.key
            .map(|k| base64::engine::general_purpose::STANDARD.encode(k))
    }

    fn bytes(&self) -> Vec<u8> {
        let mut target = self.path.clone();
        if let Some(q) = self.query_string() {
            target.push('?');
            target.push_str(&q);
        }
        let mut out = format!("{} {target} HTTP/1.1\r\nHost: localhost\r\n", self.method);
        let f = self.flips;
        let mut named = Vec::new();
        if self.upgrade {
            named.push(("upgrade", "websocket".to_owned()));
            named.push(("connection", "keep-alive, Upgrade".to_owned()));
        }
        if let Some(k) = self.key() {
            named.push(("sec-websocket-key", k));
        }
        if let Some(v) = &self.version {
            named.push(("sec-websocket-version", v.clone()));
        }
        if let Some(o) = &self.origin {
            named.push(("origin", o.clone()));
        }
        if let Some(a) = &self.authorization {
            named.push(("authorization", a.clone()));
        }
        for (name, value) in named {
            out.push_str(&format!(
                "{}: {}\r\n",
                any_case(name, f),
                any_case(&value, f)
            ));
        }
        for (name, value) in &self.extra {
            out.push_str(&format!("{name}:  {value} \r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "OPTIONS"]),
        "(/[A-Za-z0-9._~-]{0,12}){1,3}",
        vec(("[a-z]{1,8}", ".{0,12}"), 0..4),
        vec((token(), header_value()), 0..6),
        any::<bool>(),
        prop::option::of(any::<[u8; 16]>()),
        prop::option::of(prop::sample::select(vec!["13", "8", "12"])),
        prop::option::of("https?://[a-z]{1,10}\\.example"),
        prop::option::of("Bearer [A-Za-z0-9._-]{1,40}"),
        any::<u64>(),
    )
        .prop_map(
            |(method, path, query, extra, upgrade, key, version, origin, auth, flips)| {
                // The hub's own headers among the extras would make the expectations
                // ambiguous.
                let hub_headers = [
                    "upgrade",
                    "connection",
                    "sec-websocket-key",
                    "sec-websocket-version",
                    "origin",
                    "authorization",
                ];
                let extra = extra
                    .into_iter()
                    .filter(|(n, _)| !hub_headers.contains(&n.to_ascii_lowercase().as_str()))
                    .collect();
                Request {
                    method: method.to_owned(),
                    path,
                    query,
                    extra,
                    upgrade,
                    key,
                    version: version.map(str::to_owned),
                    origin,
                    authorization: auth,
                    flips,
                }
            },
        )
}

proptest! {
    #![proptest_config(config(256))]

    /// Any bytes: an answer, never a panic; a complete head took at most what was given.
    #[test]
    fn parse_head_takes_any_bytes(bytes in vec(any::<u8>(), 0..600)) {
        if let Ok(Some((head, used))) = parse_head(&bytes) {
            prop_assert!(used <= bytes.len());
            let _ = accept_key(&head);
            let _ = head.query_param("user");
        }
    }

    /// Bytes that look like a request line and headers, with random damage.
    #[test]
    fn parse_head_takes_damaged_requests(
        req in request(),
        damage in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = req.bytes();
        for (at, b) in damage {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        if let Ok(Some((head, used))) = parse_head(&bytes) {
            prop_assert!(used <= bytes.len());
            let _ = accept_key(&head);
        }
    }

    /// A generated request parses to its method, path, query and the hub's headers, in
    /// any letter case, and bytes after it (the first frames) are not taken.
    #[test]
    fn parse_head_reads_generated_requests(
        req in request(),
        after in vec(any::<u8>(), 0..16),
    ) {
        let head_bytes = req.bytes();
        let mut bytes = head_bytes.clone();
        bytes.extend_from_slice(&after);
        let (head, used) = parse_head(&bytes)
            .map_err(|e| TestCaseError::fail(format!("{e:?} for {:?}", String::from_utf8_lossy(&head_bytes))))?
            .ok_or_else(|| TestCaseError::fail("incomplete"))?;
        prop_assert_eq!(used, head_bytes.len());
        prop_assert_eq!(&head.method, &req.method);
        prop_assert_eq!(&head.path, &req.path);
        prop_assert_eq!(&head.query, &req.query_string());
        for (k, v) in &req.query {
            let first = req.query.iter().find(|(k2, _)| k2 == k).map(|(_, v)| v);
            let param = head.query_param(k);
            prop_assert_eq!(param.as_ref(), first, "query {}={}", k, v);
        }
        prop_assert_eq!(head.upgrade_websocket, req.upgrade);
        prop_assert_eq!(head.connection_upgrade, req.upgrade);
        let key = req.key().map(|k| any_case(&k, req.flips));
        prop_assert_eq!(&head.websocket_key, &key);
        prop_assert_eq!(&head.websocket_version, &req.version);
        let origin = req.origin.as_ref().map(|o| any_case(o, req.flips));
        prop_assert_eq!(&head.origin, &origin);
        let auth = req.authorization.as_ref().map(|a| any_case(a, req.flips));
        prop_assert_eq!(&head.authorization, &auth);
        // The accept key exists exactly for a GET upgrade with version 13 and a key of
        // 16 bytes (the key's letter case may have changed it).
        let accepted = accept_key(&head);
        let key_ok = key.as_ref().is_some_and(|k| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(k)
                .is_ok_and(|d| d.len() == 16)
        });
        let expect_ok = req.method == "GET"
            && req.upgrade
            && req.version.as_deref() == Some("13")
            && key_ok;
        prop_assert_eq!(accepted.is_ok(), expect_ok, "{:?}", accepted);
        if let (Ok(accept), Some(k)) = (accepted, key) {
            let mut sha = sha1_smol::Sha1::new();
            sha.update(k.as_bytes());
            sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
            use base64::Engine;
            prop_assert_eq!(
                accept,
                base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
            );
        }
    }

    /// Every strict prefix of a valid request is incomplete (the request is well under
    /// the size bound).
    #[test]
    fn every_prefix_of_a_request_is_incomplete(req in request()) {
        let bytes = req.bytes();
        prop_assert!(bytes.len() < MAX_HEAD_BYTES);
        for cut in 0..bytes.len() {
            prop_assert_eq!(parse_head(&bytes[..cut]), Ok(None), "cut at {}", cut);
        }
    }

    /// A head that reaches the size bound without ending is refused, whatever its
    /// prefix, and so is a complete head longer than the bound.
    #[test]
    fn oversize_heads_are_refused(req in request(), filler in "[a-z]{1,50}", complete in any::<bool>()) {
        let mut bytes = req.bytes();
        bytes.truncate(bytes.len() - 2);
        while bytes.len() <= MAX_HEAD_BYTES {
            bytes.extend_from_slice(format!("X-Filler: {filler}\r\n").as_bytes());
        }
        if complete {
            bytes.extend_from_slice(b"\r\n");
        }
        prop_assert_eq!(parse_head(&bytes), Err(HeadError::TooLarge));
    }
}

// ---------------------------------------------------------------------------------------
// Client messages
// ---------------------------------------------------------------------------------------

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
        prop::sample::select(vec!["type", "room", "message", "data", "ping", "general"])
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec(
                (
                    prop_oneof![
                        prop::sample::select(vec!["type", "room", "room_id", "message", "data"])
                            .prop_map(str::to_owned),
                        ".{0,8}",
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

fn room_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:@-]{1,128}"
}

/// A JSON string that is not a valid room name.
fn bad_room_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z]{129,140}",
        "[a-z]{0,5}[ /#?é\"\\\\][a-z]{0,5}",
    ]
}

/// JSON equality, with floats equal to within rounding (two parsers may round the last
/// digit differently).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= x.abs().max(y.abs()) * 1e-15
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

fn parse(bytes: &mut [u8]) -> Result<ClientMessage<'_>, ErrorCode> {
    parse_client_message(bytes).map_err(|e| e.code)
}

proptest! {
    #![proptest_config(config(256))]

    /// Any bytes: an answer, never a panic.
    #[test]
    fn parse_client_message_takes_any_bytes(inputs in vec(vec(any::<u8>(), 0..100), 1..8)) {
        for bytes in inputs {
            let _ = parse_client_message(&bytes);
        }
    }

    /// Any JSON value, including objects with the protocol's field names holding any
    /// kind of value: an answer, never a panic; non-objects and objects without a string
    /// `type` are `invalid_message`.
    #[test]
    fn parse_client_message_takes_any_json(value in json_value()) {
        let mut bytes = value.to_string().into_bytes();
        let got = parse(&mut bytes);
        let typed = value.get("type").is_some_and(Value::is_string);
        if !typed {
            prop_assert_eq!(got.err(), Some(ErrorCode::InvalidMessage));
        }
    }

    /// Valid messages of every type parse to their variant and fields, whatever extra
    /// fields ride along.
    #[test]
    fn parse_client_message_reads_valid_messages(
        room in room_name(),
        alias in any::<bool>(),
        text in prop::option::of(".{0,60}"),
        data in prop::option::of(json_value()),
        typing in any::<bool>(),
        extra in prop::option::of(("x_[a-z]{1,6}", json_value())),
        which in 0u8..5,
    ) {
        let room_key = if alias { "room_id" } else { "room" };
        let mut msg = match which {
            0 => json!({"type": "join_room", room_key: room}),
            1 => json!({"type": "leave_room", room_key: room}),
            2 => json!({"type": "typing", room_key: room, "data": typing}),
            3 => {
                let mut m = json!({"type": "message", room_key: room});
                if let Some(t) = &text {
                    m["message"] = json!(t);
                }
                m["data"] = data.clone().unwrap_or(json!(null));
                m
            }
            _ => json!({"type": "ping"}),
        };
        if let Some((k, v)) = &extra {
            msg[k.as_str()] = v.clone();
        }
        let mut bytes = msg.to_string().into_bytes();
        let got = parse(&mut bytes).map_err(|e| TestCaseError::fail(format!("{e:?} for {msg}")))?;
        match (which, got) {
            (0, ClientMessage::JoinRoom { room: r, .. }) | (1, ClientMessage::LeaveRoom { room: r }) => {
                prop_assert_eq!(&*r, room.as_str());
            }
            (2, ClientMessage::Typing { room: r, typing: t }) => {
                prop_assert_eq!(&*r, room.as_str());
                prop_assert_eq!(t, typing);
            }
            (3, ClientMessage::Message { room: r, message, data: d }) => {
                prop_assert_eq!(&*r, room.as_str());
                prop_assert_eq!(message.as_deref(), text.as_deref());
                let d: Value = serde_json::from_str(d.expect("data").get()).expect("is JSON");
                let expected = data.unwrap_or(json!(null));
                prop_assert!(same_json(&d, &expected), "data {} parsed as {}", expected, d);
            }
            (4, ClientMessage::Ping) => {}
            (_, other) => {
                return Err(TestCaseError::fail(format!("{msg} parsed as {other:?}")));
            }
        };
    }

    /// Room names outside the protocol's rule, and rooms of the wrong JSON type, are
    /// `bad_request`.
    #[test]
    fn bad_rooms_are_bad_requests(
        room in prop_oneof![bad_room_name().prop_map(Value::from), json_value()],
        which in prop::sample::select(vec!["join_room", "leave_room", "message", "typing"]),
    ) {
        prop_assume!(room.as_str().is_none_or(|s| {
            s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b))
        }));
        let msg = json!({"type": which, "room": room, "message": "hi", "data": true});
        let mut bytes = msg.to_string().into_bytes();
        prop_assert_eq!(parse(&mut bytes).err(), Some(ErrorCode::BadRequest), "{}", msg);
    }

    /// A `type` the protocol does not have is handed on by name, for the application or
    /// the dispatch's `unknown_type`.
    #[test]
    fn unknown_types_are_handed_on_by_name(kind in "[a-z_]{0,12}") {
        prop_assume!(!["join_room", "leave_room", "message", "typing", "ping"].contains(&kind.as_str()));
        let bytes = json!({"type": kind, "room": "general"}).to_string().into_bytes();
        let parsed = parse_client_message(&bytes);
        prop_assert!(
            matches!(&parsed, Ok(ClientMessage::Custom { kind: k }) if *k == kind),
            "{:?}", parsed
        );
    }
}

// ---------------------------------------------------------------------------------------
// Fuzz findings (inputs under fuzz/regressions/)
// ---------------------------------------------------------------------------------------

/// Found by the `client_message` fuzzer (fuzz/regressions/client_message/): in an object
/// with a repeated key, which value parse_client_message takes depends on where the keys
/// stand (`type` keeps the first, `room` the last, `room_id` either), while JSON.parse,
/// Go's encoding/json and serde_json all take the last. A component in front of the hub
/// that reads messages the usual way would see another message type or room than the
/// hub acts on. A message with a repeated key must be refused, or read as they read it.
#[test]
fn repeated_protocol_fields_are_refused() {
    let cases: [&[u8]; 6] = [
        include_bytes!("../fuzz/regressions/client_message/duplicate_type.json"),
        include_bytes!("../fuzz/regressions/client_message/duplicate_room_id.json"),
        br#"{"type":"join_room","type":"leave_room","room":"a"}"#,
        br#"{"type":"join_room","room":"a","room":"b"}"#,
        br#"{"type":"join_room","room_id":"a","room_id":"b","room_id":"c"}"#,
        br#"{"type":"message","room":"a","message":"one","message":"two"}"#,
    ];
    for case in cases {
        let text = String::from_utf8_lossy(case);
        // Readers disagree on these (serde_json and JSON.parse keep the last value, a
        // first-wins reader the first), so the hub must not pick one.
        let mut bytes = case.to_vec();
        assert_eq!(
            parse(&mut bytes).map(|m| format!("{m:?}")),
            Err(ErrorCode::InvalidMessage),
            "{text}"
        );
    }
}
