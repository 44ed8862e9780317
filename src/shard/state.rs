//! Everything a shard owns: its connections, who is in which room, the streams of the
//! rooms it is home to, what waits to be written.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use slab::Slab;

use super::connection::Connection;
use super::delay::Delayed;
use super::held_back::HeldBack;
use super::membership::Membership;
use super::streams::Streams;
use super::token::Token;
use crate::ids::ConnectionId;
use crate::ws::deflate::Inflater;

pub(crate) struct ShardState {
    /// Boxed, so the slab's spare capacity costs a pointer per slot, not a connection.
    pub conns: Slab<Box<Connection>>,
    /// Connection sequence number to slab key, for commands naming a `ConnectionId`.
    pub by_seq: HashMap<u64, usize>,
    /// Rooms and their members, every view of it.
    pub membership: Membership,
    /// The streams of the rooms this shard is home to (history on).
    pub streams: Streams,
    /// Connections with frames queued since the last flush pass.
    pub dirty: Vec<usize>,
    /// Connections whose broadcasts wait for `hub.write_delay`.
    pub delayed: Delayed,
    /// Messages for other shards whose inboxes were full, in order, per shard.
    pub held_back: HeldBack,
    pub next_seq: u64,
    /// Reused by multi-room fan-out to de-duplicate recipients.
    pub scratch: Vec<usize>,
    /// The connection whose opening is under way: its autojoins are announced to the
    /// other nodes with its opening, not one by one.
    pub opening: Option<usize>,
    /// Open questions by deadline, then number: the slab key of each asker.
    pub deadlines: BTreeMap<(Instant, u64), usize>,
    /// The number of the next question asked on this shard.
    pub next_question: u64,
    /// Inflates the compressed messages of every connection that negotiated
    /// permessage-deflate, one message at a time; made at the first.
    pub inflater: Option<Box<Inflater>>,
}

impl ShardState {
    pub fn new(shards: usize) -> Self {
        Self {
            conns: Slab::new(),
            by_seq: HashMap::new(),
            membership: Membership::default(),
            streams: Streams::default(),
            dirty: Vec::new(),
            delayed: Delayed::default(),
            held_back: HeldBack::new(shards, None),
            next_seq: 1,
            scratch: Vec::new(),
            opening: None,
            deadlines: BTreeMap::new(),
            next_question: 1,
            inflater: None,
        }
    }

    /// The slab key of connection `id`, if it is still here. The whole id must match:
    /// a connection of another node may have the same shard and sequence.
    pub fn key_of(&self, id: ConnectionId) -> Option<usize> {
        self.by_seq
            .get(&id.seq())
            .copied()
            .filter(|&key| self.conns[key].id == id)
    }

    /// The slab key of the connection `token` names, if it is still here.
    pub fn key_of_token(&self, token: Token) -> Option<usize> {
        let key = token.key();
        self.conns
            .get(key)
            .filter(|conn| Token::of(key, conn.id) == token)
            .map(|_| key)
    }

    /// Lists connection `key` for the next flush pass, once.
    pub fn list_dirty(&mut self, key: usize) {
        self.conns[key].list_in(&mut self.dirty, key);
    }

    /// True while messages for some other shard are held back.
    pub fn is_holding_back(&self) -> bool {
        !self.held_back.is_empty()
    }
}
