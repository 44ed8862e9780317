//! The one publish path: a frame encoded once goes to every shard with recipients.
//!
//! Whoever publishes ends here: a client's message or an API call handled on a shard,
//! and the `Hub` handle on any other thread. They differ only in how a message reaches
//! a shard, which the publisher's [`Post`] decides. A shard carries out a message to
//! itself in place and never blocks on another shard: a full inbox holds the message
//! back, in order, and the shard stops reading its clients until it is through. Another
//! thread waits while an inbox is full, up to the write timeout.
//!
//! In a cluster a publication also goes to the other nodes ([`crate::cluster`]), once
//! per node; a notice made from a node's own view of the cluster (`user_joined`,
//! `user_left`, `presence`) stays on the node, through [`notify`], since every node makes
//! its own for its clients.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::error::EngineError;
use super::held_back::Posting;
use super::message::{FrameKind, ShardMessage, Target};
use super::shared::HubShared;
use crate::room::Room;
use crate::ws::{deflate, encode};

/// How a publisher hands a message to a shard.
pub(crate) trait Post {
    /// Hands `msg` to shard `shard`.
    fn post(&mut self, shard: usize, msg: ShardMessage) -> Result<(), EngineError>;
}

/// Delivers `frame` to every recipient of `target` on every shard, and of every node:
/// one handle to the same bytes for each shard with recipients.
pub(crate) fn publish(
    via: &mut impl Post,
    hub: &HubShared,
    target: Target,
    frame: Bytes,
) -> Result<(), EngineError> {
    if let Some(cluster) = &hub.cluster {
        cluster.forward(&target, &frame, FrameKind::Notice);
    }
    deliver(via, hub, target, frame, FrameKind::Notice)
}

/// Delivers `frame`, a notice this node made for its own clients, to the recipients of
/// `target` on this node's shards only.
pub(crate) fn notify(
    via: &mut impl Post,
    hub: &HubShared,
    target: Target,
    frame: Bytes,
) -> Result<(), EngineError> {
    deliver(via, hub, target, frame, FrameKind::Notice)
}

/// Delivers `frame`, a positioned message of `room` already sequenced (or with history
/// off, encoded), to every member of `room`.
pub(crate) fn publish_positioned(
    via: &mut impl Post,
    hub: &HubShared,
    room: Arc<Room>,
    frame: Bytes,
) -> Result<(), EngineError> {
    let target = Target::Room { room, except: None };
    if let Some(cluster) = &hub.cluster {
        cluster.forward(&target, &frame, FrameKind::Positioned);
    }
    deliver(via, hub, target, frame, FrameKind::Positioned)
}

/// Delivers `frame` to the recipients of `target` on this node's shards. A connection of
/// another node has none here.
pub(crate) fn deliver(
    via: &mut impl Post,
    hub: &HubShared,
    target: Target,
    frame: Bytes,
    kind: FrameKind,
) -> Result<(), EngineError> {
    let published_us = hub.now_us();
    if let Target::Connection(id) = &target {
        if id.node() != hub.node_tag() {
            return Ok(());
        }
    }
    let deflated = deflate_once(hub, &target, &frame);
    for shard in target.shards(hub.config.shards) {
        let msg = ShardMessage::Deliver {
            target: target.clone(),
            frame: frame.clone(),
            deflated: deflated.clone(),
            published_us,
            kind,
        };
        via.post(shard, msg)?;
    }
    Ok(())
}

/// The compressed form of a broadcast's `frame`, made here, once, for all its recipients
/// on every shard that negotiated permessage-deflate. Only while some connection did,
/// only for broadcasts (a reply to one connection is not worth it) of at least
/// `compression.min_size`, and only when it is smaller.
fn deflate_once(hub: &HubShared, target: &Target, frame: &Bytes) -> Option<Bytes> {
    let compression = &hub.config.compression;
    let worth_it = compression.enabled
        && !matches!(target, Target::Connection(_))
        && encode::payload_of(frame).len() >= compression.min_size
        && hub.deflate_connections.load(Ordering::Relaxed) > 0;
    if !worth_it {
        return None;
    }
    let deflated = deflate::deflated_frame(frame);
    hub.counters
        .count_compression(frame.len(), deflated.as_ref().map(Bytes::len));
    deflated
}

/// Posting from a thread that is not a shard (a `Hub` handle's caller).
pub(crate) struct FromThread<'a>(pub &'a HubShared);

impl Post for FromThread<'_> {
    fn post(&mut self, shard: usize, msg: ShardMessage) -> Result<(), EngineError> {
        self.0.post(shard, msg)
    }
}

/// Posting from the cluster's bridge: it never waits for a shard. A full inbox holds the
/// message back, and every later one for that shard behind it, in order, for the bridge
/// to hand over as soon as the shard has room; only beyond
/// [`HELD_BACK_MAX`](super::held_back::HELD_BACK_MAX) messages is one dropped, counted as
/// dropped on the way in.
pub(crate) struct WithoutWaiting<'a>(pub &'a HubShared);

impl Post for WithoutWaiting<'_> {
    fn post(&mut self, shard: usize, msg: ShardMessage) -> Result<(), EngineError> {
        let hub = self.0;
        let Some(cluster) = &hub.cluster else {
            return hub.mailboxes[shard]
                .try_post(msg)
                .map_err(|_| EngineError::Overloaded);
        };
        match cluster.held_back().post(&hub.mailboxes, shard, msg) {
            Posting::Posted => Ok(()),
            Posting::Held => {
                cluster.hold_notify().notify_one();
                Ok(())
            }
            Posting::Dropped => {
                cluster
                    .counters
                    .dropped_in
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(EngineError::Overloaded)
            }
        }
    }
}

/// Hands what the bridge held back to the shards that have room again, in order; true
/// if something is still held.
pub(crate) fn hand_over_held_back(hub: &HubShared) -> bool {
    hub.cluster
        .as_ref()
        .is_some_and(|cluster| !cluster.held_back().retry(&hub.mailboxes))
}
