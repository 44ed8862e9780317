//! What the hub tells of its connections and rooms: the answers of the `Hub` handle and
//! the HTTP API.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::ids::ConnectionId;
use crate::registry::Registry;

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

impl RoomInfo {
    pub(crate) fn of(room: &Arc<crate::room::Room>) -> RoomInfo {
        RoomInfo {
            name: room.name.to_string(),
            members: room.count(),
            persistent: room.is_persistent(),
        }
    }

    /// Every room of `registry`, by name.
    pub(crate) fn all(registry: &Registry) -> Vec<RoomInfo> {
        let mut rooms: Vec<RoomInfo> = registry.rooms().iter().map(RoomInfo::of).collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        rooms
    }
}
