//! Parsing a request head (httparse) into the parts the hub looks at.

use std::borrow::Cow;

/// Most headers a request may carry.
const MAX_HEADERS: usize = 64;
/// Most bytes of request line and headers; beyond this the answer is 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// The parts of a request head the hub looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string, without `?`.
    pub query: Option<String>,
    /// `Upgrade` contains the `websocket` token.
    pub upgrade_websocket: bool,
    /// `Connection` contains the `upgrade` token.
    pub connection_upgrade: bool,
    /// `Sec-WebSocket-Key`.
    pub websocket_key: Option<String>,
    /// `Sec-WebSocket-Version`.
    pub websocket_version: Option<String>,
    /// `Origin`.
    pub origin: Option<String>,
    /// `Authorization`.
    pub authorization: Option<String>,
    /// `X-API-Key`.
    pub api_key: Option<String>,
    /// `Content-Length`.
    pub content_length: Option<usize>,
    /// `Transfer-Encoding: chunked` (not supported: the body must have a length).
    pub chunked: bool,
    /// `Expect: 100-continue`: the client waits for a go-ahead before sending its body.
    pub expect_continue: bool,
    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub minor_version: u8,
    /// `Sec-WebSocket-Protocol`, every header's value joined with commas.
    pub websocket_protocols: Option<String>,
    /// `Sec-WebSocket-Extensions`, every header's value joined with commas.
    pub websocket_extensions: Option<String>,
    /// `X-Forwarded-For`, every header's value joined with commas, in order.
    pub x_forwarded_for: Option<String>,
    /// `Forwarded` (RFC 7239), every header's value joined with commas, in order.
    pub forwarded: Option<String>,
    /// Any header a reverse proxy adds (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`, `Via`):
    /// the request may have been relayed for someone else.
    pub relayed: bool,
}

impl RequestHead {
    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// Asks for a WebSocket upgrade (with or without the details right).
    pub fn wants_upgrade(&self) -> bool {
        self.upgrade_websocket
    }
}

/// Parsing stopped on a request the hub must refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP/1.x, or malformed: 400.
    Malformed,
    /// Request line and headers too large: 431.
    TooLarge,
}

/// Parses a request head from the start of `buf`. Returns the head and the number of bytes
/// it took, or `None` while the head is incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(HeadError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    if consumed > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let target = origin_form(req.path.unwrap_or("/"));
    let target = target.as_ref();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (target, None),
    };
    let mut head = RequestHead {
        method: req.method.unwrap_or_default().to_owned(),
        path: path.to_owned(),
        query,
        minor_version: req.version.unwrap_or(1),
        ..RequestHead::default()
    };
    for h in req.headers.iter() {
        let name = h.name;
        // Forwarding headers are read whatever their bytes: a proxy appends to what the
        // client sent, so skipping a header the client made invalid would hide the
        // proxy's own entry too. Bytes that are not UTF-8 become a hop that names nobody.
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            append_list(
                &mut head.x_forwarded_for,
                String::from_utf8_lossy(h.value).trim(),
            );
            head.relayed = true;
            continue;
        } else if name.eq_ignore_ascii_case("forwarded") {
            append_list(&mut head.forwarded, String::from_utf8_lossy(h.value).trim());
            head.relayed = true;
            continue;
        } else if RELAY_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            head.relayed = true;
            continue;
        }
        let Ok(value) = std::str::from_utf8(h.value) else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("upgrade") {
            head.upgrade_websocket |= has_token(value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            head.connection_upgrade |= has_token(value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            head.websocket_key = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            head.websocket_version = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("origin") {
            head.origin = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("authorization") {
            head.authorization = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("x-api-key") {
            head.api_key = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("content-length") {
            let length = value.parse().map_err(|_| HeadError::Malformed)?;
            if head.content_length.is_some_and(|l| l != length) {
                return Err(HeadError::Malformed);
            }
            head.content_length = Some(length);
        } else if name.eq_ignore_ascii_case("expect") {
            head.expect_continue |= value.eq_ignore_ascii_case("100-continue");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked |= has_token(value, "chunked");
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            append_list(&mut head.websocket_protocols, value);
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            append_list(&mut head.websocket_extensions, value);
        }
    }
    Ok(Some((head, consumed)))
}

/// Headers besides `Forwarded` and `X-Forwarded-For` by which proxies mark a request they
/// relay.
const RELAY_HEADERS: [&str; 4] = ["x-real-ip", "x-forwarded-host", "x-forwarded-proto", "via"];

/// The path and query of a request target: absolute form (`http://host:port/ws?x`, which
/// RFC 9112 section 3.2.2 says a server must accept) is reduced to its origin form.
fn origin_form(target: &str) -> Cow<'_, str> {
    if target.starts_with('/') {
        return Cow::Borrowed(target);
    }
    let Some((scheme, rest)) = target.split_once("://") else {
        return Cow::Borrowed(target);
    };
    let is_scheme = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    };
    if !is_scheme(scheme) {
        return Cow::Borrowed(target);
    }
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => Cow::Borrowed(&rest[i..]),
        // An empty path stands for `/` (RFC 9110 section 4.2.3); the query stays.
        Some(i) => Cow::Owned(format!("/{}", &rest[i..])),
        None => Cow::Borrowed("/"),
    }
}

/// Appends one header line's list to what earlier lines of the same header gave: RFC 9110
/// section 5.3 makes several lines one comma-separated list.
fn append_list(list: &mut Option<String>, value: &str) {
    match list {
        Some(list) => {
            list.push_str(", ");
            list.push_str(value);
        }
        None => *list = Some(value.to_owned()),
    }
}

fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::EXAMPLE_UPGRADE as UPGRADE;

    #[test]
    fn incomplete_heads_wait_and_oversize_heads_are_refused() {
        assert_eq!(parse_head(&UPGRADE[..40]).unwrap(), None);
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
        assert_eq!(parse_head(&huge).unwrap_err(), HeadError::TooLarge);
        assert_eq!(
            parse_head(b"\x16\x03\x01 not http\r\n\r\n").unwrap_err(),
            HeadError::Malformed
        );
    }

    #[test]
    fn absolute_form_targets_are_reduced_to_their_path() {
        for (target, path, query) in [
            ("http://h:3000/ws?user=a", "/ws", Some("user=a")),
            ("HTTPS://h/api/rooms", "/api/rooms", None),
            ("http://h:3000", "/", None),
            ("http://h?x=1", "/", Some("x=1")),
            ("/ws", "/ws", None),
        ] {
            let request = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            let (head, _) = parse_head(request.as_bytes()).unwrap().unwrap();
            assert_eq!(
                (head.path.as_str(), head.query.as_deref()),
                (path, query),
                "{target}"
            );
        }
    }

    #[test]
    fn forwarding_headers_are_gathered_in_order() {
        let request = "GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\nForwarded: for=3.3.3.3\r\n\r\n";
        let (head, _) = parse_head(request.as_bytes()).unwrap().unwrap();
        assert_eq!(head.x_forwarded_for.as_deref(), Some("1.1.1.1, 2.2.2.2"));
        assert_eq!(head.forwarded.as_deref(), Some("for=3.3.3.3"));
        assert!(head.relayed);
        let (plain, _) = parse_head(b"GET / HTTP/1.1\r\nX-Real-IP: 4.4.4.4\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(plain.relayed && plain.x_forwarded_for.is_none());
        let (direct, _) = parse_head(UPGRADE).unwrap().unwrap();
        assert!(!direct.relayed);
        // A client's invalid bytes do not hide the entry its proxy appended.
        let (garbled, _) = parse_head(
            b"GET / HTTP/1.1\r\nX-Forwarded-For: \xff, 203.0.113.9\r\nX-Real-IP: \xfe\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(garbled.relayed);
        assert_eq!(
            garbled.x_forwarded_for.as_deref(),
            Some("\u{fffd}, 203.0.113.9")
        );
    }
}

/// The headers of the request head at the front of `buf` that `wanted` picks (by their
/// lower-case name), as `(lower-case name, value)` in the order sent. Values that are not
/// UTF-8 are read lossily. Only hooks ask for them, so a plain upgrade never pays for it.
pub fn header_pairs(buf: &[u8], wanted: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if req.parse(buf).is_err() {
        return Vec::new();
    }
    req.headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value))
        .filter(|(name, _)| wanted(name))
        .map(|(name, value)| (name, String::from_utf8_lossy(value).into_owned()))
        .collect()
}

#[cfg(test)]
mod header_pairs_tests {
    use super::*;

    #[test]
    fn picks_the_wanted_headers_by_lower_case_name() {
        let picked = header_pairs(crate::http::EXAMPLE_UPGRADE, |n| {
            n == "origin" || n == "host"
        });
        assert_eq!(
            picked,
            [
                ("host".to_owned(), "h".to_owned()),
                ("origin".to_owned(), "https://a.example".to_owned())
            ]
        );
    }
}
