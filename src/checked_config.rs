//! A [`HubConfig`] that passed its checks, with what checking it built.
//!
//! Some settings can only be checked by building what they describe: a JWT key by making
//! the authenticator, an origin pattern by compiling the origin policy, a proxy network by
//! parsing it. The check keeps what it built, and [`Hub::from_checked`](crate::Hub) runs
//! with it, so a configuration is checked once and nothing is built twice.

use crate::auth::Authenticator;
use crate::config::{ConfigError, HubConfig};
use crate::forwarded::TrustedProxies;
use crate::origin::OriginPolicy;
use crate::room_pattern::RoomPatterns;

/// The longest `hub.write_delay`.
const MAX_WRITE_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// A [`HubConfig`] that passed [`HubConfig::check`], ready for
/// [`Hub::from_checked`](crate::Hub::from_checked).
pub struct CheckedConfig {
    pub(crate) config: HubConfig,
    pub(crate) guards: HandshakeGuards,
    /// What TLS connections start from, read from `tls.cert` and `tls.key`; `None`
    /// without TLS.
    pub(crate) tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

/// What decides whether an upgrade request gets in, built from the configuration.
pub(crate) struct HandshakeGuards {
    /// Verifies tokens when authentication is configured.
    pub authenticator: Option<Authenticator>,
    pub origins: OriginPolicy,
    /// Decides who a request comes from.
    pub proxies: TrustedProxies,
}

impl HandshakeGuards {
    /// Says at start what the guards let in: the origins and identities a hub without
    /// their settings accepts, and who may call `/api/*`.
    pub fn log_start(&self, config: &HubConfig) {
        if self.origins.allows_any() {
            tracing::warn!("allowed_origins is empty: browsers from any origin may connect");
        }
        if self.authenticator.is_none() {
            tracing::warn!("no JWT secret or key: clients choose their user id with ?user=");
        }
        log_api_guard(config, &self.proxies);
    }
}

/// Says once, at start, who may call `/api/*`, since a hub behind a proxy on its own host
/// must not take the proxy's requests for local ones.
fn log_api_guard(config: &HubConfig, proxies: &TrustedProxies) {
    if !proxies.is_empty() {
        tracing::info!(
            trusted_proxies = ?config.trusted_proxies,
            "client addresses are taken from X-Forwarded-For or Forwarded on requests from these proxies"
        );
    }
    if config.api.key.is_some() {
        tracing::info!("HTTP API: every /api/* call needs api.key");
    } else if proxies.is_empty() {
        tracing::warn!(
            "HTTP API: no api.key, so /api/* answers loopback clients only, and no request that carries proxy headers; behind a reverse proxy set api.key (or http.trusted_proxies)"
        );
    } else {
        tracing::warn!(
            "HTTP API: no api.key, so /api/* answers loopback clients only: direct ones, or those a trusted proxy names as loopback"
        );
    }
}

impl CheckedConfig {
    /// The configuration that was checked.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }
}

impl HubConfig {
    /// The largest request body the API takes: `api.max_body`, or less when a connection's
    /// send queue could not hold it, since a broadcast goes out as one frame and a frame
    /// bigger than the queue would cut every reader as a slow consumer.
    pub fn api_body_limit(&self) -> usize {
        self.api
            .max_body
            .min(self.send_queue.max_bytes.saturating_sub(14))
    }

    /// Checks the settings that would make the hub misbehave rather than fail loudly.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.build_guards()?;
        crate::tls::load(&self.tls).map(drop)
    }

    /// Checks the settings, as [`HubConfig::validate`] does, and keeps what checking built.
    pub fn check(self) -> Result<CheckedConfig, ConfigError> {
        let guards = self.build_guards()?;
        let tls = crate::tls::load(&self.tls)?;
        Ok(CheckedConfig {
            config: self,
            guards,
            tls,
        })
    }

    fn build_guards(&self) -> Result<HandshakeGuards, ConfigError> {
        self.check_timing_and_sizes()?;
        self.check_limits()?;
        let origins = OriginPolicy::new(&self.allowed_origins)?;
        let proxies = TrustedProxies::new(&self.trusted_proxies)?;
        if let Some(name) = self.subprotocols.iter().find(|p| !crate::http::is_token(p)) {
            return Err(ConfigError::invalid(
                "hub.subprotocols",
                format!("hub.subprotocols: {name:?} is not a valid subprotocol name (letters, digits and !#$%&'*+-.^_`|~)"),
            ));
        }
        let authenticator = Authenticator::new(&self.auth)?;
        if self.api.max_body == 0 {
            return Err(ConfigError::invalid(
                "api.max_body",
                "api.max_body must be greater than zero",
            ));
        }
        if !self.path.starts_with('/') {
            return Err(ConfigError::invalid("hub.path", "path must start with '/'"));
        }
        self.check_rooms()?;
        self.check_history()?;
        self.check_cluster()?;
        self.check_proxy()?;
        self.check_application()?;
        Ok(HandshakeGuards {
            authenticator,
            origins,
            proxies,
        })
    }

    fn check_timing_and_sizes(&self) -> Result<(), ConfigError> {
        let positive = [
            ("hub.ping_interval", self.ping_interval),
            ("hub.pong_timeout", self.pong_timeout),
            ("hub.write_timeout", self.write_timeout),
            ("hub.cleanup_interval", self.cleanup_interval),
            ("shutdown.timeout", self.shutdown_timeout),
            ("hub.handshake_timeout", self.handshake_timeout),
            ("log.stats_interval", self.stats_log_interval),
        ];
        if let Some(&(key, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::invalid(
                key,
                format!("{key} must be greater than zero"),
            ));
        }
        // Past a second the delay is no longer batching but lag.
        if self.write_delay > MAX_WRITE_DELAY {
            return Err(ConfigError::invalid(
                "hub.write_delay",
                "hub.write_delay must be at most 1s",
            ));
        }
        if self.shards == 0 || self.shards > crate::ids::MAX_SHARDS {
            return Err(ConfigError::invalid(
                "shards",
                format!("shards must be between 1 and {}", crate::ids::MAX_SHARDS),
            ));
        }
        for (key, size) in [
            ("hub.socket_unsent_bytes", self.socket_unsent_bytes),
            ("hub.max_message_size", self.max_message_size),
        ] {
            if size == 0 {
                return Err(ConfigError::invalid(
                    key,
                    format!("{key} must be greater than zero"),
                ));
            }
        }
        // A frame bigger than a connection's queue would cut every reader as slow.
        if self.send_queue.max_bytes < self.max_message_size + 14 {
            return Err(ConfigError::invalid(
                "hub.send_queue_bytes",
                "hub.send_queue_bytes must hold at least one message of hub.max_message_size",
            ));
        }
        Ok(())
    }

    fn check_limits(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        if limits.messages_per_second == 0 || limits.burst == 0 {
            let key = if limits.burst == 0 {
                "limits.burst"
            } else {
                "limits.messages_per_second"
            };
            return Err(ConfigError::invalid(
                key,
                "limits.messages_per_second and limits.burst must be at least 1",
            ));
        }
        if limits.rooms_per_connection == 0 {
            return Err(ConfigError::invalid(
                "limits.rooms_per_connection",
                "limits.rooms_per_connection must be at least 1",
            ));
        }
        for (key, cap) in [
            ("limits.connections_per_user", limits.connections_per_user),
            ("limits.connections_per_ip", limits.connections_per_ip),
            ("limits.max_connections", limits.max_connections),
        ] {
            if cap == Some(0) {
                return Err(ConfigError::invalid(
                    key,
                    format!("{key} must be at least 1 when set"),
                ));
            }
        }
        Ok(())
    }

    fn check_cluster(&self) -> Result<(), ConfigError> {
        let cluster = &self.cluster;
        let Some(urls) = &cluster.nats_url else {
            return Ok(());
        };
        for url in urls.split(',').map(str::trim) {
            if let Err(e) = url.parse::<async_nats::ServerAddr>() {
                return Err(ConfigError::invalid(
                    "cluster.nats_url",
                    format!("cluster.nats_url: {url:?} is not a NATS address ({e})"),
                ));
            }
        }
        if let Some(node) = &cluster.node_id {
            if !crate::config::is_valid_node_id(node) {
                return Err(ConfigError::invalid(
                    "cluster.node_id",
                    format!("cluster.node_id: {node:?} must be 1 to 64 of A-Z a-z 0-9 _ -"),
                ));
            }
        }
        if !crate::config::is_valid_subject_prefix(&cluster.subject_prefix) {
            return Err(ConfigError::invalid(
                "cluster.subject_prefix",
                format!(
                    "cluster.subject_prefix: {:?} is not a NATS subject (tokens of A-Z a-z 0-9 _ - separated by dots)",
                    cluster.subject_prefix
                ),
            ));
        }
        if cluster.node_timeout < std::time::Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "cluster.node_timeout",
                "cluster.node_timeout must be at least 1s",
            ));
        }
        Ok(())
    }

    fn check_proxy(&self) -> Result<(), ConfigError> {
        let proxy = &self.proxy;
        for (key, url) in proxy.urls() {
            if let Some(url) = url {
                check_hook_url(key, url)?;
            }
        }
        // Longer than a day is a unit mistake, and no caller waits that long.
        const LONGEST: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);
        if proxy.timeout.is_zero() || proxy.timeout > LONGEST {
            return Err(ConfigError::invalid(
                "proxy.timeout",
                "proxy.timeout must be greater than zero and at most 1d",
            ));
        }
        Ok(())
    }

    fn check_application(&self) -> Result<(), ConfigError> {
        let Some(application) = &self.application else {
            return Ok(());
        };
        if application.decision_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "application.decision_timeout",
                "Application::decision_timeout must be greater than zero: every question would get its default at once",
            ));
        }
        if application.event_capacity == 0 {
            return Err(ConfigError::invalid(
                "application.event_capacity",
                "Application::event_capacity must be at least 1",
            ));
        }
        Ok(())
    }

    fn check_history(&self) -> Result<(), ConfigError> {
        let history = &self.history;
        if !history.is_on() {
            return Ok(());
        }
        if history.ttl.is_zero() {
            return Err(ConfigError::invalid(
                "history.ttl",
                "history.ttl must be greater than zero when history.size is",
            ));
        }
        if history.max_recover == 0 {
            return Err(ConfigError::invalid(
                "history.max_recover",
                "history.max_recover must be greater than zero when history.size is",
            ));
        }
        Ok(())
    }

    fn check_rooms(&self) -> Result<(), ConfigError> {
        let rooms = &self.rooms;
        for (key, list) in [
            ("rooms.create", &rooms.create),
            ("rooms.autojoin", &rooms.autojoin),
        ] {
            if let Some(room) = list.iter().find(|r| !crate::ids::is_valid_room_name(r)) {
                return Err(ConfigError::invalid(
                    key,
                    format!("invalid room name {room:?} in rooms"),
                ));
            }
        }
        if let Err(pattern) = RoomPatterns::new(&rooms.conflate) {
            return Err(ConfigError::invalid(
                "rooms.conflate",
                format!("rooms.conflate: {pattern:?} is neither a room name nor a room name's prefix followed by '*'"),
            ));
        }
        if let Some(room) = rooms.autojoin.iter().find(|r| !rooms.create.contains(r)) {
            return Err(ConfigError::invalid(
                "rooms.autojoin",
                format!("rooms.autojoin names {room:?}, which is not in rooms.create"),
            ));
        }
        Ok(())
    }
}

/// A hook's URL must be an absolute `http://` URL with a host: the proxy thread's client
/// speaks plain HTTP/1.1 only.
fn check_hook_url(key: &'static str, url: &str) -> Result<(), ConfigError> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| ConfigError::invalid(key, format!("{key}: {url:?} is not a URL ({e})")))?;
    match uri.scheme_str() {
        Some("http") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        Some("http") => Err(ConfigError::invalid(
            key,
            format!("{key}: {url:?} has no host"),
        )),
        Some("https") => Err(ConfigError::invalid(
            key,
            format!("{key}: {url:?}: https is not supported (no TLS client is compiled in); use http:// to a backend on a trusted network"),
        )),
        _ => Err(ConfigError::invalid(
            key,
            format!("{key}: {url:?} must be an http:// URL"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn validation_names_the_bad_setting() {
        let c = HubConfig {
            ping_interval: Duration::ZERO,
            ..HubConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("hub.ping_interval"));
        let mut c = HubConfig::default();
        c.rooms.autojoin.push("lobby".into());
        assert!(c.validate().unwrap_err().to_string().contains("lobby"));
    }

    #[test]
    fn the_check_keeps_what_it_built() {
        let config = HubConfig {
            allowed_origins: vec!["https://app.example.com".into()],
            trusted_proxies: vec!["10.0.0.0/8".into()],
            ..HubConfig::default()
        };
        let checked = config.check().unwrap();
        assert!(!checked.guards.origins.allows_any());
        assert!(!checked.guards.proxies.is_empty());
        assert!(checked.guards.authenticator.is_none());
        let bad = HubConfig {
            trusted_proxies: vec!["10.0.0.0/33".into()],
            ..HubConfig::default()
        };
        match bad.check() {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "http.trusted_proxies"),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn an_application_needs_a_deadline_and_room_for_events() {
        let key_of = |application: crate::hooks::Application| match (HubConfig {
            application: Some(application),
            ..HubConfig::default()
        })
        .validate()
        {
            Ok(()) => None,
            Err(ConfigError::Invalid { key, .. }) => Some(key),
            Err(other) => panic!("{other}"),
        };
        assert_eq!(key_of(crate::hooks::Application::new()), None);
        let instant = crate::hooks::Application::new().decision_timeout(Duration::ZERO);
        assert_eq!(key_of(instant), Some("application.decision_timeout"));
        let no_room = crate::hooks::Application {
            event_capacity: 0,
            ..Default::default()
        };
        assert_eq!(key_of(no_room), Some("application.event_capacity"));
    }

    #[test]
    fn hook_urls_must_be_plain_http_and_the_timeout_sane() {
        let key_of = |proxy: crate::config::ProxyConfig| match (HubConfig {
            proxy,
            ..HubConfig::default()
        })
        .validate()
        {
            Ok(()) => None,
            Err(ConfigError::Invalid { key, message }) => Some((key, message)),
            Err(other) => panic!("{other}"),
        };
        let good = crate::config::ProxyConfig {
            connect_url: Some("http://127.0.0.1:8080/connect".into()),
            rpc_url: Some("http://backend.internal/rpc".into()),
            ..Default::default()
        };
        assert!(key_of(good.clone()).is_none());
        let (key, message) = key_of(crate::config::ProxyConfig {
            join_url: Some("https://backend/join".into()),
            ..good.clone()
        })
        .unwrap();
        assert_eq!(key, "proxy.join_url");
        assert!(message.contains("https is not supported"), "{message}");
        for bad in ["backend/join", "ftp://backend/x", "http://", "not a url"] {
            let (key, _) = key_of(crate::config::ProxyConfig {
                publish_url: Some(bad.into()),
                ..good.clone()
            })
            .unwrap_or_else(|| panic!("{bad} passed"));
            assert_eq!(key, "proxy.publish_url", "{bad}");
        }
        for timeout in [Duration::ZERO, Duration::from_secs(86_401)] {
            let (key, _) = key_of(crate::config::ProxyConfig {
                timeout,
                ..good.clone()
            })
            .unwrap();
            assert_eq!(key, "proxy.timeout");
        }
    }
}
