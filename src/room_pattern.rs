//! Room patterns: a setting that names rooms either exactly (`ticker`) or by prefix
//! (`ticker.*`), as `rooms.conflate` does.

use crate::ids::is_valid_room_name;

/// A list of room names and `prefix*` patterns.
#[derive(Debug, Clone, Default)]
pub(crate) struct RoomPatterns {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl RoomPatterns {
    /// Parses `patterns`; the error names the first that is neither a room name nor a
    /// room name's prefix followed by `*`.
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        let mut parsed = Self::default();
        for pattern in patterns {
            match pattern.strip_suffix('*') {
                Some("") => parsed.prefixes.push(String::new()),
                Some(prefix) if is_valid_room_name(prefix) => parsed.prefixes.push(prefix.into()),
                None if is_valid_room_name(pattern) => parsed.exact.push(pattern.clone()),
                _ => return Err(pattern.clone()),
            }
        }
        Ok(parsed)
    }

    /// True if room `name` is named by one of the patterns.
    pub fn matches(&self, name: &str) -> bool {
        self.exact.iter().any(|e| e == name) || self.prefixes.iter().any(|p| name.starts_with(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> RoomPatterns {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        RoomPatterns::new(&list).unwrap()
    }

    #[test]
    fn names_match_exactly_and_prefixes_by_their_start() {
        let p = patterns(&["scores", "ticker.*"]);
        assert!(p.matches("scores"));
        assert!(!p.matches("scores2"));
        assert!(p.matches("ticker.AAPL"));
        assert!(p.matches("ticker."));
        assert!(!p.matches("ticker"));
        assert!(patterns(&["*"]).matches("anything"));
        assert!(!patterns(&[]).matches("general"));
    }

    #[test]
    fn what_is_no_pattern_is_refused() {
        for bad in ["bad name", "a*b", "**", ""] {
            assert_eq!(RoomPatterns::new(&[bad.to_string()]).unwrap_err(), bad);
        }
    }
}
