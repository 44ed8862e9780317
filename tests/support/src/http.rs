//! HTTP as the tests write it by hand: upgrade requests, calls of the hub's HTTP API, and
//! the responses they get.

use std::net::SocketAddr;

use serde_json::Value;

use crate::raw::RawClient;

/// The `Sec-WebSocket-Key` of RFC 6455 section 1.3, and its accept value.
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The HTTP upgrade request for `target` (path and query).
pub fn upgrade_request(target: &str) -> String {
    upgrade_request_with(target, "")
}

/// The HTTP upgrade request for `target`, with extra `headers` (each ending in CRLF).
pub fn upgrade_request_with(target: &str, headers: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    )
}

/// Calls the hub's HTTP API: `method` on `target` with extra `headers` (each ending in
/// CRLF) and a body.
pub async fn http_call(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &str,
    body: &str,
) -> HttpResponse {
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    );
    RawClient::http(addr, &request).await
}

/// An HTTP response head and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpResponse {
    /// A response of which only the head has been read; panics if it has no status.
    pub fn from_head(head: String) -> HttpResponse {
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        HttpResponse {
            status,
            head,
            body: String::new(),
        }
    }

    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {self:?}"))
    }

    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// The `Content-Length` the head announces; 0 without one.
    pub fn content_length(&self) -> usize {
        self.header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}
