//! The backends' operations, written once for the `Hub` handle (on any thread) and the
//! HTTP API (on the shard that took the call): whom a publication reaches, removing a
//! room, and the directory's answers. Both callers publish through [`publish`] with their
//! own [`Post`], so a room removed from a shard is forgotten there in place.

use std::sync::Arc;

use super::error::EngineError;
use super::message::{ShardMessage, Target};
use super::publish::Post;
use super::shared::HubShared;
use crate::ids::ConnectionId;
use crate::protocol::ProtocolError;
use crate::room::Room;

#[cfg(doc)]
use super::publish::publish;

/// A publication's target and how many connections it reaches.
pub(crate) struct Audience {
    pub target: Target,
    pub count: usize,
}

/// Every connection but `except`.
pub(crate) fn everyone(hub: &HubShared, except: Option<ConnectionId>) -> Audience {
    let open = hub.admission.open();
    Audience {
        target: Target::All { except },
        count: if except.is_some() {
            open.saturating_sub(1)
        } else {
            open
        },
    }
}

/// The members of room `name` but `except`.
pub(crate) fn room(
    hub: &HubShared,
    name: &str,
    except: Option<ConnectionId>,
) -> Result<Audience, EngineError> {
    let room = hub
        .registry
        .room(name)
        .ok_or_else(ProtocolError::room_not_found)?;
    // Counted before publishing, under the room's lock, so a leave meanwhile cannot
    // make it wrong.
    let count = room.recipients(except);
    Ok(Audience {
        target: Target::Room { room, except },
        count,
    })
}

/// Every connection of `user`, looked up once here so no shard looks the user up again;
/// `None` when the user has none.
pub(crate) fn user(hub: &HubShared, user: &str) -> Option<Audience> {
    let ids = hub.registry.user_connections(user);
    let count = ids.len();
    (count > 0).then(|| Audience {
        target: Target::Connections(ids.into()),
        count,
    })
}

/// Removes room `name`; every shard forgets it and tells its members `left`.
pub(crate) fn remove_room(
    via: &mut impl Post,
    hub: &HubShared,
    name: &str,
) -> Result<Arc<Room>, EngineError> {
    let (room, _) = hub
        .registry
        .remove_room(name)
        .ok_or_else(ProtocolError::room_not_found)?;
    for shard in 0..hub.config.shards {
        // A shard that cannot be told now learns it from the directory: its members'
        // messages to the room find no room.
        let _ = via.post(shard, ShardMessage::RoomRemoved(room.clone()));
    }
    Ok(room)
}

/// The connections in room `name`, sorted.
pub(crate) fn room_members(hub: &HubShared, name: &str) -> Option<(Arc<Room>, Vec<ConnectionId>)> {
    let room = hub.registry.room(name)?;
    let mut members = room.members();
    members.sort();
    Some((room, members))
}

/// The open connections of `user`, sorted.
pub(crate) fn user_connections(hub: &HubShared, user: &str) -> Vec<ConnectionId> {
    let mut ids = hub.registry.user_connections(user);
    ids.sort();
    ids
}
