//! permessage-deflate (RFC 7692) on flate2: a broadcast's frame compressed once for every
//! recipient that negotiated it, and clients' compressed messages inflated.
//!
//! Neither side keeps a context between messages (the hub answers
//! `server_no_context_takeover` and `client_no_context_takeover`), so one compressor per
//! thread and one inflater per shard serve every connection: each is reset per message,
//! and an idle connection holds no compression state at all.
//!
//! Inflating is bounded by the message size limit as it goes: a small message that would
//! inflate past `hub.max_message_size` is refused with 1009 once the limit is passed,
//! never inflated whole.

use std::cell::RefCell;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::{close_code, encode, CloseReason};

/// What a sync flush ends every compressed message with; RFC 7692 section 7.2.1 has it
/// taken off before sending and put back before inflating.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The compression level: zlib's default, a good ratio for JSON at a cost paid once per
/// broadcast, not per recipient.
const LEVEL: u32 = 6;

thread_local! {
    static COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(Compression::new(LEVEL), false));
}

/// The compressed form of `frame`, a whole unfragmented data frame as [`encode`] makes
/// them: the same message with RSV1 set and its payload deflated. `None` when that would
/// not be smaller.
pub fn deflated_frame(frame: &[u8]) -> Option<Bytes> {
    let opcode = *frame.first()? & 0x0f;
    let payload = encode::payload_of(frame);
    let compressed =
        COMPRESSOR.with(|compressor| deflate(&mut compressor.borrow_mut(), payload))?;
    let mut out = BytesMut::with_capacity(10 + compressed.len());
    out.put_u8(0x80 | 0x40 | opcode);
    match compressed.len() {
        n if n < 126 => out.put_u8(n as u8),
        n if n <= u16::MAX as usize => {
            out.put_u8(126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(127);
            out.put_u64(n as u64);
        }
    }
    out.extend_from_slice(&compressed);
    (out.len() < frame.len()).then(|| out.freeze())
}

/// Deflates `payload` on its own, without the sync flush's tail.
fn deflate(compressor: &mut Compress, payload: &[u8]) -> Option<Vec<u8>> {
    compressor.reset();
    let mut out = Vec::with_capacity(payload.len() / 2 + 64);
    loop {
        let taken = compressor.total_in() as usize;
        compressor
            .compress_vec(&payload[taken..], &mut out, FlushCompress::Sync)
            .ok()?;
        let done = compressor.total_in() as usize == payload.len();
        if done && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    if out.ends_with(&SYNC_TAIL) {
        out.truncate(out.len() - SYNC_TAIL.len());
    }
    Some(out)
}

/// Inflates clients' compressed messages, one at a time; one per shard.
pub struct Inflater {
    decompress: Decompress,
    /// The message with the sync tail put back, reused.
    input: Vec<u8>,
}

impl Default for Inflater {
    fn default() -> Self {
        Self {
            decompress: Decompress::new(false),
            input: Vec::new(),
        }
    }
}

impl Inflater {
    /// The message whose compressed payload is `payload`, at most `max` bytes: past that,
    /// 1009 as soon as it is passed; data that does not inflate, 1007.
    pub fn inflate(&mut self, payload: &[u8], max: usize) -> Result<Vec<u8>, CloseReason> {
        let too_big = CloseReason {
            code: close_code::TOO_BIG,
            reason: "message too big",
        };
        let invalid = CloseReason {
            code: close_code::INVALID_DATA,
            reason: "compressed message does not inflate",
        };
        self.input.clear();
        self.input.extend_from_slice(payload);
        self.input.extend_from_slice(&SYNC_TAIL);
        let inflater = &mut self.decompress;
        inflater.reset(false);
        let mut out = Vec::with_capacity((payload.len() * 4).clamp(256, max + 1));
        loop {
            let taken = inflater.total_in() as usize;
            let status = inflater
                .decompress_vec(&self.input[taken..], &mut out, FlushDecompress::Sync)
                .map_err(|_| invalid)?;
            if out.len() > max {
                return Err(too_big);
            }
            let all_in = inflater.total_in() as usize == self.input.len();
            if status == Status::StreamEnd || (all_in && out.len() < out.capacity()) {
                break;
            }
            if status == Status::BufError && out.len() < out.capacity() {
                // Neither input taken nor output made: the data is cut short.
                return Err(invalid);
            }
            // Grows as the output does, never past one byte over the bound.
            out.reserve(out.capacity().min(max + 1 - out.len()).max(1));
        }
        // Keep the reused input from holding on to one large message.
        if self.input.capacity() > 64 * 1024 {
            self.input = Vec::new();
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(len: usize) -> String {
        let row = r#"{"symbol":"ACME","bid":101.25,"ask":101.5,"volume":12000},"#;
        row.repeat(len / row.len() + 1)[..len].to_owned()
    }

    #[test]
    fn a_compressed_frame_inflates_to_the_same_message() {
        let message = text(4000);
        let plain = encode::text_frame(&message);
        let compressed = deflated_frame(&plain).expect("JSON compresses");
        assert_eq!(compressed[0], 0xc1, "FIN, RSV1, text");
        assert!(
            compressed.len() * 3 < plain.len(),
            "{} vs {}",
            compressed.len(),
            plain.len()
        );
        let payload = encode::payload_of(&compressed);
        let inflated = Inflater::default().inflate(payload, 1 << 20).unwrap();
        assert_eq!(inflated, message.as_bytes());
    }

    #[test]
    fn what_would_not_shrink_stays_plain() {
        assert!(deflated_frame(&encode::text_frame("hi")).is_none());
    }

    #[test]
    fn one_inflater_serves_message_after_message() {
        let mut inflater = Inflater::default();
        for len in [10, 5000, 200_000, 3] {
            let message = text(len);
            let frame = encode::text_frame(&message);
            let Some(compressed) = deflated_frame(&frame) else {
                continue;
            };
            let inflated = inflater.inflate(encode::payload_of(&compressed), 1 << 20);
            assert_eq!(inflated.unwrap(), message.as_bytes());
        }
    }

    #[test]
    fn inflating_stops_at_the_bound_and_garbage_is_invalid() {
        let bomb = vec![b'a'; 10_000_000];
        let frame = encode::binary_frame(&bomb);
        let compressed = deflated_frame(&frame).unwrap();
        let payload = encode::payload_of(&compressed);
        assert!(payload.len() < 20_000, "{}", payload.len());
        let mut inflater = Inflater::default();
        assert_eq!(
            inflater.inflate(payload, 512 * 1024).unwrap_err().code,
            1009
        );
        assert_eq!(inflater.inflate(&[0xff; 32], 1024).unwrap_err().code, 1007);
        assert_eq!(
            inflater.inflate(payload, 10_000_000).unwrap().len(),
            10_000_000
        );
    }
}
