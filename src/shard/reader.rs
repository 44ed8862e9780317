//! Reading a connection: when its socket has input, read it into the shard's buffer and
//! handle it.
//!
//! The connection holds no buffer of its own. When the socket is readable the shard
//! reads into its buffer, decodes every whole frame in place and handles it; only the
//! bytes of an unfinished frame are copied into the connection (`partial`), sized for
//! that frame. A TLS connection's bytes are first decrypted into the shard's plaintext
//! buffer, and handled from there the same way.
//!
//! The poller calls [`on_readable`] when an event names the connection; a connection not
//! read to the end is parked, and the [`resume`] task reads it again when it may.

use std::io;
use std::rc::Rc;

use indexmap::IndexSet;

use super::connection::Phase;
use super::context::Ctx;
use super::signal::yield_now;
use super::tls::Failed;
use super::token::Token;
use super::{flusher, frames, handshake, lifecycle, sys, Shard};
use crate::stats::{self, CloseCause};
use crate::ws::close_code;

/// Reads one connection may do before letting the shard's other connections have theirs.
const READS_PER_TURN: usize = 4;

/// What the connection needs next.
enum Next {
    /// Nothing until the socket says it has more.
    WaitReadable,
    /// More may be waiting, but let others go first.
    Yield,
    /// Wait until the shard stops holding back messages for other shards.
    Paused,
    /// Wait for the answer to the connection's question: it holds all it may, or its
    /// input has ended behind it.
    AwaitAnswer,
    /// The connection is over.
    Finish,
}

/// Reads connection `token` (an event named it, or it was parked); removes it if it is
/// over, and parks it if it must wait. Here alone is a connection removed.
pub(crate) fn on_readable(shard: &Rc<Shard>, token: Token) {
    let key = token.key();
    match read_available(shard, key) {
        Next::WaitReadable => {}
        Next::Yield => {
            shard.parked.borrow_mut().read_again(token);
            shard.resumed.notify();
        }
        Next::Paused => shard.parked.borrow_mut().pause(token),
        Next::AwaitAnswer => shard.parked.borrow_mut().await_answer(token),
        Next::Finish => lifecycle::finish(shard, key),
    }
}

/// The readers' resume task: reads the parked connections listed to be read again.
pub(crate) async fn resume(shard: Rc<Shard>) {
    let mut spare = IndexSet::new();
    loop {
        shard.resumed.wait().await;
        let again = shard.parked.borrow_mut().take_again(spare);
        for &token in &again {
            if shard.state.borrow().key_of_token(token).is_some() {
                on_readable(&shard, token);
            }
        }
        spare = again;
        spare.clear();
        // Those that yielded again wait for the others' turn.
        yield_now().await;
    }
}

fn read_available(shard: &Rc<Shard>, key: usize) -> Next {
    let mut buf = shard.read_buf.borrow_mut();
    for _ in 0..READS_PER_TURN {
        let (fd, tls, hung_up) = {
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
                _ => (conn.fd(), conn.tls.is_some(), conn.hung_up),
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
                if n < buf.len() && !hung_up {
                    // Short read: the socket is drained; the next event will say when
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

/// The client's input has ended. What its last messages were answered with (a close
/// frame, say) is written before the connection goes.
fn end_of_input(shard: &Rc<Shard>, key: usize) -> Next {
    let mut state = shard.state.borrow_mut();
    let Some(awaiting) = state.conns[key].awaiting.as_mut() else {
        drop(state);
        flusher::write_last(shard, key);
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
            let fd = conn.fd();
            let tls = conn.tls.as_mut()?;
            if matches!(conn.phase, Phase::Dead) {
                return Some(Next::Finish);
            }
            let decrypted = tls.decrypt(&mut received, &mut plain);
            if let Err(Failed(why)) = &decrypted {
                tracing::debug!(conn = %conn.id, error = %why, "TLS failed; dropping the connection");
                tls.send_alert(fd);
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
