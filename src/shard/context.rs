//! `Ctx`: what one step of a shard's work has in hand, the shard and its state.
//!
//! The steps of the pipeline (the handshake, the protocol's dispatch, the API, fan-out,
//! housekeeping) are functions over a `Ctx`, not methods of the shard: the shard's state
//! is borrowed once for the step, and every function the step calls sees that the state
//! is what it may change. The state is borrowed only between awaits, so a step never holds
//! it across one.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;

use super::message::Target;
use super::publish;
use super::shared::HubShared;
use super::state::ShardState;
use super::Shard;
use crate::config::HubConfig;
use crate::hooks::HubEvent;
use crate::stats::{CloseCause, ShardCounters};

/// One step's view of a shard.
pub(crate) struct Ctx<'a> {
    pub shard: &'a Rc<Shard>,
    pub state: &'a mut ShardState,
}

impl<'a> Ctx<'a> {
    /// Runs `step` with the shard's state borrowed for it.
    pub fn with<R>(shard: &'a Rc<Shard>, step: impl FnOnce(&mut Ctx<'_>) -> R) -> R {
        let mut state = shard.state.borrow_mut();
        step(&mut Ctx {
            shard,
            state: &mut state,
        })
    }

    /// What every shard shares: configuration, directory, mailboxes, counters.
    pub fn hub(&self) -> &'a HubShared {
        &self.shard.hub
    }

    pub fn config(&self) -> &'a HubConfig {
        &self.shard.hub.config
    }

    pub fn counters(&self) -> &'a ShardCounters {
        self.shard.counters()
    }

    /// Delivers `frame` to every recipient of `target` (see [`publish::publish`]).
    pub fn publish(&mut self, target: Target, frame: Bytes) {
        let hub = self.hub();
        // Posting from a shard never fails: a full inbox holds the message back.
        let _ = publish::publish(self, hub, target, frame);
    }

    /// Delivers a notice this node made for its own clients (see [`publish::notify`]).
    pub fn notify(&mut self, target: Target, frame: Bytes) {
        let hub = self.hub();
        let _ = publish::notify(self, hub, target, frame);
    }

    /// Tells the embedding application, if there is one, what `event` makes.
    pub fn tell(&self, event: impl FnOnce() -> HubEvent) {
        if let Some(events) = &self.hub().events {
            events.emit(event());
        }
    }

    /// The application owns the whole message protocol (`Application::raw`).
    pub fn is_raw(&self) -> bool {
        self.hub()
            .events
            .as_ref()
            .is_some_and(|e| e.application.raw)
    }

    /// Lists connection `key` for the next flush pass, and makes sure the pass runs.
    pub fn mark_dirty(&mut self, key: usize) {
        self.state.list_dirty(key);
        self.shard.flush.notify();
    }

    /// Closes connection `key` with a close frame, for `cause`. `abort` drops what is
    /// still queued (the client broke a rule); otherwise the close frame follows
    /// everything queued.
    pub fn close_connection(
        &mut self,
        key: usize,
        code: u16,
        reason: &str,
        abort: bool,
        cause: CloseCause,
    ) {
        let deadline = Instant::now() + self.config().write_timeout;
        let conn = &mut self.state.conns[key];
        conn.blame(cause);
        conn.begin_close(code, reason, deadline, abort);
        self.mark_dirty(key);
    }
}
