//! The notices a node makes for its own clients from a change in its view of the other
//! nodes: `user_joined` and `user_left` with the cluster's count, and `presence`, as the
//! node that holds the connection makes them for its clients.

use std::sync::Arc;

use super::view::{Change, View};
use crate::config::PresenceScope;
use crate::protocol::{unix_time, PresenceStatus, ServerMessage};
use crate::room::Room;
use crate::shard::message::Target;
use crate::shard::publish::{notify, WithoutWaiting};
use crate::shard::shared::HubShared;

/// Tells this node's clients what `changes` (just applied to `view`) mean for them.
pub(crate) fn tell(hub: &HubShared, view: &View, changes: Vec<Change>) {
    for change in changes {
        match change {
            Change::Joined { room, user } => room_notice(hub, view, &room, &user, true),
            Change::Left { room, user } => room_notice(hub, view, &room, &user, false),
            Change::Online { user, rooms } => presence(hub, &user, PresenceStatus::Online, &rooms),
            Change::Offline { user, rooms } => {
                presence(hub, &user, PresenceStatus::Offline, &rooms)
            }
        }
    }
}

fn room_notice(hub: &HubShared, view: &View, name: &str, user: &str, joined: bool) {
    if !hub.config.rooms.notify_join_leave {
        return;
    }
    let Some(room) = hub.registry.room(name) else {
        return;
    };
    let here = room.count();
    if here == 0 {
        return;
    }
    let count = here + view.room_count(name);
    let frame = if joined {
        hub.encode(&ServerMessage::UserJoined {
            room: name,
            user_id: user,
            count,
        })
    } else {
        hub.encode(&ServerMessage::UserLeft {
            room: name,
            user_id: user,
            count,
        })
    };
    let target = Target::Room { room, except: None };
    let _ = notify(&mut WithoutWaiting(hub), hub, target, frame);
}

fn presence(hub: &HubShared, user: &str, status: PresenceStatus, rooms: &[Arc<str>]) {
    let target = match hub.config.presence {
        PresenceScope::Off => return,
        PresenceScope::All => Target::All { except: None },
        PresenceScope::Rooms => {
            let here: Vec<Arc<Room>> = rooms.iter().filter_map(|r| hub.registry.room(r)).collect();
            if here.is_empty() {
                return;
            }
            Target::Rooms {
                rooms: here.into(),
                except: None,
            }
        }
    };
    let frame = hub.encode(&ServerMessage::Presence {
        user_id: user,
        status,
        time: unix_time(),
    });
    let _ = notify(&mut WithoutWaiting(hub), hub, target, frame);
}
