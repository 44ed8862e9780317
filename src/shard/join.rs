//! Joining and leaving rooms: `joined` and `left` to the connection, `user_joined` and
//! `user_left` to the others, and, with history on, where the join falls in the room's
//! stream and what a recovering client missed (see [`super::sequence`]).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::context::Ctx;
use super::fanout::send_error;
use super::fanout::send_to;
use super::home::ask_home;
use super::membership::{JoinRefused, Joined};
use super::message::HomeRequest;
use super::message::{HeldJoin, Target};
use super::streams::JoinPoint;
use crate::cluster::link::LocalEvent;
use crate::hooks::HubEvent;
use crate::protocol::{ErrorCode, ProtocolError, Recover, ServerMessage};
use crate::room::Room;
use crate::stats::RecoveryOutcome;
use crate::ws::encode;

/// Joins `key` to room `name`; tells the joiner (`joined`, and with `recover` what it
/// missed) and the others (`user_joined`). Returns the room's count after.
pub(crate) fn join_room(
    cx: &mut Ctx,
    key: usize,
    name: &str,
    recover: Option<Recover>,
) -> Result<usize, ProtocolError> {
    let conn = &cx.state.conns[key];
    let (id, user) = (
        conn.id,
        conn.user.clone().expect("open connections have a user"),
    );
    let config = cx.config();
    let history = &config.history;
    // Away from the room's home the join waits for the home to place it in the stream;
    // in a cluster the home of every room's stream is the bridge.
    let in_cluster = cx.hub().cluster.is_some();
    let hold = history.is_on()
        && (in_cluster || crate::room::home_shard(name, config.shards) != cx.shard.index);
    let joined = cx.state.membership.join(
        &cx.hub().registry,
        key,
        id,
        name,
        config.rooms.create_on_join,
        config.limits.rooms_per_connection,
        hold,
    );
    let Joined {
        room,
        count: here,
        new,
        held,
    } = joined.map_err(|refused| match refused {
        JoinRefused::AtCap(cap) => ProtocolError {
            code: ErrorCode::LimitExceeded,
            text: format!("Room limit reached ({cap} rooms per connection)").into(),
        },
        JoinRefused::NoSuchRoom => ProtocolError::room_not_found(),
    })?;
    if new && cx.state.opening != Some(key) {
        cx.hub().announce(|| LocalEvent::Joined {
            conn: id,
            user: user.clone(),
            room: room.name.clone(),
        });
    }
    if new {
        cx.tell(|| HubEvent::Joined {
            conn: id,
            user: user.clone(),
            room: room.name.clone(),
        });
    }
    let count = cx.hub().room_count(name, here);
    let is_held = held.is_some();
    if !new {
        // Already a member, and receiving the room live: nothing to place or replay.
        let recovered = recover.as_ref().map(|_| false);
        send_joined(cx, key, &room, count, recovered, None);
    } else if let Some(ticket) = held {
        let join = HeldJoin {
            conn: id,
            key,
            ticket,
            count,
        };
        let ask = HomeRequest::PlaceJoin {
            room: room.clone(),
            join,
            recover,
        };
        let hub = cx.hub();
        if ask_home(cx, hub, ask).is_err() {
            // Nobody would answer the held join: it does not take effect, and the others
            // have not been told of it yet.
            undo_held_join(cx, &room, join, false);
            return Err(ProtocolError::new(
                ErrorCode::Unavailable,
                "The hub is too busy to join now",
            ));
        }
    } else if history.is_on() {
        let point = cx
            .state
            .streams
            .place_join(&room, Instant::now(), history, recover.as_ref());
        answer_join(cx, key, &room, count, point);
    } else {
        if recover.is_some() {
            cx.counters().count_recovery(RecoveryOutcome::HistoryOff);
        }
        let recovered = recover.as_ref().map(|_| false);
        send_joined(cx, key, &room, count, recovered, None);
    }
    // A held join is told to the others once it is placed: told now, a member that
    // answered the notice at once could reach the room before the joiner is in it.
    if new && !is_held {
        notify_joined(cx, key, room, count);
    }
    Ok(count)
}

/// Sends `user_joined` to the room's other members, if the hub tells of joins.
fn notify_joined(cx: &mut Ctx, key: usize, room: Arc<Room>, count: usize) {
    if !cx.config().rooms.notify_join_leave {
        return;
    }
    let conn = &cx.state.conns[key];
    let (id, user) = (
        conn.id,
        conn.user.clone().expect("open connections have a user"),
    );
    let notice = cx.hub().encode(&ServerMessage::UserJoined {
        room: &room.name,
        user_id: &user,
        count,
    });
    let except = Some(id);
    cx.notify(Target::Room { room, except }, notice);
}

/// The home shard has placed the held join `join` in the stream of `room`: the joiner
/// gets `joined` and what it missed, then the room live. A join its connection has left
/// meanwhile (or made again) is dropped.
pub(super) fn join_placed(cx: &mut Ctx, room: Arc<Room>, join: HeldJoin, point: JoinPoint) {
    let here = cx.state.key_of(join.conn) == Some(join.key) && cx.state.conns[join.key].is_open();
    if !here || !cx.state.membership.release(join.key, &room, join.ticket) {
        return;
    }
    answer_join(cx, join.key, &room, join.count, point);
    notify_joined(cx, join.key, room, join.count);
}

/// The held join `join` could not be placed: the joiner leaves `room` again (the others
/// never heard it joined), and it gets `error`.
pub(super) fn join_refused(cx: &mut Ctx, room: Arc<Room>, join: HeldJoin, error: ProtocolError) {
    if undo_held_join(cx, &room, join, false) {
        send_error(cx, join.key, error.code, &error.text);
    }
}

/// Takes the held join `join` back: the joiner leaves `room` (the other members here
/// hear of it if `tell_others`), and the other nodes hear it left. False if the join had
/// gone already (its connection left or closed).
fn undo_held_join(cx: &mut Ctx, room: &Arc<Room>, join: HeldJoin, tell_others: bool) -> bool {
    let here = cx.state.key_of(join.conn) == Some(join.key) && cx.state.conns[join.key].is_open();
    if !here || !cx.state.membership.release(join.key, room, join.ticket) {
        return false;
    }
    let key = join.key;
    let registry = &cx.hub().registry;
    if let Some((room, here)) = cx
        .state
        .membership
        .leave(registry, key, join.conn, &room.name)
    {
        cx.hub().announce(|| LocalEvent::Left {
            conn: join.conn,
            room: room.name.clone(),
        });
        tell_left(cx, key, &room);
        if tell_others {
            notify_left(cx, key, &room, here);
        }
    }
    true
}

/// Sends `joined` at `point` of the stream, then, if the join recovers, every missed
/// frame in order; counts the recovery's outcome.
fn answer_join(cx: &mut Ctx, key: usize, room: &Room, count: usize, point: JoinPoint) {
    let JoinPoint {
        epoch,
        top,
        recovery,
    } = point;
    let (recovered, replay) = match recovery {
        None => (None, Vec::new()),
        Some(Ok(frames)) => {
            cx.counters().count_recovery(RecoveryOutcome::Recovered);
            (Some(true), frames)
        }
        Some(Err(failure)) => {
            cx.counters().count_recovery(failure.into());
            (Some(false), Vec::new())
        }
    };
    send_joined(cx, key, room, count, recovered, Some((&epoch, top)));
    for frame in replay {
        send_to(cx, key, frame);
    }
}

/// Sends `joined`; with history on, at the stream's `(epoch, top)`.
fn send_joined(
    cx: &mut Ctx,
    key: usize,
    room: &Room,
    count: usize,
    recovered: Option<bool>,
    position: Option<(&str, u64)>,
) {
    let answer: Bytes = encode::json_frame(&ServerMessage::Joined {
        room: &room.name,
        count,
        recovered,
        epoch: position.map(|(epoch, _)| epoch),
        offset: position.map(|(_, top)| top),
    });
    send_to(cx, key, answer);
}

/// Takes `key` out of room `name`; tells the leaver (`left`) and the rest
/// (`user_left`). Returns the room's count after.
pub(crate) fn leave_room(cx: &mut Ctx, key: usize, name: &str) -> Result<usize, ProtocolError> {
    let id = cx.state.conns[key].id;
    let Some((room, here)) = cx.state.membership.leave(&cx.hub().registry, key, id, name) else {
        return Err(why_not_member(cx, name));
    };
    cx.hub().announce(|| LocalEvent::Left {
        conn: id,
        room: room.name.clone(),
    });
    tell_left(cx, key, &room);
    notify_left(cx, key, &room, here);
    let count = cx.hub().room_count(name, here);
    let left = encode::json_frame(&ServerMessage::Left { room: name, count });
    send_to(cx, key, left);
    Ok(count)
}

/// Sends `user_left` to the members on this node that remain in `room` after connection
/// `key` left it, `here` of them, with the count of the cluster.
pub(crate) fn notify_left(cx: &mut Ctx, key: usize, room: &Arc<Room>, here: usize) {
    let conn = &cx.state.conns[key];
    let (id, user) = (
        conn.id,
        conn.user.clone().expect("open connections have a user"),
    );
    if cx.config().rooms.notify_join_leave && here > 0 && !cx.shard.is_stopping() {
        let count = cx.hub().room_count(&room.name, here);
        let notice = cx.hub().encode(&ServerMessage::UserLeft {
            room: &room.name,
            user_id: &user,
            count,
        });
        let target = Target::Room {
            room: room.clone(),
            except: Some(id),
        };
        cx.notify(target, notice);
    }
}

/// Tells the application that connection `key` left `room`.
pub(crate) fn tell_left(cx: &Ctx, key: usize, room: &Room) {
    let conn = &cx.state.conns[key];
    let (id, user) = (
        conn.id,
        conn.user.clone().expect("open connections have a user"),
    );
    cx.tell(|| HubEvent::Left {
        conn: id,
        user,
        room: room.name.clone(),
    });
}

/// Why connection of this shard is not in room `name`: it is not a member, or there is
/// no such room.
pub(super) fn why_not_member(cx: &Ctx, name: &str) -> ProtocolError {
    if cx.hub().registry.room(name).is_some() {
        ProtocolError::new(ErrorCode::NotInRoom, "Not in room")
    } else {
        ProtocolError::room_not_found()
    }
}
