//! Handling protocol messages from clients: chat, typing, ping, and rooms (see [`join`]);
//! the application's own types, and joins and chat that wait for a decision (see
//! [`super::ask`]); in raw mode, every message straight to the application.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::ask::{
    ask_custom, ask_join, ask_publish, ask_rpc, is_custom_type, joins_are_decided,
    publishes_are_decided, rpc_goes_to_backend,
};
use super::context::Ctx;
use super::fanout::{send_error, send_to};
use super::join::{join_room, leave_room, why_not_member};
use super::message::Target;
use super::positioned::Positioned;
use super::sequence::publish_to_room;
use crate::hooks::HubEvent;
use crate::protocol::{
    parse_client_message, parse_rpc, unknown_type, ClientMessage, ErrorCode, ProtocolError,
    ServerMessage,
};
use crate::room::Room;

/// The `pong` answer never changes, so it is encoded once.
static PONG: Bytes = Bytes::from_static(b"\x81\x0f{\"type\":\"pong\"}");

/// Handles one text message of connection `key`.
pub(super) fn on_text(cx: &mut Ctx, key: usize, text: &mut [u8]) {
    if cx.config().fault_injection && text == br#"{"type":"__panic__"}"# {
        panic!("fault injected by a test");
    }
    if cx.is_raw() {
        let conn = &cx.state.conns[key];
        let (conn, user) = (conn.id, conn.user.clone().expect("open"));
        let text = String::from_utf8_lossy(text).into_owned();
        return cx.tell(|| HubEvent::Text { conn, user, text });
    }
    let outcome = match parse_client_message(text) {
        Ok(ClientMessage::JoinRoom { room, recover }) if joins_are_decided(cx) => {
            ask_join(cx, key, &room, recover);
            Ok(())
        }
        Ok(ClientMessage::JoinRoom { room, recover }) => {
            join_room(cx, key, &room, recover).map(drop)
        }
        Ok(ClientMessage::LeaveRoom { room }) => leave_room(cx, key, &room).map(drop),
        Ok(ClientMessage::Message {
            room,
            message,
            data,
        }) if publishes_are_decided(cx) => membership(cx, key, &room).map(|_| {
            ask_publish(cx, key, &room, message.as_deref(), data);
        }),
        Ok(ClientMessage::Message {
            room,
            message,
            data,
        }) => publish_chat(cx, key, &room, message.as_deref(), data),
        Ok(ClientMessage::Typing { room, typing }) => self::typing(cx, key, &room, typing),
        Ok(ClientMessage::Ping) => {
            send_to(cx, key, PONG.clone());
            Ok(())
        }
        Ok(ClientMessage::Custom { kind }) if kind == "rpc" && rpc_goes_to_backend(cx) => {
            parse_rpc(text).map(|rpc| ask_rpc(cx, key, rpc))
        }
        Ok(ClientMessage::Custom { kind }) if is_custom_type(cx, &kind) => {
            ask_custom(cx, key, &kind, text);
            Ok(())
        }
        Ok(ClientMessage::Custom { .. }) => Err(unknown_type()),
        Err(e) => Err(e),
    };
    if let Err(e) = outcome {
        send_error(cx, key, e.code, &e.text);
    }
}

/// Handles one binary message of connection `key`: the application's in raw mode,
/// reserved otherwise.
pub(super) fn on_binary(cx: &mut Ctx, key: usize, data: &mut [u8]) {
    if cx.is_raw() {
        let conn = &cx.state.conns[key];
        let (conn, user) = (conn.id, conn.user.clone().expect("open"));
        let data = Bytes::copy_from_slice(data);
        return cx.tell(|| HubEvent::Binary { conn, user, data });
    }
    let why = "Binary messages are not supported";
    send_error(cx, key, ErrorCode::Unsupported, why);
}

/// Publishes connection `key`'s chat message to room `name`, and tells the application.
pub(super) fn publish_chat(
    cx: &mut Ctx,
    key: usize,
    name: &str,
    message: Option<&str>,
    data: Option<&RawValue>,
) -> Result<(), ProtocolError> {
    let (room, user) = membership(cx, key, name)?;
    let conn = cx.state.conns[key].id;
    cx.tell(|| HubEvent::Published {
        conn,
        user: user.clone(),
        room: room.name.clone(),
        message: message.map(str::to_owned),
        data: data.map(|d| d.get().to_owned()),
    });
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
