//! The inbox task: deliveries and commands from other shards and from `Hub` handles.
//!
//! While the shard is busy the task stays in the run queue and drains the inbox on every
//! pass, with the mailbox flagged not parked, so senders never pay for a wake-up. Only
//! after a pass in which the shard did nothing does it flag itself parked and sleep.

use std::rc::Rc;
use std::time::Duration;

use super::message::ShardMessage;
use super::signal::yield_now;
use super::{accept, Shard};
use crate::hub::{ConnectionInfo, HubError};
use crate::mailbox::PostError;
use crate::stats::CloseCause;

/// Messages handled before letting other tasks run.
const BATCH: usize = 1024;
/// How soon held-back messages for a full inbox are retried.
const HELD_BACK_RETRY: Duration = Duration::from_millis(1);

/// The shard's inbox task.
pub(crate) async fn run(shard: Rc<Shard>) {
    let mut seen_activity = shard.activity.get();
    loop {
        let handled = shard.drain_inbox();
        if shard.state.borrow().is_holding_back() && !shard.retry_held_back() {
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
        shard.park_inbox().await;
        seen_activity = shard.activity.get();
    }
}

impl Shard {
    fn drain_inbox(self: &Rc<Self>) -> usize {
        let mut handled = 0;
        while handled < BATCH {
            let Ok(msg) = self.inbox.try_recv() else {
                break;
            };
            self.handle(msg);
            handled += 1;
        }
        if handled > 0 {
            self.note_activity();
        }
        handled
    }

    /// Flags the shard parked and waits for a sender (or local work) to wake it.
    async fn park_inbox(&self) {
        let mailbox = &self.hub.mailboxes[self.index];
        let mut parked = false;
        std::future::poll_fn(|cx| {
            if parked {
                return std::task::Poll::Ready(());
            }
            mailbox.park(cx.waker());
            if !self.inbox.is_empty() {
                mailbox.unpark();
                return std::task::Poll::Ready(());
            }
            parked = true;
            std::task::Poll::Pending
        })
        .await
    }

    /// Posts held-back messages in order. True once none is left, and the paused
    /// readers are resumed.
    fn retry_held_back(&self) -> bool {
        let mut state = self.state.borrow_mut();
        for (shard, held) in state.held_back.iter_mut().enumerate() {
            while let Some(msg) = held.pop_front() {
                match self.hub.mailboxes[shard].try_post(msg) {
                    Ok(()) | Err(PostError::Closed) => {}
                    Err(PostError::Full(msg)) => {
                        held.push_front(msg);
                        break;
                    }
                }
            }
        }
        let clear = !state.is_holding_back();
        drop(state);
        if clear {
            self.paused_readers.wake_all();
        }
        clear
    }

    fn handle(self: &Rc<Self>, msg: ShardMessage) {
        match msg {
            ShardMessage::Deliver {
                target,
                frame,
                published_us,
            } => {
                let mut state = self.state.borrow_mut();
                self.deliver_local(&mut state, &target, &frame, published_us);
            }
            ShardMessage::Listen(listener) => accept::start(self, listener),
            ShardMessage::Adopt(stream) => self.adopt_std(stream),
            ShardMessage::Join { conn, room, reply } => {
                let result = self.on_open_connection(conn, |state, key| {
                    self.join_room(state, key, &room).map_err(HubError::from)
                });
                let _ = reply.send(result);
            }
            ShardMessage::Leave { conn, room, reply } => {
                let result = self.on_open_connection(conn, |state, key| {
                    self.leave_room(state, key, &room).map_err(HubError::from)
                });
                let _ = reply.send(result);
            }
            ShardMessage::Disconnect {
                conn,
                code,
                reason,
                reply,
            } => {
                let result = self.on_open_connection(conn, |state, key| {
                    let cause = CloseCause::Disconnected;
                    self.close_connection(state, key, code, &reason, false, cause);
                    Ok(())
                });
                let _ = reply.send(result);
            }
            ShardMessage::Describe { conn: id, reply } => {
                // A connection that is closing still counts until it is gone, so it is
                // described too: the hub's counts and its answers agree.
                let state = self.state.borrow();
                let described = state
                    .key_of(id.seq())
                    .map(|key| &state.conns[key])
                    .and_then(|conn| {
                        Some(ConnectionInfo {
                            id: conn.id,
                            user_id: conn.user.clone()?,
                            remote_addr: conn.remote,
                            connected_at: conn.connected_at,
                        })
                    });
                let _ = reply.send(described.ok_or(HubError::UnknownConnection(id)));
            }
            ShardMessage::RoomRemoved(room) => {
                let mut state = self.state.borrow_mut();
                self.forget_room(&mut state, &room);
            }
            ShardMessage::Shutdown => self.begin_shutdown(),
        }
    }

    /// Runs `f` on connection `conn` if it is here and open.
    fn on_open_connection<T>(
        &self,
        conn: crate::ids::ConnectionId,
        f: impl FnOnce(&mut super::state::ShardState, usize) -> Result<T, HubError>,
    ) -> Result<T, HubError> {
        let mut state = self.state.borrow_mut();
        match state.key_of(conn.seq()) {
            Some(key) if state.conns[key].is_open() => f(&mut state, key),
            _ => Err(HubError::UnknownConnection(conn)),
        }
    }
}
