//! The backends' operations, written once for the `Hub` handle (on any thread) and the
//! HTTP API (on the shard that took the call): whom a publication reaches, removing a
//! room, and the directory's answers. Both callers publish through [`publish`] with their
//! own [`Post`], so a room removed from a shard is forgotten there in place.

use std::sync::Arc;

use super::error::EngineError;
use super::info::RoomInfo;
use super::message::{ShardMessage, Target};
use super::publish::Post;
use super::shared::HubShared;
use crate::cluster::command::{Answer, Command};
use crate::cluster::link::Outbound;
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

/// Every connection of the cluster but `except`.
pub(crate) fn everyone(hub: &HubShared, except: Option<ConnectionId>) -> Audience {
    let elsewhere = hub
        .cluster
        .as_ref()
        .map_or(0, |c| c.view().connection_count());
    let open = hub.admission.open() + elsewhere;
    Audience {
        target: Target::All { except },
        count: if except.is_some() {
            open.saturating_sub(1)
        } else {
            open
        },
    }
}

/// The members of room `name` in the cluster but `except`.
pub(crate) fn room(
    hub: &HubShared,
    name: &str,
    except: Option<ConnectionId>,
) -> Result<Audience, EngineError> {
    let (room, count) =
        addressed_room(hub, name, except).ok_or_else(ProtocolError::room_not_found)?;
    Ok(Audience {
        target: Target::Room { room, except },
        count,
    })
}

/// Room `name` as a publication addresses it, with the members in the cluster it reaches
/// (all but `except`): this node's room, or, when only other nodes have members, a
/// stand-in with none here. `None` when no node has the room.
pub(crate) fn addressed_room(
    hub: &HubShared,
    name: &str,
    except: Option<ConnectionId>,
) -> Option<(Arc<Room>, usize)> {
    let elsewhere = hub.room_count(name, 0);
    let (room, here) = match hub.registry.room(name) {
        // Counted before publishing, under the room's lock, so a leave meanwhile cannot
        // make it wrong.
        Some(room) => {
            let here = room.recipients(except);
            (room, here)
        }
        None if elsewhere > 0 => (hub.registry.stand_in(name), 0),
        None => return None,
    };
    let skipped_elsewhere = except.is_some_and(|id| {
        hub.cluster
            .as_ref()
            .is_some_and(|c| c.is_remote_member(name, id))
    });
    Some((
        room,
        (here + elsewhere).saturating_sub(usize::from(skipped_elsewhere)),
    ))
}

/// Every connection of `user` in the cluster, this node's looked up once here so no shard
/// looks the user up again; `None` when the user has none.
pub(crate) fn user(hub: &HubShared, user: &str) -> Option<Audience> {
    let (ids, elsewhere) = hub.with_remote_connections(user, |elsewhere| {
        (hub.registry.user_connections(user), elsewhere)
    });
    let count = ids.len() + elsewhere;
    (count > 0).then(|| Audience {
        target: Target::User {
            user: user.into(),
            connections: ids.into(),
        },
        count,
    })
}

/// Removes room `name` from the cluster: here, where every shard forgets it and tells
/// its members `left`, and on every other node. Refused when no node has the room.
pub(crate) fn remove_room(
    via: &mut impl Post,
    hub: &HubShared,
    name: &str,
) -> Result<(), EngineError> {
    let elsewhere = hub.room_count(name, 0) > 0;
    if let Some(cluster) = &hub.cluster {
        let command = Command::RemoveRoom {
            room: name.to_owned(),
        };
        let _ = cluster.gather(command, Answer::done);
        if hub.config.history.is_on() {
            cluster.send(Outbound::Purge(name.into()));
        }
    }
    match remove_room_here(via, hub, name) {
        Err(_) if elsewhere => Ok(()),
        removed => removed.map(drop),
    }
}

/// Creates room `name` (persistent) in the cluster: here and on every other node. True
/// if it did not exist here.
pub(crate) fn create_room(hub: &HubShared, name: &str) -> bool {
    if let Some(cluster) = &hub.cluster {
        let command = Command::CreateRoom {
            room: name.to_owned(),
        };
        let _ = cluster.gather(command, Answer::done);
    }
    hub.registry.create_room(name)
}

/// Removes room `name` from this node: every shard forgets it and tells its members
/// `left`.
pub(crate) fn remove_room_here(
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

/// This node's connections in room `name`.
pub(crate) fn local_room_members(hub: &HubShared, name: &str) -> Vec<ConnectionId> {
    hub.registry
        .room(name)
        .map(|r| r.members())
        .unwrap_or_default()
}

/// Room `name` with its members in the whole cluster: none if it has none on any node
/// and does not exist here.
pub(crate) fn room_info(hub: &HubShared, name: &str) -> Option<RoomInfo> {
    match hub.registry.room(name) {
        Some(room) => Some(room_info_of(hub, &room)),
        None => {
            let elsewhere = hub.room_count(name, 0);
            (elsewhere > 0).then(|| RoomInfo {
                name: name.to_owned(),
                members: elsewhere,
                persistent: false,
            })
        }
    }
}

/// A room of this node, with its members in the whole cluster.
pub(crate) fn room_info_of(hub: &HubShared, room: &Arc<Room>) -> RoomInfo {
    RoomInfo {
        name: room.name.to_string(),
        members: hub.room_count(&room.name, room.count()),
        persistent: room.is_persistent(),
    }
}

/// Every room of the cluster, by name: this node's, and those with members on other
/// nodes only.
pub(crate) fn rooms(hub: &HubShared) -> Vec<RoomInfo> {
    let mut elsewhere = hub
        .cluster
        .as_ref()
        .map(|c| c.view().rooms())
        .unwrap_or_default();
    let mut rooms: Vec<RoomInfo> = hub
        .registry
        .rooms()
        .iter()
        .map(|room| {
            let remote = elsewhere.remove(&room.name).unwrap_or(0);
            RoomInfo {
                name: room.name.to_string(),
                members: room.count() + remote,
                persistent: room.is_persistent(),
            }
        })
        .collect();
    rooms.extend(elsewhere.into_iter().map(|(name, members)| RoomInfo {
        name: name.to_string(),
        members,
        persistent: false,
    }));
    rooms.sort_by(|a, b| a.name.cmp(&b.name));
    rooms
}
