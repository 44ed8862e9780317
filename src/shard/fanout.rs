//! Fan-out: one encoded frame to every recipient, on this shard and on the others.
//!
//! A broadcast is encoded once into `Bytes` by whoever publishes it. This shard queues a
//! handle to it on each local recipient; every other shard that has recipients gets the
//! same handle through its inbox and does the same. Nothing is copied per recipient.

use std::time::Instant;

use bytes::Bytes;
use smallvec::SmallVec;

use super::connection::Connection;
use super::message::{ShardMessage, Target};
use super::state::ShardState;
use super::Shard;
use crate::config::SendQueueLimits;
use crate::mailbox::PostError;
use crate::stats::{self, CloseCause};

impl Shard {
    /// Delivers `frame` to every recipient of `target` on every shard.
    pub(crate) fn publish(&self, state: &mut ShardState, target: Target, frame: Bytes) {
        let published_us = self.hub.now_us();
        for shard in target.shards(&self.hub) {
            if shard == self.index {
                self.deliver_local(state, &target, &frame, published_us);
            } else {
                let msg = ShardMessage::Deliver {
                    target: target.clone(),
                    frame: frame.clone(),
                    published_us,
                };
                self.post(state, shard, msg);
            }
        }
    }

    /// Queues `frame` on this shard's recipients of `target`. Returns how many.
    pub(crate) fn deliver_local(
        &self,
        state: &mut ShardState,
        target: &Target,
        frame: &Bytes,
        published_us: u32,
    ) -> usize {
        let limits = &self.hub.config.send_queue;
        let mut fanout = Fanout {
            frame,
            published_us,
            limits,
            dirty: &mut state.dirty,
            delivered: 0,
            slow: 0,
            close_deadline: Instant::now() + self.hub.config.write_timeout,
        };
        let conns = &mut state.conns;
        match target {
            Target::All { except } => {
                for (key, conn) in conns.iter_mut() {
                    if Some(conn.id) != *except {
                        fanout.offer(key, conn);
                    }
                }
            }
            Target::Room { room, except } => {
                for key in state.membership.local_members(room.id) {
                    match conns.get_mut(key) {
                        Some(conn) if Some(conn.id) != *except => fanout.offer(key, conn),
                        _ => {}
                    }
                }
            }
            Target::Rooms { rooms, except } => {
                // A connection in several of the rooms hears the message once.
                let keys = &mut state.scratch;
                keys.clear();
                for room in rooms.iter() {
                    keys.extend(state.membership.local_members(room.id));
                }
                keys.sort_unstable();
                keys.dedup();
                for &key in keys.iter() {
                    match conns.get_mut(key) {
                        Some(conn) if Some(conn.id) != *except => fanout.offer(key, conn),
                        _ => {}
                    }
                }
            }
            Target::Connections(ids) => {
                for id in ids.iter().filter(|id| id.shard() == self.index) {
                    if let Some(&key) = state.by_seq.get(&id.seq()) {
                        fanout.offer(key, &mut conns[key]);
                    }
                }
            }
            Target::Connection(id) => {
                if let Some(key) = state.by_seq.get(&id.seq()).copied() {
                    fanout.offer(key, &mut conns[key]);
                }
            }
        }
        let (delivered, slow) = (fanout.delivered, fanout.slow);
        let counters = self.counters();
        stats::add(&counters.deliveries, delivered as u64);
        if slow > 0 {
            stats::add(&counters.slow_consumers, slow);
        }
        if !state.dirty.is_empty() {
            self.flush.notify();
        }
        delivered
    }

    /// Posts a message to another shard. If its inbox is full the message is held back,
    /// in order, and this shard stops reading from its clients until it is through.
    pub(crate) fn post(&self, state: &mut ShardState, shard: usize, msg: ShardMessage) {
        let held = &mut state.held_back[shard];
        if !held.is_empty() {
            held.push_back(msg);
            return;
        }
        match self.hub.mailboxes[shard].try_post(msg) {
            Ok(()) | Err(PostError::Closed) => {}
            Err(PostError::Full(msg)) => {
                held.push_back(msg);
                // The inbox task retries held-back messages; make sure it is awake.
                self.hub.mailboxes[self.index].unpark();
            }
        }
    }

    /// Queues a frame for one connection of this shard (a reply, not a broadcast).
    pub(crate) fn send_to(&self, state: &mut ShardState, key: usize, frame: Bytes) {
        let target = Target::Connection(state.conns[key].id);
        self.deliver_local(state, &target, &frame, self.hub.now_us());
    }

    /// Lists a connection for the next flush pass.
    pub(crate) fn mark_dirty(&self, state: &mut ShardState, key: usize) {
        let conn = &mut state.conns[key];
        if !conn.dirty {
            conn.dirty = true;
            state.dirty.push(key);
        }
        self.flush.notify();
    }

    /// Closes a connection with a close frame, for `cause`. `abort` drops what is still
    /// queued (the client broke a rule); otherwise the close frame follows everything
    /// queued.
    pub(crate) fn close_connection(
        &self,
        state: &mut ShardState,
        key: usize,
        code: u16,
        reason: &str,
        abort: bool,
        cause: CloseCause,
    ) {
        let deadline = Instant::now() + self.hub.config.write_timeout;
        let conn = &mut state.conns[key];
        conn.blame(cause);
        conn.begin_close(code, reason, deadline, abort);
        self.mark_dirty(state, key);
    }
}

/// One fan-out in progress.
struct Fanout<'a> {
    frame: &'a Bytes,
    published_us: u32,
    limits: &'a SendQueueLimits,
    dirty: &'a mut Vec<usize>,
    delivered: usize,
    slow: u64,
    close_deadline: Instant,
}

impl Fanout<'_> {
    fn offer(&mut self, key: usize, conn: &mut Connection) {
        if !conn.is_open() {
            return;
        }
        match conn.queue(self.frame.clone(), self.published_us, self.limits) {
            Ok(()) => self.delivered += 1,
            Err(_) => {
                self.slow += 1;
                conn.close_slow(self.close_deadline);
            }
        }
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }
}

impl Target {
    /// The shards with recipients.
    pub(crate) fn shards(&self, hub: &crate::hub::HubShared) -> SmallVec<[usize; 8]> {
        let all = hub.config.shards;
        match self {
            Target::All { .. } => (0..all).collect(),
            Target::Room { room, .. } => room.shards_with_members().collect(),
            Target::Rooms { rooms, .. } => {
                let mut shards: SmallVec<[usize; 8]> =
                    rooms.iter().flat_map(|r| r.shards_with_members()).collect();
                shards.sort_unstable();
                shards.dedup();
                shards
            }
            Target::Connections(ids) => {
                let mut shards: SmallVec<[usize; 8]> = ids.iter().map(|c| c.shard()).collect();
                shards.sort_unstable();
                shards.dedup();
                shards
            }
            Target::Connection(id) => std::iter::once(id.shard()).collect(),
        }
    }
}
