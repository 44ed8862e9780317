//! A shard's inbox: a bounded crossbeam channel plus the wake-up protocol.
//!
//! Waking a monoio task from another thread goes through a global registry and an
//! eventfd, so it is worth avoiding. The receiving shard sets `parked` only when it is
//! about to wait with nothing to do; a sender wakes it only if it finds that flag set.
//! While the shard is busy it drains its inbox on every pass and no sender pays for a
//! wake-up at all.

use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Waker;
use std::time::Duration;

use atomic_waker::AtomicWaker;
use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError};

use super::message::ShardMessage;

/// Messages an inbox holds before senders must wait (external threads) or hold them back
/// (shards).
pub(crate) const INBOX_CAPACITY: usize = 64 * 1024;

pub(crate) struct Mailbox {
    tx: Sender<ShardMessage>,
    parked: AtomicBool,
    waker: AtomicWaker,
}

/// Why a message could not be posted.
pub(crate) enum PostError {
    /// The inbox is full; the message is handed back.
    Full(ShardMessage),
    /// The shard has stopped.
    Closed,
}

impl Mailbox {
    pub fn new() -> (Self, Receiver<ShardMessage>) {
        let (tx, rx) = crossbeam_channel::bounded(INBOX_CAPACITY);
        let mailbox = Self {
            tx,
            parked: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        };
        (mailbox, rx)
    }

    /// Posts without waiting.
    pub fn try_post(&self, msg: ShardMessage) -> Result<(), PostError> {
        match self.tx.try_send(msg) {
            Ok(()) => {
                self.wake_if_parked();
                Ok(())
            }
            Err(TrySendError::Full(msg)) => Err(PostError::Full(msg)),
            Err(TrySendError::Disconnected(_)) => Err(PostError::Closed),
        }
    }

    /// Posts, waiting up to `timeout` for room. For threads that are not shards.
    pub fn post_waiting(&self, msg: ShardMessage, timeout: Duration) -> Result<(), PostError> {
        match self.tx.send_timeout(msg, timeout) {
            Ok(()) => {
                self.wake_if_parked();
                Ok(())
            }
            Err(SendTimeoutError::Timeout(msg)) => Err(PostError::Full(msg)),
            Err(SendTimeoutError::Disconnected(_)) => Err(PostError::Closed),
        }
    }

    fn wake_if_parked(&self) {
        // SeqCst pairs with `park`: either the receiver sees our message when it re-checks
        // its inbox, or we see its flag and wake it.
        if self.parked.load(Ordering::SeqCst) && self.parked.swap(false, Ordering::SeqCst) {
            self.waker.wake();
        }
    }

    /// Receiver side: registers `waker` and flags the shard parked. The caller must check
    /// its inbox once more afterwards and call [`Mailbox::unpark`] if it finds anything.
    pub fn park(&self, waker: &Waker) {
        self.waker.register(waker);
        self.parked.store(true, Ordering::SeqCst);
    }

    /// Receiver side: the shard is busy again (called from the shard's own thread, where
    /// the wake is a cheap local one).
    pub fn unpark(&self) {
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::AcqRel) {
            self.waker.wake();
        }
    }
}
