//! An upgrade that waits for the backend's connect hook (`proxy.connect_url`): the
//! backend, not a token, says who the client is, which rooms it joins, and what its
//! `welcome` carries; or refuses it with a status the client receives before any upgrade.
//!
//! The connection is counted under the caps while it waits, reads nothing, and keeps
//! what the client sent right behind its request (frames, already) until the answer.

use std::sync::Arc;
use std::time::Instant;

use super::connection::Phase;
use super::context::Ctx;
use super::frames::on_frame_bytes;
use super::message::ShardMessage;
use super::request::Upgrade;
use super::respond::{refuse, respond};
use super::upgrade::{admit, complete_upgrade, unadmit};
use crate::api::ApiError;
use crate::hooks::proxy::{self, ConnectVerdict, Hook};
use crate::http::{self, RequestHead};
use crate::ids::ConnectionId;

/// Asks the backend who the client of upgrade request `request` on connection `key` is;
/// `rest` is what the client sent after the request.
pub(super) fn ask_connect(
    cx: &mut Ctx,
    key: usize,
    request: &RequestHead,
    head_bytes: &[u8],
    upgrade: Upgrade,
    rest: [&mut [u8]; 2],
) {
    if let Err(refusal) = admit(cx, key) {
        return refuse(cx, key, &refusal);
    }
    let timeout = cx.config().proxy.timeout;
    let conn = &mut cx.state.conns[key];
    let (id, remote) = (conn.id, conn.remote.socket_addr());
    conn.partial = rest.concat().into_boxed_slice();
    conn.phase = Phase::Connecting {
        deadline: Instant::now() + timeout + super::ask::BACKEND_GRACE,
        upgrade: Box::new(upgrade),
    };
    let headers = http::header_pairs(head_bytes, |_| true);
    let body = proxy::connect_body(remote, &headers, request.query.as_deref().unwrap_or(""));
    let hub = Arc::downgrade(&cx.shard.hub);
    let proxy = cx.hub().proxy.as_ref().expect("a connect hook");
    let done = move |outcome| {
        let decided = ShardMessage::ConnectDecided {
            conn: id,
            verdict: proxy::connect_verdict(outcome),
        };
        // Never waits: an answer that meets a full inbox is lost, and the connection's
        // deadline ends it.
        if let Some(hub) = hub.upgrade() {
            let _ = hub.mailboxes[id.shard()].try_post(decided);
        }
    };
    proxy.call(
        Hook::Connect,
        body,
        Instant::now() + timeout,
        Box::new(done),
    );
}

/// The backend's answer for the waiting upgrade of connection `conn`.
pub(crate) fn on_connect_decided(cx: &mut Ctx, conn: ConnectionId, verdict: ConnectVerdict) {
    let Some(key) = cx.state.key_of(conn) else {
        return;
    };
    let phase = std::mem::replace(&mut cx.state.conns[key].phase, Phase::Dead);
    let Phase::Connecting { upgrade, deadline } = phase else {
        cx.state.conns[key].phase = phase;
        return;
    };
    // Answered or refused below: until then it is still a handshake.
    cx.state.conns[key].phase = Phase::Handshake {
        deadline,
        awaiting_body: None,
    };
    match verdict {
        ConnectVerdict::Accept { user, rooms, data } => {
            if complete_upgrade(cx, key, user.into(), *upgrade, rooms, data) {
                let mut sent = std::mem::take(&mut cx.state.conns[key].partial);
                if !sent.is_empty() {
                    on_frame_bytes(cx, key, &mut sent);
                }
            }
        }
        ConnectVerdict::Refuse { status, body } => {
            unadmit(cx, key);
            respond(cx, key, status, "application/json", &body);
        }
        ConnectVerdict::Fail => {
            unadmit(cx, key);
            let why = "the backend did not say who you are";
            refuse(cx, key, &ApiError::new(503, "backend_unavailable", why));
        }
    }
    cx.shard.wake_answered();
}
