//! Completing an accepted upgrade: its place under the connection caps, the user's
//! registration (and the per-user cap), the `101`, and the connection's opening. Both
//! ways in come here: a token or `?user=` at once ([`super::handshake`]), or the
//! backend's connect hook later ([`super::connecting`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::context::Ctx;
use super::lifecycle::{open, Admitted};
use super::request::Upgrade;
use super::respond::refuse;
use crate::admission::Refusal;
use crate::api::ApiError;

/// Counts connection `key` under the connection caps, or says why not.
pub(super) fn admit(cx: &mut Ctx, key: usize) -> Result<(), ApiError> {
    let conn = &mut cx.state.conns[key];
    cx.shard.hub.admission.admit(conn.remote.ip())?;
    conn.admitted = true;
    Ok(())
}

/// Gives back connection `key`'s place under the caps, before it was opened.
pub(super) fn unadmit(cx: &mut Ctx, key: usize) {
    let conn = &mut cx.state.conns[key];
    if std::mem::take(&mut conn.admitted) {
        cx.shard.hub.admission.release(conn.remote.ip());
    }
}

/// Registers admitted connection `key` as `user`, answers its upgrade and opens it,
/// joining `rooms` besides the autojoins and welcoming it with `data`. False, with the
/// refusal sent, if the user has too many connections.
pub(super) fn complete_upgrade(
    cx: &mut Ctx,
    key: usize,
    user: Arc<str>,
    upgrade: Upgrade,
    rooms: Vec<String>,
    data: Option<Box<serde_json::value::RawValue>>,
) -> bool {
    let id = cx.state.conns[key].id;
    let per_user = cx.config().limits.connections_per_user;
    let hub = cx.hub();
    let (added, elsewhere) = hub.with_remote_connections(&user, |elsewhere| {
        (hub.registry.add_connection(id, &user, per_user), elsewhere)
    });
    let Ok(first_here) = added else {
        unadmit(cx, key);
        refuse(cx, key, &Refusal::TooManyForUser.into());
        return false;
    };
    cx.counters().count_response(101);
    let conn = &mut cx.state.conns[key];
    conn.out.push_protected(upgrade.switching);
    if upgrade.deflate {
        conn.deflate = true;
        cx.hub().deflate_connections.fetch_add(1, Ordering::Relaxed);
    }
    let admitted = Admitted {
        user,
        first: first_here && elsewhere == 0,
        headers: upgrade.headers,
        rooms,
        data,
    };
    open(cx, key, admitted);
    true
}
