//! Raising a question: a client's message that the application (or, for `neonex serve`,
//! a backend hook) must answer before the hub acts on it. The connection waits, holding
//! its later messages ([`super::awaiting`]); the shard does not.
//!
//! Whoever answers, the answer comes back the same way: a [`ReturnAddress`] posts it to
//! this shard's inbox, and [`super::rulings`] carries it out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use super::awaiting::{Asked, Awaiting};
use super::context::Ctx;
use crate::hooks::answer::{Decision, Reply, ReturnAddress};
use crate::hooks::HubEvent;
use crate::ids::ConnectionId;
use crate::protocol::Recover;

/// Opens a question for connection `key`, due in `timeout`: from now on its messages are
/// held. Returns where the answer goes, and the connection's id and user.
fn raise(cx: &mut Ctx, key: usize, asked: Asked, timeout: Duration) -> (ReturnAddress, Arc<str>) {
    let question = cx.state.next_question;
    cx.state.next_question += 1;
    let deadline = Instant::now() + timeout;
    let conn = &mut cx.state.conns[key];
    debug_assert!(conn.awaiting.is_none(), "one question at a time");
    conn.awaiting = Some(Box::new(Awaiting::new(question, deadline, asked)));
    let (id, user) = (
        conn.id,
        conn.user.clone().expect("open connections have a user"),
    );
    cx.state.deadlines.insert((deadline, question), key);
    cx.shard.asked.notify();
    (return_address(cx, id, question), user)
}

fn return_address(cx: &Ctx, conn: ConnectionId, question: u64) -> ReturnAddress {
    ReturnAddress::new(Arc::downgrade(&cx.shard.hub), conn, question)
}

fn application_timeout(cx: &Ctx) -> Option<Duration> {
    cx.hub()
        .events
        .as_ref()
        .map(|events| events.application.decision_timeout)
}

/// True if clients' joins wait for a decision.
pub(super) fn joins_are_decided(cx: &Ctx) -> bool {
    cx.hub()
        .events
        .as_ref()
        .is_some_and(|e| e.application.authorize_joins)
}

/// True if clients' chat messages wait for a decision.
pub(super) fn publishes_are_decided(cx: &Ctx) -> bool {
    cx.hub()
        .events
        .as_ref()
        .is_some_and(|e| e.application.authorize_publishes)
}

/// True if messages of type `kind` are the application's to answer.
pub(super) fn is_custom_type(cx: &Ctx, kind: &str) -> bool {
    cx.hub()
        .events
        .as_ref()
        .is_some_and(|e| e.application.owns_type(kind))
}

/// Asks whether connection `key` may join `room` (see [`joins_are_decided`]).
pub(super) fn ask_join(cx: &mut Ctx, key: usize, room: &str, recover: Option<Recover>) {
    let timeout = application_timeout(cx).expect("decided joins have an application");
    let asked = Asked::Join {
        room: room.to_owned(),
        recover,
    };
    let (to, user) = raise(cx, key, asked, timeout);
    let conn = cx.state.conns[key].id;
    cx.tell(|| HubEvent::JoinRequest {
        conn,
        user,
        room: room.to_owned(),
        decision: Decision::new(to),
    });
}

/// Asks whether connection `key` may publish its chat message (see
/// [`publishes_are_decided`]).
pub(super) fn ask_publish(
    cx: &mut Ctx,
    key: usize,
    room: &str,
    message: Option<&str>,
    data: Option<&RawValue>,
) {
    let timeout = application_timeout(cx).expect("decided publishes have an application");
    let asked = Asked::Publish {
        room: room.to_owned(),
        message: message.map(str::to_owned),
        data: data.map(ToOwned::to_owned),
    };
    let (to, user) = raise(cx, key, asked, timeout);
    let conn = cx.state.conns[key].id;
    cx.tell(|| HubEvent::PublishRequest {
        conn,
        user,
        room: room.to_owned(),
        message: message.map(str::to_owned),
        data: data.map(|d| d.get().to_owned()),
        decision: Decision::new(to),
    });
}

/// Hands a message of the application's own type `kind` to the application (see
/// [`is_custom_type`]).
pub(super) fn ask_custom(cx: &mut Ctx, key: usize, kind: &str, text: &[u8]) {
    let timeout = application_timeout(cx).expect("custom types have an application");
    let (to, user) = raise(cx, key, Asked::Custom, timeout);
    let conn = cx.state.conns[key].id;
    cx.tell(|| HubEvent::Custom {
        conn,
        user,
        kind: kind.to_owned(),
        json: String::from_utf8_lossy(text).into_owned(),
        reply: Reply::new(to),
    });
}
