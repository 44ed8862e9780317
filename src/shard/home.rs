//! The home of a room's stream, with history on: the shard of the room's name on a
//! single node ([`super::sequence`]), the bridge in a cluster (`cluster::history`).
//! Whoever publishes to a room, joins it or reads its history asks the home the same
//! way, and [`ask_home`] takes the request there.

use super::error::EngineError;
use super::message::{HomeRequest, ShardMessage};
use super::publish::Post;
use super::shared::HubShared;
use crate::cluster::link::Outbound;

/// Takes `request` to the home of its room's stream.
pub(crate) fn ask_home(
    via: &mut impl Post,
    hub: &HubShared,
    request: HomeRequest,
) -> Result<(), EngineError> {
    match &hub.cluster {
        Some(cluster) => match cluster.send(Outbound::Home(request)) {
            true => Ok(()),
            false => Err(EngineError::Overloaded),
        },
        None => {
            let home = request.room().home;
            via.post(home, ShardMessage::Home(request))
        }
    }
}
