//! `HubEvent`: what the hub tells an application about its clients.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use super::answer::{Decision, Reply};
use crate::ids::ConnectionId;

/// Something a client did, in the order its connection did it.
///
/// The events of one connection come in the order they happened; events of different
/// connections may interleave. Questions ([`HubEvent::Custom`], [`HubEvent::JoinRequest`],
/// [`HubEvent::PublishRequest`]) hold the connection's later messages until answered;
/// dropping their handle unanswered gives the question its default at once.
#[derive(Debug)]
pub enum HubEvent {
    /// A connection completed its upgrade.
    Connected {
        /// The connection.
        conn: ConnectionId,
        /// Its authenticated user.
        user: Arc<str>,
        /// The client's address (through trusted proxies).
        remote: SocketAddr,
        /// The request headers named in [`Application::headers`](crate::Application::headers)
        /// that the request had, names in lower case.
        headers: Vec<(String, String)>,
    },
    /// A connection ended.
    Disconnected {
        /// The connection.
        conn: ConnectionId,
        /// Its user.
        user: Arc<str>,
        /// Why: `client_closed`, `client_gone`, `timeout`, `slow_consumer`, `shutdown`, ...
        /// (the labels of `closes` in `/stats`).
        cause: &'static str,
    },
    /// A connection joined a room (by its own `join_room`, an autojoin or the API).
    Joined {
        /// The connection.
        conn: ConnectionId,
        /// Its user.
        user: Arc<str>,
        /// The room.
        room: Arc<str>,
    },
    /// A connection left a room (by its own `leave_room`, the API, or by ending).
    Left {
        /// The connection.
        conn: ConnectionId,
        /// Its user.
        user: Arc<str>,
        /// The room.
        room: Arc<str>,
    },
    /// A client's chat message was published to a room, as its members receive it.
    Published {
        /// The sender.
        conn: ConnectionId,
        /// Its user.
        user: Arc<str>,
        /// The room.
        room: Arc<str>,
        /// The `message` text, if any.
        message: Option<String>,
        /// The `data`, as JSON text, if any.
        data: Option<String>,
    },
    /// A message of one of the application's own types
    /// ([`Application::custom_types`](crate::Application::custom_types)).
    Custom {
        /// The sender.
        conn: ConnectionId,
        /// Its user.
        user: Arc<str>,
        /// Its `type`.
        kind: String,
        /// The whole message, as the client sent it.
        json: String,
        /// The answer: a message back, a refusal, or nothing.
        reply: Reply,
    },
    /// May this connection join this room? (with
    /// [`Application::authorize_joins`](crate::Application::authorize_joins))
    JoinRequest {
        /// The connection.
        conn: ConnectionId,
        /// Its user.
        user: Arc<str>,
        /// The room it asks to join.
        room: String,
        /// Allow or refuse.
        decision: Decision,
    },
    /// May this connection publish this chat message? (with
    /// [`Application::authorize_publishes`](crate::Application::authorize_publishes))
    PublishRequest {
        /// The sender.
        conn: ConnectionId,
        /// Its user.
        user: Arc<str>,
        /// The room.
        room: String,
        /// The `message` text, if any.
        message: Option<String>,
        /// The `data`, as JSON text, if any.
        data: Option<String>,
        /// Allow, allow with other `data`, or refuse.
        decision: Decision,
    },
    /// A text message, in raw mode ([`Application::raw`](crate::Application::raw)).
    Text {
        /// The sender.
        conn: ConnectionId,
        /// Its user.
        user: Arc<str>,
        /// The message.
        text: String,
    },
    /// A binary message, in raw mode.
    Binary {
        /// The sender.
        conn: ConnectionId,
        /// Its user.
        user: Arc<str>,
        /// The message.
        data: Bytes,
    },
}
