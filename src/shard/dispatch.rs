//! Handling protocol messages from clients: rooms, chat, typing, ping.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::context::Ctx;
use super::fanout::send_to;
use super::membership::{JoinRefused, Joined};
use super::message::Target;
use crate::protocol::{
    parse_client_message, unix_time, ClientMessage, ErrorCode, ProtocolError, ServerMessage,
};
use crate::room::Room;
use crate::ws::encode;

/// The `pong` answer never changes, so it is encoded once.
static PONG: Bytes = Bytes::from_static(b"\x81\x0f{\"type\":\"pong\"}");

/// Handles one text message of connection `key`.
pub(super) fn on_text(cx: &mut Ctx, key: usize, text: &mut [u8]) {
    if cx.config().fault_injection && text == br#"{"type":"__panic__"}"# {
        panic!("fault injected by a test");
    }
    let outcome = match parse_client_message(text) {
        Ok(ClientMessage::JoinRoom { room }) => join_room(cx, key, &room).map(drop),
        Ok(ClientMessage::LeaveRoom { room }) => leave_room(cx, key, &room).map(drop),
        Ok(ClientMessage::Message {
            room,
            message,
            data,
        }) => chat(cx, key, &room, message.as_deref(), data),
        Ok(ClientMessage::Typing { room, typing }) => self::typing(cx, key, &room, typing),
        Ok(ClientMessage::Ping) => {
            send_to(cx, key, PONG.clone());
            Ok(())
        }
        Err(e) => Err(e),
    };
    if let Err(e) = outcome {
        send_error(cx, key, e.code, &e.text);
    }
}

/// Joins `key` to room `name`; tells the joiner (`joined`) and the others
/// (`user_joined`). Returns the room's count after.
pub(super) fn join_room(cx: &mut Ctx, key: usize, name: &str) -> Result<usize, ProtocolError> {
    let conn = &cx.state.conns[key];
    let (id, user) = (
        conn.id,
        conn.user.clone().expect("open connections have a user"),
    );
    let config = cx.config();
    let joined = cx.state.membership.join(
        &cx.hub().registry,
        key,
        id,
        name,
        config.rooms.create_on_join,
        config.limits.rooms_per_connection,
    );
    let Joined { room, count, new } = joined.map_err(|refused| match refused {
        JoinRefused::AtCap(cap) => ProtocolError {
            code: ErrorCode::LimitExceeded,
            text: format!("Room limit reached ({cap} rooms per connection)").into(),
        },
        JoinRefused::NoSuchRoom => room_not_found(),
    })?;
    let answer = encode::json_frame(&ServerMessage::Joined { room: name, count });
    send_to(cx, key, answer);
    if new && config.rooms.notify_join_leave {
        let notice = cx.hub().encode(&ServerMessage::UserJoined {
            room: name,
            user_id: &user,
            count,
        });
        let except = Some(id);
        cx.publish(Target::Room { room, except }, notice);
    }
    Ok(count)
}

/// Takes `key` out of room `name`; tells the leaver (`left`) and the rest
/// (`user_left`). Returns the room's count after.
pub(super) fn leave_room(cx: &mut Ctx, key: usize, name: &str) -> Result<usize, ProtocolError> {
    let id = cx.state.conns[key].id;
    let Some((room, count)) = cx.state.membership.leave(&cx.hub().registry, key, id, name) else {
        return Err(why_not_member(cx, name));
    };
    notify_left(cx, key, &room, count);
    let left = encode::json_frame(&ServerMessage::Left { room: name, count });
    send_to(cx, key, left);
    Ok(count)
}

/// Sends `user_left` to the members that remain in `room` after connection `key` left
/// it, `count` of them.
pub(super) fn notify_left(cx: &mut Ctx, key: usize, room: &Arc<Room>, count: usize) {
    let conn = &cx.state.conns[key];
    let (id, user) = (
        conn.id,
        conn.user.clone().expect("open connections have a user"),
    );
    if cx.config().rooms.notify_join_leave && count > 0 && !cx.shard.is_stopping() {
        let notice = cx.hub().encode(&ServerMessage::UserLeft {
            room: &room.name,
            user_id: &user,
            count,
        });
        let target = Target::Room {
            room: room.clone(),
            except: Some(id),
        };
        cx.publish(target, notice);
    }
}

fn chat(
    cx: &mut Ctx,
    key: usize,
    name: &str,
    message: Option<&str>,
    data: Option<&RawValue>,
) -> Result<(), ProtocolError> {
    let (room, user) = membership(cx, key, name)?;
    let frame = cx.hub().encode(&ServerMessage::ChatMessage {
        room: name,
        user_id: &user,
        message,
        data,
        time: unix_time(),
    });
    cx.publish(Target::Room { room, except: None }, frame);
    Ok(())
}

fn typing(cx: &mut Ctx, key: usize, name: &str, typing: bool) -> Result<(), ProtocolError> {
    let (room, user) = membership(cx, key, name)?;
    let frame = cx.hub().encode(&ServerMessage::Typing {
        room: name,
        user_id: &user,
        typing,
    });
    let except = Some(cx.state.conns[key].id);
    cx.publish(Target::Room { room, except }, frame);
    Ok(())
}

/// The room `name` of connection `key`, with the connection's user, or why not.
fn membership(cx: &Ctx, key: usize, name: &str) -> Result<(Arc<Room>, Arc<str>), ProtocolError> {
    match cx.state.membership.room_of(key, name) {
        Some(room) => Ok((
            room.clone(),
            cx.state.conns[key].user.clone().expect("open"),
        )),
        None => Err(why_not_member(cx, name)),
    }
}

fn why_not_member(cx: &Ctx, name: &str) -> ProtocolError {
    if cx.hub().registry.room(name).is_some() {
        ProtocolError::new(ErrorCode::NotInRoom, "Not in room")
    } else {
        room_not_found()
    }
}

/// Tells connection `key` what was wrong with its message; the connection stays.
pub(super) fn send_error(cx: &mut Ctx, key: usize, code: ErrorCode, text: &str) {
    let frame = encode::json_frame(&ServerMessage::Error { code, error: text });
    send_to(cx, key, frame);
}

pub(super) fn room_not_found() -> ProtocolError {
    ProtocolError::new(ErrorCode::RoomNotFound, "Room not found")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_pong_frame_is_the_encoded_pong() {
        assert_eq!(PONG, encode::json_frame(&ServerMessage::Pong));
    }
}
