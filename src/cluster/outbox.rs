//! The bridge's outbox: what the shards and the `Hub` handles hand over, published in
//! the order it came. Events are numbered here, and before an event that gives this node
//! its first member of a room goes out, the node subscribes to the room's subject, so a
//! node that has heard of the member is sure its messages reach it.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use tokio::sync::mpsc;

use super::bridge_state::Bridge;
use super::command::Answer;
use super::inbound::room_frames;
use super::link::{LocalEvent, Outbound, Route};
use super::requests::{ask, request};
use super::subjects::Subjects;
use super::wire::{Body, CONNECTION_HEADER, EXCEPT_HEADER, KIND_HEADER, POSITIONED, USER_HEADER};
use crate::protocol::{ErrorCode, ProtocolError};
use crate::shard::message::{FrameKind, HomeRequest, ShardMessage};
use crate::shard::publish::{Post, WithoutWaiting};
use crate::shard::shared::HubShared;

/// How long a closing node waits for its goodbye to reach NATS.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// Publishes what the shards hand over, in order, until the hub says goodbye.
pub(super) async fn send_outbox(bridge: Rc<Bridge>, mut outbox: mpsc::Receiver<Outbound>) {
    let cluster = bridge.cluster();
    let counters = &cluster.counters;
    while let Some(item) = outbox.recv().await {
        match item {
            Outbound::Frame { route, frame, kind } => {
                if !bridge.connected() {
                    counters.dropped_out.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let (subject, headers) = address(&cluster.subjects, &route, kind);
                match bridge
                    .client
                    .publish_with_headers(subject, headers, frame)
                    .await
                {
                    Ok(()) => counters.messages_out.fetch_add(1, Ordering::Relaxed),
                    Err(_) => counters.dropped_out.fetch_add(1, Ordering::Relaxed),
                };
            }
            Outbound::Event(event) => {
                follow_interest(&bridge, &event).await;
                // A lost event leaves a gap in the numbers, so the others resynchronise.
                let skip = u64::from(cluster.take_events_lost());
                bridge.seq.set(bridge.seq.get() + 1 + skip);
                if !bridge.connected() {
                    counters.dropped_out.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let payload = bridge.envelope(body_of(event));
                let subject = cluster.subjects.events();
                match bridge.client.publish(subject, payload).await {
                    Ok(()) => counters.events_out.fetch_add(1, Ordering::Relaxed),
                    Err(_) => counters.dropped_out.fetch_add(1, Ordering::Relaxed),
                };
            }
            Outbound::Ask {
                node,
                command,
                reply,
            } => match bridge.task_ticket() {
                Some(ticket) => {
                    let bridge = bridge.clone();
                    tokio::task::spawn_local(async move {
                        ask(bridge, node, command, reply).await;
                        drop(ticket);
                    });
                }
                None => reply(Answer::Failed),
            },
            Outbound::Gather { command, reply } => {
                let Some(ticket) = bridge.task_ticket() else {
                    reply(Vec::new());
                    continue;
                };
                let nodes: Vec<u16> = cluster.view().tags();
                let asks: Vec<_> = nodes
                    .into_iter()
                    .map(|node| {
                        let (bridge, command) = (bridge.clone(), command.clone());
                        async move { request(&bridge, node, &command).await }
                    })
                    .collect();
                tokio::task::spawn_local(async move {
                    let answers = futures_util::future::join_all(asks).await;
                    reply(answers.into_iter().flatten().collect());
                    drop(ticket);
                });
            }
            Outbound::Home(request) => match (&bridge.history, bridge.task_ticket()) {
                (Some(history), Some(ticket)) => {
                    let history = history.clone();
                    tokio::task::spawn_local(async move {
                        history.serve(request).await;
                        drop(ticket);
                    });
                }
                _ => refuse(&bridge.hub, request),
            },
            Outbound::Purge(room) => {
                if let (Some(h), Some(ticket)) = (&bridge.history, bridge.task_ticket()) {
                    let h = h.clone();
                    tokio::task::spawn_local(async move {
                        h.purge(room).await;
                        drop(ticket);
                    });
                }
            }
            Outbound::Goodbye(done) => {
                if bridge.connected() {
                    let payload = bridge.envelope(Body::Goodbye);
                    let said = async {
                        let _ = bridge
                            .client
                            .publish(cluster.subjects.events(), payload)
                            .await;
                        let _ = bridge.client.flush().await;
                    };
                    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, said).await;
                }
                let _ = done.send(());
                return;
            }
        }
    }
}

/// Refuses a request to the home of a room's stream that the bridge cannot take now
/// (too many at once): the asker hears it at once, and a held join is refused.
fn refuse(hub: &HubShared, request: HomeRequest) {
    use crate::shard::error::EngineError::Overloaded;
    match request {
        HomeRequest::Sequence { reply, .. } => drop(reply.map(|r| r.send(Err(Overloaded)))),
        HomeRequest::ReadHistory { reply, .. } => drop(reply.send(Err(Overloaded))),
        HomeRequest::PlaceJoin { room, join, .. } => {
            let error =
                ProtocolError::new(ErrorCode::Unavailable, "The hub is too busy to join now");
            let refused = ShardMessage::JoinRefused { room, join, error };
            let _ = WithoutWaiting(hub).post(join.conn.shard(), refused);
        }
    }
}

/// The subject and headers of a frame for `route`.
fn address(subjects: &Subjects, route: &Route, kind: FrameKind) -> (String, HeaderMap) {
    let mut headers = HeaderMap::new();
    if kind == FrameKind::Positioned {
        headers.insert(KIND_HEADER, POSITIONED);
    }
    let mut except = |id: &Option<crate::ids::ConnectionId>| {
        if let Some(id) = id {
            headers.insert(EXCEPT_HEADER, id.to_bits().to_string());
        }
    };
    let subject = match route {
        Route::All { except: id } => {
            except(id);
            subjects.all()
        }
        Route::Room { room, except: id } => {
            except(id);
            subjects.room(room)
        }
        Route::User { node, user } => {
            let user =
                percent_encoding::utf8_percent_encode(user, percent_encoding::NON_ALPHANUMERIC);
            headers.insert(USER_HEADER, user.to_string());
            subjects.deliver(*node)
        }
        Route::Connection(id) => {
            headers.insert(CONNECTION_HEADER, id.to_bits().to_string());
            subjects.deliver(id.node())
        }
    };
    (subject, headers)
}

fn body_of(event: LocalEvent) -> Body {
    match event {
        LocalEvent::Opened { conn, user, rooms } => Body::Opened {
            conn: conn.to_bits(),
            user,
            rooms,
        },
        LocalEvent::Closed { conn, .. } => Body::Closed {
            conn: conn.to_bits(),
        },
        LocalEvent::Joined { conn, user, room } => Body::Joined {
            conn: conn.to_bits(),
            user,
            room,
        },
        LocalEvent::Left { conn, room } => Body::Left {
            conn: conn.to_bits(),
            room,
        },
    }
}

/// Subscribes to the subject of each room the event touches while this node has members
/// in it, and unsubscribes when it has none. It reads the directory, not the event:
/// events of several shards may come in another order than their joins and leaves.
async fn follow_interest(bridge: &Rc<Bridge>, event: &LocalEvent) {
    let rooms: &[Arc<str>] = match event {
        LocalEvent::Opened { rooms, .. } | LocalEvent::Closed { rooms, .. } => rooms,
        LocalEvent::Joined { room, .. } | LocalEvent::Left { room, .. } => {
            std::slice::from_ref(room)
        }
    };
    for room in rooms {
        follow_room(bridge, room).await;
    }
}

/// Makes the room subscriptions match the rooms with members here: for what a lost
/// event did not tell (see [`follow_interest`]). Run with each heartbeat.
pub(super) async fn reconcile_interest(bridge: &Rc<Bridge>) {
    let mut rooms: Vec<Arc<str>> = bridge.rooms.borrow().keys().cloned().collect();
    rooms.extend(
        bridge
            .hub
            .registry
            .rooms()
            .into_iter()
            .filter(|r| r.count() > 0)
            .map(|r| r.name.clone()),
    );
    rooms.sort_unstable();
    rooms.dedup();
    for room in &rooms {
        follow_room(bridge, room).await;
    }
}

/// Subscribes to `room`'s subject while this node has members of it, and unsubscribes
/// (and forgets its history log) when it has none.
async fn follow_room(bridge: &Rc<Bridge>, room: &Arc<str>) {
    let here = bridge
        .hub
        .registry
        .room(room)
        .is_some_and(|r| r.count() > 0);
    let subscribed = bridge.rooms.borrow().contains_key(room);
    if here && !subscribed {
        let subject = bridge.cluster().subjects.room(room);
        match bridge.client.subscribe(subject).await {
            Ok(subscription) => {
                let hub = bridge.hub.clone();
                let task = tokio::task::spawn_local(room_frames(hub, room.clone(), subscription));
                bridge.rooms.borrow_mut().insert(room.clone(), task);
            }
            Err(e) => tracing::warn!(%room, error = %e, "cannot subscribe to a room's subject"),
        }
    } else if !here && subscribed {
        if let Some(task) = bridge.rooms.borrow_mut().remove(room) {
            // Dropping the subscription with its task unsubscribes.
            task.abort();
        }
        if let Some(history) = &bridge.history {
            history.forget(room);
        }
    }
}
