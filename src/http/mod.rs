//! The HTTP/1.1 side of a connection: parsing the request head (`head`), recognising a
//! WebSocket upgrade (`upgrade`), and writing the few responses the hub gives
//! (`response`).

mod extensions;
mod head;
mod response;
mod upgrade;

pub use extensions::{accepts_deflate, DEFLATE_ACCEPTED};
pub use head::{header_pairs, parse_head, HeadError, RequestHead, MAX_HEAD_BYTES};
pub use response::{page_response, response, CONTINUE};
pub use upgrade::{accept_key, choose_subprotocol, is_token, switching_protocols};

/// An upgrade request as a browser sends it, for the tests of each part.
#[cfg(test)]
pub(crate) const EXAMPLE_UPGRADE: &[u8] = b"GET /ws?user=al%20ice&x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: https://a.example\r\n\r\n";
