//! The HTTP request at the start of a connection: check it, upgrade it, or answer and
//! close.
//!
//! An upgrade passes, in order: the WebSocket headers (400), the origin allow-list (403),
//! authentication (401), the connection caps (503 or 429). Only then is the connection
//! registered and answered with 101; a refused client leaves nothing behind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::state::ShardState;
use super::Shard;
use crate::admission::Refusal;
use crate::http::{self, HeadError, RequestHead, MAX_HEAD_BYTES};
use crate::ids::is_valid_user_id;

/// How long a client has to read a final HTTP response and hang up.
const RESPONSE_LINGER: Duration = Duration::from_secs(5);

impl Shard {
    pub(super) fn on_handshake_bytes(&self, state: &mut ShardState, key: usize, data: &mut [u8]) {
        // Usually the whole request comes in one read and is parsed where it landed;
        // only a request that arrives in pieces is gathered in the connection, and never
        // more of it than the size bound.
        let mut gathered = std::mem::take(&mut state.conns[key].partial);
        if gathered.is_empty() {
            match http::parse_head(data) {
                Ok(None) => state.conns[key].partial = data.to_vec(),
                Ok(Some((request, used))) => {
                    self.on_request(state, key, request, [&mut data[used..], &mut []])
                }
                Err(e) => self.refuse_head(state, key, e),
            }
            return;
        }
        let taken = data
            .len()
            .min(MAX_HEAD_BYTES.saturating_sub(gathered.len()) + 1);
        gathered.extend_from_slice(&data[..taken]);
        match http::parse_head(&gathered) {
            Ok(None) => state.conns[key].partial = gathered,
            Ok(Some((request, used))) => {
                let (_, rest) = gathered.split_at_mut(used);
                self.on_request(state, key, request, [rest, &mut data[taken..]]);
            }
            Err(e) => self.refuse_head(state, key, e),
        }
    }

    fn refuse_head(&self, state: &mut ShardState, key: usize, error: HeadError) {
        match error {
            HeadError::TooLarge => {
                self.respond_error(state, key, 431, "request line or headers too large")
            }
            HeadError::Malformed => self.respond_error(state, key, 400, "malformed HTTP request"),
        }
    }

    /// Routes a complete request. `rest` holds whatever the client sent after it (in up
    /// to two pieces), which after an upgrade is already WebSocket frames.
    fn on_request(
        &self,
        state: &mut ShardState,
        key: usize,
        request: RequestHead,
        rest: [&mut [u8]; 2],
    ) {
        let config = &self.hub.config;
        if request.path == config.path {
            self.on_upgrade(state, key, request, rest);
        } else if request.path == "/health" && request.method == "GET" {
            self.respond(state, key, 200, "application/json", r#"{"status":"ok"}"#);
        } else {
            self.respond_error(state, key, 404, "not found");
        }
    }

    fn on_upgrade(
        &self,
        state: &mut ShardState,
        key: usize,
        request: RequestHead,
        rest: [&mut [u8]; 2],
    ) {
        if !request.wants_upgrade() {
            let body = "This endpoint speaks WebSocket: send an upgrade request.";
            return self.respond(state, key, 426, "text/plain", body);
        }
        let accept = match http::accept_key(&request) {
            Ok(accept) => accept,
            Err(why) => return self.respond_error(state, key, 400, why),
        };
        if !self.hub.origins.allows(request.origin.as_deref()) {
            return self.respond_error(state, key, 403, "origin not allowed");
        }
        let user = match self.identify(state, key, &request) {
            Ok(user) => user,
            Err((status, why)) => return self.respond_error(state, key, status, &why),
        };
        let (id, ip) = (state.conns[key].id, state.conns[key].remote.ip());
        if let Err(refusal) = self.hub.admission.admit(ip) {
            return self.refuse(state, key, refusal);
        }
        let per_user = self.hub.config.limits.connections_per_user;
        let Ok(first) = self.hub.registry.add_connection(id, &user, per_user) else {
            self.hub.admission.release(ip);
            return self.refuse(state, key, Refusal::TooManyForUser);
        };
        self.counters().count_response(101);
        state.conns[key]
            .out
            .push_protected(http::switching_protocols(&accept));
        self.open(state, key, user, first);
        for bytes in rest {
            if !bytes.is_empty() && state.conns[key].is_open() {
                self.on_frame_bytes(state, key, bytes);
            }
        }
    }

    /// The user of an upgrade request: from its token when authentication is on, else
    /// from `?user=`, else anonymous. On failure: the HTTP status and reason.
    fn identify(
        &self,
        state: &ShardState,
        key: usize,
        request: &RequestHead,
    ) -> Result<Arc<str>, (u16, String)> {
        if let Some(auth) = &self.hub.authenticator {
            return auth
                .authenticate(request)
                .map(Arc::from)
                .map_err(|e| (401, e.to_string()));
        }
        match request.query_param("user") {
            Some(user) if is_valid_user_id(&user) => Ok(user.into()),
            Some(_) => Err((400, "user must be 1 to 128 bytes".to_owned())),
            None => Ok(format!("anon-{}", state.conns[key].id).into()),
        }
    }

    fn refuse(&self, state: &mut ShardState, key: usize, refusal: Refusal) {
        let (status, why) = refusal.response();
        self.respond_error(state, key, status, why);
    }

    /// Answers with `{"error": why}` and closes.
    pub(super) fn respond_error(&self, state: &mut ShardState, key: usize, status: u16, why: &str) {
        let body = serde_json::json!({ "error": why }).to_string();
        self.respond(state, key, status, "application/json", &body);
    }

    /// Answers the request and closes the connection after the response.
    pub(super) fn respond(
        &self,
        state: &mut ShardState,
        key: usize,
        status: u16,
        content_type: &str,
        body: &str,
    ) {
        self.counters().count_response(status);
        let response = http::response(status, content_type, body);
        state.conns[key].respond_and_close(response, Instant::now() + RESPONSE_LINGER);
        self.mark_dirty(state, key);
    }
}
