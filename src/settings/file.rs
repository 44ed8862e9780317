//! The settings as the TOML file writes them, read and printed by walking the key table.
//!
//! Reading goes through serde, key by key, so that the TOML reader can say at which line
//! an unknown key or a bad value is.

use std::fmt;

use serde::de::{DeserializeSeed, Error as _, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::keys::{self, Key};
use super::Settings;

/// The embedded defaults, overridden by the keys the file sets.
impl<'de> Deserialize<'de> for Settings {
    fn deserialize<D: Deserializer<'de>>(file: D) -> Result<Settings, D::Error> {
        let mut settings = Settings::default();
        Table {
            section: None,
            settings: &mut settings,
        }
        .deserialize(file)?;
        Ok(settings)
    }
}

/// The top of the file (`section: None`) or one of its tables, read into `settings`.
struct Table<'a> {
    section: Option<&'static str>,
    settings: &'a mut Settings,
}

impl<'de> DeserializeSeed<'de> for Table<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, table: D) -> Result<(), D::Error> {
        table.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Table<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.section {
            None => f.write_str("the settings"),
            Some(section) => write!(f, "the table [{section}]"),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let section = self.section;
        while let Some(entry) = map.next_key_seed(EntryName { section })? {
            match entry {
                Entry::Key(key) => map.next_value_seed(Value {
                    key,
                    settings: self.settings,
                })?,
                Entry::Table(section) => map.next_value_seed(Table {
                    section: Some(section),
                    settings: self.settings,
                })?,
            }
        }
        Ok(())
    }
}

/// What a name in a table stands for.
enum Entry {
    Key(&'static Key),
    Table(&'static str),
}

/// Looks a name up in the table `section`. An unknown name is refused here, while the
/// TOML reader still knows where it is.
struct EntryName {
    section: Option<&'static str>,
}

impl<'de> DeserializeSeed<'de> for EntryName {
    type Value = Entry;

    fn deserialize<D: Deserializer<'de>>(self, name: D) -> Result<Entry, D::Error> {
        let name = String::deserialize(name)?;
        if let Some(key) = keys::in_section(self.section).find(|key| key.name() == name) {
            return Ok(Entry::Key(key));
        }
        // Tables do not nest: only the top of the file holds them.
        let tables = match self.section {
            None => keys::sections(),
            Some(_) => Vec::new(),
        };
        if let Some(&table) = tables.iter().find(|&&table| table == name) {
            return Ok(Entry::Table(table));
        }
        let expected: Vec<&str> = keys::in_section(self.section)
            .map(Key::name)
            .chain(tables)
            .collect();
        Err(D::Error::custom(format!(
            "unknown field `{name}`, {}",
            one_of(&expected)
        )))
    }
}

/// "expected ..." in the words serde uses for an unknown field.
fn one_of(names: &[&str]) -> String {
    match names {
        [] => "there are no fields".to_owned(),
        [one] => format!("expected `{one}`"),
        [first, second] => format!("expected `{first}` or `{second}`"),
        names => format!("expected one of `{}`", names.join("`, `")),
    }
}

/// The value of `key`, read into `settings`.
struct Value<'a> {
    key: &'static Key,
    settings: &'a mut Settings,
}

impl<'de> DeserializeSeed<'de> for Value<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, value: D) -> Result<(), D::Error> {
        let value = toml::Value::deserialize(value)?;
        self.key
            .read(self.settings, value)
            .map_err(|e| D::Error::custom(e.message()))
    }
}

/// The settings as the file writes them, secrets masked.
pub(super) struct Printed<'a>(pub &'a Settings);

impl Printed<'_> {
    fn entries(
        &self,
        section: Option<&'static str>,
    ) -> impl Iterator<Item = (&'static str, toml::Value)> + '_ {
        keys::in_section(section).filter_map(|key| {
            let value = key.write(self.0)?;
            let shown = if key.secret {
                toml::Value::String("********".to_owned())
            } else {
                value
            };
            Some((key.name(), shown))
        })
    }
}

impl Serialize for Printed<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut file = serializer.serialize_map(None)?;
        for (name, value) in self.entries(None) {
            file.serialize_entry(name, &value)?;
        }
        for section in keys::sections() {
            file.serialize_entry(section, &PrintedTable(self, section))?;
        }
        file.end()
    }
}

struct PrintedTable<'a>(&'a Printed<'a>, &'static str);

impl Serialize for PrintedTable<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.entries(Some(self.1)))
    }
}
