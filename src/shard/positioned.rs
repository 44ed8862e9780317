//! A positioned message on its way to be encoded: a client's `chat_message` or a
//! backend's `publication`. It borrows the text it came in, and is made owned only to
//! travel to the room's home shard, which gives it its offset and encodes it once.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::value::RawValue;

use crate::protocol::{unix_time, ServerMessage};

/// A message that takes a place in its room's stream when history is on.
pub(crate) enum Positioned<'a> {
    /// A client's `message`.
    Chat {
        user_id: Arc<str>,
        message: Option<Cow<'a, str>>,
        data: Option<Cow<'a, RawValue>>,
        time: u64,
    },
    /// A backend's publication, its JSON as sent.
    Publication { data: Cow<'a, RawValue>, time: u64 },
}

impl<'a> Positioned<'a> {
    /// A client's `message` of now.
    pub fn chat(user_id: Arc<str>, message: Option<&'a str>, data: Option<&'a RawValue>) -> Self {
        Positioned::Chat {
            user_id,
            message: message.map(Cow::Borrowed),
            data: data.map(Cow::Borrowed),
            time: unix_time(),
        }
    }

    /// A backend's publication of now, unless `json` is not JSON.
    pub fn publication(json: &'a str) -> Result<Self, serde_json::Error> {
        Ok(Positioned::Publication {
            data: Cow::Borrowed(serde_json::from_str(json)?),
            time: unix_time(),
        })
    }

    /// The same message, owning its text: to travel to another shard.
    pub fn into_owned(self) -> Positioned<'static> {
        match self {
            Positioned::Chat {
                user_id,
                message,
                data,
                time,
            } => Positioned::Chat {
                user_id,
                message: message.map(|m| Cow::Owned(m.into_owned())),
                data: data.map(|d| Cow::Owned(d.into_owned())),
                time,
            },
            Positioned::Publication { data, time } => Positioned::Publication {
                data: Cow::Owned(data.into_owned()),
                time,
            },
        }
    }

    /// The message every member of `room` receives, with `offset` when positioned.
    pub fn message<'m>(&'m self, room: &'m str, offset: Option<u64>) -> ServerMessage<'m> {
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
