//! The frames of an open connection: decoded in place from the shard's buffer, joined
//! into messages, and handled (control frames here, text messages by the dispatch), with
//! the rate limit applied per message. Only an unfinished frame is kept, in the
//! connection, sized to what has arrived.

use super::awaiting::Held;
use super::connection::Connection;
use super::context::Ctx;
use super::dispatch::{on_binary, on_text};
use super::fanout::send_to;
use super::ratelimit::Verdict;
use crate::protocol::{ErrorCode, ServerMessage};
use crate::stats::{self, CloseCause};
use crate::ws::assemble::{Message, Payload};
use crate::ws::decode::{decode_frame_with, Decoded, FrameHeader};
use crate::ws::{close_code, encode, CloseReason};

/// The answer to a message over the rate: a flooding client gets many, so it is encoded
/// once.
static RATE_LIMITED: std::sync::LazyLock<bytes::Bytes> = std::sync::LazyLock::new(|| {
    encode::json_frame(&ServerMessage::Error {
        code: ErrorCode::RateLimited,
        error: "Rate limit exceeded",
    })
});

/// While closing, the client's data is dropped; its close frame, the reply to ours,
/// completes the closing handshake and the connection ends at once.
pub(super) fn close_on_reply(conn: &mut Connection, data: &mut [u8]) {
    let mut pos = 0;
    let deflate = conn.deflate;
    while let Ok(Decoded::Frame(header)) =
        decode_frame_with(&mut data[pos..], usize::MAX >> 1, deflate)
    {
        if header.opcode == fastwebsockets::OpCode::Close {
            conn.kill();
            return;
        }
        pos += header.frame_len();
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
            conn.partial = rest.into();
        }
    } else {
        let mut joined = saved.into_vec();
        joined.extend_from_slice(data);
        let used = decode_frames(cx, key, &mut joined);
        joined.drain(..used);
        let conn = &mut cx.state.conns[key];
        if !joined.is_empty() && conn.is_open() {
            conn.partial = joined.into_boxed_slice();
        }
    }
}

/// Decodes and handles the whole frames at the front of `buf`; returns the bytes
/// used. Once the connection stops being open, the rest is dropped as used.
fn decode_frames(cx: &mut Ctx, key: usize, buf: &mut [u8]) -> usize {
    let max = cx.config().max_message_size;
    let mut pos = 0;
    let deflate = cx.state.conns[key].deflate;
    while cx.state.conns[key].is_open() {
        match decode_frame_with(&mut buf[pos..], max, deflate) {
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
    let state = &mut *cx.state;
    let conn = &mut state.conns[key];
    // One inflater per shard serves every connection: no message keeps a context.
    let inflater = match conn.deflate {
        true => Some(&mut **state.inflater.get_or_insert_with(Box::default)),
        false => None,
    };
    let message = conn.assembler.push_with(header, payload, max, inflater);
    match message {
        Ok(None) | Ok(Some(Message::Pong)) => {}
        Ok(Some(Message::Ping(data))) => send_to(cx, key, encode::pong_frame(data)),
        Ok(Some(Message::Close(code))) => {
            // Echo the client's code, after anything already queued, and after what
            // waits on a question.
            let code = code.unwrap_or(close_code::NORMAL);
            if let Some(awaiting) = cx.state.conns[key].awaiting.as_mut() {
                return awaiting.hold(Held::Close(code));
            }
            cx.close_connection(key, code, "", false, CloseCause::ClientClosed);
        }
        Ok(Some(Message::Text(payload))) => on_message(cx, key, payload, false),
        Ok(Some(Message::Binary(payload))) => on_message(cx, key, payload, true),
        Err(CloseReason { code, reason }) => {
            cx.close_connection(key, code, reason, true, CloseCause::of_code(code))
        }
    }
}

/// A whole text or `binary` message: counted, rate-limited, then handled, or held if
/// the connection waits on a question.
fn on_message(cx: &mut Ctx, key: usize, mut payload: Payload, binary: bool) {
    stats::add(&cx.counters().messages_in, 1);
    let limits = &cx.config().limits;
    match cx.state.conns[key].limiter.take(limits, cx.shard.now_ms()) {
        Verdict::Allow => {}
        // In raw mode the hub says nothing of its own: the message is dropped.
        Verdict::Refuse if cx.is_raw() => return,
        Verdict::Refuse => return send_to(cx, key, RATE_LIMITED.clone()),
        Verdict::Abuse => {
            let why = "rate limit exceeded";
            let (code, cause) = (close_code::POLICY, CloseCause::RateLimited);
            return cx.close_connection(key, code, why, true, cause);
        }
    }
    let bytes = payload.as_mut_slice();
    if let Some(awaiting) = cx.state.conns[key].awaiting.as_mut() {
        let held = bytes.to_vec();
        return awaiting.hold(if binary {
            Held::Binary(held)
        } else {
            Held::Text(held)
        });
    }
    if binary {
        on_binary(cx, key, bytes);
    } else {
        on_text(cx, key, bytes);
    }
}
