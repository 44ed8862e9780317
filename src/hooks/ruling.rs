//! `Ruling`: the answer to a question a connection waits on, from the application or a
//! backend hook, as the shard carries it out.

use std::borrow::Cow;

use bytes::Bytes;
use serde_json::value::RawValue;

/// What the shard does with the message that raised the question.
#[derive(Debug)]
pub(crate) enum Ruling {
    /// Go ahead as the client asked.
    Allow,
    /// Publish the chat message with this `data` in place of the client's.
    AllowWithData(Box<RawValue>),
    /// Refused: the client gets `error` `forbidden` with this text.
    Refuse(Cow<'static, str>),
    /// Send the client this frame (a reply to its custom message, an rpc answer).
    Send(Bytes),
    /// Nothing more to do.
    Done,
}
