//! The flush pass: every connection with queued frames gets one vectored write.
//!
//! Deliveries only queue frames and list the connection as dirty. The flusher runs after
//! the tasks that were ready in the same pass of the runtime, so all frames queued for a
//! socket in that pass leave together: under load, many frames per system call. A socket
//! that cannot take everything gets a task of its own that waits until it is writable.

use std::rc::Rc;
use std::time::Instant;

use monoio::net::TcpStream;

use super::connection::Phase;
use super::Shard;
use crate::stats::{self, CloseCause};

/// The shard's flusher task.
pub(crate) async fn run(shard: Rc<Shard>) {
    loop {
        shard.flush.wait().await;
        shard.flush_dirty();
    }
}

impl Shard {
    fn flush_dirty(self: &Rc<Self>) {
        let mut state = self.state.borrow_mut();
        let mut dirty = std::mem::take(&mut state.dirty);
        let (mut calls, mut bytes, mut slow) = (0, 0, 0);
        let limits = self.hub.config.send_queue;
        let now_us = self.hub.now_us();
        let mut latency = self.latency.borrow_mut();
        let close_deadline = Instant::now() + self.hub.config.write_timeout;
        for key in dirty.drain(..) {
            let Some(conn) = state.conns.get_mut(key) else {
                continue;
            };
            conn.dirty = false;
            if conn.write_blocked_since.is_some() || matches!(conn.phase, Phase::Dead) {
                continue;
            }
            match conn.out.write_to(conn.fd) {
                Ok(written) => {
                    calls += written.calls;
                    bytes += written.bytes;
                    if written.drained {
                        if let Some(waited) = conn.after_drain(now_us) {
                            latency.saturating_record(u64::from(waited.max(1)));
                        }
                    } else {
                        slow += u64::from(conn.close_if_slow(&limits, close_deadline));
                        conn.write_blocked_since = Some(Instant::now());
                        let task = write_when_ready(self.clone(), key, conn.stream.clone());
                        monoio::spawn(task);
                    }
                }
                Err(_) => {
                    conn.blame(CloseCause::IoError);
                    conn.kill();
                }
            }
        }
        // Keep the list's allocation for the next pass.
        state.dirty = dirty;
        drop(state);
        drop(latency);
        self.count_writes(calls, bytes);
        if slow > 0 {
            stats::add(&self.counters().slow_consumers, slow);
        }
    }

    fn count_writes(&self, calls: u64, bytes: u64) {
        if calls > 0 {
            let counters = self.counters();
            stats::add(&counters.write_calls, calls);
            stats::add(&counters.bytes_out, bytes);
        }
        if bytes > 0 {
            self.note_activity();
        }
    }
}

/// Waits until a full socket can take more, then writes, until its queue is empty.
async fn write_when_ready(shard: Rc<Shard>, key: usize, stream: Rc<TcpStream>) {
    loop {
        let ready = stream.writable(false).await;
        let mut state = shard.state.borrow_mut();
        let Some(conn) = state.conns.get_mut(key) else {
            return;
        };
        // The slab slot may have been reused by a newer connection after this one ended.
        if !Rc::ptr_eq(&conn.stream, &stream) || matches!(conn.phase, Phase::Dead) {
            return;
        }
        if ready.is_err() {
            conn.blame(CloseCause::IoError);
            conn.kill();
            return;
        }
        match conn.out.write_to(conn.fd) {
            Ok(written) => {
                let done = written.drained;
                if done {
                    conn.write_blocked_since = None;
                    if let Some(waited) = conn.after_drain(shard.hub.now_us()) {
                        let waited = u64::from(waited.max(1));
                        shard.latency.borrow_mut().saturating_record(waited);
                    }
                } else {
                    let limits = shard.hub.config.send_queue;
                    let deadline = Instant::now() + shard.hub.config.write_timeout;
                    if conn.close_if_slow(&limits, deadline) {
                        stats::add(&shard.counters().slow_consumers, 1);
                    }
                }
                drop(state);
                shard.count_writes(written.calls, written.bytes);
                if done {
                    return;
                }
            }
            Err(_) => {
                conn.blame(CloseCause::IoError);
                conn.kill();
                return;
            }
        }
    }
}
