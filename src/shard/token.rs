//! How the shard's readiness set and its parked lists name a connection.

use crate::ids::ConnectionId;

/// Names one connection in the readiness set and in the parked lists: its slab key, and
/// the low bits of its sequence number, so that an event or a parked entry of a closed
/// connection never reaches a newer one in the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Token(u64);

impl Token {
    pub fn of(key: usize, id: ConnectionId) -> Token {
        Token((id.seq() << 32) | (key as u64 & 0xffff_ffff))
    }

    pub fn key(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    /// As the readiness set carries it with each event.
    pub fn to_bits(self) -> u64 {
        self.0
    }

    pub fn from_bits(bits: u64) -> Token {
        Token(bits)
    }
}
