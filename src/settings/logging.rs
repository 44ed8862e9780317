//! The `log.*` keys that `neonex serve` reads itself, rather than the hub: where and how
//! the log is written. (`log.stats_interval` is the hub's.)

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// `log.format`, `log.level` and `log.color`.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// `log.format`: `text` or `json`.
    pub format: LogFormat,
    /// `log.level`: the level filter (`RUST_LOG` syntax); `RUST_LOG` itself wins when set.
    pub level: String,
    /// `log.color`: colours in text logs: `auto` (only on a terminal), `always` or `never`.
    pub color: LogColor,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
            color: LogColor::Auto,
        }
    }
}

/// `log.format`, also the `--log-format` flag. The flag's help names the choices on one
/// line, without the docs below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[value(help = None::<&str>)]
    Text,
    /// One JSON object per line.
    #[value(help = None::<&str>)]
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

/// The level filter `log.level` describes. Stricter than the `RUST_LOG` syntax it
/// follows: there a bare word is a target to log at every level, so a misspelt level
/// (`warning`, `verbose`) silences every other line, the start-up warnings included. Here
/// each directive is a level, or `target=level`.
pub fn log_filter(level: &str) -> Result<tracing_subscriber::EnvFilter, ConfigError> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let wrong =
        |why: String| ConfigError::invalid("log.level", format!("log.level {level:?}: {why}"));
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
