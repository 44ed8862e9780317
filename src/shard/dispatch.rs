//! Handling protocol messages from clients: chat, typing, ping, and rooms (see [`join`]).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::context::Ctx;
use super::fanout::{send_error, send_to};
use super::join::{join_room, leave_room, why_not_member};
use super::message::Target;
use super::positioned::Positioned;
use super::sequence::publish_to_room;
use crate::protocol::{parse_client_message, ClientMessage, ProtocolError, ServerMessage};
use crate::room::Room;

/// The `pong` answer never changes, so it is encoded once.
static PONG: Bytes = Bytes::from_static(b"\x81\x0f{\"type\":\"pong\"}");

/// Handles one text message of connection `key`.
pub(super) fn on_text(cx: &mut Ctx, key: usize, text: &mut [u8]) {
    if cx.config().fault_injection && text == br#"{"type":"__panic__"}"# {
        panic!("fault injected by a test");
    }
    let outcome = match parse_client_message(text) {
        Ok(ClientMessage::JoinRoom { room, recover }) => {
            join_room(cx, key, &room, recover).map(drop)
        }
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

fn chat(
    cx: &mut Ctx,
    key: usize,
    name: &str,
    message: Option<&str>,
    data: Option<&RawValue>,
) -> Result<(), ProtocolError> {
    let (room, user) = membership(cx, key, name)?;
    let message = Positioned::chat(user, message, data);
    let hub = cx.hub();
    // Posting from a shard never fails: a full inbox holds the message back.
    let _ = publish_to_room(cx, hub, room, message, None);
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

/// Tells connection `key` what was wrong with its message; the connection stays.

#[cfg(doc)]
use super::join;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::encode;

    #[test]
    fn the_fixed_pong_frame_is_the_encoded_pong() {
        assert_eq!(PONG, encode::json_frame(&ServerMessage::Pong));
    }
}
