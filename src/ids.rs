//! Identifiers: connection ids, and the rules for user ids and room names.

use std::fmt;
use std::str::FromStr;

/// Longest user id or room name, in bytes (PROTOCOL.md).
pub const MAX_NAME_LEN: usize = 128;

/// Identifies one WebSocket connection for the life of the hub.
///
/// The id names the shard that owns the connection, so that any thread can route a
/// command to it without a lookup. Its text form is `<shard>-<sequence>`, e.g. `1-42`.
/// It packs into one `u64` (shard in the top 16 bits), which keeps the hub's indexes of
/// connections small.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ConnectionId(u64);

const SEQ_BITS: u32 = 48;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

impl ConnectionId {
    pub(crate) fn new(shard: usize, seq: u64) -> Self {
        debug_assert!(shard <= u16::MAX as usize && seq <= SEQ_MASK);
        Self(((shard as u64) << SEQ_BITS) | (seq & SEQ_MASK))
    }

    /// The index of the shard that owns this connection.
    pub fn shard(&self) -> usize {
        (self.0 >> SEQ_BITS) as usize
    }

    pub(crate) fn seq(&self) -> u64 {
        self.0 & SEQ_MASK
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.shard(), self.seq())
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
        let shard: u16 = shard.parse().map_err(|_| ParseConnectionIdError)?;
        let seq: u64 = seq.parse().map_err(|_| ParseConnectionIdError)?;
        if seq > SEQ_MASK {
            return Err(ParseConnectionIdError);
        }
        Ok(Self::new(shard as usize, seq))
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
        assert!("1-281474976710656".parse::<ConnectionId>().is_err());
        let far = ConnectionId::new(65535, (1 << 48) - 1);
        assert_eq!(far.shard(), 65535);
        assert_eq!(far.to_string().parse::<ConnectionId>(), Ok(far));
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
