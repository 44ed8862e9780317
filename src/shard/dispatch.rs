//! Handling protocol messages from clients: rooms, chat, typing, ping.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::membership::{JoinRefused, Joined};
use super::message::Target;
use super::state::ShardState;
use super::Shard;
use crate::protocol::{
    parse_client_message, unix_time, ClientMessage, ErrorCode, ProtocolError, ServerMessage,
};
use crate::room::Room;
use crate::ws::encode;

/// The `pong` answer never changes, so it is encoded once.
static PONG: Bytes = Bytes::from_static(b"\x81\x0f{\"type\":\"pong\"}");

impl Shard {
    pub(super) fn on_text(&self, state: &mut ShardState, key: usize, text: &mut [u8]) {
        if self.hub.config.fault_injection && text == br#"{"type":"__panic__"}"# {
            panic!("fault injected by a test");
        }
        let outcome = match parse_client_message(text) {
            Ok(ClientMessage::JoinRoom { room }) => self.join_room(state, key, &room).map(drop),
            Ok(ClientMessage::LeaveRoom { room }) => self.leave_room(state, key, &room).map(drop),
            Ok(ClientMessage::Message {
                room,
                message,
                data,
            }) => self.chat(state, key, &room, message.as_deref(), data),
            Ok(ClientMessage::Typing { room, typing }) => self.typing(state, key, &room, typing),
            Ok(ClientMessage::Ping) => {
                self.send_to(state, key, PONG.clone());
                Ok(())
            }
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            self.send_error(state, key, e.code, &e.text);
        }
    }

    /// Joins `key` to room `name`; tells the joiner (`joined`) and the others
    /// (`user_joined`). Returns the room's count after.
    pub(super) fn join_room(
        &self,
        state: &mut ShardState,
        key: usize,
        name: &str,
    ) -> Result<usize, ProtocolError> {
        let conn = &state.conns[key];
        let (id, user) = (
            conn.id,
            conn.user.clone().expect("open connections have a user"),
        );
        let config = &self.hub.config;
        let joined = state.membership.join(
            &self.hub.registry,
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
        self.send_to(state, key, answer);
        if new && config.rooms.notify_join_leave {
            let notice = self.hub.encode(&ServerMessage::UserJoined {
                room: name,
                user_id: &user,
                count,
            });
            self.publish(
                state,
                Target::Room {
                    room,
                    except: Some(id),
                },
                notice,
            );
        }
        Ok(count)
    }

    /// Takes `key` out of room `name`; tells the leaver (`left`) and the rest
    /// (`user_left`). Returns the room's count after.
    pub(super) fn leave_room(
        &self,
        state: &mut ShardState,
        key: usize,
        name: &str,
    ) -> Result<usize, ProtocolError> {
        let id = state.conns[key].id;
        let Some((room, count)) = state.membership.leave(&self.hub.registry, key, id, name) else {
            return Err(self.why_not_member(name));
        };
        self.notify_left(state, key, &room, count);
        let left = encode::json_frame(&ServerMessage::Left { room: name, count });
        self.send_to(state, key, left);
        Ok(count)
    }

    /// Sends `user_left` to the members that remain in `room` after connection `key` left
    /// it, `count` of them.
    pub(super) fn notify_left(
        &self,
        state: &mut ShardState,
        key: usize,
        room: &Arc<Room>,
        count: usize,
    ) {
        let conn = &state.conns[key];
        let (id, user) = (
            conn.id,
            conn.user.clone().expect("open connections have a user"),
        );
        if self.hub.config.rooms.notify_join_leave && count > 0 && !self.is_stopping() {
            let notice = self.hub.encode(&ServerMessage::UserLeft {
                room: &room.name,
                user_id: &user,
                count,
            });
            let target = Target::Room {
                room: room.clone(),
                except: Some(id),
            };
            self.publish(state, target, notice);
        }
    }

    fn chat(
        &self,
        state: &mut ShardState,
        key: usize,
        name: &str,
        message: Option<&str>,
        data: Option<&RawValue>,
    ) -> Result<(), ProtocolError> {
        let (room, user) = self.membership(state, key, name)?;
        let frame = self.hub.encode(&ServerMessage::ChatMessage {
            room: name,
            user_id: &user,
            message,
            data,
            time: unix_time(),
        });
        self.publish(state, Target::Room { room, except: None }, frame);
        Ok(())
    }

    fn typing(
        &self,
        state: &mut ShardState,
        key: usize,
        name: &str,
        typing: bool,
    ) -> Result<(), ProtocolError> {
        let (room, user) = self.membership(state, key, name)?;
        let frame = self.hub.encode(&ServerMessage::Typing {
            room: name,
            user_id: &user,
            typing,
        });
        let except = Some(state.conns[key].id);
        self.publish(state, Target::Room { room, except }, frame);
        Ok(())
    }

    /// The room `name` of connection `key`, with the connection's user, or why not.
    fn membership(
        &self,
        state: &ShardState,
        key: usize,
        name: &str,
    ) -> Result<(Arc<Room>, Arc<str>), ProtocolError> {
        match state.membership.room_of(key, name) {
            Some(room) => Ok((room.clone(), state.conns[key].user.clone().expect("open"))),
            None => Err(self.why_not_member(name)),
        }
    }

    fn why_not_member(&self, name: &str) -> ProtocolError {
        if self.hub.registry.room(name).is_some() {
            ProtocolError::new(ErrorCode::NotInRoom, "Not in room")
        } else {
            room_not_found()
        }
    }

    pub(super) fn send_error(
        &self,
        state: &mut ShardState,
        key: usize,
        code: ErrorCode,
        text: &str,
    ) {
        let frame = encode::json_frame(&ServerMessage::Error { code, error: text });
        self.send_to(state, key, frame);
    }
}

fn room_not_found() -> ProtocolError {
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
