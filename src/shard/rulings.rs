//! Carrying out the answer to a question, then the messages its connection held behind
//! it, in the order they came. An answer that is late (its question got its default at
//! the deadline) or whose connection is gone changes nothing.

use std::collections::VecDeque;
use std::time::Instant;

use super::awaiting::{Asked, Held};
use super::context::Ctx;
use super::dispatch::{on_binary, on_text, publish_chat};
use super::fanout::{send_error, send_to};
use super::join::join_room;
use crate::hooks::ruling::Ruling;
use crate::ids::ConnectionId;
use crate::protocol::ErrorCode;
use crate::stats::CloseCause;

/// The answer `ruling` to question `question` of connection `conn` has come.
pub(crate) fn on_answer(cx: &mut Ctx, conn: ConnectionId, question: u64, ruling: Ruling) {
    let Some(key) = cx.state.key_of(conn) else {
        return;
    };
    let open = cx.state.conns[key]
        .awaiting
        .as_ref()
        .is_some_and(|a| a.question == question);
    if open {
        settle(cx, key, Some(ruling));
    }
}

/// Gives every question whose deadline has passed by `now` its default answer.
pub(crate) fn expire(cx: &mut Ctx, now: Instant) {
    while let Some((&(deadline, question), &key)) = cx.state.deadlines.first_key_value() {
        if deadline > now {
            return;
        }
        cx.state.deadlines.pop_first();
        let due = cx.state.conns.get(key).and_then(|c| c.awaiting.as_ref());
        if due.is_some_and(|a| a.question == question) {
            if let Some(events) = &cx.hub().events {
                events.count_timed_out();
            }
            settle(cx, key, None);
        }
    }
}

/// Closes the question of connection `key` with `ruling` (`None`: its default), carries
/// it out, and goes on with the held messages.
fn settle(cx: &mut Ctx, key: usize, ruling: Option<Ruling>) {
    let awaiting = *cx.state.conns[key]
        .awaiting
        .take()
        .expect("an open question");
    cx.state
        .deadlines
        .remove(&(awaiting.deadline, awaiting.question));
    let ruling = ruling.unwrap_or_else(|| awaiting.asked.default_ruling());
    if cx.state.conns[key].is_open() {
        carry_out(cx, key, awaiting.asked, ruling);
    }
    resume(cx, key, awaiting.held, awaiting.input_ended);
    cx.shard.wake_answered();
}

fn carry_out(cx: &mut Ctx, key: usize, asked: Asked, ruling: Ruling) {
    let outcome = match (asked, ruling) {
        (_, Ruling::Refuse(why)) => {
            send_error(cx, key, ErrorCode::Forbidden, &why);
            Ok(())
        }
        (_, Ruling::Send(frame)) => {
            send_to(cx, key, frame);
            Ok(())
        }
        (Asked::Join { room, recover }, _) => join_room(cx, key, &room, recover).map(drop),
        (
            Asked::Publish {
                room,
                message,
                data,
            },
            ruling,
        ) => {
            let data = match ruling {
                Ruling::AllowWithData(replaced) => Some(replaced),
                _ => data,
            };
            publish_chat(cx, key, &room, message.as_deref(), data.as_deref())
        }
        (Asked::Custom | Asked::Rpc { .. }, _) => Ok(()),
    };
    if let Err(e) = outcome {
        send_error(cx, key, e.code, &e.text);
    }
}

/// Handles the messages held behind a settled question, in order, until one of them
/// raises a new question: the rest then wait behind that one.
fn resume(cx: &mut Ctx, key: usize, mut held: VecDeque<Held>, input_ended: bool) {
    while let Some(message) = held.pop_front() {
        if !cx.state.conns[key].is_open() {
            break;
        }
        match message {
            Held::Text(mut text) => on_text(cx, key, &mut text),
            Held::Binary(mut data) => on_binary(cx, key, &mut data),
            Held::Close(code) => {
                cx.close_connection(key, code, "", false, CloseCause::ClientClosed);
            }
        }
        if let Some(next) = cx.state.conns[key].awaiting.as_mut() {
            next.hold_first(held, input_ended);
            return;
        }
    }
    if input_ended {
        // The client's end of the stream came after these messages: the connection
        // ends now that they are handled.
        cx.state.conns[key].kill();
    }
}
