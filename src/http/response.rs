//! The few responses the hub gives on its own: each closes the connection after it.

use bytes::Bytes;

/// The interim response that tells a client to go on with its body.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A complete response that closes the connection after it.
pub fn response(status: u16, content_type: &str, body: &str) -> Bytes {
    let extra = if status == 426 {
        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
    } else {
        ""
    };
    with_head(status, content_type, extra, body.as_bytes())
}

/// A file of one of the hub's own pages, with a `200`. Revalidated on every load, so that
/// a new binary's pages are never mixed with an old one's; never framed by another site,
/// so that no page can trick an operator into clicking the dashboard's buttons.
pub fn page_response(content_type: &str, body: &[u8]) -> Bytes {
    let extra =
        "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\n";
    with_head(200, content_type, extra, body)
}

fn with_head(status: u16, content_type: &str, extra: &str, body: &[u8]) -> Bytes {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        reason_phrase(status),
        body.len()
    );
    let mut response = Vec::with_capacity(head.len() + body.len());
    response.extend_from_slice(head.as_bytes());
    response.extend_from_slice(body);
    response.into()
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
