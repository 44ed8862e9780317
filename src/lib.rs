//! neonex: a thread-per-core WebSocket hub for real-time fan-out.
//!
//! # Map of the crate
//!
//! Reading in this order tells the story from the outside in:
//!
//! - [`hub`]: the [`Hub`] handle an application holds: listen, publish, rooms, users,
//!   stats, graceful close. Thread-safe; it talks to the shards through their inboxes.
//! - [`config`]: [`HubConfig`], every setting with its embedded default; checking it
//!   ([`HubConfig::check`]) yields a [`CheckedConfig`] with the authenticator, origin policy
//!   and trusted proxies it built; [`settings`] layers a TOML file, `NEONEX_*` variables
//!   and flags over it for `neonex serve`, each key declared once in its key table.
//! - `shard`: the engine. One shard per core, each a monoio runtime on its own thread
//!   that owns its connections outright, and `HubShared`, what the shards and the
//!   handle share. Its module map follows a chat message from socket to socket.
//! - `registry` and `room`: the hub-wide directory of rooms and of users' connections,
//!   touched on joins, leaves, opens and closes, never per message; `room_pattern`: the
//!   room names and `prefix*` patterns of settings such as `rooms.conflate`.
//! - History (`history.*`): each room's stream of positioned messages lives on the room's
//!   home shard (`shard::sequence`, `shard::streams`), which orders them and recovers
//!   clients that come back.
//! - `cluster`: several nodes on one NATS acting as one hub (`cluster.*`): the bridge
//!   thread that owns the NATS client, frames sent once per node, and each node's view
//!   of the others' connections.
//! - [`hooks`]: how an application hears its clients: [`HubEvent`]s on a bounded queue,
//!   questions (custom messages, joins, publishes) it answers with a [`Decision`] or
//!   [`Reply`], raw mode; and for `neonex serve`, the same questions asked of a backend
//!   over HTTP (`proxy.*`).
//! - [`protocol`]: protocol v1, what clients send and what the server answers.
//! - [`ws`]: WebSocket framing: decode client frames from a shared buffer, reassemble
//!   messages, encode server frames once, and with permessage-deflate compress a
//!   broadcast once and inflate clients' messages within the size bound.
//! - [`http`]: the HTTP request that precedes the upgrade (and the extensions it offers),
//!   and plain responses; [`forwarded`]: who a request comes from, through trusted
//!   reverse proxies; `tls`: the certificate and key (`tls.*`) that TLS sessions start
//!   from, reloaded on SIGHUP.
//! - Who gets in and how much they may do: [`auth`] (JWT), [`origin`] (allow-list),
//!   `admission` (connection caps), `shard::ratelimit` (per-connection token bucket).
//! - [`api`]: the HTTP API for backends: routes, key check, errors.
//! - `web`: the pages the hub serves itself from files embedded in the binary: the admin
//!   dashboard (`/admin`), the demo chat (`/demo`) and the JavaScript client it loads.
//! - [`stats`] and [`metrics`]: counters, latency, `/stats` and Prometheus `/metrics`.
//! - [`ids`]: connection ids and the rules for user ids and room names.

#![warn(missing_docs)]

pub(crate) mod admission;
pub mod api;
pub mod auth;
#[doc(hidden)]
pub mod bench;
mod checked_config;
pub(crate) mod cluster;
pub mod config;
pub mod forwarded;
pub mod hooks;
pub mod http;
pub mod hub;
pub mod ids;
pub mod metrics;
pub mod origin;
pub mod protocol;
pub(crate) mod registry;
pub(crate) mod room;
pub(crate) mod room_pattern;
pub mod settings;
pub(crate) mod shard;
pub mod stats;
pub(crate) mod tls;
pub(crate) mod web;
pub mod ws;

pub use checked_config::CheckedConfig;
pub use config::{
    AdminConfig, ClusterConfig, CompressionConfig, ConfigError, DriverChoice, HistoryConfig,
    HubConfig, PresenceScope, ProxyConfig, RoomsConfig, SendQueueLimits, TlsConfig,
};
pub use hooks::proxy::{HookLatency, HookStats, ProxyStats};
pub use hooks::{Application, ApplicationStats, Decision, HubEvent, Reply};
pub use hub::{ConnectionInfo, HeldMessage, History, Hub, HubError, Published, RoomInfo};
pub use ids::ConnectionId;
pub use stats::{ClusterStats, LinkState, NodeStats};
pub use stats::{HistoryStats, HubStats, RecoveryStats, ShardStats};
