//! A connection's task: wait for input, read it into the shard's buffer, handle it.
//!
//! The task holds no buffer of its own. When the socket is readable it reads into the
//! shard's buffer, decodes every whole frame in place and handles it; only the bytes of
//! an unfinished frame are copied into the connection (`partial`), sized for that frame.
//! A TLS connection's bytes are first decrypted into the shard's plaintext buffer, and
//! handled from there the same way.

use std::io;
use std::rc::Rc;

use monoio::net::TcpStream;

use super::connection::Phase;
use super::context::Ctx;
use super::signal::yield_now;
use super::tls::Failed;
use super::{frames, handshake, lifecycle, sys, Shard};
use crate::stats::{self, CloseCause};
use crate::ws::close_code;

/// Reads one connection may do before letting the shard's other tasks run.
const READS_PER_TURN: usize = 4;
/// How often a connection waiting on an answer looks whether it was closed meanwhile.
const ANSWER_RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// What the connection's task should do next.
enum Next {
    /// Wait until the socket is readable.
    WaitReadable,
    /// More may be waiting, but let others run first.
    Yield,
    /// Wait until the shard stops holding back messages for other shards.
    Paused,
    /// Wait for the answer to the connection's question: it holds all it may, or its
    /// input has ended behind it.
    AwaitAnswer,
    /// The connection is over.
    Finish,
}

/// The task of the connection at slab `key`. It alone removes the connection.
pub(crate) async fn serve(shard: Rc<Shard>, key: usize, stream: Rc<TcpStream>) {
    loop {
        match read_available(&shard, key) {
            Next::WaitReadable => {
                if stream.readable(false).await.is_err() {
                    break;
                }
            }
            Next::Yield => yield_now().await,
            Next::Paused => shard.paused_readers.wait().await,
            // Also woken by time: a connection killed meanwhile is removed promptly.
            // The timer is boxed: monoio's is several cache lines, aligned to 128 bytes,
            // and held in place it would size every connection's task (this future) for
            // a wait that few connections ever make.
            Next::AwaitAnswer => monoio::select! {
                _ = shard.answered.wait() => {},
                _ = Box::pin(monoio::time::sleep(ANSWER_RECHECK)) => {},
            },
            Next::Finish => break,
        }
    }
    lifecycle::finish(&shard, key);
}

fn read_available(shard: &Rc<Shard>, key: usize) -> Next {
    let mut buf = shard.read_buf.borrow_mut();
    for _ in 0..READS_PER_TURN {
        let (fd, tls) = {
            let state = shard.state.borrow();
            let conn = &state.conns[key];
            match conn.phase {
                Phase::Dead => return Next::Finish,
                // Nothing is read until the backend has said who the client is.
                Phase::Connecting { .. } => return Next::AwaitAnswer,
                Phase::Open if state.is_holding_back() => return Next::Paused,
                _ if conn
                    .awaiting
                    .as_ref()
                    .is_some_and(|a| a.input_ended || a.is_full()) =>
                {
                    return Next::AwaitAnswer
                }
                _ => (conn.fd, conn.tls.is_some()),
            }
        };
        match sys::recv(fd, &mut buf) {
            Ok(0) => return end_of_input(shard, key),
            Ok(n) => {
                shard.note_activity();
                stats::add(&shard.counters().bytes_in, n as u64);
                if !tls {
                    on_bytes_contained(shard, key, &mut buf[..n]);
                } else if let Some(next) = on_tls_bytes(shard, key, &buf[..n]) {
                    return next;
                }
                if n < buf.len() {
                    // Short read: the socket is drained; readiness will say when
                    // there is more, without a read that fails.
                    return Next::WaitReadable;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::WaitReadable,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Next::Finish,
        }
    }
    Next::Yield
}

/// The client's input has ended.
fn end_of_input(shard: &Shard, key: usize) -> Next {
    let mut state = shard.state.borrow_mut();
    let Some(awaiting) = state.conns[key].awaiting.as_mut() else {
        return Next::Finish;
    };
    // What the client sent before it ended is still carried out.
    awaiting.input_ended = true;
    Next::AwaitAnswer
}

/// What a TLS connection's socket gave: decrypted into the shard's plaintext buffer and
/// handled as a plain connection's bytes are. Records the session must answer (its
/// handshake) go out with the next flush pass. `Some` when the connection's input is
/// over.
fn on_tls_bytes(shard: &Rc<Shard>, key: usize, mut received: &[u8]) -> Option<Next> {
    let mut plain = shard.plain_buf.borrow_mut();
    loop {
        let decrypted = {
            let mut state = shard.state.borrow_mut();
            let state = &mut *state;
            let conn = &mut state.conns[key];
            let tls = conn.tls.as_mut()?;
            if matches!(conn.phase, Phase::Dead) {
                return Some(Next::Finish);
            }
            let decrypted = tls.decrypt(&mut received, &mut plain);
            if let Err(Failed(why)) = &decrypted {
                tracing::debug!(conn = %conn.id, error = %why, "TLS failed; dropping the connection");
                tls.send_alert(conn.fd);
                conn.blame(CloseCause::Protocol);
                conn.kill();
                return Some(Next::Finish);
            }
            if tls.wants_write() {
                conn.list_in(&mut state.dirty, key);
                shard.flush.notify();
            }
            decrypted.ok()?
        };
        if decrypted.len > 0 {
            on_bytes_contained(shard, key, &mut plain[..decrypted.len]);
        }
        if decrypted.ended {
            return Some(end_of_input(shard, key));
        }
        if !decrypted.more {
            return None;
        }
    }
}

/// Handles what arrived, containing any panic to this connection: a bug triggered by
/// one client's input is logged, that client is closed with 1011, and the shard and
/// every other connection carry on.
fn on_bytes_contained(shard: &Rc<Shard>, key: usize, data: &mut [u8]) {
    let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Ctx::with(shard, |cx| on_bytes(cx, key, data));
    }));
    if let Err(panic) = handled {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Ctx::with(shard, |cx| {
            let conn = &mut cx.state.conns[key];
            tracing::error!(conn = %conn.id, panic = %what, "bug while handling a message; closing the connection with 1011");
            if conn.is_open() {
                let code = close_code::INTERNAL;
                let cause = CloseCause::Internal;
                cx.close_connection(key, code, "internal error", true, cause);
            } else {
                conn.kill();
            }
        });
    }
}

fn on_bytes(cx: &mut Ctx, key: usize, data: &mut [u8]) {
    let conn = &mut cx.state.conns[key];
    conn.last_heard_ms = cx.shard.now_ms();
    match conn.phase {
        Phase::Handshake { .. } => handshake::on_handshake_bytes(cx, key, data),
        Phase::Open => frames::on_frame_bytes(cx, key, data),
        Phase::Closing { .. } => frames::close_on_reply(&mut cx.state.conns[key], data),
        // An HTTP caller has nothing more to say while its answer is on the way.
        Phase::Answering { .. } | Phase::Connecting { .. } | Phase::Dead => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout<A, B, C, F>(_: fn(A, B, C) -> F) -> std::alloc::Layout {
        std::alloc::Layout::new::<F>()
    }

    /// Every connection's task holds this future: nothing large or over-aligned (a
    /// timer, say) may live in it across an await.
    #[test]
    fn the_task_future_stays_small() {
        let future = layout(serve);
        assert!(future.align() <= 16, "{future:?}");
        assert!(future.size() <= 256, "{future:?}");
    }
}
