//! A positioned message on its way to be encoded: a client's `chat_message` or a
//! backend's `publication`, owned, so that it can travel to the room's home shard, which
//! gives it its offset and encodes it once.

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::protocol::{unix_time, ServerMessage};

/// A message that takes a place in its room's stream when history is on.
pub(crate) enum Positioned {
    /// A client's `message`.
    Chat {
        user_id: Arc<str>,
        message: Option<Box<str>>,
        data: Option<Box<RawValue>>,
        time: u64,
    },
    /// A backend's publication, its JSON as sent.
    Publication { data: Box<RawValue>, time: u64 },
}

impl Positioned {
    /// A client's `message` of now.
    pub fn chat(user_id: Arc<str>, message: Option<&str>, data: Option<&RawValue>) -> Self {
        Positioned::Chat {
            user_id,
            message: message.map(Box::from),
            data: data.map(ToOwned::to_owned),
            time: unix_time(),
        }
    }

    /// A backend's publication of now; `json` was checked to be JSON.
    pub fn publication(json: &str) -> Result<Self, serde_json::Error> {
        Ok(Positioned::Publication {
            data: RawValue::from_string(json.to_owned())?,
            time: unix_time(),
        })
    }

    /// The message every member of `room` receives, with `offset` when positioned.
    pub fn message<'a>(&'a self, room: &'a str, offset: Option<u64>) -> ServerMessage<'a> {
        match self {
            Positioned::Chat {
                user_id,
                message,
                data,
                time,
            } => ServerMessage::ChatMessage {
                room,
                user_id,
                message: message.as_deref(),
                data: data.as_deref(),
                time: *time,
                offset,
            },
            Positioned::Publication { data, time } => ServerMessage::Publication {
                room,
                data,
                time: *time,
                offset,
            },
        }
    }
}
