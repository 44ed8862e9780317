//! The HTTP request at the start of a connection: check it, upgrade it, or answer and
//! close.
//!
//! An upgrade passes, in order: the WebSocket headers (400), the origin allow-list (403),
//! authentication (401), the connection caps (503 or 429). Only then is the connection
//! registered and answered with 101; a refused client leaves nothing behind.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::connection::Phase;
use super::state::ShardState;
use super::Shard;
use crate::admission::Refusal;
use crate::http::{self, HeadError, RequestHead, MAX_HEAD_BYTES};
use crate::ids::is_valid_user_id;

/// A request whose head and body have arrived.
struct Request {
    head: RequestHead,
    /// Bytes of the head; the body follows.
    head_len: usize,
    /// Bytes of head and body.
    total: usize,
}

/// How long a client has to read a final HTTP response and hang up.
const RESPONSE_LINGER: Duration = Duration::from_secs(5);

impl Shard {
    pub(super) fn on_handshake_bytes(
        self: &Rc<Self>,
        state: &mut ShardState,
        key: usize,
        data: &mut [u8],
    ) {
        // Usually the whole request comes in one read and is handled where it landed;
        // only a request that arrives in pieces is gathered in the connection, and never
        // more of it than the size bounds (head, then the body it announces).
        let mut gathered = std::mem::take(&mut state.conns[key].partial);
        if gathered.is_empty() {
            match self.complete_request(data) {
                Ok(None) => {
                    self.continue_if_asked(state, key, data);
                    state.conns[key].partial = data.to_vec();
                }
                Ok(Some(Request {
                    head,
                    head_len,
                    total,
                })) => {
                    let (head_and_body, after) = data.split_at_mut(total);
                    let body = &head_and_body[head_len..];
                    self.on_request(state, key, head, body, [after, &mut []])
                }
                Err((status, why)) => self.respond_error(state, key, status, why),
            }
            return;
        }
        let bound = MAX_HEAD_BYTES + self.hub.config.api.max_body + 1;
        let taken = data.len().min(bound.saturating_sub(gathered.len()));
        gathered.extend_from_slice(&data[..taken]);
        match self.complete_request(&gathered) {
            Ok(None) => {
                self.continue_if_asked(state, key, &gathered);
                state.conns[key].partial = gathered;
            }
            Ok(Some(Request {
                head,
                head_len,
                total,
            })) => {
                let (head_and_body, after) = gathered.split_at_mut(total);
                let body = &head_and_body[head_len..];
                self.on_request(state, key, head, body, [after, &mut data[taken..]]);
            }
            Err((status, why)) => self.respond_error(state, key, status, why),
        }
    }

    /// Sends `100 Continue` once, when a client that asked for it has sent a whole head
    /// and waits to send its body.
    fn continue_if_asked(&self, state: &mut ShardState, key: usize, buf: &[u8]) {
        let Phase::Handshake { continued, .. } = &mut state.conns[key].phase else {
            return;
        };
        if *continued
            || !matches!(http::parse_head(buf), Ok(Some((head, _))) if head.expect_continue)
        {
            return;
        }
        *continued = true;
        let conn = &mut state.conns[key];
        conn.out
            .push_unbounded(bytes::Bytes::from_static(http::CONTINUE));
        self.mark_dirty(state, key);
    }

    /// The request at the front of `buf`, once its head and body have arrived: the head,
    /// the head's length and the length with the body. `Err` is the HTTP refusal.
    fn complete_request(&self, buf: &[u8]) -> Result<Option<Request>, (u16, &'static str)> {
        let (request, head_len) = match http::parse_head(buf) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(None),
            Err(HeadError::TooLarge) => return Err((431, "request line or headers too large")),
            Err(HeadError::Malformed) => return Err((400, "malformed HTTP request")),
        };
        if request.chunked {
            return Err((411, "chunked bodies are not accepted: send Content-Length"));
        }
        let body_len = request.content_length.unwrap_or(0);
        if body_len > self.hub.config.api.max_body {
            return Err((413, "request body too large"));
        }
        let total = head_len + body_len;
        Ok((buf.len() >= total).then_some(Request {
            head: request,
            head_len,
            total,
        }))
    }

    /// Routes a complete request with its `body`. `rest` holds whatever the client sent
    /// after it (in up to two pieces), which after an upgrade is already WebSocket frames.
    fn on_request(
        self: &Rc<Self>,
        state: &mut ShardState,
        key: usize,
        request: RequestHead,
        body: &[u8],
        rest: [&mut [u8]; 2],
    ) {
        let config = &self.hub.config;
        let path = request.path.as_str();
        if path == config.path {
            self.on_upgrade(state, key, request, rest);
        } else if path.starts_with("/api/") {
            self.on_api(state, key, &request, body);
        } else if request.method != "GET" {
            self.respond_error(state, key, 405, "method not allowed");
        } else if path == "/health" {
            self.respond(state, key, 200, "application/json", r#"{"status":"ok"}"#);
        } else if path == "/stats" {
            let stats = serde_json::to_string(&self.hub.stats()).expect("stats serialize");
            self.respond(state, key, 200, "application/json", &stats);
        } else if path == "/metrics" {
            let text = crate::metrics::render(&self.hub.stats());
            self.respond(state, key, 200, crate::metrics::CONTENT_TYPE, &text);
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
