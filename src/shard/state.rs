//! Everything a shard owns: its connections and its index of local room members.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use indexmap::IndexSet;
use slab::Slab;

use super::connection::Connection;
use super::message::ShardMessage;
use crate::room::Room;

/// The members of one room that live on this shard, by slab key.
pub(crate) struct LocalRoom {
    pub members: IndexSet<usize>,
}

pub(crate) struct ShardState {
    /// Boxed, so the slab's spare capacity costs a pointer per slot, not a connection.
    pub conns: Slab<Box<Connection>>,
    /// Connection sequence number to slab key, for commands naming a `ConnectionId`.
    pub by_seq: HashMap<u64, usize>,
    /// Room id to local members: the fan-out index.
    pub rooms: HashMap<u64, LocalRoom>,
    /// Connections with frames queued since the last flush pass.
    pub dirty: Vec<usize>,
    /// Messages for other shards whose inboxes were full, in order, per shard.
    pub held_back: Vec<VecDeque<ShardMessage>>,
    pub next_seq: u64,
    /// Reused by multi-room fan-out to de-duplicate recipients.
    pub scratch: Vec<usize>,
}

impl ShardState {
    pub fn new(shards: usize) -> Self {
        Self {
            conns: Slab::new(),
            by_seq: HashMap::new(),
            rooms: HashMap::new(),
            dirty: Vec::new(),
            held_back: (0..shards).map(|_| VecDeque::new()).collect(),
            next_seq: 1,
            scratch: Vec::new(),
        }
    }

    /// The slab key of connection `seq`, if it is still here.
    pub fn key_of(&self, seq: u64) -> Option<usize> {
        self.by_seq.get(&seq).copied()
    }

    pub fn add_room_member(&mut self, room: &Arc<Room>, key: usize) {
        self.rooms
            .entry(room.id)
            .or_insert_with(|| LocalRoom {
                members: IndexSet::new(),
            })
            .members
            .insert(key);
    }

    pub fn remove_room_member(&mut self, room_id: u64, key: usize) {
        if let Some(local) = self.rooms.get_mut(&room_id) {
            local.members.swap_remove(&key);
            if local.members.is_empty() {
                self.rooms.remove(&room_id);
            }
        }
    }

    /// True while messages for some other shard are held back.
    pub fn is_holding_back(&self) -> bool {
        self.held_back.iter().any(|q| !q.is_empty())
    }
}
