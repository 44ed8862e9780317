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
    let local = |bits: u64| {
        let id = ConnectionId::from_bits(bits);
        (id.node() == hub.node_tag() && id.shard() < hub.config.shards).then_some(id)
    };
    match command {
        Command::Disconnect { conn, code, reason } => match local(conn) {
            Some(id) => {
                let answer = ask_shard(hub, id, |conn, reply| ShardMessage::Disconnect {
                    conn,
                    code,
                    reason,
                    reply,
                });
                Answer::of(answer.await, |()| Answer::Done)
            }
            None => Answer::UnknownConnection(conn),
        },
        Command::Describe { conn } => match local(conn) {
            Some(id) => {
                let answer = ask_shard(hub, id, |conn, reply| ShardMessage::Describe {
                    conn,
                    reply,
                });
                Answer::of(answer.await, |info| Answer::Described {
                    user_id: info.user_id,
                    remote_addr: info.remote_addr,
                    connected_at_ms: info
                        .connected_at
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64),
                })
            }
            None => Answer::UnknownConnection(conn),
        },
        Command::Join { conn, room } => match local(conn) {
            Some(id) => {
                let answer = ask_shard(hub, id, |conn, reply| ShardMessage::Join {
                    conn,
                    room,
                    reply,
                });
                Answer::of(answer.await, Answer::Count)
            }
            None => Answer::UnknownConnection(conn),
        },
        Command::Leave { conn, room } => match local(conn) {
            Some(id) => {
                let answer = ask_shard(hub, id, |conn, reply| ShardMessage::Leave {
                    conn,
                    room,
                    reply,
                });
                Answer::of(answer.await, Answer::Count)
            }
            None => Answer::UnknownConnection(conn),
        },
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

/// Posts a command to the shard of `id` without waiting for room, and awaits its reply.
async fn ask_shard<T>(
    hub: &HubShared,
    id: ConnectionId,
    command: impl FnOnce(ConnectionId, Reply<T>) -> ShardMessage,
) -> Result<T, EngineError> {
    let (reply, answer) = oneshot::channel();
    WithoutWaiting(hub).post(id.shard(), command(id, reply))?;
    match tokio::time::timeout(REPLY_TIMEOUT, answer).await {
        Ok(Ok(result)) => result,
        _ => Err(EngineError::Overloaded),
    }
}
