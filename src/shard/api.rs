//! Serving the HTTP API (see [`crate::api`]) on the shard that accepted the call.
//!
//! Publishing from here is the same fan-out a client's message gets: encode once, queue
//! locally, post to the other shards. Closing a connection of another shard waits for
//! that shard's answer in a task of its own, so this shard never blocks.

use std::future::IntoFuture;
use std::rc::Rc;
use std::time::Instant;

use serde_json::{json, Value};

use super::connection::Phase;
use super::context::Ctx;
use super::error::EngineError;
use super::home::ask_home;
use super::info::History;
use super::message::HomeRequest;
use super::message::{ShardMessage, REPLY_TIMEOUT};
use super::operations::{self, Audience};
use super::positioned::Positioned;
use super::publish::Post;
use super::respond::{refuse, respond};
use super::sequence::publish_to_room;
use super::Shard;
use crate::api::{self, ApiError, CloseRequest, Route};
use crate::cluster::command::{Answer, Command};
use crate::http::RequestHead;
use crate::ids::ConnectionId;

pub(super) fn on_api(cx: &mut Ctx, key: usize, request: &RequestHead, body: &[u8]) {
    // The caller's key was checked with the request head, before its body.
    let outcome = api::route(request).and_then(|route| serve_route(cx, key, route, body));
    match outcome {
        Ok(Some((status, body))) => respond(cx, key, status, "application/json", &body.to_string()),
        Ok(None) => {} // answered later, by a task waiting for another shard
        Err(e) => refuse(cx, key, &e),
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
            let Audience { target, count } = operations::everyone(hub, None);
            cx.publish(target, frame);
            json!({ "queued": count })
        }
        Route::RoomBroadcast { room, except } => {
            let audience = operations::room(hub, &room, except).map_err(|_| room_not_found())?;
            let frame = hub.encode_text(api::json_body(body)?);
            cx.publish(audience.target, frame);
            json!({ "queued": audience.count })
        }
        Route::UserSend { user } => {
            let text = api::json_body(body)?;
            let audience = operations::user(hub, &user);
            if let Some(Audience { target, .. }) = &audience {
                cx.publish(target.clone(), hub.encode_text(text));
            }
            json!({ "queued": audience.map_or(0, |a| a.count) })
        }
        Route::ListRooms => json!({ "rooms": operations::rooms(hub) }),
        Route::CreateRoom { room } => {
            let created = operations::create_room(hub, &room);
            let info = hub
                .registry
                .room(&room)
                .map(|r| operations::room_info_of(hub, &r));
            let status = if created { 201 } else { 200 };
            return Ok(Some((status, json!({ "room": info, "created": created }))));
        }
        Route::RemoveRoom { room } => {
            operations::remove_room(cx, hub, &room).map_err(|_| room_not_found())?;
            json!({ "removed": room })
        }
        Route::RoomPublish { room } => {
            let (room, queued) =
                operations::addressed_room(hub, &room, None).ok_or_else(room_not_found)?;
            let message = Positioned::publication(api::json_body(body)?)
                .map_err(|e| ApiError::new(400, "invalid_json", e.to_string()))?;
            let (reply, answer) = oneshot::channel();
            // Carried out here, or on the room's home shard; never fails from a shard.
            let _ = publish_to_room(cx, hub, room, message, Some(reply));
            answer_when_ready(cx, key, answer, move |offset| {
                let mut body = json!({ "queued": queued });
                if let Some(offset) = offset {
                    body["offset"] = offset.into();
                }
                body.to_string()
            });
            return Ok(None);
        }
        Route::RoomHistory { room, since, limit } => {
            let history = &hub.config.history;
            if !history.is_on() {
                return Err(history_off());
            }
            let limit = limit
                .unwrap_or(history.max_recover)
                .min(history.max_recover);
            let (room, _) =
                operations::addressed_room(hub, &room, None).ok_or_else(room_not_found)?;
            let (reply, answer) = oneshot::channel();
            let name = room.name.clone();
            let ask = HomeRequest::ReadHistory {
                room,
                since,
                limit,
                reply,
            };
            let _ = ask_home(cx, hub, ask);
            answer_when_ready(cx, key, answer, move |page| {
                History::of(&name, page).to_json()
            });
            return Ok(None);
        }
        Route::RoomMembers { room } => {
            if hub.registry.room(&room).is_none() && hub.room_count(&room, 0) == 0 {
                return Err(room_not_found());
            }
            let here = operations::local_room_members(hub, &room);
            let command = Command::RoomMembers { room: room.clone() };
            list_and_answer(
                cx,
                key,
                here,
                command,
                move |members| json!({ "room": room, "members": members }),
            );
            return Ok(None);
        }
        Route::UserConnections { user } => {
            let here = hub.registry.user_connections(&user);
            let command = Command::UserConnections { user: user.clone() };
            list_and_answer(
                cx,
                key,
                here,
                command,
                move |connections| json!({ "user_id": user, "connections": connections }),
            );
            return Ok(None);
        }
        Route::DisconnectUser { user, close } => {
            // The registry still lists connections that are closing; only the shards
            // know which of them this call closes, so the answer waits for theirs.
            let mut ids = hub.registry.user_connections(&user);
            if let Some(cluster) = &hub.cluster {
                ids.extend(cluster.view().connections_of(&user));
            }
            disconnect_and_answer(cx, key, &ids, &close, Disconnecting::User);
            return Ok(None);
        }
        Route::DisconnectConnection { id, close } => {
            let elsewhere = hub.cluster.as_ref().is_some_and(|c| id.node() != c.tag);
            if !elsewhere && (id.node() != hub.node_tag() || id.shard() >= hub.config.shards) {
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
    let hub = cx.hub();
    let answers = ids
        .iter()
        .map(|&id| {
            if let Some(cluster) = hub.cluster.as_ref().filter(|c| id.node() != c.tag) {
                let command = Command::Disconnect {
                    conn: id.to_bits(),
                    code: close.code,
                    reason: close.reason.clone(),
                };
                return cluster.ask(id.node(), command, Answer::done);
            }
            let (reply, answer) = oneshot::channel();
            let msg = ShardMessage::Disconnect {
                conn: id,
                code: close.code,
                reason: close.reason.clone(),
                reply,
            };
            // Carried out here, or on the connection's shard; never fails from a shard.
            let _ = cx.post(id.shard(), msg);
            answer
        })
        .collect();
    let caller = await_answer(cx, key);
    monoio::spawn(answer_disconnect(
        cx.shard.clone(),
        key,
        caller,
        what,
        answers,
    ));
}

/// Answers the call `key` with `render`'s body of the connections `here` and, in a
/// cluster, those every other node lists for `command` within the timeout, sorted.
fn list_and_answer(
    cx: &mut Ctx,
    key: usize,
    mut here: Vec<ConnectionId>,
    command: Command,
    render: impl FnOnce(Vec<ConnectionId>) -> Value + 'static,
) {
    let Some(cluster) = &cx.hub().cluster else {
        here.sort();
        let body = render(here).to_string();
        return respond(cx, key, 200, "application/json", &body);
    };
    let gathered = cluster.gather(command, Answer::connections);
    let (shard, caller) = (cx.shard.clone(), await_answer(cx, key));
    monoio::spawn(async move {
        let elsewhere = monoio::time::timeout(REPLY_TIMEOUT, gathered.into_future()).await;
        here.extend(
            elsewhere
                .ok()
                .and_then(Result::ok)
                .into_iter()
                .flatten()
                .flatten(),
        );
        here.sort();
        respond_later(&shard, key, caller, 200, &render(here).to_string());
    });
}

/// Answers the call `key` with `render`'s body once another shard's `answer` comes: at
/// once if it has come already (the call was carried out on this shard).
fn answer_when_ready<T: 'static>(
    cx: &mut Ctx,
    key: usize,
    answer: oneshot::Receiver<Result<T, EngineError>>,
    render: impl FnOnce(T) -> String + 'static,
) {
    let settle = |answer: Option<Result<T, EngineError>>| match answer {
        Some(Ok(value)) => (200, render(value)),
        Some(Err(EngineError::Refused(e))) if e.code == crate::protocol::ErrorCode::Unavailable => {
            (503, ApiError::new(503, "unavailable", e.text).body())
        }
        Some(Err(EngineError::Refused(_))) => (404, room_not_found().body()),
        Some(Err(_)) | None => (503, unavailable().body()),
    };
    match answer.try_recv() {
        Ok(answered) => {
            let (status, body) = settle(Some(answered));
            respond(cx, key, status, "application/json", &body);
        }
        Err(oneshot::TryRecvError::Disconnected) => refuse(cx, key, &unavailable()),
        Err(oneshot::TryRecvError::Empty) => {
            let (shard, caller) = (cx.shard.clone(), await_answer(cx, key));
            monoio::spawn(async move {
                let answered = monoio::time::timeout(REPLY_TIMEOUT, answer.into_future()).await;
                let (status, body) = settle(answered.ok().and_then(Result::ok));
                respond_later(&shard, key, caller, status, &body);
            });
        }
    }
}

/// Puts the call `key` in wait for an answer from another shard; the caller's id.
fn await_answer(cx: &mut Ctx, key: usize) -> ConnectionId {
    let conn = &mut cx.state.conns[key];
    conn.phase = Phase::Answering {
        deadline: Instant::now() + REPLY_TIMEOUT * 2,
    };
    conn.id
}

/// Answers the call `key` that waited, unless its caller has hung up meanwhile.
fn respond_later(shard: &Rc<Shard>, key: usize, caller: ConnectionId, status: u16, body: &str) {
    Ctx::with(shard, |cx| {
        // The caller may have hung up, and its slot may hold a newer connection.
        match cx.state.conns.get(key) {
            Some(conn) if conn.id == caller => {}
            _ => return,
        }
        respond(cx, key, status, "application/json", body);
    });
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
    caller: ConnectionId,
    what: Disconnecting,
    answers: Vec<oneshot::Receiver<Result<(), EngineError>>>,
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
            let e = unavailable();
            (e.status, e.body())
        }
        (Some(0), Disconnecting::One(id)) => {
            let e = connection_not_found(id);
            (e.status, e.body())
        }
        (Some(n), _) => (200, json!({ "disconnected": n }).to_string()),
    };
    respond_later(&shard, key, caller, status, &body);
}

fn unavailable() -> ApiError {
    ApiError::new(503, "unavailable", "a shard did not answer")
}

fn history_off() -> ApiError {
    ApiError::new(
        404,
        "history_off",
        "rooms keep no history: history.size is 0",
    )
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
