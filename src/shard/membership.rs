//! Who is in which room, as one shard keeps it: every view of membership changes in one
//! step here.
//!
//! Three views must agree: the hub-wide directory (the [`Registry`]'s rooms with their
//! counts, which every shard and the `Hub` handle read), this shard's fan-out index (room
//! to the local members a broadcast is queued on), and each connection's own list of
//! rooms (for its leave on close, presence scoped to rooms, and the per-connection cap).
//! A join, a leave, a connection's end and a room's removal each update all three, so no
//! caller can update one and forget another. It is plain data that knows no socket: a
//! connection is its slab key and id.
//!
//! A join may be held: the connection is a member (counted, in its rooms) but not yet in
//! the fan-out index, until the room's home shard has said where in the room's stream the
//! join falls (see [`super::sequence`]). Each held join has a ticket, so that the answer
//! to an earlier join never completes a later one.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexSet;
use smallvec::SmallVec;

use crate::ids::ConnectionId;
use crate::registry::Registry;
use crate::room::Room;

/// A join that did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinRefused {
    /// The connection is in as many rooms as it may be.
    AtCap(usize),
    /// The room does not exist and joining may not create it.
    NoSuchRoom,
}

/// A join that happened, or found the connection already a member.
#[derive(Debug, Clone)]
pub(crate) struct Joined {
    pub room: Arc<Room>,
    /// Members after the join.
    pub count: usize,
    /// False when the connection was a member already.
    pub new: bool,
    /// The ticket of a held join.
    pub held: Option<u64>,
}

/// The rooms of one connection. Most connections are in one room, which is held in
/// place: a connection allocates here only from its second room on.
type RoomsOf = SmallVec<[Arc<Room>; 1]>;

/// One shard's view of membership.
#[derive(Default)]
pub(crate) struct Membership {
    /// Room id to this shard's members, by slab key: what a broadcast to a room visits.
    local: HashMap<u64, IndexSet<usize>>,
    /// Slab key to the rooms that connection is in.
    of_connection: Vec<RoomsOf>,
    /// Held joins, by slab key and room id: their tickets.
    held: HashMap<(usize, u64), u64>,
    next_ticket: u64,
}

impl Membership {
    /// The rooms connection `key` is in.
    pub fn rooms_of(&self, key: usize) -> &[Arc<Room>] {
        self.of_connection.get(key).map_or(&[], RoomsOf::as_slice)
    }

    /// Room `name`, if connection `key` is in it.
    pub fn room_of(&self, key: usize, name: &str) -> Option<&Arc<Room>> {
        self.rooms_of(key).iter().find(|r| &*r.name == name)
    }

    /// This shard's members of room `room_id`.
    pub fn local_members(&self, room_id: u64) -> impl Iterator<Item = usize> + '_ {
        self.local.get(&room_id).into_iter().flatten().copied()
    }

    /// Joins connection `key` (`id`) to room `name`, creating the room if `create`;
    /// a connection may be in at most `cap` rooms. With `hold`, the join is held until
    /// [`Membership::release`] is given its ticket.
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        &mut self,
        directory: &Registry,
        key: usize,
        id: ConnectionId,
        name: &str,
        create: bool,
        cap: usize,
        hold: bool,
    ) -> Result<Joined, JoinRefused> {
        if let Some(room) = self.room_of(key, name) {
            let (room, count) = (room.clone(), room.count());
            return Ok(Joined {
                room,
                count,
                new: false,
                held: None,
            });
        }
        if self.rooms_of(key).len() >= cap {
            return Err(JoinRefused::AtCap(cap));
        }
        let (room, count, _) = directory
            .join(name, id, create)
            .map_err(|_| JoinRefused::NoSuchRoom)?;
        if self.of_connection.len() <= key {
            self.of_connection.resize_with(key + 1, RoomsOf::new);
        }
        self.of_connection[key].push(room.clone());
        let held = if hold {
            self.next_ticket += 1;
            self.held.insert((key, room.id), self.next_ticket);
            Some(self.next_ticket)
        } else {
            self.local.entry(room.id).or_default().insert(key);
            None
        };
        Ok(Joined {
            room,
            count,
            new: true,
            held,
        })
    }

    /// Completes the held join of connection `key` to `room` with `ticket`: from now on
    /// the room's fan-out reaches it. False if that join is no longer held (the
    /// connection left, or joined again since).
    pub fn release(&mut self, key: usize, room: &Room, ticket: u64) -> bool {
        if self.held.get(&(key, room.id)) != Some(&ticket) {
            return false;
        }
        self.held.remove(&(key, room.id));
        self.local.entry(room.id).or_default().insert(key);
        true
    }

    /// Takes connection `key` (`id`) out of room `name`: the room and its count after, or
    /// `None` if it was not a member.
    pub fn leave(
        &mut self,
        directory: &Registry,
        key: usize,
        id: ConnectionId,
        name: &str,
    ) -> Option<(Arc<Room>, usize)> {
        let rooms = self.of_connection.get_mut(key)?;
        let at = rooms.iter().position(|r| &*r.name == name)?;
        let room = rooms.swap_remove(at);
        let count = self.unindex(directory, key, id, &room);
        Some((room, count))
    }

    /// Takes an ending connection out of every room it is in: each room with its count
    /// after.
    pub fn leave_all(
        &mut self,
        directory: &Registry,
        key: usize,
        id: ConnectionId,
    ) -> Vec<(Arc<Room>, usize)> {
        let rooms = self
            .of_connection
            .get_mut(key)
            .map(std::mem::take)
            .unwrap_or_default();
        rooms
            .into_iter()
            .map(|room| {
                let count = self.unindex(directory, key, id, &room);
                (room, count)
            })
            .collect()
    }

    /// Forgets a room the hub removed (the directory has already let it go): returns its
    /// local members, who are in it no more.
    pub fn forget_room(&mut self, room: &Arc<Room>) -> IndexSet<usize> {
        let mut members = self.local.remove(&room.id).unwrap_or_default();
        self.held.retain(|&(key, room_id), _| {
            if room_id == room.id {
                members.insert(key);
            }
            room_id != room.id
        });
        for &key in &members {
            if let Some(rooms) = self.of_connection.get_mut(key) {
                rooms.retain(|r| !Arc::ptr_eq(r, room));
            }
        }
        members
    }

    /// Gives back memory held for rooms and connections that are gone.
    pub fn shrink(&mut self) {
        self.local.shrink_to(self.local.len() * 2);
        self.held.shrink_to(self.held.len() * 2);
        let used = self
            .of_connection
            .iter()
            .rposition(|rooms| !rooms.is_empty())
            .map_or(0, |last| last + 1);
        self.of_connection.truncate(used);
        self.of_connection.shrink_to(used * 2);
    }

    /// Leaves `room` in the directory and the local index; the count after.
    fn unindex(
        &mut self,
        directory: &Registry,
        key: usize,
        id: ConnectionId,
        room: &Arc<Room>,
    ) -> usize {
        let count = directory.leave(room, id).unwrap_or(0);
        self.held.remove(&(key, room.id));
        if let Some(members) = self.local.get_mut(&room.id) {
            members.swap_remove(&key);
            if members.is_empty() {
                self.local.remove(&room.id);
            }
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room_pattern::RoomPatterns;

    fn id(shard: usize, seq: u64) -> ConnectionId {
        ConnectionId::new(shard, seq)
    }

    fn local(m: &Membership, room: &Arc<Room>) -> Vec<usize> {
        let mut keys: Vec<usize> = m.local_members(room.id).collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn a_join_and_a_leave_change_every_view_at_once() {
        let directory = Registry::new(2, RoomPatterns::default());
        directory.create_room("general");
        let mut m = Membership::default();
        let joined = m
            .join(&directory, 3, id(0, 1), "general", false, 8, false)
            .unwrap();
        assert!(joined.new);
        assert_eq!(joined.count, 1);
        // A member of another shard counts too.
        directory.join("general", id(1, 1), false).unwrap();
        assert_eq!(m.rooms_of(3).len(), 1);
        assert_eq!(local(&m, &joined.room), [3]);
        let again = m
            .join(&directory, 3, id(0, 1), "general", false, 8, false)
            .unwrap();
        assert_eq!((again.new, again.count), (false, 2));

        let (room, count) = m.leave(&directory, 3, id(0, 1), "general").unwrap();
        assert_eq!(count, 1, "the other shard's member remains");
        assert!(m.rooms_of(3).is_empty());
        assert!(local(&m, &room).is_empty());
        assert!(!room.has_member(id(0, 1)));
        assert!(m.leave(&directory, 3, id(0, 1), "general").is_none());
    }

    #[test]
    fn a_held_join_counts_but_is_reached_only_once_released_with_its_ticket() {
        let directory = Registry::new(2, RoomPatterns::default());
        directory.create_room("general");
        let mut m = Membership::default();
        let first = m
            .join(&directory, 4, id(1, 1), "general", false, 8, true)
            .unwrap();
        let ticket = first.held.expect("held");
        assert_eq!(first.count, 1);
        assert_eq!(m.rooms_of(4).len(), 1);
        assert!(local(&m, &first.room).is_empty());
        // Left and joined again before the first answer came: that answer is stale.
        m.leave(&directory, 4, id(1, 1), "general").unwrap();
        let again = m
            .join(&directory, 4, id(1, 1), "general", false, 8, true)
            .unwrap();
        assert!(!m.release(4, &first.room, ticket));
        assert!(local(&m, &again.room).is_empty());
        assert!(m.release(4, &again.room, again.held.unwrap()));
        assert_eq!(local(&m, &again.room), [4]);
        assert!(!m.release(4, &again.room, again.held.unwrap()), "once");
    }

    #[test]
    fn joins_are_refused_over_the_cap_and_for_missing_rooms() {
        let directory = Registry::new(1, RoomPatterns::default());
        let mut m = Membership::default();
        assert_eq!(
            m.join(&directory, 0, id(0, 1), "nowhere", false, 8, false)
                .unwrap_err(),
            JoinRefused::NoSuchRoom
        );
        m.join(&directory, 0, id(0, 1), "a", true, 1, false)
            .unwrap();
        assert_eq!(
            m.join(&directory, 0, id(0, 1), "b", true, 1, false)
                .unwrap_err(),
            JoinRefused::AtCap(1)
        );
        assert!(
            directory.room("b").is_none(),
            "a refused join creates nothing"
        );
    }

    #[test]
    fn an_ending_connection_leaves_everything_and_its_key_starts_clean() {
        let directory = Registry::new(1, RoomPatterns::default());
        let mut m = Membership::default();
        m.join(&directory, 5, id(0, 1), "a", true, 8, false)
            .unwrap();
        m.join(&directory, 5, id(0, 1), "b", true, 8, false)
            .unwrap();
        m.join(&directory, 6, id(0, 2), "b", true, 8, false)
            .unwrap();
        let left = m.leave_all(&directory, 5, id(0, 1));
        let counts: Vec<(&str, usize)> = left.iter().map(|(r, n)| (&*r.name, *n)).collect();
        assert_eq!(counts, [("a", 0), ("b", 1)]);
        assert!(
            directory.room("a").is_none(),
            "an emptied ad-hoc room goes away"
        );
        assert!(m.rooms_of(5).is_empty());
        m.shrink();
        assert_eq!(m.rooms_of(6).len(), 1, "shrinking keeps what is in use");
    }

    #[test]
    fn a_removed_room_is_forgotten_by_its_members() {
        let directory = Registry::new(1, RoomPatterns::default());
        directory.create_room("doomed");
        let mut m = Membership::default();
        m.join(&directory, 1, id(0, 1), "doomed", false, 8, false)
            .unwrap();
        m.join(&directory, 2, id(0, 2), "doomed", false, 8, false)
            .unwrap();
        let (room, _) = directory.remove_room("doomed").unwrap();
        let members: Vec<usize> = m.forget_room(&room).into_iter().collect();
        assert_eq!(members, [1, 2]);
        assert!(m.rooms_of(1).is_empty() && m.rooms_of(2).is_empty());
        assert!(local(&m, &room).is_empty());
    }
}
