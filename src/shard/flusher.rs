//! The flush pass: every connection with queued frames gets one vectored write.
//!
//! Deliveries only queue frames and list the connection as dirty. The flusher runs after
//! the tasks that were ready in the same pass of the runtime, so all frames queued for a
//! socket in that pass leave together: under load, many frames per system call. A socket
//! that cannot take everything is written again when the shard's poller reports it
//! writable.

use std::rc::Rc;
use std::time::Instant;

use super::connection::{Connection, Phase};
use super::stamp::Stamp;
use super::Shard;
use crate::stats::{self, CloseCause};

/// The shard's flusher task.
pub(crate) async fn run(shard: Rc<Shard>) {
    loop {
        shard.flush.wait().await;
        flush_dirty(&shard);
    }
}

/// What writing one connection's queue came to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flushed {
    /// Everything queued is with the kernel.
    Drained,
    /// The socket is full; the rest waits for it to be writable.
    Blocked,
    /// The socket failed; the connection is dead.
    Failed,
}

/// One pass of writes: its clock, read once, and what it wrote, counted once at its end.
struct Pass {
    now_us: u32,
    calls: u64,
    bytes: u64,
    slow: u64,
    /// Fan-out latencies not yet in the histogram.
    waits: Option<Waits>,
}

/// Connections in a row of a pass whose oldest frame waited the same: the recipients of
/// one broadcast, drained in one pass, each waited as long, and go into the histogram at
/// once.
struct Waits {
    micros: u64,
    connections: u64,
}

impl Pass {
    fn begin(shard: &Shard) -> Pass {
        Pass {
            now_us: shard.hub.now_us(),
            calls: 0,
            bytes: 0,
            slow: 0,
            waits: None,
        }
    }

    /// Counts one drained connection whose oldest frame waited `micros`.
    fn note_wait(&mut self, shard: &Shard, micros: u64) {
        match &mut self.waits {
            Some(waits) if waits.micros == micros => waits.connections += 1,
            _ => {
                self.record_waits(shard);
                self.waits = Some(Waits {
                    micros,
                    connections: 1,
                });
            }
        }
    }

    fn record_waits(&mut self, shard: &Shard) {
        if let Some(waits) = self.waits.take() {
            shard
                .latency
                .borrow_mut()
                .saturating_record_n(waits.micros, waits.connections);
        }
    }
}

pub(crate) fn flush_dirty(shard: &Rc<Shard>) {
    let mut state = shard.state.borrow_mut();
    let mut dirty = std::mem::take(&mut state.dirty);
    let mut pass = Pass::begin(shard);
    for key in dirty.drain(..) {
        let Some(conn) = state.conns.get_mut(key) else {
            continue;
        };
        conn.dirty = false;
        if conn.write_blocked_since_ms.is_some() || matches!(conn.phase, Phase::Dead) {
            continue;
        }
        if write_queued(shard, conn, &mut pass) == Flushed::Blocked {
            conn.write_blocked_since_ms = Some(Stamp::of(shard.now_ms()));
        }
    }
    // Keep the list's allocation for the next pass.
    state.dirty = dirty;
    drop(state);
    count(shard, pass);
}

/// The one write path: hands the kernel what `conn` has queued, in vectored calls (on a
/// TLS connection, sealed into records first), and settles the outcome. Drained: the
/// fan-out latency is recorded (and a closing connection's write side shut, after its
/// TLS session's `close_notify`). Blocked: a client over its queue's bounds is closed
/// as a slow consumer. Failed: the connection is killed.
fn write_queued(shard: &Shard, conn: &mut Connection, pass: &mut Pass) -> Flushed {
    let fd = conn.fd();
    let written = match &mut conn.tls {
        None => conn.out.write_to(fd),
        Some(tls) => {
            let closing = matches!(conn.phase, Phase::Closing { .. });
            tls.write(&mut conn.out, fd, closing)
        }
    };
    let Ok(written) = written else {
        conn.blame(CloseCause::IoError);
        conn.kill();
        return Flushed::Failed;
    };
    pass.calls += written.calls;
    pass.bytes += written.bytes;
    if written.drained {
        if let Some(waited) = conn.after_drain(pass.now_us) {
            pass.note_wait(shard, u64::from(waited.max(1)));
        }
        return Flushed::Drained;
    }
    let deadline = Instant::now() + shard.hub.config.write_timeout;
    pass.slow += u64::from(conn.close_if_slow(&shard.hub.config.send_queue, deadline));
    Flushed::Blocked
}

fn count(shard: &Shard, mut pass: Pass) {
    pass.record_waits(shard);
    let counters = shard.counters();
    if pass.calls > 0 {
        stats::add(&counters.write_calls, pass.calls);
        stats::add(&counters.bytes_out, pass.bytes);
    }
    if pass.slow > 0 {
        stats::add(&counters.slow_consumers, pass.slow);
    }
    if pass.bytes > 0 {
        shard.note_activity();
    }
}

/// The socket of connection `key` reported it can take more: if it had refused bytes,
/// what waits is written, and the flush pass takes the connection back once all is.
pub(crate) fn on_writable(shard: &Shard, key: usize) {
    write_alone(shard, key, |conn| conn.write_blocked_since_ms.is_some());
}

/// Writes what connection `key` has queued now, as far as its socket takes it: its input
/// has ended and it is about to go, before the next flush pass.
pub(crate) fn write_last(shard: &Shard, key: usize) {
    write_alone(shard, key, |conn| {
        conn.write_blocked_since_ms.is_none() && !conn.out.is_empty()
    });
}

/// Writes connection `key`'s queue outside a flush pass, if `wanted` says so of a
/// connection that is not dead; a write that drains it ends its wait for the socket.
fn write_alone(shard: &Shard, key: usize, wanted: impl FnOnce(&Connection) -> bool) {
    let mut state = shard.state.borrow_mut();
    let conn = &mut state.conns[key];
    if matches!(conn.phase, Phase::Dead) || !wanted(conn) {
        return;
    }
    let mut pass = Pass::begin(shard);
    if write_queued(shard, conn, &mut pass) == Flushed::Drained {
        conn.write_blocked_since_ms = None;
    }
    drop(state);
    count(shard, pass);
}
