//! Inflating permessage-deflate messages (RFC 7692) on the receiving side.
//!
//! A server that answered `server_no_context_takeover` starts every message with an empty
//! window, so one [`Inflater`] per worker thread serves all its connections (reset before
//! each message; its output buffer stays allocated). A server that keeps its window across
//! messages (uWebSockets' dedicated compressor) needs one inflater per connection, kept for
//! the connection's life: a message may refer back to the text of earlier ones.

use std::cell::RefCell;

use flate2::{Decompress, FlushDecompress, Status};

use crate::ws::WsError;

/// What the sender removed from the end of each message (RFC 7692 §7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// First output buffer size; it grows by doubling up to the message limit.
const FIRST_OUT: usize = 16 * 1024;

/// One raw-deflate stream and its output buffer.
pub struct Inflater {
    stream: Decompress,
    out: Vec<u8>,
    /// The last message ended the deflate stream (BFINAL): the next one starts afresh.
    ended: bool,
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    /// A fresh inflater (a 32 KiB window, enough for any `server_max_window_bits`).
    pub fn new() -> Self {
        Self {
            stream: Decompress::new(false),
            out: Vec::new(),
            ended: false,
        }
    }

    /// Inflates one message's payload (RSV1 set, tail removed by the sender). With
    /// `fresh`, the window starts empty (server_no_context_takeover); without, the message
    /// may refer back to the earlier messages this inflater restored. Refuses an inflated
    /// size over `max`.
    pub fn inflate(&mut self, payload: &[u8], max: usize, fresh: bool) -> Result<&[u8], WsError> {
        if fresh || self.ended {
            self.stream.reset(false);
            self.ended = false;
        }
        self.out.clear();
        for input in [payload, &TAIL[..]] {
            let mut pos = 0;
            loop {
                if self.out.len() == self.out.capacity() {
                    if self.out.len() > max {
                        return Err(WsError::TooLarge(self.out.len() as u64));
                    }
                    let want = (self.out.capacity() * 2).max(FIRST_OUT).min(max + 1);
                    self.out.reserve_exact(want - self.out.len());
                }
                let (in_before, out_before) = (self.stream.total_in(), self.out.len());
                let status = self
                    .stream
                    .decompress_vec(&input[pos..], &mut self.out, FlushDecompress::Sync)
                    .map_err(|_| WsError::Protocol("bad deflate data"))?;
                pos += (self.stream.total_in() - in_before) as usize;
                if self.out.len() > max {
                    return Err(WsError::TooLarge(self.out.len() as u64));
                }
                if status == Status::StreamEnd {
                    self.ended = true;
                    break;
                }
                let room_left = self.out.len() < self.out.capacity();
                // All input taken and the output not cut short by a full buffer: done.
                if pos == input.len() && room_left {
                    break;
                }
                if self.stream.total_in() == in_before && self.out.len() == out_before && room_left
                {
                    return Err(WsError::Protocol("deflate data makes no progress"));
                }
            }
            if self.ended {
                break;
            }
        }
        Ok(&self.out)
    }
}

thread_local! {
    /// The worker thread's inflater for servers without context takeover.
    static SHARED: RefCell<Inflater> = RefCell::new(Inflater::new());
}

/// Runs `f` with this thread's shared inflater (connections whose server resets its
/// window for every message).
pub fn with_shared<R>(f: impl FnOnce(&mut Inflater) -> R) -> R {
    SHARED.with(|i| f(&mut i.borrow_mut()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    /// Compresses `msgs` the way a permessage-deflate sender does: one raw-deflate stream,
    /// a sync flush after each message, its `00 00 ff ff` tail removed. With `reset`, the
    /// stream starts afresh for each message (no context takeover).
    fn deflate_messages(msgs: &[&[u8]], reset: bool) -> Vec<Vec<u8>> {
        let mut c = Compress::new(Compression::default(), false);
        msgs.iter()
            .map(|m| {
                if reset {
                    c.reset();
                }
                let mut out = Vec::with_capacity(m.len() + 64);
                let before = c.total_in();
                while ((c.total_in() - before) as usize) < m.len() || out.is_empty() {
                    let at = (c.total_in() - before) as usize;
                    out.reserve(256);
                    c.compress_vec(&m[at..], &mut out, FlushCompress::Sync)
                        .unwrap();
                }
                assert!(out.ends_with(&TAIL));
                out.truncate(out.len() - 4);
                out
            })
            .collect()
    }

    fn doc(i: u32) -> Vec<u8> {
        (0..40)
            .map(|r| {
                format!(
                    "{{\"row\":{r},\"sym\":\"S{}\",\"px\":{}.{}}}",
                    r * 7 % 13,
                    100 + i * r,
                    r
                )
            })
            .collect::<Vec<_>>()
            .join(",")
            .into_bytes()
    }

    #[test]
    fn inflates_fresh_messages_with_one_shared_inflater() {
        let (a, b) = (doc(1), doc(2));
        let frames = deflate_messages(&[&a, &b, &a], true);
        let mut inf = Inflater::new();
        for (frame, want) in frames.iter().zip([&a, &b, &a]) {
            assert!(frame.len() < want.len());
            assert_eq!(inf.inflate(frame, 1 << 20, true).unwrap(), &want[..]);
        }
        // The shared inflater restores messages of different connections in any order.
        assert_eq!(inf.inflate(&frames[1], 1 << 20, true).unwrap(), &b[..]);
        assert_eq!(
            with_shared(|i| i.inflate(&frames[0], 1 << 20, true).unwrap().to_vec()),
            a
        );
    }

    #[test]
    fn context_takeover_refers_back_to_the_previous_message() {
        let first = doc(3);
        let mut second = first.clone();
        second.extend_from_slice(b" and a little more");
        let frames = deflate_messages(&[&first, &second], false);
        // The second one is mostly a back-reference into the first.
        assert!(
            frames[1].len() * 5 < frames[0].len(),
            "{} then {} bytes",
            frames[0].len(),
            frames[1].len()
        );
        let mut inf = Inflater::new();
        assert_eq!(inf.inflate(&frames[0], 1 << 20, false).unwrap(), &first[..]);
        assert_eq!(
            inf.inflate(&frames[1], 1 << 20, false).unwrap(),
            &second[..]
        );
        // Without the first message's window the second cannot be restored.
        let mut cold = Inflater::new();
        let got = cold.inflate(&frames[1], 1 << 20, true);
        assert!(got.map(|g| g != &second[..]).unwrap_or(true));
    }

    #[test]
    fn bounds_the_inflated_size() {
        let big = vec![b'a'; 200_000];
        let frames = deflate_messages(&[&big], true);
        assert!(frames[0].len() < 1000);
        let mut inf = Inflater::new();
        assert!(matches!(
            inf.inflate(&frames[0], 100_000, true),
            Err(WsError::TooLarge(_))
        ));
        assert_eq!(
            inf.inflate(&frames[0], 200_000, true).unwrap().len(),
            200_000
        );
        assert!(inf.inflate(b"\xff\xff\xff\xff", 1000, true).is_err());
    }

    /// What inflating one delivery costs the load generator, its ceiling with `--deflate`:
    /// `cargo test --release -p neonex-loadgen inflate_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn inflate_cost() {
        let mut text = String::new();
        crate::stamp::write_document(&mut text, 1, 1, 2048);
        let frames = deflate_messages(&[text.as_bytes()], true);
        let mut inf = Inflater::new();
        let n = 200_000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            assert_eq!(
                inf.inflate(&frames[0], 1 << 24, true).unwrap().len(),
                text.len()
            );
        }
        let per = start.elapsed().as_secs_f64() / f64::from(n) * 1e6;
        eprintln!(
            "{} B -> {} B: {per:.2} µs per message",
            frames[0].len(),
            text.len()
        );
    }

    #[test]
    fn empty_message() {
        let frames = deflate_messages(&[b""], true);
        let mut inf = Inflater::new();
        assert_eq!(inf.inflate(&frames[0], 10, true).unwrap(), b"");
        // An empty payload (a sender may send just the removed tail) is an empty message.
        assert_eq!(inf.inflate(b"\x00", 10, true).unwrap(), b"");
    }
}
