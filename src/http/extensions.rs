//! The extensions an upgrade offers (`Sec-WebSocket-Extensions`, RFC 6455 section 9), and
//! which the hub accepts: permessage-deflate (RFC 7692), on its own terms.
//!
//! The hub compresses a broadcast once for all its recipients, so it never keeps a
//! compression context between messages (`server_no_context_takeover`), and it inflates
//! each client message on its own with one inflater per shard, so it asks clients not to
//! keep one either (`client_no_context_takeover`): an idle connection holds no window.
//! Both may be answered whether or not the client offered them (RFC 7692 sections 7.1.1.1
//! and 7.1.1.2). The hub compresses with a 32 KiB window, so an offer that limits the
//! server's window (`server_max_window_bits` below 15) is declined; a limit on the
//! client's window is the client's business, and any window inflates.

use super::RequestHead;

/// The answer that accepts permessage-deflate.
pub const DEFLATE_ACCEPTED: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// True if one of the client's permessage-deflate offers has parameters the hub honours.
/// Offers are tried in the client's order; a malformed offer is declined, not an error.
pub fn accepts_deflate(head: &RequestHead) -> bool {
    let Some(offers) = head.websocket_extensions.as_deref() else {
        return false;
    };
    offers.split(',').any(|offer| {
        let mut parts = offer.split(';').map(str::trim);
        parts.next() == Some("permessage-deflate") && honours(parts)
    })
}

/// True if the parameters of one permessage-deflate offer can be honoured: each known,
/// each at most once, with a valid value.
fn honours<'a>(params: impl Iterator<Item = &'a str>) -> bool {
    let mut seen = [false; 4];
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (param, None),
        };
        let (slot, ok) = match name {
            "server_no_context_takeover" => (0, value.is_none()),
            "client_no_context_takeover" => (1, value.is_none()),
            "server_max_window_bits" => (2, value == Some("15")),
            "client_max_window_bits" => (3, value.is_none_or(is_window_bits)),
            _ => return false,
        };
        if !ok || std::mem::replace(&mut seen[slot], true) {
            return false;
        }
    }
    true
}

fn is_window_bits(value: &str) -> bool {
    value
        .parse::<u8>()
        .is_ok_and(|bits| (8..=15).contains(&bits))
        && !value.starts_with('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(extensions: &str) -> bool {
        let head = RequestHead {
            websocket_extensions: Some(extensions.to_owned()),
            ..RequestHead::default()
        };
        accepts_deflate(&head)
    }

    #[test]
    fn the_offers_browsers_and_libraries_send_are_accepted() {
        // Chrome, Safari, Node `ws`, Python `websockets`.
        assert!(offered("permessage-deflate; client_max_window_bits"));
        // Firefox.
        assert!(offered("permessage-deflate"));
        assert!(offered(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10"
        ));
        assert!(offered("permessage-deflate; server_max_window_bits=15"));
        assert!(!accepts_deflate(&RequestHead::default()));
    }

    #[test]
    fn offers_the_hub_cannot_honour_are_declined_and_the_next_one_tried() {
        assert!(!offered("permessage-deflate; server_max_window_bits=10"));
        assert!(!offered("permessage-deflate; client_max_window_bits=7"));
        assert!(!offered("permessage-deflate; client_max_window_bits=010"));
        assert!(!offered("permessage-deflate; unknown_param"));
        assert!(!offered(
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover"
        ));
        assert!(!offered("permessage-deflate; server_no_context_takeover=1"));
        assert!(!offered("x-webkit-deflate-frame"));
        assert!(offered(
            "permessage-deflate; server_max_window_bits=10, permessage-deflate; client_max_window_bits"
        ));
    }
}
