//! Handling protocol messages from clients: rooms, chat, typing, ping.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

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
        if let Some(room) = conn.rooms.iter().find(|r| &*r.name == name) {
            let count = room.count();
            let joined = encode::json_frame(&ServerMessage::Joined { room: name, count });
            self.send_to(state, key, joined);
            return Ok(count);
        }
        let cap = self.hub.config.limits.rooms_per_connection;
        if conn.rooms.len() >= cap {
            let why = format!("Room limit reached ({cap} rooms per connection)");
            return Err(ProtocolError {
                code: ErrorCode::LimitExceeded,
                text: why.into(),
            });
        }
        let create = self.hub.config.rooms.create_on_join;
        let (room, count, _) = self
            .hub
            .registry
            .join(name, id, create)
            .map_err(|_| room_not_found())?;
        state.conns[key].rooms.push(room.clone());
        state.add_room_member(&room, key);
        let joined = encode::json_frame(&ServerMessage::Joined { room: name, count });
        self.send_to(state, key, joined);
        if self.hub.config.rooms.notify_join_leave {
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
        let Some(room) = self.take_membership(state, key, name) else {
            return Err(self.why_not_member(name));
        };
        let count = self.leave_and_notify(state, key, &room);
        let left = encode::json_frame(&ServerMessage::Left { room: name, count });
        self.send_to(state, key, left);
        Ok(count)
    }

    /// Removes `room` from the connection's own list of rooms.
    fn take_membership(&self, state: &mut ShardState, key: usize, name: &str) -> Option<Arc<Room>> {
        let rooms = &mut state.conns[key].rooms;
        let at = rooms.iter().position(|r| &*r.name == name)?;
        Some(rooms.swap_remove(at))
    }

    /// Leaves `room` in the registry and the shard's index, and sends `user_left` to the
    /// remaining members. Returns the count after.
    pub(super) fn leave_and_notify(
        &self,
        state: &mut ShardState,
        key: usize,
        room: &Arc<Room>,
    ) -> usize {
        let conn = &state.conns[key];
        let (id, user) = (
            conn.id,
            conn.user.clone().expect("open connections have a user"),
        );
        let count = self.hub.registry.leave(room, id).unwrap_or(0);
        state.remove_room_member(room.id, key);
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
        count
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
        let conn = &state.conns[key];
        match conn.rooms.iter().find(|r| &*r.name == name) {
            Some(room) => Ok((room.clone(), conn.user.clone().expect("open"))),
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
