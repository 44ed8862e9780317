//! Recognising a WebSocket upgrade (RFC 6455 section 4.2): the accept key, the
//! subprotocol, the `101` answer.

use base64::Engine;
use bytes::Bytes;

use super::RequestHead;

/// The GUID of RFC 6455 section 1.3.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

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

/// `101 Switching Protocols` completing the upgrade, with the chosen subprotocol if any,
/// and the accepted extensions (a `Sec-WebSocket-Extensions` value) if any.
pub fn switching_protocols(
    accept: &str,
    subprotocol: Option<&str>,
    extensions: Option<&str>,
) -> Bytes {
    let protocol = match subprotocol {
        Some(name) => format!("Sec-WebSocket-Protocol: {name}\r\n"),
        None => String::new(),
    };
    let extensions = match extensions {
        Some(accepted) => format!("Sec-WebSocket-Extensions: {accepted}\r\n"),
        None => String::new(),
    };
    Bytes::from(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{protocol}{extensions}\r\n"
    ))
}

/// A valid token (RFC 9110 section 5.6.2), the form subprotocol names take.
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_head, EXAMPLE_UPGRADE as UPGRADE};

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
}
