//! What the hub tells of its connections and rooms: the answers of the `Hub` handle and
//! the HTTP API.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use super::streams::Page;
use crate::ids::ConnectionId;
use crate::ws::encode;

/// What the hub knows of one open connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The connection's id.
    pub id: ConnectionId,
    /// The authenticated (or anonymous) user of the connection.
    pub user_id: Arc<str>,
    /// The client's address: the TCP peer's, or, when the peer is a trusted proxy
    /// (`http.trusted_proxies`), the client it names (port 0 when it gives none).
    pub remote_addr: SocketAddr,
    /// When the WebSocket upgrade completed.
    pub connected_at: std::time::SystemTime,
}

/// What the hub knows of a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomInfo {
    /// The room's name.
    pub name: String,
    /// Connections in the room.
    pub members: usize,
    /// Stays when empty (created at start or with [`Hub::create_room`](crate::Hub::create_room)).
    pub persistent: bool,
}

/// What a publication to a room did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Members of the room it was queued for.
    pub queued: usize,
    /// Its offset in the room's stream, with history on.
    pub offset: Option<u64>,
}

/// The held messages of a room's stream: the answer of
/// [`Hub::history`](crate::Hub::history) and of `GET /api/rooms/{room}/history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// The room.
    pub room: String,
    /// The stream's epoch.
    pub epoch: String,
    /// The stream's top offset: the last message published to the room.
    pub offset: u64,
    /// The messages asked for, oldest first.
    pub messages: Vec<HeldMessage>,
}

/// One positioned message of a room's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldMessage {
    /// Its offset.
    pub offset: u64,
    /// The frame its recipients got.
    frame: Bytes,
}

impl HeldMessage {
    /// The message as JSON text, exactly as clients received it.
    pub fn json(&self) -> &str {
        std::str::from_utf8(encode::payload_of(&self.frame)).expect("frames are made of JSON text")
    }
}

impl History {
    pub(crate) fn of(room: &str, page: Page) -> Self {
        History {
            room: room.to_owned(),
            epoch: page.epoch.to_string(),
            offset: page.top,
            messages: page
                .messages
                .into_iter()
                .map(|(offset, frame)| HeldMessage { offset, frame })
                .collect(),
        }
    }

    /// `{"room":R,"epoch":E,"offset":TOP,"messages":[...]}`, each message as clients
    /// received it.
    pub fn to_json(&self) -> String {
        let quoted = |text: &str| serde_json::to_string(text).expect("strings serialize");
        let size: usize = self.messages.iter().map(|m| m.frame.len() + 1).sum();
        let mut out = String::with_capacity(size + 96);
        out.push_str(&format!(
            r#"{{"room":{},"epoch":{},"offset":{},"messages":["#,
            quoted(&self.room),
            quoted(&self.epoch),
            self.offset
        ));
        for (i, message) in self.messages.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(message.json());
        }
        out.push_str("]}");
        out
    }
}
