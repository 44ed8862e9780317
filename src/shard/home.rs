//! The home of a room's stream, with history on: the shard of the room's name on a
//! single node ([`super::sequence`]), the bridge in a cluster (`cluster::history`).
//! Whoever publishes to a room, joins it or reads its history asks the home the same
//! way, and [`ask_home`] takes the request there.

use std::sync::Arc;

use super::error::EngineError;
use super::message::{HeldJoin, Reply, ShardMessage};
use super::positioned::Positioned;
use super::publish::Post;
use super::shared::HubShared;
use super::streams::Page;
use crate::cluster::link::Outbound;
use crate::protocol::Recover;
use crate::room::Room;

/// What the home of a room's stream is asked.
pub(crate) enum HomeRequest {
    /// Give `message` its offset, keep it, deliver it to the room, and answer with the
    /// offset.
    Sequence {
        room: Arc<Room>,
        message: Positioned<'static>,
        reply: Option<Reply<Option<u64>>>,
    },
    /// Where in the stream does `join` fall, and, with `recover`, what did the joiner
    /// miss? Answered with [`ShardMessage::JoinPlaced`] on the joiner's shard.
    PlaceJoin {
        room: Arc<Room>,
        join: HeldJoin,
        recover: Option<Recover>,
    },
    /// The held messages after `since`, at most `limit`.
    ReadHistory {
        room: Arc<Room>,
        since: u64,
        limit: usize,
        reply: Reply<Page>,
    },
}

impl HomeRequest {
    fn room(&self) -> &Arc<Room> {
        match self {
            HomeRequest::Sequence { room, .. }
            | HomeRequest::PlaceJoin { room, .. }
            | HomeRequest::ReadHistory { room, .. } => room,
        }
    }
}

/// Takes `request` to the home of its room's stream.
pub(crate) fn ask_home(
    via: &mut impl Post,
    hub: &HubShared,
    request: HomeRequest,
) -> Result<(), EngineError> {
    match &hub.cluster {
        Some(cluster) => {
            cluster.send(Outbound::Home(request));
            Ok(())
        }
        None => {
            let home = request.room().home;
            via.post(home, ShardMessage::Home(request))
        }
    }
}
