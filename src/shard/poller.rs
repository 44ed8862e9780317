//! The shard's readiness set: one epoll instance per shard, in which every connection's
//! socket is registered once, named by its [`Token`].
//!
//! A connection has no task of its own, and no runtime object: the shard's poller task
//! waits (through the runtime, io_uring or epoll alike) until the set has news, takes a
//! batch of events, and reads or writes each connection they name in place. An idle
//! connection thus costs the kernel's epoll entry and nothing in the shard's heap besides
//! its [`Connection`](super::connection::Connection).
//!
//! Sockets are registered edge-triggered for input, output and the peer's hang-up: an
//! event says that something changed, not that something is still there. So a connection
//! whose input the shard stops reading before it is drained (it yields its turn, or waits
//! for an answer, or the shard holds back) is parked ([`super::parked`]) and read again
//! when it may; a connection whose socket refused bytes is written again at the next
//! output event.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd};
use std::rc::Rc;

use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, Event, EventData, EventFlags};
use rustix::event::Timespec;

use super::signal::yield_now;
use super::token::Token;
use super::{flusher, reader, Shard};

/// Events taken from the set at once; a full batch means more may be waiting.
const EVENTS_PER_BATCH: usize = 256;

pub(crate) struct Poller {
    /// The epoll instance, held as a monoio socket type only to wait for it: monoio
    /// offers readiness waits on its socket types alone, and an epoll descriptor polls
    /// like any socket. It is never read or written through this handle.
    set: monoio::net::UnixStream,
}

impl Poller {
    /// Makes the set; within the shard's runtime, which it registers with.
    pub fn new() -> io::Result<Poller> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        // SAFETY: the descriptor is ours and open; the handle takes it over.
        let handle = unsafe { std::os::unix::net::UnixStream::from_raw_fd(epoll.into_raw_fd()) };
        Ok(Poller {
            set: monoio::net::UnixStream::from_std(handle)?,
        })
    }

    /// Registers a connection's socket under `token`, for as long as the socket is open.
    pub fn add(&self, socket: impl AsFd, token: Token) -> io::Result<()> {
        let interest = EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP | EventFlags::ET;
        epoll::add(
            self.epoll(),
            socket,
            EventData::new_u64(token.to_bits()),
            interest,
        )?;
        Ok(())
    }

    fn epoll(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: `set` owns the descriptor and outlives the borrow.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.set.as_raw_fd()) }
    }

    /// Takes the events waiting, without blocking, into `events` (emptied first).
    fn take(&self, events: &mut Vec<Event>) -> io::Result<()> {
        events.clear();
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        epoll::wait(self.epoll(), spare_capacity(events), Some(&now))?;
        Ok(())
    }
}

/// The shard's poller task: waits for events and serves each connection they name.
pub(crate) async fn run(shard: Rc<Shard>) {
    let mut events = Vec::with_capacity(EVENTS_PER_BATCH);
    loop {
        if let Err(e) = shard.poller.take(&mut events) {
            if e.kind() != io::ErrorKind::Interrupted {
                // Nothing can be served without it; say so, and stop rather than spin.
                tracing::error!(shard = shard.index, error = %e, "cannot take readiness events");
                return;
            }
        }
        for event in &events {
            serve(&shard, event.flags, Token::from_bits(event.data.u64()));
        }
        if events.len() == EVENTS_PER_BATCH {
            // More are waiting: let the flush pass and the other tasks have a turn first.
            yield_now().await;
        } else if shard.poller.set.readable(false).await.is_err() {
            tracing::error!(shard = shard.index, "cannot wait on the readiness set");
            return;
        }
    }
}

/// Serves connection `token` after `flags` came for it: writes what waited for its
/// socket to take more, then reads what arrived (or the hang-up).
fn serve(shard: &Rc<Shard>, flags: EventFlags, token: Token) {
    let hang_up = EventFlags::RDHUP | EventFlags::HUP | EventFlags::ERR;
    let (key, write_blocked) = {
        let mut state = shard.state.borrow_mut();
        let Some(key) = state.key_of_token(token) else {
            return;
        };
        let conn = &mut state.conns[key];
        conn.hung_up |= flags.intersects(hang_up);
        (key, conn.write_blocked_since_ms.is_some())
    };
    // Output readiness comes with nearly every event (a socket is writable most of the
    // time); only a connection whose socket refused bytes has anything to do with it.
    if write_blocked && flags.intersects(EventFlags::OUT | EventFlags::ERR | EventFlags::HUP) {
        flusher::on_writable(shard, key);
    }
    if flags.intersects(EventFlags::IN | hang_up) {
        reader::on_readable(shard, token);
    }
}
