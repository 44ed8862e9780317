//! `hub.write_delay`: a connection's broadcasts wait up to the delay, so that the ones
//! arriving meanwhile leave with them in one write.
//!
//! A connection that is sent a broadcast while nothing of its own waits is due at now +
//! delay. The delay is the same for every connection, so deadlines are set in the order
//! they fall due: the shard's queue of them is first in, first out, its front is always
//! the next one, and one task per shard sleeps until it. A bit per slab key keeps a
//! connection in the queue at most once, so a connection holds nothing for the delay:
//! while it waits, the shard holds an entry of its queue.
//!
//! What waits: broadcasts (rooms, users, everyone). What does not: replies to the
//! connection's own requests (a pong among them), pings, close frames, the handshake.
//! The client, or the protocol, waits on those, and they are one frame per request, with
//! no fan-out whose writes a delay would save; they go out in the next pass and take the
//! waiting broadcasts with them. A slow consumer's close and a graceful shutdown go out
//! at once the same way, after what was queued before them.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::connection::Connection;
use super::{flusher, Shard};

/// Deadlines this close are released with the ones due now, so that the task does not
/// sleep again for a fraction of its timer's millisecond.
const SLACK: Duration = Duration::from_micros(500);

/// The connections whose broadcasts wait, in the order they fall due.
#[derive(Default)]
pub(crate) struct Delayed {
    due: VecDeque<(Instant, usize)>,
    /// One bit per slab key: set while `due` holds an entry for the key. It belongs to the
    /// key, not to the connection: a connection that takes over the slot of one that
    /// ended while waiting is written when that entry falls due, sooner than its own would.
    waiting: Vec<u64>,
}

impl Delayed {
    /// Has connection `conn`, at slab `key`, written at `at`, unless it is already
    /// listed for a pass or waiting.
    pub fn schedule(&mut self, conn: &Connection, key: usize, at: Instant) {
        let (word, bit) = (key / 64, 1 << (key % 64));
        if word >= self.waiting.len() {
            self.waiting.resize(word + 1, 0);
        }
        if !conn.dirty && self.waiting[word] & bit == 0 {
            self.waiting[word] |= bit;
            self.due.push_back((at, key));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }

    fn next(&self) -> Option<Instant> {
        self.due.front().map(|&(at, _)| at)
    }

    /// Lists in `dirty` every waiting connection due by `now` that still has frames
    /// queued (a reply may have taken them out in a pass meanwhile).
    fn release(
        &mut self,
        now: Instant,
        conns: &mut slab::Slab<Box<Connection>>,
        dirty: &mut Vec<usize>,
    ) {
        while let Some(&(at, key)) = self.due.front() {
            if at > now {
                return;
            }
            self.due.pop_front();
            self.waiting[key / 64] &= !(1 << (key % 64));
            if let Some(conn) = conns.get_mut(key).filter(|conn| !conn.out.is_empty()) {
                conn.list_in(dirty, key);
            }
        }
    }

    /// Gives back a burst's memory (the housekeeping sweep).
    pub fn shrink(&mut self) {
        let len = self.due.len();
        self.due.shrink_to(len.max(64));
        while self.waiting.last() == Some(&0) {
            self.waiting.pop();
        }
        self.waiting.shrink_to_fit();
    }
}

/// The shard's delay task: writes each waiting connection when it falls due. Without a
/// delay it ends at once.
pub(crate) async fn run(shard: Rc<Shard>) {
    if shard.hub.config.write_delay.is_zero() {
        return;
    }
    loop {
        let next = shard.state.borrow().delayed.next();
        let Some(at) = next else {
            shard.delay_queued.wait().await;
            continue;
        };
        let now = Instant::now();
        if at > now + SLACK {
            monoio::time::sleep(at - now).await;
        }
        {
            let mut state = shard.state.borrow_mut();
            let state = &mut *state;
            let now = Instant::now() + SLACK;
            state
                .delayed
                .release(now, &mut state.conns, &mut state.dirty);
        }
        flusher::flush_dirty(&shard);
    }
}
