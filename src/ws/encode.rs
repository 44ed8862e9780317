//! Server frames, encoded once into a single `Bytes` that every recipient shares.
//!
//! A frame is built in one buffer: ten bytes are reserved in front, the payload is written
//! after them, and the header is formatted right-aligned into the reserved space, so the
//! finished frame is one contiguous slice with no copy of the payload.

use bytes::{BufMut, Bytes, BytesMut};
use fastwebsockets::{Frame, OpCode, Payload};
use serde::Serialize;

/// The longest header of an unmasked server frame.
const MAX_HEAD: usize = 10;

/// Encodes a text frame whose payload is `value` as JSON.
pub fn json_frame<T: Serialize + ?Sized>(value: &T) -> Bytes {
    frame_with(OpCode::Text, 128, |buf| {
        serde_json::to_writer(buf.writer(), value).expect("serializing to memory cannot fail")
    })
}

/// Encodes a text frame carrying `text` as it is.
pub fn text_frame(text: &str) -> Bytes {
    frame_with(OpCode::Text, text.len(), |buf| {
        buf.extend_from_slice(text.as_bytes())
    })
}

/// Encodes a binary message.
pub fn binary_frame(data: &[u8]) -> Bytes {
    frame_with(OpCode::Binary, data.len(), |buf| {
        buf.extend_from_slice(data)
    })
}

/// Encodes a pong answering a ping with `payload`.
pub fn pong_frame(payload: &[u8]) -> Bytes {
    frame_with(OpCode::Pong, payload.len(), |buf| {
        buf.extend_from_slice(payload)
    })
}

/// Encodes a close frame with `code` and a reason (cut to fit a control frame).
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let reason = truncate_utf8(reason, 123);
    frame_with(OpCode::Close, 2 + reason.len(), |buf| {
        buf.put_u16(code);
        buf.extend_from_slice(reason.as_bytes());
    })
}

/// The ping the heartbeat sends: an empty ping frame.
pub fn ping_frame() -> Bytes {
    Bytes::from_static(&[0x89, 0x00])
}

/// The payload of an unmasked server frame built here.
pub fn payload_of(frame: &[u8]) -> &[u8] {
    let head = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        Some(_) => 2,
        None => frame.len(),
    };
    &frame[head.min(frame.len())..]
}

/// The text frame of a JSON object frame with `"conflated":true` added as its first
/// field: what a connection that fell behind gets in place of the messages it skipped.
pub fn conflated_frame(frame: &[u8]) -> Bytes {
    const MARK: &[u8] = br#"{"conflated":true,"#;
    let object = payload_of(frame);
    let rest = object.strip_prefix(b"{").unwrap_or(object);
    frame_with(OpCode::Text, MARK.len() + rest.len(), |buf| {
        buf.extend_from_slice(MARK);
        buf.extend_from_slice(rest);
    })
}

fn frame_with(opcode: OpCode, size_hint: usize, write: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut buf = BytesMut::with_capacity(MAX_HEAD + size_hint);
    buf.put_bytes(0, MAX_HEAD);
    write(&mut buf);
    let mut head = [0u8; MAX_HEAD];
    let head_len =
        Frame::new(true, opcode, None, Payload::Borrowed(&buf[MAX_HEAD..])).fmt_head(&mut head);
    let start = MAX_HEAD - head_len;
    buf[start..MAX_HEAD].copy_from_slice(&head[..head_len]);
    buf.freeze().slice(start..)
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_frame_has_a_two_byte_header() {
        let f = text_frame("hi");
        assert_eq!(&f[..], &[0x81, 2, b'h', b'i']);
    }

    #[test]
    fn medium_and_long_frames_use_extended_lengths() {
        let medium = "x".repeat(300);
        let f = text_frame(&medium);
        assert_eq!(&f[..4], &[0x81, 126, 0x01, 0x2c]);
        assert_eq!(f.len(), 4 + 300);

        let long = "y".repeat(70_000);
        let f = text_frame(&long);
        assert_eq!(f[0], 0x81);
        assert_eq!(f[1], 127);
        assert_eq!(u64::from_be_bytes(f[2..10].try_into().unwrap()), 70_000);
        assert_eq!(f.len(), 10 + 70_000);
        assert!(f[10..].iter().all(|&b| b == b'y'));
    }

    #[test]
    fn payloads_are_found_behind_every_header_length_and_marked_conflated() {
        for size in [5, 300, 70_000] {
            let text = format!(r#"{{"type":"x","v":"{}"}}"#, "z".repeat(size));
            let frame = text_frame(&text);
            assert_eq!(payload_of(&frame), text.as_bytes());
            let marked = conflated_frame(&frame);
            let expected = format!(r#"{{"conflated":true,{}"#, &text[1..]);
            assert_eq!(payload_of(&marked), expected.as_bytes());
            assert_eq!(marked.len(), text_frame(&expected).len());
        }
    }

    #[test]
    fn json_frame_carries_the_serialized_value() {
        let f = json_frame(&serde_json::json!({"type": "pong"}));
        assert_eq!(f[0], 0x81);
        assert_eq!(f[1] as usize, f.len() - 2);
        assert_eq!(&f[2..], br#"{"type":"pong"}"#);
    }

    #[test]
    fn close_frame_holds_code_and_reason() {
        let f = close_frame(1008, "slow consumer");
        assert_eq!(f[0], 0x88);
        assert_eq!(f[1], 15);
        assert_eq!(u16::from_be_bytes([f[2], f[3]]), 1008);
        assert_eq!(&f[4..], b"slow consumer");
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary_to_fit_125_bytes() {
        let reason = "é".repeat(100);
        let f = close_frame(1000, &reason);
        assert!(f[1] as usize <= 125);
        assert!(std::str::from_utf8(&f[4..]).is_ok());
    }

    #[test]
    fn pong_echoes_the_ping_payload() {
        assert_eq!(&pong_frame(b"abc")[..], &[0x8a, 3, b'a', b'b', b'c']);
        assert_eq!(&ping_frame()[..], &[0x89, 0]);
    }
}
