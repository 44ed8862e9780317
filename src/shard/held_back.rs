//! Messages for shards whose inbox was full, held back in order, per shard, and handed
//! over as the shards make room. A shard holds back what its own steps post to others
//! (and stops reading its clients until it is through); the cluster's bridge holds back
//! what it hands the shards (up to a bound, as nothing slows its sources).

use std::collections::VecDeque;

use super::mailbox::{Mailbox, PostError};
use super::message::ShardMessage;

/// Most messages the cluster's bridge holds back for one shard.
pub(crate) const HELD_BACK_MAX: usize = 64 * 1024;

/// What became of a message posted through [`HeldBack::post`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Posting {
    /// In the shard's inbox.
    Posted,
    /// Held back, behind what was held for that shard before it.
    Held,
    /// Dropped: the shard has stopped, or the bound was reached.
    Dropped,
}

/// Held-back messages, a queue per shard.
pub(crate) struct HeldBack {
    queues: Vec<VecDeque<ShardMessage>>,
    /// Most messages held for one shard; `None`: no bound.
    bound: Option<usize>,
}

impl HeldBack {
    pub fn new(shards: usize, bound: Option<usize>) -> Self {
        Self {
            queues: (0..shards).map(|_| VecDeque::new()).collect(),
            bound,
        }
    }

    /// Posts `msg` to `shard`, unless messages for it are held already or its inbox is
    /// full: then `msg` is held back behind them.
    pub fn post(&mut self, mailboxes: &[Mailbox], shard: usize, msg: ShardMessage) -> Posting {
        let queue = &mut self.queues[shard];
        let msg = if queue.is_empty() {
            match mailboxes[shard].try_post(msg) {
                Ok(()) => return Posting::Posted,
                Err(PostError::Closed) => return Posting::Dropped,
                Err(PostError::Full(msg)) => msg,
            }
        } else {
            msg
        };
        if self.bound.is_some_and(|bound| queue.len() >= bound) {
            return Posting::Dropped;
        }
        queue.push_back(msg);
        Posting::Held
    }

    /// Hands over what the shards have room for, in order; true when nothing is held.
    pub fn retry(&mut self, mailboxes: &[Mailbox]) -> bool {
        for (shard, queue) in self.queues.iter_mut().enumerate() {
            while let Some(msg) = queue.pop_front() {
                match mailboxes[shard].try_post(msg) {
                    Ok(()) => {}
                    Err(PostError::Closed) => queue.clear(),
                    Err(PostError::Full(msg)) => {
                        queue.push_front(msg);
                        break;
                    }
                }
            }
        }
        self.is_empty()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.queues.iter().all(VecDeque::is_empty)
    }
}
