//! The final answer to an HTTP request: the response is queued, and the connection closes
//! once the client has read it (or at the linger deadline).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::context::Ctx;
use crate::api::ApiError;
use crate::http;

/// How long a client has to read a final HTTP response and hang up.
const RESPONSE_LINGER: Duration = Duration::from_secs(5);

/// Refuses the request with its status and `{"code": ..., "error": ...}`, and closes.
pub(super) fn refuse(cx: &mut Ctx, key: usize, refusal: &ApiError) {
    respond(cx, key, refusal.status, "application/json", &refusal.body());
}

/// Answers the request and closes the connection after the response.
pub(super) fn respond(cx: &mut Ctx, key: usize, status: u16, content_type: &str, body: &str) {
    send_response(cx, key, status, http::response(status, content_type, body));
}

/// Sends a complete `response` of `status` and closes the connection after it.
pub(super) fn send_response(cx: &mut Ctx, key: usize, status: u16, response: Bytes) {
    cx.counters().count_response(status);
    cx.state.conns[key].respond_and_close(response, Instant::now() + RESPONSE_LINGER);
    cx.mark_dirty(key);
}
