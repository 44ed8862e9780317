//! Carrying out here what another node asks of this node's connections (see
//! [`super::command`]): as a `Hub` handle would, on the connection's shard, without
//! waiting for room in its inbox.

use std::time::UNIX_EPOCH;

use super::command::{Answer, Command};
use crate::ids::ConnectionId;
use crate::shard::error::EngineError;
use crate::shard::message::{Reply, ShardMessage, REPLY_TIMEOUT};
use crate::shard::operations;
use crate::shard::publish::{Post, WithoutWaiting};
use crate::shard::shared::HubShared;

/// Carries out `command` on this node, for another node.
pub(crate) async fn carry_out(hub: &HubShared, command: Command) -> Answer {
    match command {
        Command::Disconnect { conn, code, reason } => {
            let asked = ask_shard(hub, conn, |conn, reply| ShardMessage::Disconnect {
                conn,
                code,
                reason,
                reply,
            });
            Answer::of(asked.await, |()| Answer::Done)
        }
        Command::Describe { conn } => {
            let asked = ask_shard(hub, conn, |conn, reply| ShardMessage::Describe {
                conn,
                reply,
            });
            Answer::of(asked.await, |info| Answer::Described {
                user_id: info.user_id,
                remote_addr: info.remote_addr,
                connected_at_ms: info
                    .connected_at
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
            })
        }
        Command::Join { conn, room } => {
            let asked = ask_shard(hub, conn, |conn, reply| ShardMessage::Join {
                conn,
                room,
                reply,
            });
            Answer::of(asked.await, Answer::Count)
        }
        Command::Leave { conn, room } => {
            let asked = ask_shard(hub, conn, |conn, reply| ShardMessage::Leave {
                conn,
                room,
                reply,
            });
            Answer::of(asked.await, Answer::Count)
        }
        Command::RoomMembers { room } => {
            let members = operations::local_room_members(hub, &room);
            Answer::Connections(members.iter().map(|id| id.to_bits()).collect())
        }
        Command::CreateRoom { room } => {
            hub.registry.create_room(&room);
            Answer::Done
        }
        Command::RemoveRoom { room } => {
            let _ = operations::remove_room_here(&mut WithoutWaiting(hub), hub, &room);
            Answer::Done
        }
        Command::UserConnections { user } => {
            let ids = hub.registry.user_connections(&user);
            Answer::Connections(ids.iter().map(|id| id.to_bits()).collect())
        }
    }
}

/// Posts a command for connection `bits` to its shard without waiting for room, and
/// awaits the reply; a connection that is not this node's is unknown here.
async fn ask_shard<T>(
    hub: &HubShared,
    bits: u64,
    command: impl FnOnce(ConnectionId, Reply<T>) -> ShardMessage,
) -> Result<T, EngineError> {
    let id = ConnectionId::from_bits(bits);
    if id.node() != hub.node_tag() || id.shard() >= hub.config.shards {
        return Err(EngineError::UnknownConnection(id));
    }
    let (reply, answer) = oneshot::channel();
    WithoutWaiting(hub).post(id.shard(), command(id, reply))?;
    match tokio::time::timeout(REPLY_TIMEOUT, answer).await {
        Ok(Ok(result)) => result,
        _ => Err(EngineError::Overloaded),
    }
}
