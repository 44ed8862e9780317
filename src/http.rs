//! The HTTP/1.1 side of a connection: parsing the request head (httparse), recognising a
//! WebSocket upgrade (RFC 6455 section 4.2), and writing the few responses the hub gives.

use std::borrow::Cow;

use base64::Engine;
use bytes::Bytes;

/// Most headers a request may carry.
const MAX_HEADERS: usize = 64;
/// Most bytes of request line and headers; beyond this the answer is 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// The GUID of RFC 6455 section 1.3.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

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
        let Ok(value) = std::str::from_utf8(h.value) else {
            continue;
        };
        let value = value.trim();
        let name = h.name;
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
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            append_list(&mut head.x_forwarded_for, value);
            head.relayed = true;
        } else if name.eq_ignore_ascii_case("forwarded") {
            append_list(&mut head.forwarded, value);
            head.relayed = true;
        } else if RELAY_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            head.relayed = true;
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

/// Checks the WebSocket details of an upgrade request and computes `Sec-WebSocket-Accept`.
pub fn accept_key(head: &RequestHead) -> Result<String, &'static str> {
    if head.method != "GET" {
        return Err("WebSocket upgrades use GET");
    }
    if head.minor_version < 1 {
        return Err("WebSocket upgrades need HTTP/1.1 (RFC 6455 section 4.1)");
    }
    if !head.connection_upgrade {
        return Err("missing Connection: upgrade");
    }
    if head.websocket_version.as_deref() != Some("13") {
        return Err("unsupported Sec-WebSocket-Version (expected 13)");
    }
    let key = head
        .websocket_key
        .as_deref()
        .ok_or("missing Sec-WebSocket-Key")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| "Sec-WebSocket-Key is not base64")?;
    if decoded.len() != 16 {
        return Err("Sec-WebSocket-Key must encode 16 bytes");
    }
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WEBSOCKET_GUID.as_bytes());
    Ok(base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes()))
}

/// The subprotocol to answer: the first the client offers that the server speaks, in the
/// client's order of preference. `None` when it offers none of them, and then the answer
/// carries no `Sec-WebSocket-Protocol` (RFC 6455 section 4.2.2).
pub fn choose_subprotocol<'a>(head: &RequestHead, spoken: &'a [String]) -> Option<&'a str> {
    let offered = head.websocket_protocols.as_deref()?;
    offered
        .split(',')
        .map(str::trim)
        .find_map(|name| spoken.iter().find(|s| *s == name))
        .map(String::as_str)
}

/// `101 Switching Protocols` completing the upgrade, with the chosen subprotocol if any.
pub fn switching_protocols(accept: &str, subprotocol: Option<&str>) -> Bytes {
    let protocol = match subprotocol {
        Some(name) => format!("Sec-WebSocket-Protocol: {name}\r\n"),
        None => String::new(),
    };
    Bytes::from(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{protocol}\r\n"
    ))
}

/// A valid token (RFC 9110 section 5.6.2), the form subprotocol names take.
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The interim response that tells a client to go on with its body.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A complete response that closes the connection after it.
pub fn response(status: u16, content_type: &str, body: &str) -> Bytes {
    let extra = if status == 426 {
        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
    } else {
        ""
    };
    Bytes::from(format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        reason_phrase(status),
        body.len()
    ))
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        201 => "Created",
        202 => "Accepted",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &[u8] = b"GET /ws?user=al%20ice&x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: https://a.example\r\n\r\n";

    #[test]
    fn parses_an_upgrade_and_computes_the_rfc_example_accept_key() {
        let mut bytes = UPGRADE.to_vec();
        bytes.extend_from_slice(b"\x81\x80");
        let (head, used) = parse_head(&bytes).unwrap().unwrap();
        assert_eq!(used, UPGRADE.len(), "bytes after the head are left alone");
        assert_eq!(head.path, "/ws");
        assert_eq!(head.query_param("user").as_deref(), Some("al ice"));
        assert!(head.wants_upgrade());
        assert_eq!(head.origin.as_deref(), Some("https://a.example"));
        // RFC 6455 section 1.3's worked example.
        assert_eq!(accept_key(&head).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

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
    fn bad_keys_and_versions_are_refused() {
        let (mut head, _) = parse_head(UPGRADE).unwrap().unwrap();
        head.websocket_version = Some("8".into());
        assert!(accept_key(&head).is_err());
        head.websocket_version = Some("13".into());
        head.websocket_key = Some("c2hvcnQ=".into());
        assert!(accept_key(&head).is_err());
        head.websocket_key = None;
        assert!(accept_key(&head).is_err());
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
    fn subprotocols_follow_the_clients_order_among_those_spoken() {
        let spoken = ["neonex.v1".to_owned(), "neonex.v2".to_owned()];
        let request = "GET /ws HTTP/1.1\r\nSec-WebSocket-Protocol: chat, neonex.v2\r\nSec-WebSocket-Protocol: neonex.v1\r\n\r\n";
        let (head, _) = parse_head(request.as_bytes()).unwrap().unwrap();
        assert_eq!(choose_subprotocol(&head, &spoken), Some("neonex.v2"));
        assert_eq!(choose_subprotocol(&head, &spoken[..1]), Some("neonex.v1"));
        assert_eq!(choose_subprotocol(&head, &[]), None);
        let (bare, _) = parse_head(UPGRADE).unwrap().unwrap();
        assert_eq!(choose_subprotocol(&bare, &spoken), None);
        assert!(is_token("neonex.v1") && !is_token("a b") && !is_token(""));
    }

    #[test]
    fn http_1_0_upgrades_are_refused() {
        let request = String::from_utf8(UPGRADE.to_vec())
            .unwrap()
            .replace("HTTP/1.1", "HTTP/1.0");
        let (head, _) = parse_head(request.as_bytes()).unwrap().unwrap();
        assert_eq!(head.minor_version, 0);
        assert!(accept_key(&head).unwrap_err().contains("HTTP/1.1"));
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
    }

    #[test]
    fn responses_carry_length_and_close() {
        let r = response(404, "text/plain", "not found");
        let text = std::str::from_utf8(&r).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.contains("Content-Length: 9\r\n"));
        assert!(text.ends_with("\r\n\r\nnot found"));
        let r = response(426, "text/plain", "");
        assert!(std::str::from_utf8(&r)
            .unwrap()
            .contains("Upgrade: websocket"));
    }
}
