//! Identifiers: connection ids, and the rules for user ids and room names.

use std::fmt;
use std::str::FromStr;

/// Longest user id or room name, in bytes (PROTOCOL.md).
pub const MAX_NAME_LEN: usize = 128;

/// Identifies one WebSocket connection for the life of the hub, across the cluster.
///
/// The id names the node and the shard that own the connection, so that any thread can
/// route a command to it without a lookup. Its text form is `<shard>-<sequence>`, e.g.
/// `1-42`, on a single node, and `<node>-<shard>-<sequence>` in a cluster, where each
/// node holds a tag of its own (see `cluster`). It packs into one `u64` (node in the top
/// 16 bits, then 10 of shard), which keeps the hub's indexes of connections small.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ConnectionId(u64);

const SEQ_BITS: u32 = 38;
const SHARD_BITS: u32 = 10;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
const SHARD_MASK: u64 = (1 << SHARD_BITS) - 1;

/// Most shards a hub may have: what a connection id has room for.
pub const MAX_SHARDS: usize = 1 << SHARD_BITS;

impl ConnectionId {
    /// Connection `seq` of shard `shard` of a hub that is no cluster's node.
    pub(crate) fn new(shard: usize, seq: u64) -> Self {
        Self::on_node(0, shard, seq)
    }

    /// Connection `seq` of shard `shard` of the node tagged `node` (0: a single node).
    pub(crate) fn on_node(node: u16, shard: usize, seq: u64) -> Self {
        debug_assert!(shard < MAX_SHARDS && seq <= SEQ_MASK);
        Self(
            (u64::from(node) << (SEQ_BITS + SHARD_BITS))
                | (((shard as u64) & SHARD_MASK) << SEQ_BITS)
                | (seq & SEQ_MASK),
        )
    }

    /// The index of the shard that owns this connection.
    pub fn shard(&self) -> usize {
        ((self.0 >> SEQ_BITS) & SHARD_MASK) as usize
    }

    /// The tag of the node that owns this connection; 0 outside a cluster.
    pub fn node(&self) -> u16 {
        (self.0 >> (SEQ_BITS + SHARD_BITS)) as u16
    }

    pub(crate) fn seq(&self) -> u64 {
        self.0 & SEQ_MASK
    }

    /// The id as one number, as the cluster's messages carry it.
    pub(crate) fn to_bits(self) -> u64 {
        self.0
    }

    /// The id [`ConnectionId::to_bits`] gave.
    pub(crate) fn from_bits(bits: u64) -> Self {
        Self(bits)
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.node() {
            0 => write!(f, "{}-{}", self.shard(), self.seq()),
            node => write!(f, "{node}-{}-{}", self.shard(), self.seq()),
        }
    }
}

/// The text was not of the form `[<node>-]<shard>-<sequence>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid connection id (expected <shard>-<sequence>, or <node>-<shard>-<sequence> in a cluster)")]
pub struct ParseConnectionIdError;

impl FromStr for ConnectionId {
    type Err = ParseConnectionIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.rsplitn(3, '-');
        let seq: u64 = number(parts.next())?;
        let shard: usize = number(parts.next())?;
        let node: u16 = match parts.next() {
            Some(node) => node.parse().map_err(|_| ParseConnectionIdError)?,
            None => 0,
        };
        if seq > SEQ_MASK || shard >= MAX_SHARDS {
            return Err(ParseConnectionIdError);
        }
        Ok(Self::on_node(node, shard, seq))
    }
}

fn number<T: FromStr>(part: Option<&str>) -> Result<T, ParseConnectionIdError> {
    part.ok_or(ParseConnectionIdError)?
        .parse()
        .map_err(|_| ParseConnectionIdError)
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
        assert!("1-274877906944".parse::<ConnectionId>().is_err());
        assert!("1024-1".parse::<ConnectionId>().is_err());
        let far = ConnectionId::new(1023, (1 << 38) - 1);
        assert_eq!(far.shard(), 1023);
        assert_eq!(far.to_string().parse::<ConnectionId>(), Ok(far));
    }

    #[test]
    fn a_node_tag_makes_a_third_part() {
        let id = ConnectionId::on_node(65535, 1023, 7);
        assert_eq!((id.node(), id.shard(), id.seq()), (65535, 1023, 7));
        assert_eq!(id.to_string(), "65535-1023-7");
        assert_eq!("65535-1023-7".parse::<ConnectionId>(), Ok(id));
        assert_ne!(id, ConnectionId::new(1023, 7));
        assert!("65536-1-1".parse::<ConnectionId>().is_err());
        assert!("x-1-1".parse::<ConnectionId>().is_err());
        assert!("1-1-1-1".parse::<ConnectionId>().is_err());
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
