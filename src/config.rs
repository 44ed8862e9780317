//! `HubConfig`: every setting of the hub, with the embedded defaults.
//!
//! Each field's doc names its key in `../shared/CONFIG.md` (`hub.ping_interval` is
//! `HubConfig::ping_interval`, `rooms.autojoin` is `HubConfig::rooms.autojoin`, ...); the
//! key table of [`crate::settings`] maps every key onto its field. The checks, and what
//! they build, are [`HubConfig::check`]'s; what fails them is a [`ConfigError`].

use std::path::PathBuf;
use std::time::Duration;

mod error;

pub use error::ConfigError;

/// Settings of a [`Hub`](crate::Hub).
///
/// `HubConfig::default()` gives the embedded defaults: ping every 54 s, drop after 60 s of
/// silence, 10 s write timeout, 512 KiB messages, a sweep every 30 s.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// How often the server pings every connection (`hub.ping_interval`).
    pub ping_interval: Duration,
    /// A connection that sends nothing (no pong, no frame) this long is dropped
    /// (`hub.pong_timeout`).
    pub pong_timeout: Duration,
    /// A connection whose socket accepts no bytes this long is dropped (`hub.write_timeout`).
    pub write_timeout: Duration,
    /// How long a connection's outgoing broadcasts may wait so that those arriving in
    /// the meantime leave in the same write (`hub.write_delay`). Zero, the default, writes
    /// them in the pass of the runtime that queued them. At most 1 s.
    pub write_delay: Duration,
    /// Largest frame or reassembled message accepted from a client; larger closes with 1009
    /// (`hub.max_message_size`).
    pub max_message_size: usize,
    /// Period of the dead-connection sweep (`hub.cleanup_interval`).
    pub cleanup_interval: Duration,
    /// Number of shards (threads, each with its own runtime and core). Default: the number
    /// of cores (`shards`).
    pub shards: usize,
    /// Which I/O driver the shards run on (`hub.driver`).
    pub driver: DriverChoice,
    /// The URL path that accepts WebSocket upgrades (`hub.path`).
    pub path: String,
    /// Rooms at start and on connect (`rooms.*`).
    pub rooms: RoomsConfig,
    /// Each room's stream of positioned messages: offsets, epochs, recovery (`history.*`).
    pub history: HistoryConfig,
    /// permessage-deflate for clients that offer it (`compression.*`).
    pub compression: CompressionConfig,
    /// Who hears `presence` messages (`presence.scope`).
    pub presence: PresenceScope,
    /// Several nodes on one NATS acting as one hub (`cluster.*`); off without a NATS URL.
    pub cluster: ClusterConfig,
    /// Backend hooks called over HTTP on connect, join, publish and rpc (`proxy.*`); off
    /// without a URL.
    pub proxy: ProxyConfig,
    /// Bounds of each connection's outbound queue; over them the client is a slow consumer
    /// and is closed with 1008 (`hub.send_queue_bytes`, `hub.send_queue_frames`).
    pub send_queue: SendQueueLimits,
    /// Most bytes the kernel may hold unsent for one socket (`TCP_NOTSENT_LOWAT`;
    /// `hub.socket_unsent_bytes`). Without it the kernel grows a socket's buffer to
    /// megabytes: a client that stops reading would pin that much kernel memory, and the
    /// close frame meant for it would wait behind it. Data beyond this stays in the
    /// connection's own queue, where its bounds apply.
    pub socket_unsent_bytes: usize,
    /// How long a graceful shutdown waits for clients to take their close frames
    /// (`shutdown.timeout`).
    pub shutdown_timeout: Duration,
    /// A client that has not finished its HTTP upgrade request in this time is dropped
    /// (`hub.handshake_timeout`).
    pub handshake_timeout: Duration,
    /// Who may connect (`auth.*`).
    pub auth: AuthConfig,
    /// TLS on the listener (`tls.*`): with a certificate and its key, clients connect
    /// with `wss://`.
    pub tls: TlsConfig,
    /// Browser origins allowed to connect; empty allows any (`allowed_origins`). Entries
    /// are exact origins (`https://app.example.com`) or `*.example.com` patterns.
    pub allowed_origins: Vec<String>,
    /// Per-connection and global caps (`limits.*`).
    pub limits: LimitsConfig,
    /// The HTTP API for backends (`api.*`).
    pub api: ApiConfig,
    /// The pages the hub serves itself: the dashboard and the demo chat (`admin.*`).
    pub admin: AdminConfig,
    /// Period of the stats line logged at info level (`log.stats_interval`).
    pub stats_log_interval: Duration,
    /// Reverse proxies, as addresses or networks, whose `X-Forwarded-For` or `Forwarded`
    /// headers name the real client (`http.trusted_proxies`). Empty: the TCP peer is the
    /// client, always.
    pub trusted_proxies: Vec<String>,
    /// WebSocket subprotocols the server answers when a client offers them
    /// (`hub.subprotocols`).
    pub subprotocols: Vec<String>,
    /// An embedding application that hears its clients and decides for them; `None`
    /// for none. Not a setting of `neonex serve`, whose backend uses the proxy hooks.
    pub application: Option<crate::hooks::Application>,
    /// Test-only: a `{"type":"__panic__"}` message panics in its handler, so tests can see
    /// a bug contained to one connection. Never set it in a server.
    #[doc(hidden)]
    pub fault_injection: bool,
}

/// JWT authentication. With neither a secret nor a public key, anyone may connect and
/// the user id comes from the `user` query parameter.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// HS256 shared secret (`auth.jwt_secret`).
    pub jwt_secret: Option<String>,
    /// PEM public key for RS256 or ES256 (`auth.jwt_public_key` names the file; this is
    /// its content).
    pub jwt_public_key: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf` (`auth.leeway`).
    pub leeway: Duration,
    /// Required `aud` claim, if set (`auth.audience`).
    pub audience: Option<String>,
    /// Required `iss` claim, if set (`auth.issuer`).
    pub issuer: Option<String>,
}

/// TLS on the listener: with both files named, every connection the hub accepts speaks
/// TLS 1.2 or 1.3 (`wss://`), and `neonex serve` reads the files again on SIGHUP. With
/// neither, the listener speaks plain TCP (`ws://`), as behind a proxy that ends TLS.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, the server's own certificate first
    /// (`tls.cert`).
    pub cert: Option<PathBuf>,
    /// PEM file with the certificate's private key: PKCS#8, PKCS#1 or SEC1 (`tls.key`).
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    /// True when the listener speaks TLS.
    pub fn is_on(&self) -> bool {
        self.cert.is_some() || self.key.is_some()
    }
}

/// Limits that keep one client, user or address from taking the hub down.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Token-bucket rate of incoming messages per connection (`limits.messages_per_second`).
    pub messages_per_second: u32,
    /// Token-bucket size (`limits.burst`).
    pub burst: u32,
    /// A connection over its rate this long, without a pause, is closed with 1008
    /// (`limits.abuse_close_after`).
    pub abuse_close_after: Duration,
    /// Rooms one connection may be in (`limits.rooms_per_connection`).
    pub rooms_per_connection: usize,
    /// Open connections per user (`limits.connections_per_user`); over it: 429.
    pub connections_per_user: Option<usize>,
    /// Open connections per client IP (`limits.connections_per_ip`); over it: 429.
    pub connections_per_ip: Option<usize>,
    /// Open connections in all (`limits.max_connections`); over it: 503.
    pub max_connections: Option<usize>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            messages_per_second: 50,
            burst: 100,
            abuse_close_after: Duration::from_secs(10),
            rooms_per_connection: 128,
            connections_per_user: None,
            connections_per_ip: None,
            max_connections: None,
        }
    }
}

/// The HTTP API on the hub's listener.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Key for `/api/*` (`api.key`); without one, `/api/*` answers loopback clients only.
    pub key: Option<String>,
    /// Largest request body accepted (`api.max_body`); larger gets 413.
    pub max_body: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            key: None,
            max_body: 1024 * 1024,
        }
    }
}

/// The pages under `/admin` and `/demo`, served from files embedded in the binary.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Serve the dashboard at `/admin` (`admin.enabled`). It is guarded like `/api/*`:
    /// without `api.key` it answers loopback clients only; with one, the page asks for
    /// the key and every figure it shows comes through the API with it.
    pub enabled: bool,
    /// Serve the demo chat at `/demo` (`admin.demo`).
    pub demo: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            demo: false,
        }
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(54),
            pong_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            write_delay: Duration::ZERO,
            max_message_size: 512 * 1024,
            cleanup_interval: Duration::from_secs(30),
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            driver: DriverChoice::Auto,
            path: "/ws".to_owned(),
            rooms: RoomsConfig::default(),
            history: HistoryConfig::default(),
            compression: CompressionConfig::default(),
            presence: PresenceScope::All,
            cluster: ClusterConfig::default(),
            proxy: ProxyConfig::default(),
            send_queue: SendQueueLimits::default(),
            socket_unsent_bytes: 128 * 1024,
            shutdown_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            auth: AuthConfig {
                leeway: Duration::from_secs(5),
                ..AuthConfig::default()
            },
            tls: TlsConfig::default(),
            allowed_origins: Vec::new(),
            limits: LimitsConfig::default(),
            api: ApiConfig::default(),
            admin: AdminConfig::default(),
            stats_log_interval: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
            subprotocols: vec!["neonex.v1".to_owned()],
            application: None,
            fault_injection: false,
        }
    }
}

/// Rooms created at start, joined on connect, and how joins behave.
#[derive(Debug, Clone)]
pub struct RoomsConfig {
    /// Rooms that exist from the start and stay when empty (`rooms.create`).
    pub create: Vec<String>,
    /// Rooms every connection joins right after `welcome` (`rooms.autojoin`).
    pub autojoin: Vec<String>,
    /// `join_room` creates a missing room (`rooms.create_on_join`). Rooms created this way
    /// are removed again when their last member leaves.
    pub create_on_join: bool,
    /// Send `user_joined` and `user_left` to a room's members (`rooms.notify_join_leave`).
    pub notify_join_leave: bool,
    /// Rooms, by name or `prefix*` pattern, whose messages are conflated for a connection
    /// that falls behind: it gets the newest message of such a room instead of every one,
    /// and is not closed for their backlog (`rooms.conflate`).
    pub conflate: Vec<String>,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        Self {
            create: vec!["general".to_owned(), "random".to_owned()],
            autojoin: vec!["general".to_owned()],
            create_on_join: true,
            notify_join_leave: true,
            conflate: Vec::new(),
        }
    }
}

/// Per-room history: with `size` > 0 every positioned message (`chat_message`,
/// `publication`) gets an offset in its room's stream, and a client that comes back can
/// recover what it missed.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    /// Positioned messages kept per room; 0 turns history, offsets and recovery off
    /// (`history.size`).
    pub size: usize,
    /// How long a positioned message is kept (`history.ttl`).
    pub ttl: Duration,
    /// Most messages one recovery or one history call returns (`history.max_recover`).
    pub max_recover: usize,
}

impl HistoryConfig {
    /// True when rooms keep streams.
    pub fn is_on(&self) -> bool {
        self.size > 0
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            size: 0,
            ttl: Duration::from_secs(600),
            max_recover: 300,
        }
    }
}

/// permessage-deflate (RFC 7692): offered to clients that ask, with every message
/// compressed on its own (`server_no_context_takeover`), so one compressed frame serves
/// every recipient that negotiated it.
#[derive(Debug, Clone)]
pub struct CompressionConfig {
    /// Accept clients' permessage-deflate offers (`compression.enabled`).
    pub enabled: bool,
    /// Messages smaller than this go out uncompressed (`compression.min_size`).
    pub min_size: usize,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            min_size: 512,
        }
    }
}

/// A cluster of neonex nodes sharing one NATS (`cluster.*`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The NATS server(s), comma-separated; `None` runs a single node
    /// (`cluster.nats_url`, `--cluster`).
    pub nats_url: Option<String>,
    /// This node's name in the cluster; `None`: the host name and a random suffix
    /// (`cluster.node_id`).
    pub node_id: Option<String>,
    /// The first token of every NATS subject the hub uses, so that several hubs can share
    /// one NATS (`cluster.subject_prefix`).
    pub subject_prefix: String,
    /// A node silent this long is taken for dead and its connections removed
    /// (`cluster.node_timeout`).
    pub node_timeout: Duration,
}

impl ClusterConfig {
    /// True when the hub is a node of a cluster.
    pub fn is_on(&self) -> bool {
        self.nats_url.is_some()
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats_url: None,
            node_id: None,
            subject_prefix: "neonex".to_owned(),
            node_timeout: Duration::from_secs(15),
        }
    }
}

/// Backend hooks (`proxy.*`): the hub asks the backend, with an HTTP `POST` of a JSON
/// object, whether a connection gets in (and as whom), and whether a join, a publish or
/// an rpc goes ahead. Each hook is on when its URL is set. URLs are `http://` only.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Asked before the upgrade; answers the user and rooms (`proxy.connect_url`).
    pub connect_url: Option<String>,
    /// Asked before a join (`proxy.join_url`).
    pub join_url: Option<String>,
    /// Asked before a publish; may replace its data (`proxy.publish_url`).
    pub publish_url: Option<String>,
    /// Answers clients' `rpc` messages (`proxy.rpc_url`).
    pub rpc_url: Option<String>,
    /// A hook slower than this fails (`proxy.timeout`).
    pub timeout: Duration,
}

impl ProxyConfig {
    /// True when at least one hook is on.
    pub fn is_on(&self) -> bool {
        self.urls().any(|(_, url)| url.is_some())
    }

    /// Each hook's key and URL, in the table's order.
    pub fn urls(&self) -> impl Iterator<Item = (&'static str, Option<&str>)> {
        [
            ("proxy.connect_url", &self.connect_url),
            ("proxy.join_url", &self.join_url),
            ("proxy.publish_url", &self.publish_url),
            ("proxy.rpc_url", &self.rpc_url),
        ]
        .into_iter()
        .map(|(key, url)| (key, url.as_deref()))
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            connect_url: None,
            join_url: None,
            publish_url: None,
            rpc_url: None,
            timeout: Duration::from_secs(2),
        }
    }
}

/// Who is told when a user comes online or goes offline (`presence.scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceScope {
    /// Every connection of the hub.
    All,
    /// The members of the rooms the user's connection is in.
    Rooms,
    /// Nobody; no presence messages are sent.
    Off,
}

/// The I/O driver of the shard runtimes (`hub.driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverChoice {
    /// io_uring where the kernel allows it, else epoll.
    Auto,
    /// Always epoll (monoio's legacy driver).
    Epoll,
}

/// Bounds of one connection's outbound queue: what its socket has not taken yet.
#[derive(Debug, Clone, Copy)]
pub struct SendQueueLimits {
    /// Most bytes queued and not yet taken by the socket.
    pub max_bytes: usize,
    /// Most frames queued.
    pub max_frames: usize,
}

impl SendQueueLimits {
    /// The bounds multiplied by `factor`.
    pub fn scaled(&self, factor: usize) -> Self {
        Self {
            max_bytes: self.max_bytes.saturating_mul(factor),
            max_frames: self.max_frames.saturating_mul(factor),
        }
    }
}

impl Default for SendQueueLimits {
    fn default() -> Self {
        Self {
            max_bytes: 4 * 1024 * 1024,
            max_frames: 16 * 1024,
        }
    }
}

/// A node id is 1 to 64 of `[A-Za-z0-9_-]`.
pub(crate) fn is_valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// A subject prefix is one or more dot-separated tokens of `[A-Za-z0-9_-]`.
pub(crate) fn is_valid_subject_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.split('.').all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seeds() {
        let c = HubConfig::default();
        assert_eq!(c.ping_interval, Duration::from_secs(54));
        assert_eq!(c.pong_timeout, Duration::from_secs(60));
        assert_eq!(c.write_timeout, Duration::from_secs(10));
        assert_eq!(c.max_message_size, 512 * 1024);
        assert_eq!(c.cleanup_interval, Duration::from_secs(30));
        assert_eq!(c.rooms.create, ["general", "random"]);
        assert_eq!(c.rooms.autojoin, ["general"]);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn node_ids_and_subject_prefixes() {
        assert!(is_valid_node_id("node-a_1"));
        assert!(!is_valid_node_id(""));
        assert!(!is_valid_node_id("a.b"));
        assert!(is_valid_subject_prefix("neonex"));
        assert!(is_valid_subject_prefix("acme.neonex"));
        assert!(!is_valid_subject_prefix("a..b"));
        assert!(!is_valid_subject_prefix("a.*"));
        assert!(!is_valid_subject_prefix(""));
    }
}
