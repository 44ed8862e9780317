//! The inbox task: deliveries and commands from other shards and from `Hub` handles.
//!
//! While the shard is busy the task stays in the run queue and drains the inbox on every
//! pass, with the mailbox flagged not parked, so senders never pay for a wake-up. Only
//! after a pass in which the shard did nothing does it flag itself parked and sleep.

use std::rc::Rc;
use std::time::Duration;

use super::accept::adopt_std;
use super::connecting::on_connect_decided;
use super::context::Ctx;
use super::error::EngineError;
use super::fanout::{deliver_local, post_or_hold, Frames};
use super::info::ConnectionInfo;
use super::join::{join_placed, join_refused, join_room, leave_room};
use super::lifecycle::{begin_shutdown, forget_room};
use super::message::HomeRequest;
use super::message::ShardMessage;
use super::publish::Post;
use super::rulings::on_answer;
use super::sequence::{place_join, read_history, sequence};
use super::signal::yield_now;
use super::{accept, Shard};
use crate::stats::CloseCause;

/// Messages handled before letting other tasks run.
const BATCH: usize = 1024;
/// How soon held-back messages for a full inbox are retried.
const HELD_BACK_RETRY: Duration = Duration::from_millis(1);

/// The shard's inbox task.
pub(crate) async fn run(shard: Rc<Shard>) {
    let mut seen_activity = shard.activity.get();
    loop {
        let handled = drain_inbox(&shard);
        if shard.state.borrow().is_holding_back() && !retry_held_back(&shard) {
            monoio::time::sleep(HELD_BACK_RETRY).await;
            continue;
        }
        if handled > 0 {
            yield_now().await;
            continue;
        }
        let activity = shard.activity.get();
        if activity != seen_activity {
            seen_activity = activity;
            yield_now().await;
            continue;
        }
        park_inbox(&shard).await;
        seen_activity = shard.activity.get();
    }
}

fn drain_inbox(shard: &Rc<Shard>) -> usize {
    let handled = Ctx::with(shard, |cx| {
        let mut handled = 0;
        while handled < BATCH {
            let Ok(msg) = shard.inbox.try_recv() else {
                break;
            };
            apply(cx, msg);
            handled += 1;
        }
        handled
    });
    if handled > 0 {
        shard.note_activity();
    }
    handled
}

/// Flags the shard parked and waits for a sender (or local work) to wake it.
async fn park_inbox(shard: &Shard) {
    let mailbox = &shard.hub.mailboxes[shard.index];
    let mut parked = false;
    std::future::poll_fn(|task| {
        if parked {
            return std::task::Poll::Ready(());
        }
        mailbox.park(task.waker());
        if !shard.inbox.is_empty() {
            mailbox.unpark();
            return std::task::Poll::Ready(());
        }
        parked = true;
        std::task::Poll::Pending
    })
    .await
}

/// Posts held-back messages in order. True once none is left, and the paused readers
/// are resumed.
fn retry_held_back(shard: &Shard) -> bool {
    let clear = shard
        .state
        .borrow_mut()
        .held_back
        .retry(&shard.hub.mailboxes);
    if clear {
        shard.unpause_readers();
    }
    clear
}

/// Carries out a message to this shard: from its inbox, or posted by one of its own
/// steps to itself (see [`Post`]).
pub(super) fn apply(cx: &mut Ctx, msg: ShardMessage) {
    match msg {
        ShardMessage::Deliver {
            target,
            frame,
            deflated,
            published_us,
            kind,
        } => {
            let frames = Frames {
                plain: &frame,
                deflated: deflated.as_ref(),
            };
            deliver_local(cx, &target, frames, published_us, kind);
        }
        ShardMessage::Home(HomeRequest::Sequence {
            room,
            message,
            reply,
        }) => sequence(cx, room, message, reply),
        ShardMessage::Home(HomeRequest::PlaceJoin {
            room,
            join,
            recover,
        }) => place_join(cx, room, join, recover),
        ShardMessage::Home(HomeRequest::ReadHistory {
            room,
            since,
            limit,
            reply,
        }) => read_history(cx, room, since, limit, reply),
        ShardMessage::JoinPlaced { room, join, point } => join_placed(cx, room, join, point),
        ShardMessage::JoinRefused { room, join, error } => join_refused(cx, room, join, error),
        ShardMessage::Listen(listener) => accept::start(cx.shard, listener),
        ShardMessage::Adopt(stream) => adopt_std(cx, stream),
        ShardMessage::Join { conn, room, reply } => {
            let result = on_open_connection(cx, conn, |cx, key| {
                join_room(cx, key, &room, None).map_err(EngineError::from)
            });
            let _ = reply.send(result);
        }
        ShardMessage::Leave { conn, room, reply } => {
            let result = on_open_connection(cx, conn, |cx, key| {
                leave_room(cx, key, &room).map_err(EngineError::from)
            });
            let _ = reply.send(result);
        }
        ShardMessage::Disconnect {
            conn,
            code,
            reason,
            reply,
        } => {
            let result = on_open_connection(cx, conn, |cx, key| {
                let cause = CloseCause::Disconnected;
                cx.close_connection(key, code, &reason, false, cause);
                Ok(())
            });
            let _ = reply.send(result);
        }
        ShardMessage::Describe { conn: id, reply } => {
            // A connection that is closing still counts until it is gone, so it is
            // described too: the hub's counts and its answers agree.
            let state = &cx.state;
            let described = state
                .key_of(id)
                .map(|key| &state.conns[key])
                .and_then(|conn| {
                    Some(ConnectionInfo {
                        id: conn.id,
                        user_id: conn.user.clone()?,
                        remote_addr: conn.remote.socket_addr(),
                        connected_at: std::time::UNIX_EPOCH
                            + std::time::Duration::from_millis(conn.connected_at_ms),
                    })
                });
            let _ = reply.send(described.ok_or(EngineError::UnknownConnection(id)));
        }
        ShardMessage::RoomRemoved(room) => forget_room(cx, &room),
        ShardMessage::Answer {
            conn,
            question,
            ruling,
        } => on_answer(cx, conn, question, ruling),
        ShardMessage::ConnectDecided { conn, verdict } => on_connect_decided(cx, conn, verdict),
        ShardMessage::Shutdown => begin_shutdown(cx),
    }
}

/// Runs `f` on connection `conn` if it is here and open.
fn on_open_connection<T>(
    cx: &mut Ctx,
    conn: crate::ids::ConnectionId,
    f: impl FnOnce(&mut Ctx, usize) -> Result<T, EngineError>,
) -> Result<T, EngineError> {
    match cx.state.key_of(conn) {
        Some(key) if cx.state.conns[key].is_open() => f(cx, key),
        _ => Err(EngineError::UnknownConnection(conn)),
    }
}

/// A shard's own steps carry out what they post to it in place, and hold back what a
/// full inbox of another shard cannot take yet.
impl Post for Ctx<'_> {
    fn post(&mut self, shard: usize, msg: ShardMessage) -> Result<(), EngineError> {
        if shard == self.shard.index {
            apply(self, msg);
        } else {
            post_or_hold(self, shard, msg);
        }
        Ok(())
    }
}
