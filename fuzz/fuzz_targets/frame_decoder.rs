//! Client bytes after the upgrade, handled the way a shard handles them
//! (`src/shard/reader.rs`): the stream arrives in reads of varying size; each read is joined
//! to the saved unfinished frame, whole frames are decoded in place with `decode_frame` and
//! fed to the connection's `Assembler`, text messages go to `parse_client_message`, and
//! the first error or close ends the connection.
//!
//! Input: byte 0 picks `max_message_size`, bytes 1..3 seed the read sizes, the rest is
//! the stream. Checked, besides "no panic":
//! - every decoded header fits the buffer and the size bound, an `Incomplete` frame size
//!   is larger than what is there, and the saved partial frame stays under one frame;
//! - text messages are valid UTF-8 and within the size bound;
//! - the bytes a fragmented message holds stay within twice the bound;
//! - the events are the same whether the stream arrives in one read or in many.
#![no_main]

use libfuzzer_sys::fuzz_target;
use neonex::protocol::parse_client_message;
use neonex::ws::assemble::{Assembler, Message};
use neonex::ws::decode::{decode_frame, Decoded};

#[derive(Debug, PartialEq, Eq)]
enum Event {
    Text(Vec<u8>, bool),
    Binary,
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>),
    Refused(u16),
}

struct Conn {
    max: usize,
    partial: Vec<u8>,
    assembler: Assembler,
    open: bool,
    events: Vec<Event>,
}

impl Conn {
    fn new(max: usize) -> Self {
        Self {
            max,
            partial: Vec::new(),
            assembler: Assembler::default(),
            open: true,
            events: Vec::new(),
        }
    }

    /// `Shard::on_frame_bytes`.
    fn on_bytes(&mut self, data: &[u8]) {
        if !self.open {
            return;
        }
        let mut joined = std::mem::take(&mut self.partial);
        joined.extend_from_slice(data);
        let used = self.decode_frames(&mut joined);
        joined.drain(..used);
        if self.open && !joined.is_empty() {
            assert!(
                joined.len() < self.max + 14,
                "saved {} bytes of an unfinished frame with max {}",
                joined.len(),
                self.max
            );
            self.partial = joined;
        }
    }

    /// `Shard::decode_frames`.
    fn decode_frames(&mut self, buf: &mut [u8]) -> usize {
        let mut pos = 0;
        while self.open {
            let len = buf.len() - pos;
            match decode_frame(&mut buf[pos..], self.max) {
                Ok(Decoded::Frame(h)) => {
                    assert!(h.frame_len() <= len, "{h:?} longer than the {len} bytes");
                    assert!(h.payload_len <= self.max, "{h:?} over max {}", self.max);
                    assert!(matches!(h.header_len, 6 | 8 | 14), "{h:?}");
                    let payload = pos + h.header_len..pos + h.frame_len();
                    pos += h.frame_len();
                    self.on_frame(h, &mut buf[payload]);
                }
                Ok(Decoded::Incomplete { frame_len }) => {
                    if let Some(n) = frame_len {
                        assert!(n > len, "incomplete, yet {n} <= {len} bytes are there");
                        assert!(n <= self.max + 14, "incomplete frame of {n} over max");
                    }
                    return pos;
                }
                Err(reason) => {
                    assert!(matches!(reason.code, 1002 | 1009), "{reason:?}");
                    self.events.push(Event::Refused(reason.code));
                    self.open = false;
                }
            }
        }
        buf.len()
    }

    /// `Shard::on_frame`.
    fn on_frame(&mut self, h: neonex::ws::decode::FrameHeader, payload: &mut [u8]) {
        let max = self.max;
        let event = match self.assembler.push(h, payload, max) {
            Ok(None) => {
                assert!(
                    self.assembler.held_bytes() <= (2 * max).max(256),
                    "a fragmented message holds {} bytes with max {max}",
                    self.assembler.held_bytes()
                );
                return;
            }
            Ok(Some(Message::Text(mut text))) => {
                let bytes = text.as_mut_slice();
                assert!(bytes.len() <= max);
                assert!(std::str::from_utf8(bytes).is_ok(), "text is not UTF-8");
                let kept = bytes.to_vec();
                let parsed = parse_client_message(bytes).is_ok();
                Event::Text(kept, parsed)
            }
            Ok(Some(Message::Binary(_))) => Event::Binary,
            Ok(Some(Message::Ping(p))) => {
                assert!(p.len() <= 125);
                Event::Ping(p.to_vec())
            }
            Ok(Some(Message::Pong)) => Event::Pong,
            Ok(Some(Message::Close(code))) => {
                self.open = false;
                Event::Close(code)
            }
            Err(reason) => {
                assert!(matches!(reason.code, 1002 | 1007 | 1009), "{reason:?}");
                self.open = false;
                Event::Refused(reason.code)
            }
        };
        if !self.assembler.in_progress() {
            assert_eq!(self.assembler.held_bytes(), 0);
        }
        self.events.push(event);
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let max = [16, 125, 200, 1024, 65_535, 65_536, 70_000, 1 << 20][usize::from(data[0] & 7)];
    let mut seed = u32::from(data[1]) << 8 | u32::from(data[2]) | 1;
    let stream = &data[3..];

    let mut whole = Conn::new(max);
    whole.on_bytes(stream);

    let mut pieces = Conn::new(max);
    let mut rest = stream;
    while !rest.is_empty() {
        // xorshift: read sizes from 1 byte up to the whole rest.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let n = match seed % 4 {
            0 => 1,
            1 => 1 + (seed as usize >> 8) % 16,
            2 => 1 + (seed as usize >> 8) % 512,
            _ => rest.len(),
        }
        .min(rest.len());
        pieces.on_bytes(&rest[..n]);
        rest = &rest[n..];
    }
    assert_eq!(
        whole.events, pieces.events,
        "one read and many reads disagree"
    );
    assert_eq!(whole.open, pieces.open);
});
