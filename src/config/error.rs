//! What is wrong with a configuration: one error for every step, from reading the file to
//! building what the settings describe. Each names the key at fault, so an operator can
//! find it.

use std::path::PathBuf;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting holds a value the hub cannot run with.
    #[error("{message}")]
    Invalid {
        /// The key at fault, as the file writes it (`hub.ping_interval`).
        key: &'static str,
        /// What is wrong, naming the key.
        message: String,
    },
    /// The configuration file cannot be read.
    #[error("cannot read config file {}: {source}", path.display())]
    UnreadableFile {
        /// The file named.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// The configuration file is not TOML, or holds an unknown key or a value of the wrong
    /// kind; the message shows the line.
    #[error("{}: {source}", path.display())]
    BadFile {
        /// The file named.
        path: PathBuf,
        /// Where and what the mistake is.
        source: toml::de::Error,
    },
    /// A `NEONEX_*` variable names no setting.
    #[error("{variable}: no such setting (see neonex.example.toml for the keys)")]
    UnknownVariable {
        /// The variable's name.
        variable: String,
    },
    /// A `NEONEX_*` variable holds a value its key cannot take.
    #[error("{variable} ({key}): {message}")]
    BadVariable {
        /// The variable's name.
        variable: String,
        /// The key it sets.
        key: &'static str,
        /// What is wrong with the value.
        message: String,
    },
}

impl ConfigError {
    /// `key` holds a value the hub cannot run with; `message` says why and names the key.
    pub(crate) fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key,
            message: message.into(),
        }
    }
}
