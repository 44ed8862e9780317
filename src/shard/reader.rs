//! A connection's task: wait for input, read it into the shard's buffer, handle it.
//!
//! The task holds no buffer of its own. When the socket is readable it reads into the
//! shard's buffer, decodes every whole frame in place and handles it; only the bytes of
//! an unfinished frame are copied into the connection (`partial`), sized for that frame.

use std::io;
use std::rc::Rc;
use std::time::Instant;

use monoio::net::TcpStream;

use super::connection::Phase;
use super::context::Ctx;
use super::dispatch::{on_text, send_error};
use super::ratelimit::Verdict;
use super::signal::yield_now;
use super::{handshake, lifecycle, sys, Shard};
use crate::protocol::{ErrorCode, ServerMessage};
use crate::stats::{self, CloseCause};
use crate::ws::assemble::Message;
use crate::ws::decode::{decode_frame, Decoded, FrameHeader};
use crate::ws::{close_code, encode, CloseReason};

/// Reads one connection may do before letting the shard's other tasks run.
const READS_PER_TURN: usize = 4;

/// The answer to a message over the rate: a flooding client gets many, so it is encoded
/// once.
static RATE_LIMITED: std::sync::LazyLock<bytes::Bytes> = std::sync::LazyLock::new(|| {
    encode::json_frame(&ServerMessage::Error {
        code: ErrorCode::RateLimited,
        error: "Rate limit exceeded",
    })
});

/// What the connection's task should do next.
enum Next {
    /// Wait until the socket is readable.
    WaitReadable,
    /// More may be waiting, but let others run first.
    Yield,
    /// Wait until the shard stops holding back messages for other shards.
    Paused,
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
            Next::Finish => break,
        }
    }
    lifecycle::finish(&shard, key);
}

/// While closing, the client's data is dropped; its close frame, the reply to ours,
/// completes the closing handshake and the connection ends at once.
fn close_on_reply(conn: &mut super::connection::Connection, data: &mut [u8]) {
    let mut pos = 0;
    while let Ok(Decoded::Frame(header)) = decode_frame(&mut data[pos..], usize::MAX >> 1) {
        if header.opcode == fastwebsockets::OpCode::Close {
            conn.kill();
            return;
        }
        pos += header.frame_len();
    }
}

fn read_available(shard: &Rc<Shard>, key: usize) -> Next {
    let mut buf = shard.read_buf.borrow_mut();
    for _ in 0..READS_PER_TURN {
        let fd = {
            let state = shard.state.borrow();
            let conn = &state.conns[key];
            match conn.phase {
                Phase::Dead => return Next::Finish,
                Phase::Open if state.is_holding_back() => return Next::Paused,
                _ => conn.fd,
            }
        };
        match sys::recv(fd, &mut buf) {
            Ok(0) => return Next::Finish,
            Ok(n) => {
                shard.note_activity();
                stats::add(&shard.counters().bytes_in, n as u64);
                on_bytes_contained(shard, key, &mut buf[..n]);
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
    conn.last_heard = Instant::now();
    match conn.phase {
        Phase::Handshake { .. } => handshake::on_handshake_bytes(cx, key, data),
        Phase::Open => on_frame_bytes(cx, key, data),
        Phase::Closing { .. } => close_on_reply(&mut cx.state.conns[key], data),
        // An HTTP caller has nothing more to say while its answer is on the way.
        Phase::Answering { .. } | Phase::Dead => {}
    }
}

/// Handles frame bytes, joining them to a saved partial frame if there is one.
pub(super) fn on_frame_bytes(cx: &mut Ctx, key: usize, data: &mut [u8]) {
    let saved = std::mem::take(&mut cx.state.conns[key].partial);
    if saved.is_empty() {
        let used = decode_frames(cx, key, data);
        let rest = &data[used..];
        let conn = &mut cx.state.conns[key];
        if !rest.is_empty() && conn.is_open() {
            // Sized to what arrived, not to what the header announces: memory grows
            // only as fast as a client actually sends.
            conn.partial = rest.to_vec();
        }
    } else {
        let mut joined = saved;
        joined.extend_from_slice(data);
        let used = decode_frames(cx, key, &mut joined);
        joined.drain(..used);
        let conn = &mut cx.state.conns[key];
        if !joined.is_empty() && conn.is_open() {
            conn.partial = joined;
        }
    }
}

/// Decodes and handles the whole frames at the front of `buf`; returns the bytes
/// used. Once the connection stops being open, the rest is dropped as used.
fn decode_frames(cx: &mut Ctx, key: usize, buf: &mut [u8]) -> usize {
    let max = cx.config().max_message_size;
    let mut pos = 0;
    while cx.state.conns[key].is_open() {
        match decode_frame(&mut buf[pos..], max) {
            Ok(Decoded::Frame(header)) => {
                let payload = pos + header.header_len..pos + header.frame_len();
                pos += header.frame_len();
                on_frame(cx, key, header, &mut buf[payload]);
            }
            Ok(Decoded::Incomplete { .. }) => return pos,
            Err(reason) => {
                let cause = CloseCause::of_code(reason.code);
                cx.close_connection(key, reason.code, reason.reason, true, cause);
                break;
            }
        }
    }
    buf.len()
}

fn on_frame(cx: &mut Ctx, key: usize, header: FrameHeader, payload: &mut [u8]) {
    let max = cx.config().max_message_size;
    let message = cx.state.conns[key].assembler.push(header, payload, max);
    match message {
        Ok(None) | Ok(Some(Message::Pong)) => {}
        Ok(Some(Message::Ping(data))) => cx.send_to(key, encode::pong_frame(data)),
        Ok(Some(Message::Close(code))) => {
            // Echo the client's code, after anything already queued.
            let code = code.unwrap_or(close_code::NORMAL);
            cx.close_connection(key, code, "", false, CloseCause::ClientClosed);
        }
        Ok(Some(message @ (Message::Text(_) | Message::Binary))) => {
            stats::add(&cx.counters().messages_in, 1);
            let limits = &cx.config().limits;
            match cx.state.conns[key].limiter.take(limits, cx.shard.now_ms()) {
                Verdict::Allow => {}
                Verdict::Refuse => return cx.send_to(key, RATE_LIMITED.clone()),
                Verdict::Abuse => {
                    let why = "rate limit exceeded";
                    let (code, cause) = (close_code::POLICY, CloseCause::RateLimited);
                    return cx.close_connection(key, code, why, true, cause);
                }
            }
            match message {
                Message::Text(mut text) => on_text(cx, key, text.as_mut_slice()),
                _ => send_error(
                    cx,
                    key,
                    ErrorCode::Unsupported,
                    "Binary messages are not supported",
                ),
            }
        }
        Err(CloseReason { code, reason }) => {
            cx.close_connection(key, code, reason, true, CloseCause::of_code(code))
        }
    }
}
