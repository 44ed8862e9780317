//! The HTTP request at the start of a connection: upgrade it, or answer and close.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::state::ShardState;
use super::Shard;
use crate::http::{self, HeadError, RequestHead};
use crate::ids::is_valid_user_id;

/// How long a client has to read a final HTTP response and hang up.
const RESPONSE_LINGER: Duration = Duration::from_secs(5);

impl Shard {
    pub(super) fn on_handshake_bytes(&self, state: &mut ShardState, key: usize, data: &mut [u8]) {
        // Usually the whole request comes in one read and is parsed where it landed;
        // only a request that arrives in pieces is gathered in the connection.
        let mut gathered = std::mem::take(&mut state.conns[key].partial);
        let was_gathering = !gathered.is_empty();
        let buf: &mut [u8] = if was_gathering {
            gathered.extend_from_slice(data);
            &mut gathered
        } else {
            data
        };
        match http::parse_head(buf) {
            Ok(None) => {
                let kept = if was_gathering {
                    gathered
                } else {
                    buf.to_vec()
                };
                state.conns[key].partial = kept;
            }
            Ok(Some((request, used))) => self.on_request(state, key, request, &mut buf[used..]),
            Err(HeadError::TooLarge) => self.respond(
                state,
                key,
                http::error_response(431, "request line or headers too large"),
            ),
            Err(HeadError::Malformed) => self.respond(
                state,
                key,
                http::error_response(400, "malformed HTTP request"),
            ),
        }
    }

    /// Routes a complete request. `rest` holds whatever the client sent after it, which
    /// after an upgrade is already WebSocket frames.
    fn on_request(
        &self,
        state: &mut ShardState,
        key: usize,
        request: RequestHead,
        rest: &mut [u8],
    ) {
        let config = &self.hub.config;
        if request.path == config.path {
            if !request.wants_upgrade() {
                let body = "This endpoint speaks WebSocket: send an upgrade request.";
                return self.respond(state, key, http::response(426, "text/plain", body));
            }
            let accept = match http::accept_key(&request) {
                Ok(accept) => accept,
                Err(why) => return self.respond(state, key, http::error_response(400, why)),
            };
            let user: Arc<str> = match request.query_param("user") {
                Some(user) if is_valid_user_id(&user) => user.into(),
                Some(_) => {
                    let why = "user must be 1 to 128 bytes";
                    return self.respond(state, key, http::error_response(400, why));
                }
                None => format!("anon-{}", state.conns[key].id).into(),
            };
            state.conns[key]
                .out
                .push_unbounded(http::switching_protocols(&accept));
            self.open(state, key, user);
            if !rest.is_empty() {
                self.on_frame_bytes(state, key, rest);
            }
        } else if request.path == "/health" && request.method == "GET" {
            self.respond(
                state,
                key,
                http::response(200, "application/json", r#"{"status":"ok"}"#),
            );
        } else {
            self.respond(state, key, http::error_response(404, "not found"));
        }
    }

    fn respond(&self, state: &mut ShardState, key: usize, response: Bytes) {
        state.conns[key].respond_and_close(response, Instant::now() + RESPONSE_LINGER);
        self.mark_dirty(state, key);
    }
}
