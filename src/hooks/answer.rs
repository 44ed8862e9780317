//! The handles an application answers questions with: [`Decision`] for a join or a
//! publish, [`Reply`] for a custom message. Each goes back to the asking connection's
//! shard through its inbox, without waiting; one that is dropped unanswered gives the
//! question its default at once, and one that comes too late is ignored.

use std::sync::Weak;

use serde_json::value::RawValue;

use super::ruling::Ruling;
use crate::ids::ConnectionId;
use crate::ws::encode;

/// Takes answers to the shards that asked (the hub's shared state does).
pub(crate) trait AnswerPost: Send + Sync {
    /// Hands `ruling`, the answer to question `question` of connection `conn`, to the
    /// connection's shard. Never waits: if the shard's inbox is full the answer is lost,
    /// and the question's deadline gives it its default.
    fn post_answer(&self, conn: ConnectionId, question: u64, ruling: Ruling);
}

/// Where the answer to one question goes: the asking connection's shard.
pub(crate) struct ReturnAddress {
    hub: Weak<dyn AnswerPost>,
    conn: ConnectionId,
    question: u64,
}

impl ReturnAddress {
    pub(crate) fn new(hub: Weak<dyn AnswerPost>, conn: ConnectionId, question: u64) -> Self {
        Self {
            hub,
            conn,
            question,
        }
    }

    /// Hands `ruling` to the asking connection's shard (see [`AnswerPost`]).
    pub(crate) fn answer(self, ruling: Ruling) {
        if let Some(hub) = self.hub.upgrade() {
            hub.post_answer(self.conn, self.question, ruling);
        }
    }
}

impl std::fmt::Debug for ReturnAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.conn, self.question)
    }
}

/// The answer to a [`HubEvent::JoinRequest`](crate::HubEvent::JoinRequest) or
/// [`HubEvent::PublishRequest`](crate::HubEvent::PublishRequest). Dropped unanswered, it
/// refuses.
#[derive(Debug)]
pub struct Decision {
    to: Option<ReturnAddress>,
}

/// `data` given to [`Decision::allow_with_data`] was not JSON; the publish was refused.
#[derive(Debug, thiserror::Error)]
#[error("data is not valid JSON: {0}")]
pub struct InvalidJson(#[from] serde_json::Error);

impl Decision {
    pub(crate) fn new(to: ReturnAddress) -> Self {
        Self { to: Some(to) }
    }

    /// Go ahead.
    pub fn allow(mut self) {
        self.rule(Ruling::Allow);
    }

    /// Publish, with `data` (JSON text) in place of the client's `data`. For a join it
    /// is the same as [`Decision::allow`].
    pub fn allow_with_data(mut self, data: &str) -> Result<(), InvalidJson> {
        match RawValue::from_string(data.to_owned()) {
            Ok(data) => {
                self.rule(Ruling::AllowWithData(data));
                Ok(())
            }
            Err(e) => {
                self.rule(Ruling::Refuse("Refused".into()));
                Err(e.into())
            }
        }
    }

    /// Refuse: the client gets `error` `forbidden` with `reason`, and nothing happens.
    pub fn refuse(mut self, reason: &str) {
        self.rule(Ruling::Refuse(reason.to_owned().into()));
    }

    fn rule(&mut self, ruling: Ruling) {
        if let Some(to) = self.to.take() {
            to.answer(ruling);
        }
    }
}

impl Drop for Decision {
    fn drop(&mut self) {
        self.rule(Ruling::Refuse("Refused".into()));
    }
}

/// The answer to a [`HubEvent::Custom`](crate::HubEvent::Custom) message. Dropped
/// unanswered, it is [`Reply::done`].
#[derive(Debug)]
pub struct Reply {
    to: Option<ReturnAddress>,
}

impl Reply {
    pub(crate) fn new(to: ReturnAddress) -> Self {
        Self { to: Some(to) }
    }

    /// Sends `text` (a JSON message, as a whole) to the client, then lets its next
    /// messages go on.
    pub fn send(mut self, text: &str) {
        self.rule(Ruling::Send(encode::text_frame(text)));
    }

    /// The client gets `error` `forbidden` with `reason`.
    pub fn refuse(mut self, reason: &str) {
        self.rule(Ruling::Refuse(reason.to_owned().into()));
    }

    /// Nothing to send back; the client's next messages go on.
    pub fn done(mut self) {
        self.rule(Ruling::Done);
    }

    fn rule(&mut self, ruling: Ruling) {
        if let Some(to) = self.to.take() {
            to.answer(ruling);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        self.rule(Ruling::Done);
    }
}
