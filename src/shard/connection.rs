//! One connection as its shard holds it.
//!
//! Everything here is shard-local and touched only by the shard's thread. An idle open
//! connection holds no read buffer: bytes are read into the shard's buffer, and only an
//! unfinished frame (`partial`) or fragmented message (`assembler`) is kept here.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use super::address::Address;
use super::awaiting::Awaiting;
use super::outbound::{Outbound, Overflow};
use super::ratelimit::TokenBucket;
use super::request::Request;
use super::stamp::Stamp;
use super::sys;
use super::tls::TlsSession;
use crate::config::SendQueueLimits;
use crate::ids::ConnectionId;
use crate::stats::CloseCause;
use crate::ws::assemble::Assembler;
use crate::ws::{close_code, encode};
use bytes::Bytes;

/// How far past its bounds a queue may grow within one pass while its socket still
/// takes data.
pub(crate) const BURST_ALLOWANCE: usize = 4;

/// What became of a frame of a conflated room offered to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conflation {
    /// Queued like any frame.
    Queued,
    /// Took the place of an older frame of the room.
    Replaced,
    /// Skipped: the queue is full.
    Skipped,
}

/// Where a connection is in its life.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Reading the HTTP request (gathered in `partial` if it arrives in pieces).
    /// `awaiting_body`: its head has arrived and been accepted, its body not yet.
    Handshake {
        deadline: Instant,
        awaiting_body: Option<Box<Request>>,
    },
    /// An upgrade request, accepted so far and counted under the caps, waiting for the
    /// backend's connect hook to say who the client is (see `shard::connecting`).
    Connecting {
        deadline: Instant,
        upgrade: Box<super::request::Upgrade>,
    },
    /// Upgraded and serving protocol messages.
    Open,
    /// An HTTP call whose answer waits for another shard; the answer moves it to
    /// `Closing`. Nothing is shut before the answer is queued, whatever drains first.
    Answering { deadline: Instant },
    /// A close frame or final HTTP response is queued. Once it is written the write side
    /// is shut; the connection ends at the client's end of stream or at `deadline`.
    Closing { deadline: Instant, fin_sent: bool },
    /// Shut down; the shard's next read of it removes it.
    Dead,
}

/// Every open connection holds one, so it is kept to 224 bytes (an allocator size class;
/// `bench::connection_sizes` prints it): times are the shard's compact milliseconds (see
/// [`Shard::now_ms`](super::Shard::now_ms)) where an `Instant` is not needed, and what
/// few connections use is boxed.
pub(crate) struct Connection {
    pub id: ConnectionId,
    /// Registered in the shard's readiness set; closed when the connection is dropped.
    pub socket: TcpStream,
    pub remote: Address,
    /// When the upgrade completed, in milliseconds since the Unix epoch.
    pub connected_at_ms: u64,
    pub phase: Phase,
    /// Set when the upgrade completes; until then the connection is in no directory.
    pub user: Option<Arc<str>>,
    pub out: Outbound,
    /// Bytes of a frame that has not fully arrived (during the handshake: of the request).
    /// A boxed slice, sized to what it holds: 16 bytes in every connection, not a `Vec`'s
    /// 24, and no spare capacity to give back.
    pub partial: Box<[u8]>,
    pub assembler: Assembler,
    /// Last time any byte arrived (shard milliseconds).
    pub last_heard_ms: u32,
    /// Rate limit on incoming messages.
    pub limiter: TokenBucket,
    /// When the oldest frame queued since the last drain was published (hub clock, µs),
    /// to measure fan-out latency.
    pub oldest_queued_us: Option<Stamp>,
    /// Why the connection is ending, once known.
    pub cause: Option<CloseCause>,
    /// Listed in the shard's dirty list, awaiting the flush pass.
    pub dirty: bool,
    /// The socket has refused bytes since then (shard milliseconds): the rest goes at its
    /// next output event, and the flush pass leaves it alone.
    pub write_blocked_since_ms: Option<Stamp>,
    /// Counted under the connection caps (`admission`), from the upgrade's check until
    /// the connection is removed.
    pub admitted: bool,
    /// The peer's hang-up (or an error) was reported: the end of the stream may be
    /// waiting behind the data, with no event to come for it, so reads go on past a
    /// short read until the socket says it is empty.
    pub hung_up: bool,
    /// Negotiated permessage-deflate: it gets broadcasts' compressed frames, and may send
    /// compressed messages.
    pub deflate: bool,
    /// The question this connection waits on, and the messages held behind it. Boxed:
    /// a pointer while no question is open, which is almost always.
    pub awaiting: Option<Box<Awaiting>>,
    /// The TLS session of a connection to a listener with `tls.*`; a plain connection
    /// holds only the empty pointer.
    pub tls: Option<Box<TlsSession>>,
}

impl Connection {
    pub fn new(
        id: ConnectionId,
        socket: TcpStream,
        remote: SocketAddr,
        now_ms: u32,
        handshake_deadline: Instant,
    ) -> Self {
        Self {
            id,
            socket,
            remote: remote.into(),
            connected_at_ms: 0,
            phase: Phase::Handshake {
                deadline: handshake_deadline,
                awaiting_body: None,
            },
            user: None,
            out: Outbound::default(),
            partial: Box::default(),
            assembler: Assembler::default(),
            last_heard_ms: now_ms,
            limiter: TokenBucket::default(),
            oldest_queued_us: None,
            cause: None,
            dirty: false,
            write_blocked_since_ms: None,
            awaiting: None,
            admitted: false,
            hung_up: false,
            deflate: false,
            tls: None,
        }
    }

    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Lists this connection, at slab `key`, in `dirty` for the next flush pass, once.
    pub fn list_in(&mut self, dirty: &mut Vec<usize>, key: usize) {
        if !self.dirty {
            self.dirty = true;
            dirty.push(key);
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open)
    }

    /// Queues a frame for an open connection. `Err` means the client is a slow consumer.
    ///
    /// The bounds apply to what the socket has refused: while the socket still takes
    /// everything, one pass of the runtime may queue a burst of up to
    /// [`BURST_ALLOWANCE`] times the bounds before the flush pass writes it.
    pub fn queue(
        &mut self,
        frame: Bytes,
        published_us: u32,
        limits: &SendQueueLimits,
    ) -> Result<(), Overflow> {
        if !self.is_open() {
            return Ok(());
        }
        if self.oldest_queued_us.is_none() {
            self.oldest_queued_us = Some(Stamp::of(published_us));
        }
        if self.write_blocked_since_ms.is_some() {
            self.out.push(frame, limits)
        } else {
            self.out.push(frame, &limits.scaled(BURST_ALLOWANCE))
        }
    }

    /// Queues a positioned frame of conflated room `room` for an open connection. One
    /// that has fallen behind (its socket refused bytes) gets `conflated()` in the place
    /// of the room's newest frame still waiting, if there is one. A frame of such a room
    /// never makes a slow consumer: over the bounds it is skipped (`Skipped`), and a newer
    /// one comes with the room's next message.
    pub fn queue_conflatable(
        &mut self,
        frame: &Bytes,
        conflated: impl FnOnce() -> Bytes,
        room: u64,
        published_us: u32,
        limits: &SendQueueLimits,
    ) -> Conflation {
        if !self.is_open() {
            return Conflation::Queued;
        }
        if self.oldest_queued_us.is_none() {
            self.oldest_queued_us = Some(Stamp::of(published_us));
        }
        let behind = self.write_blocked_since_ms.is_some();
        if behind && self.out.replace_newest(room, conflated()) {
            return Conflation::Replaced;
        }
        let limits = if behind {
            *limits
        } else {
            limits.scaled(BURST_ALLOWANCE)
        };
        match self.out.push_conflatable(frame.clone(), room, &limits) {
            Ok(()) => Conflation::Queued,
            Err(Overflow) => Conflation::Skipped,
        }
    }

    /// After a write that left frames behind: over the bounds, the client is a slow
    /// consumer and is closed with 1008, and true is returned.
    pub fn close_if_slow(&mut self, limits: &SendQueueLimits, deadline: Instant) -> bool {
        if !self.is_open() || !self.out.exceeds(limits) {
            return false;
        }
        self.close_slow(deadline);
        true
    }

    /// Closes a slow consumer with 1008, dropping what it has not taken.
    pub fn close_slow(&mut self, deadline: Instant) {
        self.blame(CloseCause::SlowConsumer);
        self.begin_close(close_code::POLICY, "slow consumer", deadline, true);
    }

    /// Starts the closing handshake: queues the close frame and gives the client until
    /// `deadline` to finish. With `abort`, frames not yet started are dropped first, so
    /// the close goes out next.
    pub fn begin_close(&mut self, code: u16, reason: &str, deadline: Instant, abort: bool) {
        if !matches!(self.phase, Phase::Open) {
            return;
        }
        if abort {
            self.out.discard_unsent();
        }
        self.out.push_unbounded(encode::close_frame(code, reason));
        self.partial = Box::default();
        self.phase = Phase::Closing {
            deadline,
            fin_sent: false,
        };
    }

    /// Queues a final HTTP response (to a request that is not an upgrade) and closes after it.
    pub fn respond_and_close(&mut self, response: Bytes, deadline: Instant) {
        self.out.push_unbounded(response);
        self.phase = Phase::Closing {
            deadline,
            fin_sent: false,
        };
    }

    /// Called when the queue has drained: returns how long the oldest frame waited (µs)
    /// for latency stats. A closing connection shuts its write side, so the client sees
    /// the end of the stream right after the close frame.
    pub fn after_drain(&mut self, now_us: u32) -> Option<u32> {
        let waited = self
            .oldest_queued_us
            .take()
            .map(|t| now_us.wrapping_sub(t.get()));
        if let Phase::Closing { fin_sent, .. } = &mut self.phase {
            if !*fin_sent {
                *fin_sent = true;
                sys::shutdown(self.fd(), Shutdown::Write);
            }
        }
        waited
    }

    /// Records why the connection is ending; the first cause given is the one counted.
    pub fn blame(&mut self, cause: CloseCause) {
        self.cause.get_or_insert(cause);
    }

    /// Ends the connection now. The socket reports the hang-up to the shard's poller,
    /// whose read finds the connection dead and removes it.
    pub fn kill(&mut self) {
        self.phase = Phase::Dead;
        sys::shutdown(self.fd(), Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_fits_its_allocator_size_class() {
        let size = std::mem::size_of::<Connection>();
        assert!(size <= 224, "{size}");
    }
}
