//! The hub-wide directory: rooms by name, and users with their connections.
//!
//! Shards consult it when a connection opens or closes and when membership changes, never
//! per message: a shard keeps its own index of local members for fan-out (see
//! `shard::state`). DashMap shards its locks, so the two shards rarely meet on one.
//! Details of a connection stay with the shard that owns it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use smallvec::SmallVec;

use crate::ids::ConnectionId;
use crate::room::{JoinOutcome, Room};
use crate::room_pattern::RoomPatterns;

/// The room did not exist and was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RoomNotFound;

/// The user already has as many connections as allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AtCap;

#[derive(Debug)]
pub(crate) struct Registry {
    rooms: DashMap<Arc<str>, Arc<Room>>,
    users: DashMap<Arc<str>, SmallVec<[ConnectionId; 2]>>,
    next_room_id: AtomicU64,
    shards: usize,
    conflate: RoomPatterns,
}

impl Registry {
    /// A directory for `shards` shards, whose rooms named by `conflate` are conflated.
    pub fn new(shards: usize, conflate: RoomPatterns) -> Self {
        Self {
            rooms: DashMap::new(),
            users: DashMap::new(),
            next_room_id: AtomicU64::new(1),
            shards,
            conflate,
        }
    }

    fn new_room(&self, name: &str, persistent: bool) -> Arc<Room> {
        let id = self.next_room_id.fetch_add(1, Ordering::Relaxed);
        let conflated = self.conflate.matches(name);
        Arc::new(Room::new(
            id,
            name.into(),
            persistent,
            self.shards,
            conflated,
        ))
    }

    pub fn room(&self, name: &str) -> Option<Arc<Room>> {
        self.rooms.get(name).map(|r| r.clone())
    }

    /// Creates a persistent room, or makes an existing one persistent. True if created.
    pub fn create_room(&self, name: &str) -> bool {
        match self.rooms.entry(name.into()) {
            Entry::Occupied(e) => {
                e.get().make_persistent();
                false
            }
            Entry::Vacant(e) => {
                e.insert(self.new_room(name, true));
                true
            }
        }
    }

    /// Takes the room out of the directory; returns it with the members it had.
    pub fn remove_room(&self, name: &str) -> Option<(Arc<Room>, Vec<ConnectionId>)> {
        // Dissolved before it leaves, so a room made again under the name cannot be
        // mistaken for this one's continuation.
        let (_, room) = self.rooms.remove_if(name, |_, room| {
            room.dissolve();
            true
        })?;
        let members = room.remove_all();
        Some((room, members))
    }

    /// A room of this name that is not in the directory and has no members here: what
    /// a publication to a room with members on other nodes only is addressed to.
    pub fn stand_in(&self, name: &str) -> Arc<Room> {
        Arc::new(Room::new(0, name.into(), false, self.shards, false))
    }

    pub fn rooms(&self) -> Vec<Arc<Room>> {
        self.rooms.iter().map(|r| r.value().clone()).collect()
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Adds `id` to room `name`, creating it when allowed. Returns the room, the count
    /// after, and whether `id` was newly added.
    pub fn join(
        &self,
        name: &str,
        id: ConnectionId,
        create: bool,
    ) -> Result<(Arc<Room>, usize, bool), RoomNotFound> {
        loop {
            let room = match self.room(name) {
                Some(room) => room,
                None if create => self
                    .rooms
                    .entry(name.into())
                    .or_insert_with(|| self.new_room(name, false))
                    .clone(),
                None => return Err(RoomNotFound),
            };
            match room.join(id) {
                JoinOutcome::Joined(count) => return Ok((room, count, true)),
                JoinOutcome::AlreadyMember(count) => return Ok((room, count, false)),
                // Emptied and removed between our lookup and our join: look again.
                JoinOutcome::Removed => continue,
            }
        }
    }

    /// Removes `id` from `room`; an emptied non-persistent room leaves the directory.
    /// Returns the count after, or `None` if `id` was not a member.
    pub fn leave(&self, room: &Arc<Room>, id: ConnectionId) -> Option<usize> {
        room.leave(id, || {
            self.rooms
                .remove_if(&room.name, |_, r| Arc::ptr_eq(r, room))
                .is_some()
        })
    }

    /// Records an opened connection of `user`, unless the user already has `cap` open.
    /// `Ok(true)` if it is the user's first.
    pub fn add_connection(
        &self,
        id: ConnectionId,
        user: &Arc<str>,
        cap: Option<usize>,
    ) -> Result<bool, AtCap> {
        let mut conns = self.users.entry(user.clone()).or_default();
        if cap.is_some_and(|cap| conns.len() >= cap) {
            return Err(AtCap);
        }
        conns.push(id);
        Ok(conns.len() == 1)
    }

    /// Forgets a closed connection. True if it was its user's last.
    pub fn remove_connection(&self, id: ConnectionId, user: &Arc<str>) -> bool {
        match self.users.entry(user.clone()) {
            Entry::Occupied(mut e) => {
                e.get_mut().retain(|c| *c != id);
                if e.get().is_empty() {
                    e.remove();
                    true
                } else {
                    false
                }
            }
            Entry::Vacant(_) => false,
        }
    }

    pub fn user_connection_count(&self, user: &str) -> usize {
        self.users.get(user).map_or(0, |c| c.len())
    }

    pub fn user_connections(&self, user: &str) -> Vec<ConnectionId> {
        self.users.get(user).map(|c| c.to_vec()).unwrap_or_default()
    }

    /// Every user with its connections.
    pub fn users(&self) -> Vec<(Arc<str>, Vec<ConnectionId>)> {
        self.users
            .iter()
            .map(|e| (e.key().clone(), e.value().to_vec()))
            .collect()
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(shard: usize, seq: u64) -> ConnectionId {
        ConnectionId::new(shard, seq)
    }

    #[test]
    fn counts_follow_joins_and_leaves_across_shards() {
        let r = Registry::new(2, RoomPatterns::default());
        assert!(r.create_room("general"));
        let (room, n, new) = r.join("general", id(0, 1), false).unwrap();
        assert_eq!((n, new), (1, true));
        assert_eq!(r.join("general", id(1, 1), false).unwrap().1, 2);
        assert!(!r.join("general", id(1, 1), false).unwrap().2);
        assert_eq!(room.shards_with_members().collect::<Vec<_>>(), [0, 1]);
        assert_eq!(r.leave(&room, id(0, 1)), Some(1));
        assert_eq!(r.leave(&room, id(0, 1)), None);
        assert_eq!(room.shards_with_members().collect::<Vec<_>>(), [1]);
        assert_eq!(r.leave(&room, id(1, 1)), Some(0));
        assert!(
            r.room("general").is_some(),
            "persistent rooms stay when empty"
        );
    }

    #[test]
    fn rooms_made_by_joining_vanish_when_empty() {
        let r = Registry::new(1, RoomPatterns::default());
        assert!(matches!(
            r.join("adhoc", id(0, 1), false),
            Err(RoomNotFound)
        ));
        let (room, _, _) = r.join("adhoc", id(0, 1), true).unwrap();
        assert_eq!(r.leave(&room, id(0, 1)), Some(0));
        assert!(r.room("adhoc").is_none());
        // A fresh join makes a fresh room rather than reviving the removed one.
        let (again, _, _) = r.join("adhoc", id(0, 2), true).unwrap();
        assert_ne!(again.id, room.id);
    }

    #[test]
    fn users_go_offline_with_their_last_connection() {
        let r = Registry::new(2, RoomPatterns::default());
        let user: Arc<str> = "ann".into();
        assert_eq!(r.add_connection(id(0, 1), &user, Some(2)), Ok(true));
        assert_eq!(r.add_connection(id(1, 1), &user, Some(2)), Ok(false));
        assert_eq!(r.add_connection(id(1, 2), &user, Some(2)), Err(AtCap));
        assert_eq!(r.user_count(), 1);
        assert_eq!(r.user_connections("ann").len(), 2);
        assert!(!r.remove_connection(id(0, 1), &user));
        assert!(r.remove_connection(id(1, 1), &user));
        assert_eq!(r.user_count(), 0);
    }
}
