//! Fan-out: one encoded frame to every recipient, on this shard and on the others.
//!
//! A broadcast is encoded once into `Bytes` by whoever publishes it. This shard queues a
//! handle to it on each local recipient; every other shard that has recipients gets the
//! same handle through its inbox and does the same. Nothing is copied per recipient.
//!
//! In a conflated room (`rooms.conflate`) a member that has fallen behind gets a room's
//! positioned message in the place of the room's newest one still waiting in its queue,
//! marked `"conflated": true`: that marked frame is made once per delivery, for all the
//! members that need it.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::connection::{Conflation, Connection};
use super::context::Ctx;
use super::delay::Delayed;
use super::held_back::Posting;
use super::message::{FrameKind, ShardMessage, Target};
use crate::config::SendQueueLimits;
use crate::protocol::{ErrorCode, ServerMessage};
use crate::stats;
use crate::ws::encode;

/// The slab key of connection `id` (the whole id, see `ShardState::key_of`).
fn key_of(
    by_seq: &std::collections::HashMap<u64, usize>,
    conns: &slab::Slab<Box<Connection>>,
    id: crate::ids::ConnectionId,
) -> Option<usize> {
    by_seq
        .get(&id.seq())
        .copied()
        .filter(|&key| conns[key].id == id)
}

/// One message as it goes out: its frame, and the same compressed for the recipients
/// that negotiated permessage-deflate (when it was worth compressing).
#[derive(Clone, Copy)]
pub(crate) struct Frames<'a> {
    pub plain: &'a Bytes,
    pub deflated: Option<&'a Bytes>,
}

impl<'a> Frames<'a> {
    /// A message sent plain to everyone.
    pub fn plain(frame: &'a Bytes) -> Self {
        Self {
            plain: frame,
            deflated: None,
        }
    }

    /// The frame for `conn`.
    fn for_connection(&self, conn: &Connection) -> &'a Bytes {
        match self.deflated {
            Some(deflated) if conn.deflate => deflated,
            _ => self.plain,
        }
    }
}

/// Queues a frame for one connection of this shard (a reply, not a broadcast). It goes
/// out in the next pass whatever `hub.write_delay` (see `shard::delay`).
pub(crate) fn send_to(cx: &mut Ctx, key: usize, frame: Bytes) {
    let target = Target::Connection(cx.state.conns[key].id);
    let now_us = cx.hub().now_us();
    let frames = Frames::plain(&frame);
    deliver(
        cx,
        &target,
        frames,
        now_us,
        FrameKind::Notice,
        Duration::ZERO,
    );
}

/// Queues an `error` message for connection `key` of this shard.
pub(crate) fn send_error(cx: &mut Ctx, key: usize, code: ErrorCode, text: &str) {
    let frame = encode::json_frame(&ServerMessage::Error { code, error: text });
    send_to(cx, key, frame);
}

/// Queues `frame` on this shard's recipients of `target`, to be written after
/// `hub.write_delay`. Returns how many.
pub(crate) fn deliver_local(
    cx: &mut Ctx,
    target: &Target,
    frames: Frames,
    published_us: u32,
    kind: FrameKind,
) -> usize {
    let delay = cx.config().write_delay;
    deliver(cx, target, frames, published_us, kind, delay)
}

fn deliver(
    cx: &mut Ctx,
    target: &Target,
    frames: Frames,
    published_us: u32,
    kind: FrameKind,
    delay: Duration,
) -> usize {
    let config = cx.config();
    let state = &mut *cx.state;
    let now = Instant::now();
    let mut fanout = Fanout {
        frames,
        published_us,
        limits: &config.send_queue,
        dirty: &mut state.dirty,
        delayed: (!delay.is_zero()).then_some((&mut state.delayed, now + delay)),
        delivered: 0,
        slow: 0,
        conflated: 0,
        marked: None,
        close_deadline: now + config.write_timeout,
    };
    let (conns, by_seq) = (&mut state.conns, &state.by_seq);
    match target {
        Target::All { except } => {
            for (key, conn) in conns.iter_mut() {
                if Some(conn.id) != *except {
                    fanout.offer(key, conn);
                }
            }
        }
        Target::Room { room, except } if room.conflated && kind == FrameKind::Positioned => {
            for key in state.membership.local_members(room.id) {
                match conns.get_mut(key) {
                    Some(conn) if Some(conn.id) != *except => {
                        fanout.offer_conflatable(key, conn, room.id)
                    }
                    _ => {}
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
        Target::User { connections, .. } => {
            for id in connections.iter().filter(|id| id.shard() == cx.shard.index) {
                if let Some(key) = key_of(by_seq, conns, *id) {
                    fanout.offer(key, &mut conns[key]);
                }
            }
        }
        Target::Connection(id) => {
            if let Some(key) = key_of(by_seq, conns, *id) {
                fanout.offer(key, &mut conns[key]);
            }
        }
    }
    let (delivered, slow, conflated) = (fanout.delivered, fanout.slow, fanout.conflated);
    let counters = cx.counters();
    stats::add(&counters.deliveries, delivered as u64);
    if slow > 0 {
        stats::add(&counters.slow_consumers, slow);
    }
    if conflated > 0 {
        stats::add(&counters.conflated, conflated);
    }
    if !cx.state.dirty.is_empty() {
        cx.shard.flush.notify();
    }
    if !cx.state.delayed.is_empty() {
        cx.shard.delay_queued.notify();
    }
    delivered
}

/// Posts a message to another shard. If its inbox is full the message is held back,
/// in order, and this shard stops reading from its clients until it is through.
pub(crate) fn post_or_hold(cx: &mut Ctx, shard: usize, msg: ShardMessage) {
    let mailboxes = &cx.hub().mailboxes;
    if cx.state.held_back.post(mailboxes, shard, msg) == Posting::Held {
        // The inbox task retries held-back messages; make sure it is awake.
        mailboxes[cx.shard.index].unpark();
    }
}

/// One fan-out in progress.
struct Fanout<'a> {
    frames: Frames<'a>,
    published_us: u32,
    limits: &'a SendQueueLimits,
    dirty: &'a mut Vec<usize>,
    /// With `hub.write_delay`: the shard's queue of waiting connections, and when
    /// this delivery is due.
    delayed: Option<(&'a mut Delayed, Instant)>,
    delivered: usize,
    slow: u64,
    conflated: u64,
    /// The frame marked `"conflated": true`, made once for all who need it.
    marked: Option<Bytes>,
    close_deadline: Instant,
}

impl Fanout<'_> {
    fn offer(&mut self, key: usize, conn: &mut Connection) {
        if !conn.is_open() {
            return;
        }
        let frame = self.frames.for_connection(conn).clone();
        match conn.queue(frame, self.published_us, self.limits) {
            Ok(()) => {
                self.delivered += 1;
                self.list(key, conn);
            }
            Err(_) => {
                self.slow += 1;
                conn.close_slow(self.close_deadline);
                conn.list_in(self.dirty, key);
            }
        }
    }

    /// Has `conn` written in the next pass, or when the write delay is up.
    fn list(&mut self, key: usize, conn: &mut Connection) {
        match &mut self.delayed {
            None => conn.list_in(self.dirty, key),
            Some((delayed, at)) => delayed.schedule(conn, key, *at),
        }
    }

    /// Offers a positioned frame of a conflated room (see
    /// [`Connection::queue_conflatable`]).
    fn offer_conflatable(&mut self, key: usize, conn: &mut Connection, room: u64) {
        if !conn.is_open() {
            return;
        }
        // A conflated room's newest message replaces an older one as plain text (the
        // mark is added to the plain frame), so these go out plain.
        let (frame, marked) = (self.frames.plain, &mut self.marked);
        let conflated = || {
            marked
                .get_or_insert_with(|| encode::conflated_frame(frame))
                .clone()
        };
        match conn.queue_conflatable(frame, conflated, room, self.published_us, self.limits) {
            Conflation::Queued => self.delivered += 1,
            Conflation::Replaced => {
                self.delivered += 1;
                self.conflated += 1;
            }
            Conflation::Skipped => self.conflated += 1,
        }
        self.list(key, conn);
    }
}
