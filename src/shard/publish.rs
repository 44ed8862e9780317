//! The one publish path: a frame encoded once goes to every shard with recipients.
//!
//! Whoever publishes ends here: a client's message or an API call handled on a shard,
//! and the `Hub` handle on any other thread. They differ only in how a message reaches
//! a shard, which the publisher's [`Post`] decides. A shard carries out a message to
//! itself in place and never blocks on another shard: a full inbox holds the message
//! back, in order, and the shard stops reading its clients until it is through. Another
//! thread waits while an inbox is full, up to the write timeout.

use std::sync::Arc;

use bytes::Bytes;

use super::error::EngineError;
use super::message::{FrameKind, ShardMessage, Target};
use super::shared::HubShared;
use crate::room::Room;

/// How a publisher hands a message to a shard.
pub(crate) trait Post {
    /// Hands `msg` to shard `shard`.
    fn post(&mut self, shard: usize, msg: ShardMessage) -> Result<(), EngineError>;
}

/// Delivers `frame` to every recipient of `target` on every shard: one handle to the
/// same bytes for each shard with recipients.
pub(crate) fn publish(
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
    deliver(via, hub, target, frame, FrameKind::Positioned)
}

fn deliver(
    via: &mut impl Post,
    hub: &HubShared,
    target: Target,
    frame: Bytes,
    kind: FrameKind,
) -> Result<(), EngineError> {
    let published_us = hub.now_us();
    for shard in target.shards(hub.config.shards) {
        let msg = ShardMessage::Deliver {
            target: target.clone(),
            frame: frame.clone(),
            published_us,
            kind,
        };
        via.post(shard, msg)?;
    }
    Ok(())
}

/// Posting from a thread that is not a shard (a `Hub` handle's caller).
pub(crate) struct FromThread<'a>(pub &'a HubShared);

impl Post for FromThread<'_> {
    fn post(&mut self, shard: usize, msg: ShardMessage) -> Result<(), EngineError> {
        self.0.post(shard, msg)
    }
}
