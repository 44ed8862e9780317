//! How a key's value is written: in the file (as TOML), in its `NEONEX_*` variable (as
//! text), and back when `neonex config` prints it. Durations are written `250ms`, `54s`,
//! `2m`; sizes `512KiB`, `1MiB` or plain bytes; the rest as serde reads them.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Serialize};

/// Reads and writes values of type `T`.
pub(super) trait Format<T>: Sync {
    /// The TOML value that the text of a variable stands for.
    fn parse_env(&self, text: &str) -> Result<toml::Value, String>;
    /// The value a TOML value describes.
    fn read(&self, value: toml::Value) -> Result<T, toml::de::Error>;
    /// The TOML value that describes `value`; `None` for an unset optional value, which
    /// TOML cannot write and the printed settings leave out.
    fn write(&self, value: &T) -> Option<toml::Value>;
}

/// Values that serde reads and writes as they are (text, numbers, booleans, lists, the
/// choices of an enum, optional ones of these), told apart by how a variable writes them.
pub(super) trait Plain: Sync {
    /// The TOML value that the text of a variable stands for.
    fn parse_env(&self, text: &str) -> Result<toml::Value, String>;
}

impl<T: Serialize + DeserializeOwned, P: Plain> Format<T> for P {
    fn parse_env(&self, text: &str) -> Result<toml::Value, String> {
        Plain::parse_env(self, text)
    }

    fn read(&self, value: toml::Value) -> Result<T, toml::de::Error> {
        T::deserialize(value)
    }

    fn write(&self, value: &T) -> Option<toml::Value> {
        // `None` is the one value of these types that TOML has no way to write.
        toml::Value::try_from(value).ok()
    }
}

/// Text, or what is parsed from text: an address, a path, one of an enum's choices.
pub(super) struct Text;

/// A whole number.
pub(super) struct Number;

/// `true` or `false`.
pub(super) struct Flag;

/// A list of text; its variable separates the items with commas.
pub(super) struct List;

impl Plain for Text {
    fn parse_env(&self, text: &str) -> Result<toml::Value, String> {
        Ok(toml::Value::String(text.to_owned()))
    }
}

impl Plain for Number {
    fn parse_env(&self, text: &str) -> Result<toml::Value, String> {
        parse_word(text, toml::Value::Integer, "a whole number")
    }
}

impl Plain for Flag {
    fn parse_env(&self, text: &str) -> Result<toml::Value, String> {
        parse_word(text, toml::Value::Boolean, "true or false")
    }
}

/// The one word of `text` as a `T`, made a TOML value by `value`; `expected` names what
/// it should have been.
fn parse_word<T: std::str::FromStr>(
    text: &str,
    value: fn(T) -> toml::Value,
    expected: &str,
) -> Result<toml::Value, String> {
    text.trim()
        .parse()
        .map(value)
        .map_err(|_| format!("expected {expected}, got {text:?}"))
}

impl Plain for List {
    fn parse_env(&self, text: &str) -> Result<toml::Value, String> {
        Ok(toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_owned()))
                .collect(),
        ))
    }
}

/// A duration as text: `250ms`, `54s`, `2m`.
pub(super) struct Duration;

impl Format<std::time::Duration> for Duration {
    fn parse_env(&self, text: &str) -> Result<toml::Value, String> {
        Plain::parse_env(&Text, text)
    }

    fn read(&self, value: toml::Value) -> Result<std::time::Duration, toml::de::Error> {
        let text = String::deserialize(value)?;
        humantime::parse_duration(text.trim()).map_err(|e| {
            toml::de::Error::custom(format!(
                "invalid duration {text:?} ({e}); write e.g. \"250ms\", \"54s\" or \"2m\""
            ))
        })
    }

    fn write(&self, value: &std::time::Duration) -> Option<toml::Value> {
        Some(toml::Value::String(
            humantime::format_duration(*value).to_string(),
        ))
    }
}

/// A size in bytes: `512KiB`, `1MiB`, or a plain number of bytes.
pub(super) struct Size;

impl Format<usize> for Size {
    fn parse_env(&self, text: &str) -> Result<toml::Value, String> {
        Plain::parse_env(&Text, text)
    }

    fn read(&self, value: toml::Value) -> Result<usize, toml::de::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        let bytes = match Raw::deserialize(value)? {
            Raw::Bytes(n) => n,
            Raw::Text(text) => text
                .trim()
                .parse::<bytesize::ByteSize>()
                .map_err(|e| {
                    toml::de::Error::custom(format!(
                        "invalid size {text:?} ({e}); write e.g. \"512KiB\", \"1MiB\" or bytes"
                    ))
                })?
                .as_u64(),
        };
        usize::try_from(bytes).map_err(|_| toml::de::Error::custom("size too large"))
    }

    fn write(&self, &value: &usize) -> Option<toml::Value> {
        let unit = |shift: u32| value != 0 && value % (1 << shift) == 0;
        Some(if unit(20) {
            toml::Value::String(format!("{}MiB", value >> 20))
        } else if unit(10) {
            toml::Value::String(format!("{}KiB", value >> 10))
        } else {
            toml::Value::Integer(value as i64)
        })
    }
}
