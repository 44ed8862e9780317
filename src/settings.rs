//! Server settings in layers: embedded defaults, a TOML file, `NEONEX_*` environment
//! variables, command-line flags; each layer overrides the one before.
//!
//! Key names are those of `../shared/CONFIG.md`: `hub.ping_interval` is written
//! `[hub] ping_interval = "54s"` in the file and `NEONEX_HUB_PING_INTERVAL=54s` in the
//! environment. Unknown keys and bad values stop the server at start with a message that
//! names the key (and, for the file, the line).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{
    ApiConfig, AuthConfig, DriverChoice, HubConfig, LimitsConfig, PresenceScope, RoomsConfig,
    SendQueueLimits,
};

/// The commented example configuration shipped with neonex; every value in it is the
/// embedded default.
pub const EXAMPLE: &str = include_str!("../neonex.example.toml");

/// Settings of `neonex serve`, as the file spells them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `listen`: address and port.
    pub listen: SocketAddr,
    /// `shards`: number of shards; absent means one per core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
    /// `allowed_origins`: browser origins allowed to connect (empty: any).
    pub allowed_origins: Vec<String>,
    /// `[hub]`.
    pub hub: HubSection,
    /// `[rooms]`.
    pub rooms: RoomsSection,
    /// `[presence]`.
    pub presence: PresenceSection,
    /// `[auth]`.
    pub auth: AuthSection,
    /// `[limits]`.
    pub limits: LimitsSection,
    /// `[api]`.
    pub api: ApiSection,
    /// `[http]`.
    pub http: HttpSection,
    /// `[shutdown]`.
    pub shutdown: ShutdownSection,
    /// `[log]`.
    pub log: LogSection,
}

/// `[hub]`: connection behaviour.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubSection {
    /// Server ping period.
    #[serde(with = "duration_text")]
    pub ping_interval: Duration,
    /// Drop a connection silent this long.
    #[serde(with = "duration_text")]
    pub pong_timeout: Duration,
    /// Drop a connection whose write is stuck this long.
    #[serde(with = "duration_text")]
    pub write_timeout: Duration,
    /// Larger frames or messages close with 1009.
    pub max_message_size: Size,
    /// Dead-connection sweep period.
    #[serde(with = "duration_text")]
    pub cleanup_interval: Duration,
    /// Drop a client whose HTTP upgrade request takes longer.
    #[serde(with = "duration_text")]
    pub handshake_timeout: Duration,
    /// Per-connection outbound queue bound, in bytes the socket has not taken.
    pub send_queue_bytes: Size,
    /// Per-connection outbound queue bound, in frames.
    pub send_queue_frames: usize,
    /// Most bytes the kernel holds unsent per socket.
    pub socket_unsent_bytes: Size,
    /// WebSocket endpoint path.
    pub path: String,
    /// I/O driver: `auto` (io_uring, else epoll) or `epoll`.
    pub driver: Driver,
    /// WebSocket subprotocols answered when a client offers them.
    pub subprotocols: Vec<String>,
}

/// `[rooms]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsSection {
    /// Rooms that exist at start.
    pub create: Vec<String>,
    /// Rooms every connection joins.
    pub autojoin: Vec<String>,
    /// `join_room` creates a missing room.
    pub create_on_join: bool,
    /// Send `user_joined` / `user_left`.
    pub notify_join_leave: bool,
}

/// `[presence]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceSection {
    /// `all`, `rooms` or `off`.
    pub scope: PresenceScope,
}

/// `[auth]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// HS256 secret; when set, every connection needs a token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<String>,
    /// PEM file with the RS256 or ES256 public key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_public_key: Option<PathBuf>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(with = "duration_text")]
    pub leeway: Duration,
    /// Required `aud`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Required `iss`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// `[limits]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Per-connection token bucket rate.
    pub messages_per_second: u32,
    /// Token bucket size.
    pub burst: u32,
    /// Sustained abuse this long closes with 1008.
    #[serde(with = "duration_text")]
    pub abuse_close_after: Duration,
    /// Cap on joined rooms per connection.
    pub rooms_per_connection: usize,
    /// Cap on connections per user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections_per_user: Option<usize>,
    /// Cap on connections per client IP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections_per_ip: Option<usize>,
    /// Cap on connections in total.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
}

/// `[api]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Key guarding `/api/*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Largest request body.
    pub max_body: Size,
}

/// `[http]`: the HTTP side of the listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Proxies (addresses or CIDRs) whose forwarding headers name the real client.
    pub trusted_proxies: Vec<String>,
}

/// `[shutdown]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownSection {
    /// Graceful drain bound.
    #[serde(with = "duration_text")]
    pub timeout: Duration,
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `text` or `json`.
    pub format: LogFormat,
    /// Level filter (`RUST_LOG` syntax); `RUST_LOG` itself wins when set.
    pub level: String,
    /// Period of the stats line at info level.
    #[serde(with = "duration_text")]
    pub stats_interval: Duration,
    /// Colours in text logs: `auto` (only on a terminal), `always` or `never`.
    pub color: LogColor,
}

/// `hub.driver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// io_uring, else epoll.
    Auto,
    /// Always epoll.
    Epoll,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `log.color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogColor {
    /// Colours when standard output is a terminal and `NO_COLOR` is not set.
    Auto,
    /// Always colours.
    Always,
    /// Never colours.
    Never,
}

impl LogColor {
    /// Whether text logs get ANSI colours, given where they go.
    pub fn use_ansi(self, stdout_is_terminal: bool) -> bool {
        match self {
            LogColor::Always => true,
            LogColor::Never => false,
            LogColor::Auto => stdout_is_terminal && std::env::var_os("NO_COLOR").is_none(),
        }
    }
}

/// A size in bytes, written `512KiB`, `1MiB` or plain bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub usize);

impl Default for Settings {
    fn default() -> Self {
        let hub = HubConfig::default();
        Self {
            listen: "0.0.0.0:3000".parse().expect("a valid address"),
            shards: None,
            allowed_origins: hub.allowed_origins.clone(),
            hub: HubSection {
                ping_interval: hub.ping_interval,
                pong_timeout: hub.pong_timeout,
                write_timeout: hub.write_timeout,
                max_message_size: Size(hub.max_message_size),
                cleanup_interval: hub.cleanup_interval,
                handshake_timeout: hub.handshake_timeout,
                send_queue_bytes: Size(hub.send_queue.max_bytes),
                send_queue_frames: hub.send_queue.max_frames,
                socket_unsent_bytes: Size(hub.socket_unsent_bytes),
                path: hub.path.clone(),
                driver: Driver::Auto,
                subprotocols: hub.subprotocols.clone(),
            },
            rooms: RoomsSection {
                create: hub.rooms.create.clone(),
                autojoin: hub.rooms.autojoin.clone(),
                create_on_join: hub.rooms.create_on_join,
                notify_join_leave: hub.rooms.notify_join_leave,
            },
            presence: PresenceSection {
                scope: hub.presence,
            },
            auth: AuthSection {
                jwt_secret: None,
                jwt_public_key: None,
                leeway: hub.auth.leeway,
                audience: None,
                issuer: None,
            },
            limits: LimitsSection {
                messages_per_second: hub.limits.messages_per_second,
                burst: hub.limits.burst,
                abuse_close_after: hub.limits.abuse_close_after,
                rooms_per_connection: hub.limits.rooms_per_connection,
                connections_per_user: None,
                connections_per_ip: None,
                max_connections: None,
            },
            api: ApiSection {
                key: None,
                max_body: Size(hub.api.max_body),
            },
            http: HttpSection {
                trusted_proxies: hub.trusted_proxies.clone(),
            },
            shutdown: ShutdownSection {
                timeout: hub.shutdown_timeout,
            },
            log: LogSection {
                format: LogFormat::Text,
                level: "info".to_owned(),
                stats_interval: hub.stats_log_interval,
                color: LogColor::Auto,
            },
        }
    }
}

macro_rules! section_defaults {
    ($($section:ident => $field:ident),* $(,)?) => {
        $(impl Default for $section {
            fn default() -> Self {
                Settings::default().$field
            }
        })*
    };
}

section_defaults!(
    HubSection => hub,
    RoomsSection => rooms,
    PresenceSection => presence,
    AuthSection => auth,
    LimitsSection => limits,
    ApiSection => api,
    HttpSection => http,
    ShutdownSection => shutdown,
    LogSection => log,
);

/// The kind of value a key takes, for reading it from an environment variable.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    List,
    Integer,
    Boolean,
}

/// Every key, with its kind. The environment variable of `a.b_c` is `NEONEX_A_B_C`.
const KEYS: &[(&str, Kind)] = &[
    ("listen", Kind::Text),
    ("shards", Kind::Integer),
    ("allowed_origins", Kind::List),
    ("hub.ping_interval", Kind::Text),
    ("hub.pong_timeout", Kind::Text),
    ("hub.write_timeout", Kind::Text),
    ("hub.max_message_size", Kind::Text),
    ("hub.cleanup_interval", Kind::Text),
    ("hub.handshake_timeout", Kind::Text),
    ("hub.send_queue_bytes", Kind::Text),
    ("hub.send_queue_frames", Kind::Integer),
    ("hub.socket_unsent_bytes", Kind::Text),
    ("hub.path", Kind::Text),
    ("hub.driver", Kind::Text),
    ("hub.subprotocols", Kind::List),
    ("rooms.create", Kind::List),
    ("rooms.autojoin", Kind::List),
    ("rooms.create_on_join", Kind::Boolean),
    ("rooms.notify_join_leave", Kind::Boolean),
    ("presence.scope", Kind::Text),
    ("auth.jwt_secret", Kind::Text),
    ("auth.jwt_public_key", Kind::Text),
    ("auth.leeway", Kind::Text),
    ("auth.audience", Kind::Text),
    ("auth.issuer", Kind::Text),
    ("limits.messages_per_second", Kind::Integer),
    ("limits.burst", Kind::Integer),
    ("limits.abuse_close_after", Kind::Text),
    ("limits.rooms_per_connection", Kind::Integer),
    ("limits.connections_per_user", Kind::Integer),
    ("limits.connections_per_ip", Kind::Integer),
    ("limits.max_connections", Kind::Integer),
    ("api.key", Kind::Text),
    ("api.max_body", Kind::Text),
    ("http.trusted_proxies", Kind::List),
    ("shutdown.timeout", Kind::Text),
    ("log.format", Kind::Text),
    ("log.level", Kind::Text),
    ("log.stats_interval", Kind::Text),
    ("log.color", Kind::Text),
];

/// The environment variable for key `path`.
pub fn env_name(path: &str) -> String {
    format!("NEONEX_{}", path.replace('.', "_").to_uppercase())
}

/// A configuration problem, naming where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

/// Values given on the command line, the last layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--shards`.
    pub shards: Option<usize>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
    /// `--epoll`.
    pub epoll: bool,
}

impl Settings {
    /// Builds the settings from the layers: `file` (if any), the `NEONEX_*` variables of
    /// `env`, then `overrides`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Settings, SettingsError> {
        let mut layered = toml::Table::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                SettingsError(format!("cannot read config file {}: {e}", path.display()))
            })?;
            // Parsed on its own first, so a mistake is reported with its line.
            toml::from_str::<Settings>(&text)
                .map_err(|e| SettingsError(format!("{}: {e}", path.display())))?;
            layered = toml::from_str(&text).expect("parsed just above");
        }
        merge(&mut layered, env_layer(env)?);
        let mut settings = Settings::deserialize(toml::Value::Table(layered))
            .map_err(|e| SettingsError(format!("environment: {e}")))?;
        if let Some(listen) = overrides.listen {
            settings.listen = listen;
        }
        if let Some(shards) = overrides.shards {
            settings.shards = Some(shards);
        }
        if let Some(format) = overrides.log_format {
            settings.log.format = format;
        }
        if overrides.epoll {
            settings.hub.driver = Driver::Epoll;
        }
        settings.hub_config()?;
        log_filter(&settings.log.level)?;
        Ok(settings)
    }

    /// The hub configuration these settings describe, checked. Reads the JWT public key
    /// file if one is named.
    pub fn hub_config(&self) -> Result<HubConfig, SettingsError> {
        let defaults = HubConfig::default();
        let jwt_public_key = match &self.auth.jwt_public_key {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                SettingsError(format!(
                    "auth.jwt_public_key: cannot read {}: {e}",
                    path.display()
                ))
            })?),
            None => None,
        };
        let config = HubConfig {
            ping_interval: self.hub.ping_interval,
            pong_timeout: self.hub.pong_timeout,
            write_timeout: self.hub.write_timeout,
            max_message_size: self.hub.max_message_size.0,
            cleanup_interval: self.hub.cleanup_interval,
            shards: self.shards.unwrap_or(defaults.shards),
            driver: match self.hub.driver {
                Driver::Auto => DriverChoice::Auto,
                Driver::Epoll => DriverChoice::Epoll,
            },
            path: self.hub.path.clone(),
            rooms: RoomsConfig {
                create: self.rooms.create.clone(),
                autojoin: self.rooms.autojoin.clone(),
                create_on_join: self.rooms.create_on_join,
                notify_join_leave: self.rooms.notify_join_leave,
            },
            presence: self.presence.scope,
            send_queue: SendQueueLimits {
                max_bytes: self.hub.send_queue_bytes.0,
                max_frames: self.hub.send_queue_frames,
            },
            socket_unsent_bytes: self.hub.socket_unsent_bytes.0,
            shutdown_timeout: self.shutdown.timeout,
            handshake_timeout: self.hub.handshake_timeout,
            auth: AuthConfig {
                jwt_secret: self.auth.jwt_secret.clone(),
                jwt_public_key,
                leeway: self.auth.leeway,
                audience: self.auth.audience.clone(),
                issuer: self.auth.issuer.clone(),
            },
            allowed_origins: self.allowed_origins.clone(),
            limits: LimitsConfig {
                messages_per_second: self.limits.messages_per_second,
                burst: self.limits.burst,
                abuse_close_after: self.limits.abuse_close_after,
                rooms_per_connection: self.limits.rooms_per_connection,
                connections_per_user: self.limits.connections_per_user,
                connections_per_ip: self.limits.connections_per_ip,
                max_connections: self.limits.max_connections,
            },
            api: ApiConfig {
                key: self.api.key.clone(),
                max_body: self.api.max_body.0,
            },
            stats_log_interval: self.log.stats_interval,
            trusted_proxies: self.http.trusted_proxies.clone(),
            subprotocols: self.hub.subprotocols.clone(),
            fault_injection: false,
        };
        config
            .validate()
            .map_err(|e| SettingsError(e.to_string()))?;
        Ok(config)
    }

    /// The effective settings as TOML, secrets masked (`neonex config`).
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        if shown.shards.is_none() {
            shown.shards = Some(HubConfig::default().shards);
        }
        for secret in [&mut shown.auth.jwt_secret, &mut shown.api.key] {
            if secret.is_some() {
                *secret = Some("********".to_owned());
            }
        }
        toml::to_string(&shown).expect("settings serialize")
    }
}

/// The level filter `log.level` describes. Stricter than the `RUST_LOG` syntax it
/// follows: there a bare word is a target to log at every level, so a misspelt level
/// (`warning`, `verbose`) silences every other line, the start-up warnings included. Here
/// each directive is a level, or `target=level`.
pub fn log_filter(level: &str) -> Result<tracing_subscriber::EnvFilter, SettingsError> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let wrong = |why: String| SettingsError(format!("log.level {level:?}: {why}"));
    for directive in level.split(',').map(str::trim) {
        let named = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if !LEVELS.iter().any(|l| named.eq_ignore_ascii_case(l)) {
            return Err(wrong(format!(
                "{named:?} is not a level; write one of {} or target=level (e.g. \"neonex=debug,info\")",
                LEVELS.join(", ")
            )));
        }
    }
    tracing_subscriber::EnvFilter::try_new(level).map_err(|e| wrong(e.to_string()))
}

/// The `NEONEX_*` variables as a TOML table. A variable naming no key is an error.
fn env_layer(
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<toml::Table, SettingsError> {
    let by_name: BTreeMap<String, (&str, Kind)> = KEYS
        .iter()
        .map(|&(path, kind)| (env_name(path), (path, kind)))
        .collect();
    let mut table = toml::Table::new();
    for (name, raw) in env {
        if !name.starts_with("NEONEX_") {
            continue;
        }
        let Some(&(path, kind)) = by_name.get(&name) else {
            return Err(SettingsError(format!(
                "{name}: no such setting (see neonex.example.toml for the keys)"
            )));
        };
        let value = match kind {
            Kind::Text => toml::Value::String(raw),
            Kind::List => toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_owned()))
                    .collect(),
            ),
            Kind::Integer => toml::Value::Integer(raw.trim().parse().map_err(|_| {
                SettingsError(format!(
                    "{name} ({path}): expected a whole number, got {raw:?}"
                ))
            })?),
            Kind::Boolean => toml::Value::Boolean(raw.trim().parse().map_err(|_| {
                SettingsError(format!(
                    "{name} ({path}): expected true or false, got {raw:?}"
                ))
            })?),
        };
        // Check the value on its own, so the error names this variable.
        let mut alone = toml::Table::new();
        insert_path(&mut alone, path, value.clone());
        Settings::deserialize(toml::Value::Table(alone))
            .map_err(|e| SettingsError(format!("{name} ({path}): {e}")))?;
        insert_path(&mut table, path, value);
    }
    Ok(table)
}

fn insert_path(table: &mut toml::Table, path: &str, value: toml::Value) {
    match path.split_once('.') {
        None => {
            table.insert(path.to_owned(), value);
        }
        Some((section, rest)) => {
            let entry = table
                .entry(section.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

/// Deep-merges `over` into `base`.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Durations as text: `250ms`, `54s`, `2m`.
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?} ({e}); write e.g. \"250ms\", \"54s\" or \"2m\""
            ))
        })
    }
}

impl Serialize for Size {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.0;
        let text = if n != 0 && n % (1 << 20) == 0 {
            format!("{}MiB", n >> 20)
        } else if n != 0 && n % (1 << 10) == 0 {
            format!("{}KiB", n >> 10)
        } else {
            return s.serialize_u64(n as u64);
        };
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        let bytes = match Raw::deserialize(d)? {
            Raw::Bytes(n) => n,
            Raw::Text(text) => text
                .trim()
                .parse::<bytesize::ByteSize>()
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "invalid size {text:?} ({e}); write e.g. \"512KiB\", \"1MiB\" or bytes"
                    ))
                })?
                .as_u64(),
        };
        usize::try_from(bytes)
            .map(Size)
            .map_err(|_| serde::de::Error::custom("size too large"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_example_file_holds_exactly_the_defaults() {
        let example: Settings = toml::from_str(EXAMPLE).expect("the example parses");
        assert_eq!(example.to_toml(), Settings::default().to_toml());
        // Every key of the table is documented by the example file.
        for (path, _) in KEYS {
            let key = path.rsplit('.').next().unwrap();
            assert!(
                EXAMPLE.contains(key),
                "the example file does not mention {path}"
            );
        }
    }

    #[test]
    fn environment_overrides_and_lists_split_on_commas() {
        let s = Settings::load(
            None,
            env(&[
                ("NEONEX_HUB_PING_INTERVAL", "250ms"),
                ("NEONEX_ROOMS_CREATE", "a, b"),
                ("NEONEX_ROOMS_AUTOJOIN", "a"),
                ("NEONEX_LIMITS_BURST", "7"),
                ("PATH", "/bin"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(s.hub.ping_interval, Duration::from_millis(250));
        assert_eq!(s.rooms.create, ["a", "b"]);
        assert_eq!(s.limits.burst, 7);
    }

    #[test]
    fn sizes_read_units_and_print_them_back() {
        let s: Settings = toml::from_str("[hub]\nmax_message_size = \"1MiB\"\n").unwrap();
        assert_eq!(s.hub.max_message_size, Size(1 << 20));
        let s: Settings = toml::from_str("[hub]\nmax_message_size = 4096\n").unwrap();
        assert_eq!(s.hub.max_message_size, Size(4096));
        assert!(s.to_toml().contains("max_message_size = \"4KiB\""));
    }

    #[test]
    fn bad_environment_values_name_the_variable_and_key() {
        for (var, value, expect) in [
            (
                "NEONEX_HUB_PONG_TIMEOUT",
                "soon",
                "NEONEX_HUB_PONG_TIMEOUT (hub.pong_timeout)",
            ),
            ("NEONEX_SHARDS", "two", "NEONEX_SHARDS (shards)"),
            (
                "NEONEX_PRESENCE_SCOPE",
                "everyone",
                "NEONEX_PRESENCE_SCOPE (presence.scope)",
            ),
            ("NEONEX_HUB_PING", "1s", "NEONEX_HUB_PING: no such setting"),
        ] {
            let err = Settings::load(None, env(&[(var, value)]), &Overrides::default())
                .unwrap_err()
                .0;
            assert!(err.contains(expect), "{err}");
        }
    }

    #[test]
    fn log_levels_must_be_levels() {
        for good in [
            "info",
            "WARN",
            "neonex=debug,info",
            "off",
            "neonex::shard=trace",
        ] {
            assert!(log_filter(good).is_ok(), "{good}");
        }
        for bad in [
            "warning",
            "verbose",
            "neonex",
            "info,chatty",
            "neonex=loud",
            "",
        ] {
            let err = log_filter(bad).unwrap_err().0;
            assert!(err.starts_with("log.level"), "{err}");
        }
    }

    #[test]
    fn secrets_are_masked_when_printed() {
        let s = Settings::load(
            None,
            env(&[
                ("NEONEX_AUTH_JWT_SECRET", "hunter2"),
                ("NEONEX_API_KEY", "k"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        let shown = s.to_toml();
        assert!(
            !shown.contains("hunter2") && shown.contains("********"),
            "{shown}"
        );
    }
}
