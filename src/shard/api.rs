//! Serving the HTTP API (see [`crate::api`]) on the shard that accepted the call.
//!
//! Publishing from here is the same fan-out a client's message gets: encode once, queue
//! locally, post to the other shards. Closing a connection of another shard waits for
//! that shard's answer in a task of its own, so this shard never blocks.

use std::future::IntoFuture;
use std::rc::Rc;
use std::time::Instant;

use monoio::net::TcpStream;
use serde_json::{json, Value};

use super::connection::Phase;
use super::context::Ctx;
use super::fanout::{post, publish};
use super::handshake::respond;
use super::lifecycle::forget_room;
use super::message::{ShardMessage, Target, REPLY_TIMEOUT};
use super::Shard;
use crate::api::{self, ApiError, CloseRequest, Route};
use crate::http::RequestHead;
use crate::hub::{HubError, RoomInfo};
use crate::ids::ConnectionId;
use crate::stats::CloseCause;

pub(super) fn on_api(cx: &mut Ctx, key: usize, request: &RequestHead, body: &[u8]) {
    // The caller's key was checked with the request head, before its body.
    let outcome = api::route(request).and_then(|route| serve_route(cx, key, route, body));
    match outcome {
        Ok(Some((status, body))) => respond(cx, key, status, "application/json", &body.to_string()),
        Ok(None) => {} // answered later, by a task waiting for another shard
        Err(e) => respond(cx, key, e.status, "application/json", &e.body()),
    }
}

/// Runs one API call. `Ok(None)` means the answer comes later.
fn serve_route(
    cx: &mut Ctx,
    key: usize,
    route: Route,
    body: &[u8],
) -> Result<Option<(u16, Value)>, ApiError> {
    let hub = cx.hub();
    let answer = match route {
        Route::Broadcast => {
            let frame = hub.encode_text(api::json_body(body)?);
            publish(cx, Target::All { except: None }, frame);
            json!({ "queued": hub.admission.open() })
        }
        Route::RoomBroadcast { room, except } => {
            let room = hub.registry.room(&room).ok_or_else(room_not_found)?;
            let frame = hub.encode_text(api::json_body(body)?);
            let queued = room.recipients(except);
            publish(cx, Target::Room { room, except }, frame);
            json!({ "queued": queued })
        }
        Route::UserSend { user } => {
            let text = api::json_body(body)?;
            let ids = hub.registry.user_connections(&user);
            let queued = ids.len();
            if queued > 0 {
                let frame = hub.encode_text(text);
                publish(cx, Target::Connections(ids.into()), frame);
            }
            json!({ "queued": queued })
        }
        Route::ListRooms => json!({ "rooms": RoomInfo::all(&hub.registry) }),
        Route::CreateRoom { room } => {
            let created = hub.registry.create_room(&room);
            let info = hub.registry.room(&room).map(|r| RoomInfo::of(&r));
            let status = if created { 201 } else { 200 };
            return Ok(Some((status, json!({ "room": info, "created": created }))));
        }
        Route::RemoveRoom { room } => {
            let (room, _) = hub.registry.remove_room(&room).ok_or_else(room_not_found)?;
            for shard in 0..hub.config.shards {
                if shard == cx.shard.index {
                    forget_room(cx, &room);
                } else {
                    post(cx, shard, ShardMessage::RoomRemoved(room.clone()));
                }
            }
            json!({ "removed": room.name.as_ref() })
        }
        Route::RoomMembers { room } => {
            let room = hub.registry.room(&room).ok_or_else(room_not_found)?;
            let mut members = room.members();
            members.sort();
            json!({ "room": room.name.as_ref(), "members": members })
        }
        Route::UserConnections { user } => {
            let mut connections = hub.registry.user_connections(&user);
            connections.sort();
            json!({ "user_id": user, "connections": connections })
        }
        Route::DisconnectUser { user, close } => {
            // The registry still lists connections that are closing; only the shards
            // know which of them this call closes, so the answer waits for theirs.
            let ids = hub.registry.user_connections(&user);
            disconnect_and_answer(cx, key, &ids, &close, Disconnecting::User);
            return Ok(None);
        }
        Route::DisconnectConnection { id, close } => {
            if id.shard() >= hub.config.shards {
                return Err(connection_not_found(id));
            }
            disconnect_and_answer(cx, key, &[id], &close, Disconnecting::One(id));
            return Ok(None);
        }
    };
    Ok(Some((200, answer)))
}

/// Closes connections `ids` and answers the call `key` once their shards have acted.
fn disconnect_and_answer(
    cx: &mut Ctx,
    key: usize,
    ids: &[ConnectionId],
    close: &CloseRequest,
    what: Disconnecting,
) {
    let answers = ids
        .iter()
        .map(|&id| {
            let (reply, answer) = oneshot::channel();
            disconnect(cx, id, close, reply);
            answer
        })
        .collect();
    let conn = &mut cx.state.conns[key];
    conn.phase = Phase::Answering {
        deadline: Instant::now() + REPLY_TIMEOUT * 2,
    };
    let task = answer_disconnect(cx.shard.clone(), key, conn.stream.clone(), what, answers);
    monoio::spawn(task);
}

/// Closes connection `id`, here or on its shard; the outcome goes to `reply`.
fn disconnect(
    cx: &mut Ctx,
    id: ConnectionId,
    close: &CloseRequest,
    reply: super::message::Reply<()>,
) {
    if id.shard() != cx.shard.index {
        let msg = ShardMessage::Disconnect {
            conn: id,
            code: close.code,
            reason: close.reason.clone(),
            reply,
        };
        return post(cx, id.shard(), msg);
    }
    let outcome = match cx.state.key_of(id.seq()) {
        Some(key) if cx.state.conns[key].is_open() => {
            let cause = CloseCause::Disconnected;
            cx.close_connection(key, close.code, &close.reason, false, cause);
            Ok(())
        }
        _ => Err(HubError::UnknownConnection(id)),
    };
    let _ = reply.send(outcome);
}

/// What a disconnect call asked to close.
#[derive(Clone, Copy)]
enum Disconnecting {
    /// One connection: 404 unless it was open.
    One(ConnectionId),
    /// All of a user's connections: answers how many were open.
    User,
}

/// Waits for the shards that own the connections to act on a disconnect, then answers
/// the call with how many were open and are now closing.
async fn answer_disconnect(
    shard: Rc<Shard>,
    key: usize,
    stream: Rc<TcpStream>,
    what: Disconnecting,
    answers: Vec<oneshot::Receiver<Result<(), HubError>>>,
) {
    let closed = monoio::time::timeout(REPLY_TIMEOUT, async {
        let mut closed = 0;
        for answer in answers {
            match answer.into_future().await {
                Ok(Ok(())) => closed += 1,
                Ok(Err(_)) => {}       // not open (any more)
                Err(_) => return None, // the shard dropped the call unanswered
            }
        }
        Some(closed)
    })
    .await
    .ok()
    .flatten();
    let (status, body) = match (closed, what) {
        (None, _) => {
            let e = ApiError::new(503, "unavailable", "a connection's shard did not answer");
            (e.status, e.body())
        }
        (Some(0), Disconnecting::One(id)) => {
            let e = connection_not_found(id);
            (e.status, e.body())
        }
        (Some(n), _) => (200, json!({ "disconnected": n }).to_string()),
    };
    Ctx::with(&shard, |cx| {
        // The caller may have hung up, and its slot may hold a newer connection.
        match cx.state.conns.get(key) {
            Some(conn) if Rc::ptr_eq(&conn.stream, &stream) => {}
            _ => return,
        }
        respond(cx, key, status, "application/json", &body);
    });
}

fn room_not_found() -> ApiError {
    ApiError::new(404, "room_not_found", "no such room")
}

fn connection_not_found(id: ConnectionId) -> ApiError {
    ApiError::new(
        404,
        "connection_not_found",
        format!("no open connection {id}"),
    )
}
