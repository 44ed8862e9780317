//! Identifiers: connection ids, and the rules for user ids and room names.

use std::fmt;
use std::str::FromStr;

/// Longest user id or room name, in bytes (PROTOCOL.md).
pub const MAX_NAME_LEN: usize = 128;

/// Identifies one WebSocket connection for the life of the hub.
///
/// The id names the shard that owns the connection, so that any thread can route a
/// command to it without a lookup. Its text form is `<shard>-<sequence>`, e.g. `1-42`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ConnectionId {
    shard: u16,
    seq: u64,
}

impl ConnectionId {
    pub(crate) fn new(shard: usize, seq: u64) -> Self {
        Self {
            shard: shard as u16,
            seq,
        }
    }

    /// The index of the shard that owns this connection.
    pub fn shard(&self) -> usize {
        self.shard as usize
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.shard, self.seq)
    }
}

/// The text was not of the form `<shard>-<sequence>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid connection id (expected <shard>-<sequence>)")]
pub struct ParseConnectionIdError;

impl FromStr for ConnectionId {
    type Err = ParseConnectionIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (shard, seq) = s.split_once('-').ok_or(ParseConnectionIdError)?;
        Ok(Self {
            shard: shard.parse().map_err(|_| ParseConnectionIdError)?,
            seq: seq.parse().map_err(|_| ParseConnectionIdError)?,
        })
    }
}

/// A user id is any string of 1 to 128 bytes.
pub fn is_valid_user_id(user: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&user.len())
}

/// A room name is 1 to 128 bytes of `[A-Za-z0-9_.:@-]`.
pub fn is_valid_room_name(room: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_id_round_trips_through_text() {
        let id = ConnectionId::new(3, 1234);
        assert_eq!(id.to_string(), "3-1234");
        assert_eq!("3-1234".parse::<ConnectionId>(), Ok(id));
        assert!("3".parse::<ConnectionId>().is_err());
        assert!("a-1".parse::<ConnectionId>().is_err());
        assert!("1-".parse::<ConnectionId>().is_err());
    }

    #[test]
    fn room_names_follow_the_protocol_alphabet() {
        assert!(is_valid_room_name("general"));
        assert!(is_valid_room_name("team:42@eu-west_1.a"));
        assert!(!is_valid_room_name(""));
        assert!(!is_valid_room_name("with space"));
        assert!(!is_valid_room_name("é"));
        assert!(is_valid_room_name(&"a".repeat(128)));
        assert!(!is_valid_room_name(&"a".repeat(129)));
    }

    #[test]
    fn user_ids_are_bounded_in_length() {
        assert!(is_valid_user_id("alice"));
        assert!(is_valid_user_id("élodie x"));
        assert!(!is_valid_user_id(""));
        assert!(!is_valid_user_id(&"u".repeat(129)));
    }
}
