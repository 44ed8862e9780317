//! Frames from other nodes, handed to this node's shards as they came: the NATS payload
//! is the WebSocket frame, so the same bytes go to every shard with recipients.

use std::sync::Arc;

use async_nats::{Message, Subscriber};
use futures_util::StreamExt;

use super::wire::{CONNECTION_HEADER, EXCEPT_HEADER, KIND_HEADER, POSITIONED, USER_HEADER};
use crate::ids::ConnectionId;
use crate::shard::message::{FrameKind, Target};
use crate::shard::publish::{deliver, WithoutWaiting};
use crate::shard::shared::HubShared;

/// Which subject a frame came on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
    /// The global subject: every connection here.
    All,
    /// This node's own subject: a user or a connection named in its headers.
    Node,
}

/// Delivers a frame from `source` to its recipients here.
pub(crate) fn frame(hub: &HubShared, source: Source, message: Message) {
    let target = match source {
        Source::All => Some(Target::All {
            except: except(&message),
        }),
        Source::Node => addressee(hub, &message),
    };
    if let Some(target) = target {
        hand_over(hub, target, message);
    }
}

/// Delivers a frame of room `name` to its members here.
pub(crate) fn room_frame(hub: &HubShared, name: &str, message: Message) {
    if let Some(room) = hub.registry.room(name) {
        let except = except(&message);
        hand_over(hub, Target::Room { room, except }, message);
    }
}

/// The connection a frame skips, if its headers name one.
fn except(message: &Message) -> Option<ConnectionId> {
    connection(message, EXCEPT_HEADER)
}

fn connection(message: &Message, header: &str) -> Option<ConnectionId> {
    let bits: u64 = message
        .headers
        .as_ref()?
        .get(header)?
        .as_str()
        .parse()
        .ok()?;
    Some(ConnectionId::from_bits(bits))
}

fn hand_over(hub: &HubShared, target: Target, message: Message) {
    let cluster = hub.cluster.as_ref().expect("a cluster's node");
    cluster
        .counters
        .messages_in
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let positioned = message
        .headers
        .as_ref()
        .and_then(|h| h.get(KIND_HEADER))
        .is_some_and(|kind| kind.as_str() == POSITIONED);
    let kind = if positioned {
        FrameKind::Positioned
    } else {
        FrameKind::Notice
    };
    let _ = deliver(&mut WithoutWaiting(hub), hub, target, message.payload, kind);
}

/// The user's connections or the connection that a frame on this node's subject names.
fn addressee(hub: &HubShared, message: &Message) -> Option<Target> {
    let headers = message.headers.as_ref()?;
    if let Some(user) = headers.get(USER_HEADER) {
        let user = percent_encoding::percent_decode_str(user.as_str()).decode_utf8_lossy();
        let ids = hub.registry.user_connections(&user);
        return (!ids.is_empty()).then(|| Target::User {
            user: user.into(),
            connections: ids.into(),
        });
    }
    let id = connection(message, CONNECTION_HEADER)?;
    (id.node() == hub.node_tag() && id.shard() < hub.config.shards)
        .then_some(Target::Connection(id))
}

/// Delivers the frames of a subscription to the global or this node's subject.
pub(super) async fn frames(hub: Arc<HubShared>, mut subscription: Subscriber, source: Source) {
    while let Some(message) = subscription.next().await {
        frame(&hub, source, message);
    }
}

/// Delivers the frames of a room's subscription.
pub(super) async fn room_frames(hub: Arc<HubShared>, room: Arc<str>, mut subscription: Subscriber) {
    while let Some(message) = subscription.next().await {
        room_frame(&hub, &room, message);
    }
}
