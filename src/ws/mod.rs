//! The WebSocket layer (RFC 6455) on fastwebsockets' framing primitives.
//!
//! fastwebsockets supplies opcodes, close-code rules, header formatting and SIMD unmasking.
//! Its reader keeps an 8 KiB buffer in every connection, so neonex decodes frames itself
//! from a buffer owned by the shard ([`decode`]) and keeps only an unfinished frame or
//! message per connection ([`assemble`]). Server frames are encoded once, whole, into
//! `Bytes` ([`encode`]); with permessage-deflate, a broadcast's frame is also compressed
//! once, and clients' compressed messages are inflated within the size bound
//! ([`deflate`]).

pub mod assemble;
pub mod decode;
pub mod deflate;
pub mod encode;

/// Why the server closes a connection: the close code and a short reason for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    /// The close code (RFC 6455 section 7.4).
    pub code: u16,
    /// The reason text sent in the close frame.
    pub reason: &'static str,
}

impl CloseReason {
    /// 1002: the peer broke the framing rules.
    pub const fn protocol(reason: &'static str) -> Self {
        Self { code: 1002, reason }
    }
}

/// Close codes used by the hub.
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is going away (graceful shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol violation.
    pub const PROTOCOL: u16 = 1002;
    /// Invalid payload data (bad UTF-8 in a text message).
    pub const INVALID_DATA: u16 = 1007;
    /// Policy violation (slow consumer, abuse).
    pub const POLICY: u16 = 1008;
    /// Message too big.
    pub const TOO_BIG: u16 = 1009;
    /// Internal error.
    pub const INTERNAL: u16 = 1011;
}
