//! One connection's outbound queue: frames in order, bounded, written with vectored calls.
//!
//! Data frames, pongs, pings and the close frame share this one queue, so a control frame
//! never lands inside a half-written data frame. Frames are `Bytes` handles: a broadcast
//! frame sits in many queues at once and is never copied.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::RawFd;

use bytes::{Buf, Bytes};

use super::sys;
use crate::config::SendQueueLimits;

/// Frames handed to the kernel in one call at most (Linux's IOV_MAX is 1024).
const MAX_IOV: usize = 256;

/// The queue would exceed its bounds: the client is not keeping up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overflow;

/// What a write attempt achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    /// Write calls made.
    pub calls: u64,
    /// Bytes the kernel took.
    pub bytes: u64,
    /// The queue is empty now; otherwise the socket is full.
    pub drained: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Outbound {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// The front frame is partly written and must be finished before anything else.
    front_started: bool,
    /// Frames at the front that must go out even if the rest is discarded: the HTTP
    /// response to the upgrade, without which nothing after it means anything.
    protected: usize,
}

impl Outbound {
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Queues a frame, unless that would pass `limits`.
    pub fn push(&mut self, frame: Bytes, limits: &SendQueueLimits) -> Result<(), Overflow> {
        if self.frames.len() >= limits.max_frames || self.bytes + frame.len() > limits.max_bytes {
            return Err(Overflow);
        }
        self.push_unbounded(frame);
        Ok(())
    }

    /// True if the queue holds more than `limits` allow.
    pub fn exceeds(&self, limits: &SendQueueLimits) -> bool {
        self.frames.len() > limits.max_frames || self.bytes > limits.max_bytes
    }

    /// Queues a frame the server itself must send whatever the bounds (handshake
    /// response, close frame). Only a handful of these are ever queued.
    pub fn push_unbounded(&mut self, frame: Bytes) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
    }

    /// Queues a frame that a later [`Outbound::discard_unsent`] must keep.
    pub fn push_protected(&mut self, frame: Bytes) {
        debug_assert_eq!(
            self.protected,
            self.frames.len(),
            "protected frames come first"
        );
        self.push_unbounded(frame);
        self.protected += 1;
    }

    /// Drops every frame not yet started, keeping a partly written one (so the stream
    /// stays well-formed) and protected ones. Used before a close frame that must go out
    /// next.
    pub fn discard_unsent(&mut self) {
        let keep = usize::from(self.front_started).max(self.protected);
        self.frames.truncate(keep);
        self.bytes = self.frames.iter().map(Bytes::len).sum();
    }

    /// Writes queued frames to `fd` until the queue is empty or the socket is full.
    pub fn write_to(&mut self, fd: RawFd) -> io::Result<Written> {
        let mut written = Written {
            calls: 0,
            bytes: 0,
            drained: false,
        };
        while !self.frames.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            let mut offered = 0;
            for (slot, frame) in slices.iter_mut().zip(&self.frames) {
                *slot = IoSlice::new(frame);
                offered += frame.len();
                count += 1;
            }
            written.calls += 1;
            let n = match sys::send_vectored(fd, &slices[..count]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(written),
                Err(e) => return Err(e),
            };
            written.bytes += n as u64;
            self.consume(n);
            if n < offered {
                // The kernel took less than offered: its buffer is full.
                return Ok(written);
            }
        }
        // An empty queue holds no memory: most connections are idle most of the time.
        self.frames = VecDeque::new();
        written.drained = true;
        Ok(written)
    }

    fn consume(&mut self, mut n: usize) {
        self.bytes -= n;
        while n > 0 {
            let front = self.frames.front_mut().expect("consumed more than queued");
            if n >= front.len() {
                n -= front.len();
                self.frames.pop_front();
                self.front_started = false;
                self.protected = self.protected.saturating_sub(1);
            } else {
                front.advance(n);
                self.front_started = true;
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    const LIMITS: SendQueueLimits = SendQueueLimits {
        max_bytes: 100,
        max_frames: 3,
    };

    #[test]
    fn bounds_are_enforced_in_frames_and_bytes() {
        let mut q = Outbound::default();
        q.push(Bytes::from_static(&[0; 40]), &LIMITS).unwrap();
        q.push(Bytes::from_static(&[0; 40]), &LIMITS).unwrap();
        assert_eq!(q.push(Bytes::from_static(&[0; 40]), &LIMITS), Err(Overflow));
        q.push(Bytes::from_static(&[0; 10]), &LIMITS).unwrap();
        assert_eq!(q.push(Bytes::from_static(&[0; 1]), &LIMITS), Err(Overflow));
    }

    #[test]
    fn protected_frames_survive_a_discard() {
        let mut q = Outbound::default();
        q.push_protected(Bytes::from_static(b"HTTP/1.1 101"));
        q.push(Bytes::from_static(b"welcome"), &LIMITS).unwrap();
        q.discard_unsent();
        q.push_unbounded(Bytes::from_static(b"close"));
        let (a, mut b) = UnixStream::pair().unwrap();
        assert!(q.write_to(a.as_raw_fd()).unwrap().drained);
        drop(a);
        let mut got = Vec::new();
        b.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"HTTP/1.1 101close");
    }

    #[test]
    fn frames_leave_in_order_in_one_call() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut q = Outbound::default();
        for part in [&b"one "[..], b"two ", b"three"] {
            q.push(Bytes::from_static(part), &LIMITS).unwrap();
        }
        let w = q.write_to(a.as_raw_fd()).unwrap();
        assert_eq!(
            w,
            Written {
                calls: 1,
                bytes: 13,
                drained: true
            }
        );
        let mut got = [0u8; 13];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"one two three");
    }

    #[test]
    fn a_full_socket_keeps_the_rest_and_a_started_frame_survives_discard() {
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let big = Bytes::from(vec![7u8; 4 << 20]);
        let mut q = Outbound::default();
        let roomy = SendQueueLimits {
            max_bytes: 16 << 20,
            max_frames: 10,
        };
        q.push(big.clone(), &roomy).unwrap();
        q.push(big.clone(), &roomy).unwrap();
        let w = q.write_to(a.as_raw_fd()).unwrap();
        assert!(!w.drained && w.bytes > 0 && w.bytes < big.len() as u64);
        q.discard_unsent();
        q.push_unbounded(Bytes::from_static(b"END"));
        let expected = big.len() + 3;
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            b.read_to_end(&mut all).unwrap();
            all
        });
        let mut total = w.bytes as usize;
        while !q.is_empty() {
            let w = q.write_to(a.as_raw_fd()).unwrap();
            total += w.bytes as usize;
            std::thread::yield_now();
        }
        drop(a);
        let all = reader.join().unwrap();
        assert_eq!(total, expected);
        assert_eq!(
            all.len(),
            expected,
            "first frame whole, second dropped, END kept"
        );
        assert!(all.ends_with(b"END"));
    }
}
