//! The HTTP request at the start of a connection, handled the way a shard handles it
//! (`src/shard/handshake.rs`): bytes arrive in reads of varying size and are gathered
//! until `parse_head` says the head is complete, too large or malformed; a complete head
//! is routed by path, and an upgrade is checked by `accept_key`, the user by
//! `query_param("user")` and `is_valid_user_id`.
//!
//! Input: bytes 0..2 seed the read sizes, the rest is what the client sends. Checked,
//! besides "no panic":
//! - a complete head took at most the bytes given and at most `MAX_HEAD_BYTES`;
//! - gathering read by read reaches the same answer as parsing everything at once (the
//!   bytes after a head never change it);
//! - a head parsed from exactly its own bytes is the same head;
//! - an accept key is 28 characters of base64 (a SHA-1 digest).
#![no_main]

use libfuzzer_sys::fuzz_target;
use neonex::http::{accept_key, parse_head, RequestHead, MAX_HEAD_BYTES};
use neonex::ids::is_valid_user_id;

type Parsed = Result<Option<(RequestHead, usize)>, neonex::http::HeadError>;

/// What the shard does with a complete head.
fn route(head: &RequestHead) {
    if head.path != "/ws" || !head.wants_upgrade() {
        return;
    }
    if let Ok(accept) = accept_key(head) {
        assert_eq!(accept.len(), 28, "{accept}");
        assert!(accept.ends_with('='), "{accept}");
    }
    if let Some(user) = head.query_param("user") {
        let _ = is_valid_user_id(&user);
    }
    let _ = head.query_param("token");
}

fn check_complete(buf: &[u8], parsed: &Parsed) {
    if let Ok(Some((head, used))) = parsed {
        assert!(*used <= buf.len() && *used <= MAX_HEAD_BYTES, "used {used}");
        let again = parse_head(&buf[..*used]);
        assert_eq!(
            again,
            Ok(Some((head.clone(), *used))),
            "the head's own bytes"
        );
        route(head);
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let mut seed = u32::from(data[0]) << 8 | u32::from(data[1]) | 1;
    let sent = &data[2..];

    let whole = parse_head(sent);
    check_complete(sent, &whole);

    // Gathered as the shard gathers a request that comes in pieces.
    let mut gathered: Vec<u8> = Vec::new();
    let mut rest = sent;
    let mut answer: Option<Parsed> = None;
    while !rest.is_empty() {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let n = match seed % 3 {
            0 => 1 + (seed as usize >> 8) % 8,
            1 => 1 + (seed as usize >> 8) % 1024,
            _ => rest.len(),
        }
        .min(rest.len());
        gathered.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        match parse_head(&gathered) {
            Ok(None) => {
                assert!(gathered.len() < MAX_HEAD_BYTES, "partial beyond the bound");
            }
            done => {
                check_complete(&gathered, &done);
                answer = Some(done);
                break;
            }
        }
    }
    match answer {
        // Everything arrived and the head is still incomplete.
        None => assert_eq!(whole, Ok(None), "gathered: incomplete; at once: {whole:?}"),
        Some(Ok(Some(head))) => assert_eq!(whole, Ok(Some(head)), "gathered vs at once"),
        Some(Err(e)) => assert_eq!(whole, Err(e), "gathered vs at once"),
        Some(Ok(None)) => unreachable!(),
    }
});
