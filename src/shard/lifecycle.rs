//! A shard's life, and each connection's: start, open, close, graceful shutdown.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::value::RawValue;

use super::connection::Phase;
use super::context::Ctx;
use super::fanout::send_error;
use super::fanout::send_to;
use super::join::{join_room, notify_left, tell_left};
use super::message::Target;
use super::ratelimit::TokenBucket;
use super::Shard;
use crate::cluster::link::LocalEvent;
use crate::config::PresenceScope;
use crate::hooks::HubEvent;
use crate::ids::ConnectionId;
use crate::protocol::{unix_time, PresenceStatus, ServerMessage};
use crate::room::Room;
use crate::stats::CloseCause;
use crate::ws::{close_code, encode};

/// After the shutdown deadline, how long killed connections get to be cleaned up.
const CLEANUP_GRACE: Duration = Duration::from_secs(1);

/// Who a connection turned out to be at its upgrade, and what comes with it.
pub(crate) struct Admitted {
    pub user: Arc<str>,
    /// It is the user's first connection: the others hear the user is online.
    pub first: bool,
    /// The request headers the application asked for.
    pub headers: Vec<(String, String)>,
    /// Rooms to join besides `rooms.autojoin` (the backend's connect hook names them).
    pub rooms: Vec<String>,
    /// What the `welcome` carries as `data` (the backend's connect hook gives it).
    pub data: Option<Box<RawValue>>,
}

/// The upgrade is done (admitted and registered): welcome, auto-join, announce presence.
/// In raw mode the application alone speaks: no welcome, no rooms, no presence.
pub(crate) fn open(cx: &mut Ctx, key: usize, admitted: Admitted) {
    let Admitted {
        user,
        first,
        headers,
        rooms,
        data,
    } = admitted;
    let limiter = TokenBucket::full(&cx.config().limits, cx.shard.now_ms());
    let raw = cx.is_raw();
    let conn = &mut cx.state.conns[key];
    conn.phase = Phase::Open;
    conn.user = Some(user.clone());
    conn.connected_at_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    conn.limiter = limiter;
    let (id, remote) = (conn.id, conn.remote.socket_addr());
    if !raw {
        let welcome = encode::json_frame(&ServerMessage::Welcome {
            connection_id: id,
            user_id: &user,
            data: data.as_deref(),
        });
        conn.out.push_unbounded(welcome);
    }
    // The upgrade's answer is queued already, welcome or not.
    cx.mark_dirty(key);
    crate::stats::add(&cx.counters().connections, 1);
    tracing::debug!(conn = %id, user = %user, %remote, "connection opened");
    cx.tell(|| HubEvent::Connected {
        conn: id,
        user: user.clone(),
        remote,
        headers,
    });
    // The other nodes hear of the connection once, with the rooms it joined on the way in.
    cx.state.opening = Some(key);
    if !raw {
        let autojoin = &cx.config().rooms.autojoin;
        for room in autojoin.iter().chain(&rooms) {
            if let Err(e) = join_room(cx, key, room, None) {
                send_error(cx, key, e.code, &e.text);
            }
        }
    }
    cx.state.opening = None;
    let rooms: Arc<[Arc<Room>]> = cx.state.membership.rooms_of(key).into();
    cx.hub().announce(|| LocalEvent::Opened {
        conn: id,
        user: user.clone(),
        rooms: rooms.iter().map(|r| r.name.clone()).collect(),
    });
    if first && !raw {
        announce_presence(cx, id, &user, PresenceStatus::Online, rooms);
    }
}

fn announce_presence(
    cx: &mut Ctx,
    id: ConnectionId,
    user: &str,
    status: PresenceStatus,
    rooms: Arc<[Arc<Room>]>,
) {
    let except = Some(id);
    let target = match cx.config().presence {
        PresenceScope::Off => return,
        _ if cx.shard.is_stopping() => return,
        PresenceScope::All => Target::All { except },
        PresenceScope::Rooms => Target::Rooms { rooms, except },
    };
    let frame = cx.hub().encode(&ServerMessage::Presence {
        user_id: user,
        status,
        time: unix_time(),
    });
    cx.notify(target, frame);
}

/// Removes the connection at `key` for good: out of its rooms (telling the members),
/// out of the directory (announcing the user offline if it was their last).
pub(crate) fn finish(shard: &Rc<Shard>, key: usize) {
    Ctx::with(shard, |cx| finish_in(cx, key));
}

fn finish_in(cx: &mut Ctx, key: usize) {
    cx.state.conns[key].kill();
    let id = cx.state.conns[key].id;
    let left = cx.state.membership.leave_all(&cx.hub().registry, key, id);
    for (room, count) in &left {
        notify_left(cx, key, room, *count);
        tell_left(cx, key, room);
    }
    let rooms: Vec<Arc<Room>> = left.into_iter().map(|(room, _)| room).collect();
    let conn = *cx.state.conns.remove(key);
    cx.state.by_seq.remove(&conn.id.seq());
    if conn.admitted {
        cx.hub().admission.release(conn.remote.ip());
    }
    if conn.deflate {
        let deflating = &cx.hub().deflate_connections;
        deflating.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
    if let Some(awaiting) = &conn.awaiting {
        cx.state
            .deadlines
            .remove(&(awaiting.deadline, awaiting.question));
    }
    let Some(user) = conn.user else {
        return;
    };
    let hub = cx.hub();
    let names: Vec<Arc<str>> = rooms.iter().map(|r| r.name.clone()).collect();
    // Offline is announced under the same lock as it was decided, so that an `online`
    // the bridge decides next comes after it.
    hub.with_remote_connections(&user, |elsewhere| {
        let last = hub.registry.remove_connection(conn.id, &user) && elsewhere == 0;
        if last {
            announce_presence(cx, conn.id, &user, PresenceStatus::Offline, rooms.into());
        }
    });
    hub.announce(|| LocalEvent::Closed {
        conn: conn.id,
        rooms: names,
    });
    let cause = conn.cause.unwrap_or(CloseCause::ClientGone);
    cx.tell(|| HubEvent::Disconnected {
        conn: conn.id,
        user: user.clone(),
        cause: cause.label(),
    });
    let counters = cx.counters();
    counters
        .connections
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    counters.count_close(cause);
    tracing::debug!(conn = %conn.id, user = %user, cause = cause.label(), "connection closed");
}

/// A room was removed through the hub: its local members leave it, with a `left`, and
/// on its home shard its stream ends.
pub(crate) fn forget_room(cx: &mut Ctx, room: &Arc<Room>) {
    cx.state.streams.end(room);
    let members = cx.state.membership.forget_room(room);
    for &key in &members {
        let conn = cx.state.conns[key].id;
        cx.hub().announce(|| LocalEvent::Left {
            conn,
            room: room.name.clone(),
        });
        tell_left(cx, key, room);
    }
    if members.is_empty() {
        return;
    }
    let left = encode::json_frame(&ServerMessage::Left {
        room: &room.name,
        count: 0,
    });
    for key in members {
        send_to(cx, key, left.clone());
    }
}

/// Graceful shutdown: stop accepting, send `server_shutdown` and close 1001 to every
/// client, then let [`drain_connections`] wait for them.
pub(crate) fn begin_shutdown(cx: &mut Ctx) {
    let shard = cx.shard;
    if shard.is_stopping() {
        return;
    }
    let deadline = Instant::now() + cx.config().shutdown_timeout;
    shard.stopping.set(Some(deadline));
    std::mem::take(&mut *shard.accept_canceller.borrow_mut()).cancel();
    let goodbye = encode::json_frame(&ServerMessage::ServerShutdown {
        message: "Server is shutting down",
    });
    let limits = cx.config().send_queue;
    let now_us = cx.hub().now_us();
    let keys: Vec<usize> = cx.state.conns.iter().map(|(key, _)| key).collect();
    for key in keys {
        let conn = &mut cx.state.conns[key];
        match conn.phase {
            Phase::Open => {
                let _ = conn.queue(goodbye.clone(), now_us, &limits);
                conn.blame(CloseCause::Shutdown);
                conn.begin_close(close_code::GOING_AWAY, "server shutdown", deadline, false);
                cx.mark_dirty(key);
            }
            Phase::Handshake { .. } | Phase::Answering { .. } | Phase::Connecting { .. } => {
                conn.kill()
            }
            Phase::Closing { .. } | Phase::Dead => {}
        }
    }
    shard.stopped.notify();
}

/// Waits until every connection has gone, or the shutdown deadline passes and the
/// rest are cut.
pub(super) async fn drain_connections(shard: &Shard) {
    let deadline = shard.stopping.get().unwrap_or_else(Instant::now);
    let mut killed = false;
    loop {
        if shard.state.borrow().conns.is_empty() {
            return;
        }
        let now = Instant::now();
        if now >= deadline + CLEANUP_GRACE {
            return;
        }
        if now >= deadline && !killed {
            killed = true;
            for (_, conn) in shard.state.borrow_mut().conns.iter_mut() {
                conn.kill();
            }
        }
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
}
