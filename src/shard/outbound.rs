//! One connection's outbound queue: frames in order, bounded, written with vectored calls.
//!
//! Data frames, pongs, pings and the close frame share this one queue, so a control frame
//! never lands inside a half-written data frame. Frames are `Bytes` handles: a broadcast
//! frame sits in many queues at once and is never copied. For conflated rooms the queue
//! remembers where each room's newest frame waits, so that a newer one can take its place.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

use bytes::{Buf, Bytes};

use super::sys;
use crate::config::SendQueueLimits;

/// Frames handed to the kernel in one call at most (Linux's IOV_MAX is 1024).
const MAX_IOV: usize = 256;
/// Slots a drained queue keeps for the next flush pass while its connection is being sent
/// to steadily, so that it does not allocate and free its queue on every pass. A queue
/// grown past this by a burst gives its memory back once drained, and so does the queue
/// of a connection that is not active (see [`Outbound::tick`]): an idle connection holds
/// no queue memory.
const KEEP_CAPACITY: usize = 16;

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
    /// response to the upgrade, without which nothing after it means anything. (A
    /// handful at most: `u32` keeps the queue, part of every connection, at 56 bytes.)
    protected: u32,
    /// Drained since the last [`Outbound::tick`].
    drained_lately: bool,
    /// Drained between the last two ticks: a drained queue keeps its memory.
    active: bool,
    /// Where the queue holds frames of conflated rooms; only while it does.
    conflation: Option<Box<Conflation>>,
}

/// The newest queued frame of each conflated room, so that a newer one can take its
/// place.
#[derive(Debug, Default)]
struct Conflation {
    /// Frames taken off the front since this began: positions below are gone.
    popped: u64,
    /// Room id and position (counted from this beginning) of its newest queued frame.
    newest: Vec<(u64, u64)>,
}

impl Outbound {
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.frames.capacity()
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

    /// Queues a frame of conflated room `room`, unless that would pass `limits`.
    pub fn push_conflatable(
        &mut self,
        frame: Bytes,
        room: u64,
        limits: &SendQueueLimits,
    ) -> Result<(), Overflow> {
        self.push(frame, limits)?;
        let conflation = self.conflation.get_or_insert_with(Box::default);
        let position = conflation.popped + self.frames.len() as u64 - 1;
        match conflation.newest.iter_mut().find(|(r, _)| *r == room) {
            Some(slot) => slot.1 = position,
            None => conflation.newest.push((room, position)),
        }
        Ok(())
    }

    /// Puts `frame` in the place of the newest queued frame of conflated room `room`, if
    /// one waits unstarted. True if it did.
    pub fn replace_newest(&mut self, room: u64, frame: Bytes) -> bool {
        let Some(conflation) = &self.conflation else {
            return false;
        };
        let Some(&(_, position)) = conflation.newest.iter().find(|(r, _)| *r == room) else {
            return false;
        };
        let Some(index) = position.checked_sub(conflation.popped) else {
            return false;
        };
        let index = index as usize;
        if (index == 0 && self.front_started) || index < self.protected as usize {
            return false;
        }
        let Some(slot) = self.frames.get_mut(index) else {
            return false;
        };
        self.bytes = self.bytes - slot.len() + frame.len();
        *slot = frame;
        true
    }

    /// Queues a frame that a later [`Outbound::discard_unsent`] must keep.
    pub fn push_protected(&mut self, frame: Bytes) {
        debug_assert_eq!(
            self.protected as usize,
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
        let keep = usize::from(self.front_started).max(self.protected as usize);
        self.frames.truncate(keep);
        self.bytes = self.frames.iter().map(Bytes::len).sum();
        self.conflation = None;
    }

    /// Writes queued frames to `fd` until the queue is empty or the socket is full.
    pub fn write_to(&mut self, fd: RawFd) -> io::Result<Written> {
        self.write_with(|slices| sys::send_vectored(fd, slices))
    }

    /// Hands queued frames to `write` (a socket, or a TLS session that seals them), in
    /// vectored calls, until the queue is empty or `write` takes less than offered.
    pub fn write_with(
        &mut self,
        mut write: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<Written> {
        let mut written = Written {
            calls: 0,
            bytes: 0,
            drained: false,
        };
        while !self.frames.is_empty() {
            // Only the slots in use are written: one frame to one socket, the common
            // case, must not pay for setting up all MAX_IOV of them.
            let mut slots = [const { MaybeUninit::<IoSlice<'_>>::uninit() }; MAX_IOV];
            let mut count = 0;
            let mut offered = 0;
            for (slot, frame) in slots.iter_mut().zip(&self.frames) {
                slot.write(IoSlice::new(frame));
                offered += frame.len();
                count += 1;
            }
            // SAFETY: the first `count` slots were written just above, and `IoSlice` has
            // the layout of `MaybeUninit<IoSlice>`.
            let slices = unsafe { std::slice::from_raw_parts(slots.as_ptr().cast(), count) };
            let attempt = write(slices);
            written.calls += 1;
            let n = match attempt {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(written),
                Err(e) => return Err(e),
            };
            written.bytes += n as u64;
            self.consume(n);
            if n < offered {
                // Less taken than offered: the kernel's buffer (or the session's) is full.
                return Ok(written);
            }
        }
        self.after_drain();
        written.drained = true;
        Ok(written)
    }

    /// What [`Outbound::write_to`] does to the queue when the kernel takes every queued
    /// byte, without the system call: for the benchmarks.
    pub fn wrote_everything(&mut self) {
        self.consume(self.bytes);
        self.after_drain();
    }

    /// The queue has just been written out completely.
    fn after_drain(&mut self) {
        self.drained_lately = true;
        self.conflation = None;
        // A connection that just came (the handshake, a join) or that is sent to now and
        // then gives the memory back at once: thousands of connections opening together
        // would otherwise all hold a queue at the same time, and the allocator keeps the
        // pages they used.
        if !self.active || self.frames.capacity() > KEEP_CAPACITY {
            self.frames = VecDeque::new();
        }
    }

    /// Frees the queue's memory if it holds nothing. Returns whether memory was freed.
    pub fn shrink_if_empty(&mut self) -> bool {
        if self.frames.is_empty() && self.frames.capacity() > 0 {
            self.frames = VecDeque::new();
            true
        } else {
            false
        }
    }

    /// Called periodically (every housekeeping tick): a queue drained since the previous
    /// call is active and keeps its memory when drained until the next call; one that was
    /// not is idle and its memory, if it is empty, is freed now (most connections are idle
    /// most of the time, and an idle one must hold no buffers). Returns whether memory
    /// was freed.
    pub fn tick(&mut self) -> bool {
        self.active = std::mem::take(&mut self.drained_lately);
        !self.active && self.shrink_if_empty()
    }

    fn consume(&mut self, mut n: usize) {
        self.bytes -= n;
        while n > 0 {
            let front = self.frames.front_mut().expect("consumed more than queued");
            if n >= front.len() {
                n -= front.len();
                self.frames.pop_front();
                if let Some(conflation) = &mut self.conflation {
                    conflation.popped += 1;
                }
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
    fn a_conflated_rooms_newest_queued_frame_is_replaced_in_place() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let roomy = SendQueueLimits {
            max_bytes: 1 << 20,
            max_frames: 100,
        };
        let mut q = Outbound::default();
        assert!(
            !q.replace_newest(7, Bytes::from_static(b"x")),
            "nothing queued"
        );
        q.push(Bytes::from_static(b"a1 "), &roomy).unwrap();
        q.push_conflatable(Bytes::from_static(b"p1 "), 7, &roomy)
            .unwrap();
        q.push(Bytes::from_static(b"a2 "), &roomy).unwrap();
        assert!(q.replace_newest(7, Bytes::from_static(b"p3! ")));
        assert!(!q.replace_newest(8, Bytes::from_static(b"other")));
        q.push_conflatable(Bytes::from_static(b"q1 "), 8, &roomy)
            .unwrap();
        assert!(q.write_to(a.as_raw_fd()).unwrap().drained);
        let mut got = [0u8; 13];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"a1 p3! a2 q1 ");
        assert!(
            !q.replace_newest(7, Bytes::from_static(b"late")),
            "what was written is not replaced"
        );
    }

    #[test]
    fn a_started_frame_is_never_replaced() {
        let (a, _b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let big = Bytes::from(vec![1u8; 4 << 20]);
        let roomy = SendQueueLimits {
            max_bytes: 16 << 20,
            max_frames: 10,
        };
        let mut q = Outbound::default();
        q.push_conflatable(big.clone(), 7, &roomy).unwrap();
        let w = q.write_to(a.as_raw_fd()).unwrap();
        assert!(!w.drained && w.bytes > 0);
        assert!(!q.replace_newest(7, Bytes::from_static(b"newer")));
        q.push_conflatable(big, 7, &roomy).unwrap();
        assert!(q.replace_newest(7, Bytes::from_static(b"newer")));
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
    fn an_active_queue_keeps_a_little_room_until_idle() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let roomy = SendQueueLimits {
            max_bytes: 1 << 20,
            max_frames: 1000,
        };
        let mut sent = 0;
        let send = |q: &mut Outbound, frame: &'static [u8]| {
            q.push(Bytes::from_static(frame), &roomy).unwrap();
            assert!(q.write_to(a.as_raw_fd()).unwrap().drained);
            frame.len()
        };
        let mut q = Outbound::default();
        sent += send(&mut q, b"zero");
        assert_eq!(q.capacity(), 0, "a new connection's queue keeps nothing");
        assert!(!q.tick(), "drained since the last tick: active");
        sent += send(&mut q, b"one");
        let kept = q.capacity();
        assert!(kept > 0 && kept <= KEEP_CAPACITY, "kept {kept} slots");
        q.push(Bytes::from_static(b"two"), &roomy).unwrap();
        sent += 3;
        assert_eq!(q.capacity(), kept, "the next pass reuses the queue");
        assert!(!q.shrink_if_empty(), "a queue with frames keeps its memory");
        assert!(q.write_to(a.as_raw_fd()).unwrap().drained);
        assert!(!q.tick(), "drained since the last tick: still active");
        assert_eq!(q.capacity(), kept);
        assert!(q.tick(), "not drained since: idle");
        assert_eq!(q.capacity(), 0);
        assert!(!q.shrink_if_empty());
        assert!(!q.tick());

        // Idle, a drain gives the memory back at once.
        sent += send(&mut q, b"three");
        assert_eq!(q.capacity(), 0);
        assert!(!q.tick(), "active again");

        // Active, a burst beyond the kept room gives its memory back once drained.
        for _ in 0..KEEP_CAPACITY + 1 {
            q.push(Bytes::from_static(b"x"), &roomy).unwrap();
            sent += 1;
        }
        assert!(q.write_to(a.as_raw_fd()).unwrap().drained);
        assert_eq!(q.capacity(), 0);
        let mut got = vec![0u8; sent];
        b.read_exact(&mut got).unwrap();
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
