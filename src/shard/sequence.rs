//! One order per room: with history on, each room's home shard sequences its positioned
//! messages.
//!
//! # The design
//! A room's home is the shard its name hashes to ([`Room::home`]). It alone hands out the
//! room's offsets and keeps its stream ([`Streams`]). Whoever publishes a positioned
//! message (a client's `message` on any shard, a backend through the API or the `Hub`
//! handle on any thread) hands it, owned, to the home shard; there it gets the next
//! offset, is encoded once with it, is kept in the ring as that frame, and fans out to
//! the shards with members like any broadcast. Every shard receives the home's
//! deliveries through one inbox in the order they were sent, so every member sees the
//! room's messages in offset order, whoever published them.
//!
//! A join is placed in the stream by the home shard too. The joiner's shard makes the
//! connection a member (counted, in its rooms) but holds it out of the room's fan-out,
//! and asks the home where the join falls: the home answers with its epoch and top offset
//! and, for a join with `recover`, every missed frame, in one step. That answer travels
//! the same inbox as the home's deliveries: every delivery ahead of it is at or below the
//! top (and held out), every one behind it is above. On the answer the joiner's shard
//! sends `joined`, the replay, and releases the join into the fan-out: no gap and no
//! duplicate, however many publish meanwhile. On the home shard itself all of this
//! happens in place.
//!
//! # The cost
//! Every positioned message has its text copied once into an owned [`Positioned`] (it is
//! handed over as a message, even to a home that is the publishing shard itself); the
//! ring costs no copy, as it keeps a handle to the one frame all members got. A message
//! published away from its home also takes one extra hop, a post to the home's inbox,
//! before the usual fan-out. With history off nothing is copied: the message is encoded
//! from the client's bytes. A join elsewhere takes a round trip to the home before `joined`.
//! `perf/RESULTS.md` has the measured figures.

use std::sync::Arc;
use std::time::Instant;

use super::context::Ctx;
use super::error::EngineError;
use super::home::ask_home;
use super::message::HomeRequest;
use super::message::{HeldJoin, Reply, ShardMessage};
use super::positioned::Positioned;
use super::publish::{publish_positioned, Post};
use super::shared::HubShared;
use super::streams::Page;
use crate::protocol::{ProtocolError, Recover};
use crate::room::Room;

#[cfg(doc)]
use super::streams::Streams;

/// Publishes a positioned message to every member of `room`. With history on, it goes to
/// the home of the room's stream to be sequenced; `reply`, if given, gets its offset (`None`
/// with history off, where it is encoded and fanned out at once).
pub(crate) fn publish_to_room(
    via: &mut impl Post,
    hub: &HubShared,
    room: Arc<Room>,
    message: Positioned<'_>,
    reply: Option<Reply<Option<u64>>>,
) -> Result<(), EngineError> {
    if hub.config.history.is_on() {
        let message = message.into_owned();
        return ask_home(
            via,
            hub,
            HomeRequest::Sequence {
                room,
                message,
                reply,
            },
        );
    }
    let frame = hub.encode(&message.message(&room.name, None));
    publish_positioned(via, hub, room, frame)?;
    if let Some(reply) = reply {
        let _ = reply.send(Ok(None));
    }
    Ok(())
}

/// On the home shard: gives `message` the next offset of `room`, keeps it and delivers it.
pub(super) fn sequence(
    cx: &mut Ctx,
    room: Arc<Room>,
    message: Positioned<'static>,
    reply: Option<Reply<Option<u64>>>,
) {
    let hub = cx.hub();
    let history = &hub.config.history;
    let sequenced = cx
        .state
        .streams
        .sequence(&room, Instant::now(), history, |offset| {
            hub.encode(&message.message(&room.name, Some(offset)))
        });
    let answer = match sequenced {
        Some((offset, frame)) => {
            // Posting from a shard never fails: a full inbox holds the message back.
            let _ = publish_positioned(cx, hub, room, frame);
            Ok(Some(offset))
        }
        None => Err(EngineError::Refused(ProtocolError::room_not_found())),
    };
    if let Some(reply) = reply {
        let _ = reply.send(answer);
    }
}

/// On the home shard: places a held join in the stream of `room`, and sends the answer
/// to the joiner's shard.
pub(super) fn place_join(cx: &mut Ctx, room: Arc<Room>, join: HeldJoin, recover: Option<Recover>) {
    let history = &cx.config().history;
    let point = cx
        .state
        .streams
        .place_join(&room, Instant::now(), history, recover.as_ref());
    let answer = ShardMessage::JoinPlaced { room, join, point };
    let _ = cx.post(join.conn.shard(), answer);
}

/// On the home shard: the held messages of `room` after `since`.
pub(super) fn read_history(
    cx: &mut Ctx,
    room: Arc<Room>,
    since: u64,
    limit: usize,
    reply: Reply<Page>,
) {
    let history = &cx.config().history;
    let page = cx
        .state
        .streams
        .page(&room, Instant::now(), history, since, limit)
        .ok_or_else(|| EngineError::Refused(ProtocolError::room_not_found()));
    let _ = reply.send(page);
}
