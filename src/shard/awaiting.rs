//! A connection waiting for the answer to a question (a hook's or the application's):
//! what it asked, and the messages it sent since, held in order until the answer comes.
//!
//! Nothing waits but the connection: its shard goes on serving everyone else. The hold is
//! bounded; once over, the connection's socket is not read until the answer, so TCP slows
//! the client down instead of the hub buffering for it.

use std::collections::VecDeque;
use std::time::Instant;

use serde_json::value::RawValue;

use crate::hooks::ruling::Ruling;
use crate::protocol::{Recover, ServerMessage};
use crate::ws::encode;

/// Messages one connection may have held before its socket stops being read.
pub(crate) const HELD_MESSAGES_MAX: usize = 64;
/// Bytes of held messages past which the socket stops being read.
pub(crate) const HELD_BYTES_MAX: usize = 1024 * 1024;

/// The open question of one connection.
#[derive(Debug)]
pub(crate) struct Awaiting {
    /// The question's number on its shard; an answer must name it.
    pub question: u64,
    /// When the question gets its default.
    pub deadline: Instant,
    /// What the answer decides.
    pub asked: Asked,
    /// Messages that arrived after the question, in order.
    pub held: VecDeque<Held>,
    pub held_bytes: usize,
    /// The client ended its side of the stream after the held messages.
    pub input_ended: bool,
}

/// The message that raised a question, as much of it as the answer needs.
#[derive(Debug)]
pub(crate) enum Asked {
    /// `join_room`.
    Join {
        room: String,
        recover: Option<Recover>,
    },
    /// `message`.
    Publish {
        room: String,
        message: Option<String>,
        data: Option<Box<RawValue>>,
    },
    /// A message of one of the application's own types.
    Custom,
    /// `rpc`, answered by the backend's `proxy.rpc_url`.
    Rpc { id: Box<RawValue> },
}

/// A message held behind a question.
#[derive(Debug)]
pub(crate) enum Held {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    /// The client's close frame, with its code.
    Close(u16),
}

impl Awaiting {
    pub fn new(question: u64, deadline: Instant, asked: Asked) -> Self {
        Self {
            question,
            deadline,
            asked,
            held: VecDeque::new(),
            held_bytes: 0,
            input_ended: false,
        }
    }

    /// Holds `message` behind the question. Always taken: the bound is kept by not
    /// reading the socket once it is reached ([`Awaiting::is_full`]).
    pub fn hold(&mut self, message: Held) {
        self.held_bytes += message.len();
        self.held.push_back(message);
    }

    /// True once the socket should not be read until the answer.
    pub fn is_full(&self) -> bool {
        self.held.len() >= HELD_MESSAGES_MAX || self.held_bytes >= HELD_BYTES_MAX
    }

    /// Takes over `earlier` held messages, which came before any held here.
    pub fn hold_first(&mut self, earlier: VecDeque<Held>, input_ended: bool) {
        for message in earlier.into_iter().rev() {
            self.held_bytes += message.len();
            self.held.push_front(message);
        }
        self.input_ended |= input_ended;
    }
}

impl Held {
    fn len(&self) -> usize {
        match self {
            Held::Text(bytes) | Held::Binary(bytes) => bytes.len(),
            Held::Close(_) => 0,
        }
    }
}

impl Asked {
    /// The answer when none came in time: joins and publishes are refused, a custom
    /// message is done, an rpc gets `rpc_error` `timeout`.
    pub fn default_ruling(&self) -> Ruling {
        match self {
            Asked::Join { .. } | Asked::Publish { .. } => {
                Ruling::Refuse("No decision in time".into())
            }
            Asked::Custom => Ruling::Done,
            Asked::Rpc { id } => Ruling::Send(encode::json_frame(&ServerMessage::RpcError {
                id,
                code: "timeout",
            })),
        }
    }
}
