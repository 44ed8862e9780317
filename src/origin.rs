//! Which browser origins may open a connection.
//!
//! Browsers send `Origin` with every WebSocket handshake; a page on another site must not
//! be able to connect with its visitors' credentials. Entries are exact origins
//! (`https://app.example.com`, compared case-insensitively) or host patterns
//! (`*.example.com`, any scheme; `https://*.example.com`, that scheme only). A request
//! without `Origin` does not come from a browser and is not subject to the list.

use crate::config::ConfigError;

/// The allow-list of origins; empty allows every origin.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
enum Entry {
    Exact(String),
    Subdomains {
        scheme: Option<String>,
        suffix: String,
    },
}

impl OriginPolicy {
    /// Reads the configured list; a malformed pattern is an error naming it.
    pub fn new(allowed: &[String]) -> Result<Self, ConfigError> {
        let entries = allowed
            .iter()
            .map(|raw| {
                let entry = raw.trim().to_ascii_lowercase();
                let (scheme, host) = match entry.split_once("://") {
                    Some((scheme, host)) => (Some(scheme.to_owned()), host),
                    None => (None, entry.as_str()),
                };
                if let Some(rest) = host.strip_prefix("*.") {
                    if rest.is_empty() || rest.contains('*') || rest.contains('/') {
                        return Err(ConfigError::invalid(
                            "allowed_origins",
                            format!("allowed_origins: bad pattern {raw:?}"),
                        ));
                    }
                    Ok(Entry::Subdomains {
                        scheme,
                        suffix: format!(".{rest}"),
                    })
                } else if scheme.is_some() && !host.is_empty() && !host.contains(['*', '/']) {
                    Ok(Entry::Exact(entry.clone()))
                } else {
                    Err(ConfigError::invalid(
                        "allowed_origins",
                        format!("allowed_origins: {raw:?} is neither an origin (scheme://host[:port]) nor a *.domain pattern"),
                    ))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// True when any origin is allowed.
    pub fn allows_any(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a handshake with this `Origin` header (or none) may proceed.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if self.entries.is_empty() {
            return true;
        }
        let origin = origin.trim().to_ascii_lowercase();
        let (scheme, host) = origin.split_once("://").unwrap_or(("", &origin));
        let host_only = host.rsplit_once(':').map_or(host, |(h, _)| h);
        self.entries.iter().any(|entry| match entry {
            Entry::Exact(exact) => *exact == origin,
            Entry::Subdomains {
                scheme: want,
                suffix,
            } => {
                want.as_deref().is_none_or(|w| w == scheme)
                    && host_only.len() > suffix.len()
                    && host_only.ends_with(suffix.as_str())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(list: &[&str]) -> OriginPolicy {
        OriginPolicy::new(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn an_empty_list_allows_everyone() {
        assert!(policy(&[]).allows(Some("https://evil.example")));
    }

    #[test]
    fn exact_origins_and_subdomain_patterns() {
        let p = policy(&[
            "https://app.example.com",
            "*.example.org",
            "https://*.example.net",
        ]);
        assert!(p.allows(Some("https://app.example.com")));
        assert!(p.allows(Some("HTTPS://APP.EXAMPLE.COM")));
        assert!(!p.allows(Some("http://app.example.com")));
        assert!(!p.allows(Some("https://app.example.com.evil.io")));
        assert!(p.allows(Some("http://a.example.org")));
        assert!(p.allows(Some("https://deep.a.example.org:8443")));
        assert!(
            !p.allows(Some("https://example.org")),
            "the bare domain is not a subdomain"
        );
        assert!(!p.allows(Some("https://evilexample.org")));
        assert!(p.allows(Some("https://x.example.net")));
        assert!(!p.allows(Some("http://x.example.net")));
        assert!(p.allows(None), "non-browser clients send no Origin");
        assert!(!p.allows(Some("null")));
    }

    #[test]
    fn malformed_entries_are_refused() {
        for bad in ["example.com", "*.", "https://*.a/*", "*.*.com"] {
            assert!(OriginPolicy::new(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
