//! The HTTP request at the start of a connection: check it, upgrade it, or answer and
//! close.
//!
//! An upgrade passes, in order: the WebSocket headers (400), the origin allow-list (403),
//! authentication (401), the connection caps (503 or 429). Only then is the connection
//! registered and answered with 101; a refused client leaves nothing behind.
//!
//! Only API calls have a body, and it is read only once the head has passed the API's
//! key check: a request that may not send one is answered as soon as its head is in.

use std::net::SocketAddr;
use std::sync::Arc;

use super::api::on_api;
use super::connecting::ask_connect;
use super::connection::Phase;
use super::context::Ctx;
use super::frames::on_frame_bytes;
use super::pages::on_page;
use super::request::{Progress, Request, Upgrade};
use super::respond::{refuse, respond};
use super::shared::HubShared;
use super::upgrade::{admit, complete_upgrade};
use crate::api::{self, ApiError};
use crate::config::HubConfig;
use crate::forwarded::ClientAddress;
use crate::hooks::proxy::Hook;
use crate::http::{self, HeadError, RequestHead, MAX_HEAD_BYTES};
use crate::ids::is_valid_user_id;
use crate::web;

pub(super) fn on_handshake_bytes(cx: &mut Ctx, key: usize, data: &mut [u8]) {
    let conn = &mut cx.state.conns[key];
    let Phase::Handshake { awaiting_body, .. } = &mut conn.phase else {
        return;
    };
    let awaited = awaiting_body.take();
    let peer = conn.remote.socket_addr();
    // Usually the whole request comes in one read and is handled where it landed;
    // only a request that arrives in pieces is gathered in the connection, and never
    // more of it than the size bounds (head, then the body it announces).
    let mut gathered = std::mem::take(&mut conn.partial).into_vec();
    let fresh = gathered.is_empty();
    let (buf, unread): (&mut [u8], &mut [u8]) = if fresh {
        (data, &mut [])
    } else {
        let bound = awaited.as_ref().map_or_else(
            || MAX_HEAD_BYTES + cx.config().api_body_limit(),
            |request| request.total,
        );
        let taken = data.len().min(bound.saturating_sub(gathered.len()));
        gathered.extend_from_slice(&data[..taken]);
        (gathered.as_mut_slice(), &mut data[taken..])
    };
    let progress = match awaited {
        // The head was parsed and accepted by an earlier read: only its length counts.
        Some(request) => Progress::of(request, buf.len()),
        None => match accept_head(cx.hub(), buf, peer) {
            Ok(None) => Progress::NeedHead,
            Ok(Some(request)) => {
                let progress = Progress::of(Box::new(request), buf.len());
                if matches!(&progress, Progress::NeedBody(r) if r.head.expect_continue) {
                    // The head is parsed once, so this is sent at most once.
                    let conn = &mut cx.state.conns[key];
                    conn.out
                        .push_unbounded(bytes::Bytes::from_static(http::CONTINUE));
                    cx.mark_dirty(key);
                }
                progress
            }
            Err(e) => return refuse(cx, key, &e),
        },
    };
    let awaiting = match progress {
        Progress::Complete(request) => {
            let Request {
                head,
                client,
                head_len,
                total,
            } = *request;
            // From here on the connection is known by its client's address: in
            // caps, logs and what the hub tells of it.
            cx.state.conns[key].remote = client.addr.into();
            let (head_and_body, after) = buf.split_at_mut(total);
            let (head_bytes, body) = head_and_body.split_at(head_len);
            let request = Complete {
                head,
                client,
                head_bytes,
                body,
            };
            return on_request(cx, key, request, [after, unread]);
        }
        Progress::NeedHead => None,
        Progress::NeedBody(request) => Some(request),
    };
    let conn = &mut cx.state.conns[key];
    conn.partial = if fresh {
        buf.into()
    } else {
        gathered.into_boxed_slice()
    };
    if let Phase::Handshake { awaiting_body, .. } = &mut conn.phase {
        *awaiting_body = awaiting;
    }
}

/// Parses the request head at the front of `buf` and decides, before any of its body
/// is read, whether the request may go on; `Ok(None)` while the head is incomplete.
/// Only API calls take a body, and only from a caller the API accepts: anyone else
/// is answered at once, so the hub never holds a body for them (nor says
/// `100 Continue`).
fn accept_head(hub: &HubShared, buf: &[u8], peer: SocketAddr) -> Result<Option<Request>, ApiError> {
    let (head, head_len) = match http::parse_head(buf) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return Ok(None),
        Err(HeadError::TooLarge) => {
            let why = "request line or headers too large";
            return Err(ApiError::new(431, "head_too_large", why));
        }
        Err(HeadError::Malformed) => {
            let why = "malformed HTTP request";
            return Err(ApiError::new(400, "bad_request", why));
        }
    };
    let client = hub.proxies.client(peer, &head);
    let body_len = head.content_length.unwrap_or(0);
    if !is_api_call(&hub.config, &head.path) {
        if head.chunked || body_len > 0 {
            let why = "this request takes no body";
            return Err(ApiError::new(400, "bad_request", why));
        }
    } else {
        let config = &hub.config;
        // Checked before any body is taken, so that only a caller with the key can
        // make the hub hold one.
        api::authorize(&head, config.api.key.as_deref(), &client)?;
        if head.chunked {
            let why = "chunked bodies are not accepted: send Content-Length";
            return Err(ApiError::new(411, "length_required", why));
        }
        if body_len > config.api_body_limit() {
            let why = "request body too large";
            return Err(ApiError::new(413, "body_too_large", why));
        }
    }
    Ok(Some(Request {
        head,
        client,
        head_len,
        total: head_len + body_len,
    }))
}

/// A call to the HTTP API. The upgrade path is never one, even under `/api/`.
fn is_api_call(config: &HubConfig, path: &str) -> bool {
    path.starts_with("/api/") && path != config.path
}

/// A request whose head and body have arrived.
struct Complete<'a> {
    head: RequestHead,
    /// Who sent it, through any trusted proxies.
    client: ClientAddress,
    /// The head as it came, for the hooks that are handed its headers.
    head_bytes: &'a [u8],
    body: &'a [u8],
}

/// Routes a complete request. `rest` holds whatever the client sent after it (in up to
/// two pieces), which after an upgrade is already WebSocket frames.
fn on_request(cx: &mut Ctx, key: usize, complete: Complete, rest: [&mut [u8]; 2]) {
    let config = cx.config();
    let Complete {
        head: request,
        client,
        head_bytes,
        body,
    } = complete;
    let path = request.path.as_str();
    if path == config.path {
        on_upgrade(cx, key, request, head_bytes, rest);
    } else if is_api_call(config, path) {
        on_api(cx, key, &request, body);
    } else if request.method != "GET" {
        refuse(
            cx,
            key,
            &ApiError::new(405, "method_not_allowed", "method not allowed"),
        );
    } else if path == "/health" {
        // Still 200 without the cluster: the node serves its own clients.
        let body = match cx.hub().is_degraded() {
            true => r#"{"status":"degraded"}"#,
            false => r#"{"status":"ok"}"#,
        };
        respond(cx, key, 200, "application/json", body);
    } else if path == "/stats" {
        let stats = serde_json::to_string(&cx.hub().stats()).expect("stats serialize");
        respond(cx, key, 200, "application/json", &stats);
    } else if path == "/metrics" {
        let text = crate::metrics::render(&cx.hub().stats());
        respond(cx, key, 200, crate::metrics::CONTENT_TYPE, &text);
    } else if let Some((site, name)) = web::site_of(path) {
        on_page(cx, key, site, name, &client);
    } else {
        refuse(cx, key, &ApiError::new(404, "not_found", "not found"));
    }
}

fn on_upgrade(
    cx: &mut Ctx,
    key: usize,
    request: RequestHead,
    head_bytes: &[u8],
    rest: [&mut [u8]; 2],
) {
    if !request.wants_upgrade() {
        let body = "This endpoint speaks WebSocket: send an upgrade request.";
        return respond(cx, key, 426, "text/plain", body);
    }
    let accept = match http::accept_key(&request) {
        Ok(accept) => accept,
        Err(why) => return refuse(cx, key, &ApiError::new(400, "bad_request", why)),
    };
    if !cx.hub().origins.allows(request.origin.as_deref()) {
        let refusal = ApiError::new(403, "origin_not_allowed", "origin not allowed");
        return refuse(cx, key, &refusal);
    }
    let subprotocol = http::choose_subprotocol(&request, &cx.config().subprotocols);
    let deflate = cx.config().compression.enabled && http::accepts_deflate(&request);
    let extensions = deflate.then_some(http::DEFLATE_ACCEPTED);
    let switching = http::switching_protocols(&accept, subprotocol, extensions);
    let headers = wanted_headers(cx, head_bytes);
    if cx
        .hub()
        .proxy
        .as_ref()
        .is_some_and(|p| p.has(Hook::Connect))
    {
        let upgrade = Upgrade {
            switching,
            headers,
            deflate,
        };
        return ask_connect(cx, key, &request, head_bytes, upgrade, rest);
    }
    let user = match identify(cx, key, &request) {
        Ok(user) => user,
        Err(refusal) => return refuse(cx, key, &refusal),
    };
    if let Err(refusal) = admit(cx, key) {
        return refuse(cx, key, &refusal);
    }
    let upgrade = Upgrade {
        switching,
        headers,
        deflate,
    };
    if complete_upgrade(cx, key, user, upgrade, Vec::new(), None) {
        for bytes in rest {
            if !bytes.is_empty() && cx.state.conns[key].is_open() {
                on_frame_bytes(cx, key, bytes);
            }
        }
    }
}

/// The request headers the application asked to hear of, from the head as it came.
fn wanted_headers(cx: &Ctx, head_bytes: &[u8]) -> Vec<(String, String)> {
    match &cx.hub().events {
        Some(events) if !events.application.headers.is_empty() => {
            let wanted = &events.application.headers;
            http::header_pairs(head_bytes, |name| wanted.iter().any(|w| w == name))
        }
        _ => Vec::new(),
    }
}

/// The user of an upgrade request: from its token when authentication is on, else
/// from `?user=`, else anonymous. On failure: the HTTP status and reason.
fn identify(cx: &Ctx, key: usize, request: &RequestHead) -> Result<Arc<str>, ApiError> {
    if let Some(auth) = &cx.hub().authenticator {
        return auth
            .authenticate(request)
            .map(Arc::from)
            .map_err(|e| ApiError::new(401, "unauthorized", e.to_string()));
    }
    match request.query_param("user") {
        Some(user) if is_valid_user_id(&user) => Ok(user.into()),
        Some(_) => Err(ApiError::new(
            400,
            "bad_request",
            "user must be 1 to 128 bytes",
        )),
        None => Ok(format!("anon-{}", cx.state.conns[key].id).into()),
    }
}
