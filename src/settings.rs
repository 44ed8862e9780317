//! Server settings in layers: embedded defaults, a TOML file, `NEONEX_*` environment
//! variables, command-line flags; each layer overrides the one before.
//!
//! Key names are those of `../shared/CONFIG.md`: `hub.ping_interval` is written
//! `[hub] ping_interval = "54s"` in the file and `NEONEX_HUB_PING_INTERVAL=54s` in the
//! environment. Unknown keys and bad values stop the server at start with a message that
//! names the key (and, for the file, the line).
//!
//! # Each key is declared once
//!
//! The key table (`keys.rs`) lists every key once: its path in the file, the field that
//! holds its value (nearly always one of [`HubConfig`]'s) and the format it is written in.
//! Reading the file, the `NEONEX_*` names, printing for `neonex config`, and the test that
//! the example file shows every key at its default all walk that one table.
//!
//! The file is not `HubConfig` with serde derives because the two shapes differ and
//! neither may change: `HubConfig`'s fields are the library's API, the keys are the
//! operators'. `[hub]` holds fields of `HubConfig` itself, `hub.send_queue_bytes` and
//! `hub.send_queue_frames` fill one `SendQueueLimits`, `log.stats_interval` is
//! `stats_log_interval`, and `auth.jwt_public_key` names a file whose content the hub
//! takes. Serde types in the file's shape would declare every setting a second time and
//! copy it field by field, both ways. The table maps one shape onto the other instead,
//! while serde still reads the file key by key, so that a mistake is reported at its line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::checked_config::CheckedConfig;
use crate::config::{ConfigError, DriverChoice, HubConfig};

mod file;
mod format;
mod keys;
mod logging;

pub use logging::{log_filter, LogColor, LogFormat, LogSettings};

/// The commented example configuration shipped with neonex; every value in it is the
/// embedded default.
pub const EXAMPLE: &str = include_str!("../neonex.example.toml");

/// Settings of `neonex serve`. Read from a file with serde (`toml::from_str`): keys the
/// file leaves out keep their embedded defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `listen`: address and port.
    pub listen: SocketAddr,
    /// Every setting of the hub itself: `shards`, `allowed_origins`, `hub.*`, `rooms.*`,
    /// `history.*`, `presence.scope`, `auth.*`, `limits.*`, `api.*`, `http.*`, `shutdown.timeout`,
    /// `log.stats_interval`. The content of [`Settings::jwt_public_key`] joins it when
    /// checked.
    pub hub: HubConfig,
    /// `auth.jwt_public_key`: the PEM file with the RS256 or ES256 public key.
    pub jwt_public_key: Option<PathBuf>,
    /// `log.format`, `log.level`, `log.color`.
    pub log: LogSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:3000".parse().expect("a valid address"),
            hub: HubConfig::default(),
            jwt_public_key: None,
            log: LogSettings::default(),
        }
    }
}

/// What `neonex serve` runs with, once the settings passed every check.
pub struct CheckedSettings {
    /// The hub's configuration, with what checking it built.
    pub hub: CheckedConfig,
    /// The filter `log.level` describes.
    pub log_filter: tracing_subscriber::EnvFilter,
}

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
    /// `--cluster`.
    pub cluster: Option<String>,
}

impl Settings {
    /// Builds the settings from the layers: `file` (if any), the `NEONEX_*` variables of
    /// `env`, then `overrides`. Reports the first key whose value cannot be read; whether
    /// the values can run together is [`Settings::check`]'s question.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Settings, ConfigError> {
        let mut settings = match file {
            Some(path) => Settings::read_file(path)?,
            None => Settings::default(),
        };
        settings.apply_env(env)?;
        if let Some(listen) = overrides.listen {
            settings.listen = listen;
        }
        if let Some(shards) = overrides.shards {
            settings.hub.shards = shards;
        }
        if let Some(url) = &overrides.cluster {
            settings.hub.cluster.nats_url = Some(url.clone());
        }
        if let Some(format) = overrides.log_format {
            settings.log.format = format;
        }
        if overrides.epoll {
            settings.hub.driver = DriverChoice::Epoll;
        }
        Ok(settings)
    }

    fn read_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::UnreadableFile {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::BadFile {
            path: path.to_owned(),
            source,
        })
    }

    /// Sets the keys that `NEONEX_*` variables name. A variable naming no key is an error.
    fn apply_env(
        &mut self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (variable, text) in env {
            if !variable.starts_with("NEONEX_") {
                continue;
            }
            let Some(key) = keys::KEYS.iter().find(|key| key.env_name() == variable) else {
                return Err(ConfigError::UnknownVariable { variable });
            };
            key.read_env(self, &text)
                .map_err(|message| ConfigError::BadVariable {
                    variable,
                    key: key.path,
                    message,
                })?;
        }
        Ok(())
    }

    /// Checks the settings, once, and builds what they describe: reads the JWT public key
    /// file, checks the hub's configuration ([`HubConfig::check`]) and `log.level`.
    pub fn check(&self) -> Result<CheckedSettings, ConfigError> {
        let mut config = self.hub.clone();
        if let Some(path) = &self.jwt_public_key {
            let pem = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::invalid(
                    "auth.jwt_public_key",
                    format!("auth.jwt_public_key: cannot read {}: {e}", path.display()),
                )
            })?;
            config.auth.jwt_public_key = Some(pem);
        }
        Ok(CheckedSettings {
            hub: config.check()?,
            log_filter: log_filter(&self.log.level)?,
        })
    }

    /// The effective settings as TOML, secrets masked (`neonex config`).
    pub fn to_toml(&self) -> String {
        toml::to_string(&file::Printed(self)).expect("settings print as TOML")
    }
}

/// The environment variable for key `path`.
pub fn env_name(path: &str) -> String {
    format!("NEONEX_{}", path.replace('.', "_").to_uppercase())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The keys the example file sets or shows commented out, as `section.name`.
    fn keys_shown_by_example() -> BTreeSet<String> {
        let mut section = String::new();
        let mut shown = BTreeSet::new();
        for line in EXAMPLE.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = format!("{name}.");
            } else if let Some((name, _)) = line.trim_start_matches("# ").split_once(" = ") {
                shown.insert(format!("{section}{name}"));
            }
        }
        shown
    }

    #[test]
    fn the_example_file_holds_exactly_the_defaults() {
        let example: Settings = toml::from_str(EXAMPLE).expect("the example parses");
        assert_eq!(example.to_toml(), Settings::default().to_toml());
        // Every key of the table is shown by the example file, in its table.
        let shown = keys_shown_by_example();
        for key in keys::KEYS {
            assert!(
                shown.contains(key.path),
                "the example file does not show {}",
                key.path
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
        assert_eq!(s.hub.rooms.create, ["a", "b"]);
        assert_eq!(s.hub.limits.burst, 7);
    }

    #[test]
    fn sizes_read_units_and_print_them_back() {
        let s: Settings = toml::from_str("[hub]\nmax_message_size = \"1MiB\"\n").unwrap();
        assert_eq!(s.hub.max_message_size, 1 << 20);
        let s: Settings = toml::from_str("[hub]\nmax_message_size = 4096\n").unwrap();
        assert_eq!(s.hub.max_message_size, 4096);
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
                .to_string();
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
            let err = log_filter(bad).unwrap_err().to_string();
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

    #[test]
    fn the_settings_are_checked_once_with_the_key_file_read() {
        let s = Settings {
            jwt_public_key: Some("/nonexistent/key.pem".into()),
            ..Settings::default()
        };
        let err = s
            .check()
            .err()
            .expect("the key file is missing")
            .to_string();
        assert!(err.contains("auth.jwt_public_key") && err.contains("/nonexistent/key.pem"));
        let checked = Settings::default().check().expect("the defaults pass");
        assert_eq!(checked.hub.config().ping_interval, Duration::from_secs(54));
    }
}
