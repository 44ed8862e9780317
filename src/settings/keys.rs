//! The key table: every key of the configuration, once, with the field of [`Settings`]
//! that holds its value and the format it is written in. A key's doc is that of its field.
//!
//! Adding a setting is one line here, beside its field in `HubConfig` (or [`Settings`]),
//! and its entry in `neonex.example.toml`, which a test holds to the table.

use super::format::{Duration, Flag, Format, List, Number, Size, Text};
use super::Settings;

/// One key of the configuration.
pub(super) struct Key {
    /// Where the file has it: `section.name`, or `name` at the top.
    pub path: &'static str,
    /// `neonex config` masks it.
    pub secret: bool,
    field: &'static dyn Slot,
}

/// Where a key's value lives, and how it is written.
trait Slot: Sync {
    fn parse_env(&self, text: &str) -> Result<toml::Value, String>;
    fn read(&self, settings: &mut Settings, value: toml::Value) -> Result<(), toml::de::Error>;
    fn write(&self, settings: &Settings) -> Option<toml::Value>;
}

/// A field of [`Settings`] and its format.
struct Field<T: 'static, F> {
    format: F,
    get: fn(&Settings) -> &T,
    get_mut: fn(&mut Settings) -> &mut T,
}

impl<T, F: Format<T>> Slot for Field<T, F> {
    fn parse_env(&self, text: &str) -> Result<toml::Value, String> {
        self.format.parse_env(text)
    }

    fn read(&self, settings: &mut Settings, value: toml::Value) -> Result<(), toml::de::Error> {
        *(self.get_mut)(settings) = self.format.read(value)?;
        Ok(())
    }

    fn write(&self, settings: &Settings) -> Option<toml::Value> {
        self.format.write((self.get)(settings))
    }
}

/// The key at `$path`, whose value is `settings.$field`, written in `$format`; `secret`
/// keys are masked when printed.
macro_rules! key {
    ($path:literal, $format:expr, $($field:ident).+ $(, $secret:ident)?) => {
        Key {
            path: $path,
            secret: key!(@secret $($secret)?),
            field: &Field {
                format: $format,
                get: |settings| &settings.$($field).+,
                get_mut: |settings| &mut settings.$($field).+,
            },
        }
    };
    (@secret secret) => { true };
    (@secret) => { false };
}

impl Key {
    /// The table the key is in; `None` at the top of the file.
    pub fn section(&self) -> Option<&'static str> {
        self.path.split_once('.').map(|(section, _)| section)
    }

    /// The key's name within its table.
    pub fn name(&self) -> &'static str {
        self.path
            .split_once('.')
            .map_or(self.path, |(_, name)| name)
    }

    /// The environment variable that sets the key: `hub.ping_interval` is set by
    /// `NEONEX_HUB_PING_INTERVAL`.
    pub fn env_name(&self) -> String {
        super::env_name(self.path)
    }

    /// Sets the key's value from its TOML form.
    pub fn read(&self, settings: &mut Settings, value: toml::Value) -> Result<(), toml::de::Error> {
        self.field.read(settings, value)
    }

    /// Sets the key's value from the text of its variable.
    pub fn read_env(&self, settings: &mut Settings, text: &str) -> Result<(), String> {
        let value = self.field.parse_env(text)?;
        self.read(settings, value)
            .map_err(|e| e.message().to_owned())
    }

    /// The key's value in its TOML form; `None` when it is unset.
    pub fn write(&self, settings: &Settings) -> Option<toml::Value> {
        self.field.write(settings)
    }
}

/// The keys of `section` (`None`: the top of the file), in the table's order.
pub(super) fn in_section(section: Option<&str>) -> impl Iterator<Item = &'static Key> + '_ {
    KEYS.iter().filter(move |key| key.section() == section)
}

/// The names of the tables, in the order of their first key.
pub(super) fn sections() -> Vec<&'static str> {
    let mut sections: Vec<&str> = Vec::new();
    for section in KEYS.iter().filter_map(Key::section) {
        if !sections.contains(&section) {
            sections.push(section);
        }
    }
    sections
}

/// Every key, in the order `neonex config` prints them: the top of the file first, then
/// each table.
// In columns, so that the keys read as the table they are.
#[rustfmt::skip]
pub(super) static KEYS: &[Key] = &[
    key!("listen",                      Text,     listen),
    key!("shards",                      Number,   hub.shards),
    key!("allowed_origins",             List,     hub.allowed_origins),
    key!("hub.ping_interval",           Duration, hub.ping_interval),
    key!("hub.pong_timeout",            Duration, hub.pong_timeout),
    key!("hub.write_timeout",           Duration, hub.write_timeout),
    key!("hub.write_delay",             Duration, hub.write_delay),
    key!("hub.max_message_size",        Size,     hub.max_message_size),
    key!("hub.cleanup_interval",        Duration, hub.cleanup_interval),
    key!("hub.handshake_timeout",       Duration, hub.handshake_timeout),
    key!("hub.send_queue_bytes",        Size,     hub.send_queue.max_bytes),
    key!("hub.send_queue_frames",       Number,   hub.send_queue.max_frames),
    key!("hub.socket_unsent_bytes",     Size,     hub.socket_unsent_bytes),
    key!("hub.path",                    Text,     hub.path),
    key!("hub.driver",                  Text,     hub.driver),
    key!("hub.subprotocols",            List,     hub.subprotocols),
    key!("rooms.create",                List,     hub.rooms.create),
    key!("rooms.autojoin",              List,     hub.rooms.autojoin),
    key!("rooms.create_on_join",        Flag,     hub.rooms.create_on_join),
    key!("rooms.notify_join_leave",     Flag,     hub.rooms.notify_join_leave),
    key!("rooms.conflate",              List,     hub.rooms.conflate),
    key!("history.size",                Number,   hub.history.size),
    key!("history.ttl",                 Duration, hub.history.ttl),
    key!("history.max_recover",         Number,   hub.history.max_recover),
    key!("compression.enabled",         Flag,     hub.compression.enabled),
    key!("compression.min_size",        Size,     hub.compression.min_size),
    key!("presence.scope",              Text,     hub.presence),
    key!("cluster.nats_url",            Text,     hub.cluster.nats_url),
    key!("cluster.node_id",             Text,     hub.cluster.node_id),
    key!("cluster.subject_prefix",      Text,     hub.cluster.subject_prefix),
    key!("cluster.node_timeout",        Duration, hub.cluster.node_timeout),
    key!("proxy.connect_url",           Text,     hub.proxy.connect_url),
    key!("proxy.join_url",              Text,     hub.proxy.join_url),
    key!("proxy.publish_url",           Text,     hub.proxy.publish_url),
    key!("proxy.rpc_url",               Text,     hub.proxy.rpc_url),
    key!("proxy.timeout",               Duration, hub.proxy.timeout),
    key!("tls.cert",                    Text,     hub.tls.cert),
    key!("tls.key",                     Text,     hub.tls.key),
    key!("auth.jwt_secret",             Text,     hub.auth.jwt_secret, secret),
    key!("auth.jwt_public_key",         Text,     jwt_public_key),
    key!("auth.leeway",                 Duration, hub.auth.leeway),
    key!("auth.audience",               Text,     hub.auth.audience),
    key!("auth.issuer",                 Text,     hub.auth.issuer),
    key!("limits.messages_per_second",  Number,   hub.limits.messages_per_second),
    key!("limits.burst",                Number,   hub.limits.burst),
    key!("limits.abuse_close_after",    Duration, hub.limits.abuse_close_after),
    key!("limits.rooms_per_connection", Number,   hub.limits.rooms_per_connection),
    key!("limits.connections_per_user", Number,   hub.limits.connections_per_user),
    key!("limits.connections_per_ip",   Number,   hub.limits.connections_per_ip),
    key!("limits.max_connections",      Number,   hub.limits.max_connections),
    key!("api.key",                     Text,     hub.api.key, secret),
    key!("api.max_body",                Size,     hub.api.max_body),
    key!("admin.enabled",               Flag,     hub.admin.enabled),
    key!("admin.demo",                  Flag,     hub.admin.demo),
    key!("http.trusted_proxies",        List,     hub.trusted_proxies),
    key!("shutdown.timeout",            Duration, hub.shutdown_timeout),
    key!("log.format",                  Text,     log.format),
    key!("log.level",                   Text,     log.level),
    key!("log.stats_interval",          Duration, hub.stats_log_interval),
    key!("log.color",                   Text,     log.color),
];
