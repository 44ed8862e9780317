//! A snapshot of this node's connections, with their users and rooms, from the
//! directory, for a node that asks (see [`super::wire::Snapshot`]).
//!
//! It is read while shards go on opening and joining. Every change a shard makes is in
//! the directory before its event reaches the bridge, so the snapshot holds at least
//! what the events numbered up to its `seq` say; an event numbered after it that the
//! snapshot holds already changes nothing when applied again (see [`super::view`]).
//!
//! It comes in pages of [`PAGE`] connections. The asker takes the first page's `seq` for
//! the whole: whatever changed while it read the later pages was numbered after it, and
//! is applied again.

use std::collections::HashMap;
use std::sync::Arc;

use super::wire::{Snapshot, SnapshotConnection};
use crate::ids::ConnectionId;
use crate::shard::shared::HubShared;

/// Connections per page: a page of them stays well under NATS's 1 MB messages.
pub(crate) const PAGE: usize = 2000;

/// This node's connections at event `seq` after `after` (by id), a page of them.
pub(crate) fn take(hub: &HubShared, seq: u64, after: Option<u64>) -> Snapshot {
    let cluster = hub.cluster.as_ref().expect("a cluster's node");
    let mut rooms: HashMap<ConnectionId, Vec<Arc<str>>> = HashMap::new();
    for room in hub.registry.rooms() {
        for member in room.members() {
            rooms.entry(member).or_default().push(room.name.clone());
        }
    }
    let mut all: Vec<(Arc<str>, ConnectionId)> = hub
        .registry
        .users()
        .into_iter()
        .flat_map(|(user, ids)| ids.into_iter().map(move |id| (user.clone(), id)))
        .filter(|(_, id)| after.is_none_or(|after| id.to_bits() > after))
        .collect();
    all.sort_unstable_by_key(|(_, id)| id.to_bits());
    let more = all.len() > PAGE;
    all.truncate(PAGE);
    let conns = all
        .into_iter()
        .map(|(user, id)| SnapshotConnection {
            conn: id.to_bits(),
            user,
            rooms: rooms.remove(&id).unwrap_or_default(),
        })
        .collect();
    Snapshot {
        node: cluster.tag,
        inc: cluster.incarnation,
        name: cluster.name.clone(),
        seq,
        conns,
        more,
    }
}
