//! A room as the whole hub sees it: its members on every shard and their count, the
//! shard that sequences its stream when history is on, and whether it is conflated.
//!
//! Membership changes (join, leave) take the room's lock; they are rare next to messages.
//! The per-shard member counts are atomics so that a shard publishing to the room can pick
//! the shards that have recipients without taking any lock.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::ids::ConnectionId;

/// One room.
#[derive(Debug)]
pub(crate) struct Room {
    /// Unique for the life of the hub, even if a room of the same name is made again.
    pub id: u64,
    pub name: Arc<str>,
    /// Created at start or through the API: stays when empty. Rooms created by a
    /// `join_room` are removed when their last member leaves.
    persistent: AtomicBool,
    members: Mutex<Members>,
    per_shard: Box<[AtomicU32]>,
    /// The shard that sequences the room's positioned messages and keeps its stream,
    /// from the hash of its name: every incarnation of a name has the same home.
    pub home: usize,
    /// Its messages are conflated for members that fall behind (`rooms.conflate`).
    pub conflated: bool,
    /// Removed through the hub (not merely emptied): its stream ends with it.
    dissolved: AtomicBool,
}

#[derive(Debug, Default)]
struct Members {
    set: HashSet<ConnectionId>,
    /// Taken out of the registry; a join that raced with the removal must retry.
    removed: bool,
}

/// What a join did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinOutcome {
    /// Joined; the count after the join.
    Joined(usize),
    /// Was a member already; the current count.
    AlreadyMember(usize),
    /// The room was removed meanwhile.
    Removed,
}

impl Room {
    pub fn new(id: u64, name: Arc<str>, persistent: bool, shards: usize, conflated: bool) -> Self {
        Self {
            id,
            home: home_shard(&name, shards),
            name,
            persistent: AtomicBool::new(persistent),
            members: Mutex::new(Members::default()),
            per_shard: (0..shards).map(|_| AtomicU32::new(0)).collect(),
            conflated,
            dissolved: AtomicBool::new(false),
        }
    }

    /// Marks the room removed through the hub, before it leaves the directory.
    pub fn dissolve(&self) {
        self.dissolved.store(true, Ordering::Release);
    }

    /// True once the room was removed through the hub.
    pub fn is_dissolved(&self) -> bool {
        self.dissolved.load(Ordering::Acquire)
    }

    pub fn is_persistent(&self) -> bool {
        self.persistent.load(Ordering::Relaxed)
    }

    pub fn make_persistent(&self) {
        self.persistent.store(true, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, Members> {
        // A panic while holding this lock leaves the set consistent (every mutation is a
        // single insert or remove), so a poisoned lock is still safe to use.
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn join(&self, id: ConnectionId) -> JoinOutcome {
        let mut m = self.lock();
        if m.removed {
            return JoinOutcome::Removed;
        }
        if !m.set.insert(id) {
            return JoinOutcome::AlreadyMember(m.set.len());
        }
        self.per_shard[id.shard()].fetch_add(1, Ordering::Relaxed);
        JoinOutcome::Joined(m.set.len())
    }

    /// Removes `id`; returns the count after, or `None` if it was not a member.
    /// `on_empty` runs under the lock when the room becomes empty and is not persistent,
    /// and returns whether the room was removed.
    pub fn leave(&self, id: ConnectionId, on_empty: impl FnOnce() -> bool) -> Option<usize> {
        let mut m = self.lock();
        if !m.set.remove(&id) {
            return None;
        }
        self.per_shard[id.shard()].fetch_sub(1, Ordering::Relaxed);
        let count = m.set.len();
        if count == 0 && !self.is_persistent() && on_empty() {
            m.removed = true;
        }
        Some(count)
    }

    /// Marks the room removed and returns its members.
    pub fn remove_all(&self) -> Vec<ConnectionId> {
        let mut m = self.lock();
        m.removed = true;
        for c in &self.per_shard {
            c.store(0, Ordering::Relaxed);
        }
        m.set.drain().collect()
    }

    pub fn count(&self) -> usize {
        self.lock().set.len()
    }

    pub fn has_member(&self, id: ConnectionId) -> bool {
        self.lock().set.contains(&id)
    }

    /// How many members a broadcast that skips `except` reaches, read under one lock so
    /// that a leave in between cannot make it count below zero.
    pub fn recipients(&self, except: Option<ConnectionId>) -> usize {
        let m = self.lock();
        m.set.len() - except.map_or(0, |id| usize::from(m.set.contains(&id)))
    }

    pub fn members(&self) -> Vec<ConnectionId> {
        self.lock().set.iter().copied().collect()
    }

    /// Shards with at least one member, read without a lock.
    pub fn shards_with_members(&self) -> impl Iterator<Item = usize> + '_ {
        self.per_shard
            .iter()
            .enumerate()
            .filter(|(_, n)| n.load(Ordering::Relaxed) > 0)
            .map(|(i, _)| i)
    }
}

/// The home shard of room `name`: a fixed hash (SipHash with zero keys), so it does not
/// change between incarnations of the room or runs of the hub.
pub(crate) fn home_shard(name: &str, shards: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    name.hash(&mut hasher);
    (hasher.finish() % shards as u64) as usize
}
