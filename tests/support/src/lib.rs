//! What neonex's integration tests share, one concept per module: a hub on an ephemeral
//! port ([`hub`]), a WebSocket client over tokio-tungstenite ([`client`]), frames built
//! and parsed by hand ([`frames`]) and the raw TCP client that sends them ([`raw`]),
//! HTTP requests and responses ([`http`]), the real `neonex` binary ([`binary`]), a real
//! `nats-server` ([`nats`]), and
//! waits and clocks ([`wait`], [`clock`]).
//!
//! Every wait in here has a deadline and fails the test with a message naming what was
//! awaited; nothing synchronises by sleeping a fixed time.

pub mod binary;
pub mod client;
pub mod clock;
pub mod frames;
pub mod http;
pub mod hub;
pub mod nats;
pub mod raw;
pub mod wait;
