//! The queue of [`HubEvent`]s between the shards and the application's threads: bounded,
//! and never waited on by a shard. What does not fit is counted; a question that does
//! not fit is dropped with its handle, which answers it with its default.

use std::sync::atomic::AtomicU64;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::Serialize;

use super::application::Application;
use super::event::HubEvent;
use crate::stats;

pub(crate) struct EventQueue {
    pub application: Application,
    tx: Sender<HubEvent>,
    rx: Receiver<HubEvent>,
    sent: AtomicU64,
    dropped: AtomicU64,
    timed_out: AtomicU64,
}

/// What the application was told, and what it missed (`/stats` `application`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ApplicationStats {
    /// Events handed to the application.
    pub events: u64,
    /// Events dropped because the application's queue was full.
    pub events_dropped: u64,
    /// Questions that got their default because no answer came in time.
    pub decisions_timed_out: u64,
}

impl EventQueue {
    pub fn new(application: Application) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(application.event_capacity.max(1));
        Self {
            application,
            tx,
            rx,
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
        }
    }

    /// Hands `event` to the application, or counts it dropped when its queue is full.
    pub fn emit(&self, event: HubEvent) {
        match self.tx.try_send(event) {
            Ok(()) => stats::add(&self.sent, 1),
            Err(TrySendError::Full(event)) => {
                stats::add(&self.dropped, 1);
                tracing::warn!(
                    ?event,
                    "the application's event queue is full; event dropped"
                );
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// A question got its default for want of an answer.
    pub fn count_timed_out(&self) {
        stats::add(&self.timed_out, 1);
    }

    /// Where the application reads its events.
    pub fn receiver(&self) -> Receiver<HubEvent> {
        self.rx.clone()
    }

    pub fn stats(&self) -> ApplicationStats {
        ApplicationStats {
            events: stats::read(&self.sent),
            events_dropped: stats::read(&self.dropped),
            decisions_timed_out: stats::read(&self.timed_out),
        }
    }
}
