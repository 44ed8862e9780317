//! Raising a question: a client's message that the backend (`proxy.*`, for
//! `neonex serve`) or the embedding application must answer before the hub acts on it.
//! The connection waits, holding its later messages ([`super::awaiting`]); the shard
//! does not.
//!
//! Whoever answers, the answer comes back the same way: a [`ReturnAddress`] posts a
//! [`Ruling`] to this shard's inbox, and [`super::rulings`] carries it out. Where both
//! could answer, the backend's hook is asked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use super::awaiting::{Asked, Awaiting};
use super::context::Ctx;
use crate::hooks::answer::{AnswerPost, Decision, Reply, ReturnAddress};
use crate::hooks::proxy::{self, Hook, Proxy, PublishVerdict};
use crate::hooks::ruling::Ruling;
use crate::hooks::{Application, HubEvent};
use crate::ids::ConnectionId;
use crate::protocol::{Recover, Rpc, ServerMessage};
use crate::ws::encode;

/// How much longer than `proxy.timeout` a question waits on the shard: the proxy's own
/// timeout answers first, and this deadline only catches an answer lost on the way back.
pub(super) const BACKEND_GRACE: Duration = Duration::from_millis(500);

/// Who answers a kind of question.
enum Answerer<'a> {
    Backend(&'a Proxy),
    Application(&'a Application),
}

fn answerer<'a>(
    cx: &Ctx<'a>,
    hook: Hook,
    wanted: fn(&Application) -> bool,
) -> Option<Answerer<'a>> {
    let hub = cx.hub();
    if let Some(proxy) = hub.proxy.as_ref().filter(|p| p.has(hook)) {
        return Some(Answerer::Backend(proxy));
    }
    hub.events
        .as_ref()
        .map(|events| &events.application)
        .filter(|application| wanted(application))
        .map(Answerer::Application)
}

/// Who decides clients' joins, if anyone.
fn join_answerer<'a>(cx: &Ctx<'a>) -> Option<Answerer<'a>> {
    answerer(cx, Hook::Join, |a| a.authorize_joins)
}

/// Who decides clients' chat messages, if anyone.
fn publish_answerer<'a>(cx: &Ctx<'a>) -> Option<Answerer<'a>> {
    answerer(cx, Hook::Publish, |a| a.authorize_publishes)
}

/// True if clients' joins wait for a decision.
pub(super) fn joins_are_decided(cx: &Ctx) -> bool {
    join_answerer(cx).is_some()
}

/// True if clients' chat messages wait for a decision.
pub(super) fn publishes_are_decided(cx: &Ctx) -> bool {
    publish_answerer(cx).is_some()
}

/// True if messages of type `kind` are the application's to answer.
pub(super) fn is_custom_type(cx: &Ctx, kind: &str) -> bool {
    cx.hub()
        .events
        .as_ref()
        .is_some_and(|e| e.application.owns_type(kind))
}

/// True if clients' `rpc` messages go to the backend (`proxy.rpc_url`).
pub(super) fn rpc_goes_to_backend(cx: &Ctx) -> bool {
    cx.hub().proxy.as_ref().is_some_and(|p| p.has(Hook::Rpc))
}

/// Opens a question for connection `key`, due in `timeout`: from now on its messages are
/// held. Returns where the answer goes, and the connection's user.
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
    let hub: Arc<dyn AnswerPost> = cx.shard.hub.clone();
    ReturnAddress::new(Arc::downgrade(&hub), conn, question)
}

/// How long a question for `answerer` may wait on the shard.
fn timeout_for(cx: &Ctx, answerer: &Answerer) -> Duration {
    match answerer {
        Answerer::Backend(_) => cx.config().proxy.timeout + BACKEND_GRACE,
        Answerer::Application(application) => application.decision_timeout,
    }
}

/// Calls `hook` of the backend with `body`; `rule` turns its outcome into the answer.
fn call_backend(
    cx: &Ctx,
    proxy: &Proxy,
    hook: Hook,
    body: Vec<u8>,
    to: ReturnAddress,
    rule: fn(proxy::Outcome) -> Ruling,
) {
    let deadline = Instant::now() + cx.config().proxy.timeout;
    proxy.call(
        hook,
        body,
        deadline,
        Box::new(move |outcome| to.answer(rule(outcome))),
    );
}

/// Asks whether connection `key` may join `room` (see [`joins_are_decided`]).
pub(super) fn ask_join(cx: &mut Ctx, key: usize, room: &str, recover: Option<Recover>) {
    let answerer = join_answerer(cx).expect("decided joins have someone to decide");
    let timeout = timeout_for(cx, &answerer);
    let asked = Asked::Join {
        room: room.to_owned(),
        recover,
    };
    let (to, user) = raise(cx, key, asked, timeout);
    let conn = cx.state.conns[key].id;
    match answerer {
        Answerer::Backend(proxy) => {
            let body = proxy::join_body(&conn.to_string(), &user, room);
            call_backend(
                cx,
                proxy,
                Hook::Join,
                body,
                to,
                |outcome| match proxy::join_verdict(outcome) {
                    true => Ruling::Allow,
                    false => Ruling::Refuse("Refused by the backend".into()),
                },
            );
        }
        Answerer::Application(_) => cx.tell(|| HubEvent::JoinRequest {
            conn,
            user,
            room: room.to_owned(),
            decision: Decision::new(to),
        }),
    }
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
    let answerer = publish_answerer(cx).expect("decided publishes have someone to decide");
    let timeout = timeout_for(cx, &answerer);
    let asked = Asked::Publish {
        room: room.to_owned(),
        message: message.map(str::to_owned),
        data: data.map(ToOwned::to_owned),
    };
    let (to, user) = raise(cx, key, asked, timeout);
    let conn = cx.state.conns[key].id;
    match answerer {
        Answerer::Backend(proxy) => {
            let body = proxy::publish_body(&conn.to_string(), &user, room, message, data);
            call_backend(
                cx,
                proxy,
                Hook::Publish,
                body,
                to,
                |outcome| match proxy::publish_verdict(outcome) {
                    PublishVerdict::Allow => Ruling::Allow,
                    PublishVerdict::Replace(data) => Ruling::AllowWithData(data),
                    PublishVerdict::Refuse => Ruling::Refuse("Refused by the backend".into()),
                },
            );
        }
        Answerer::Application(_) => cx.tell(|| HubEvent::PublishRequest {
            conn,
            user,
            room: room.to_owned(),
            message: message.map(str::to_owned),
            data: data.map(|d| d.get().to_owned()),
            decision: Decision::new(to),
        }),
    }
}

/// Hands a message of the application's own type `kind` to the application (see
/// [`is_custom_type`]).
pub(super) fn ask_custom(cx: &mut Ctx, key: usize, kind: &str, text: &[u8]) {
    let application = &cx.hub().events.as_ref().expect("custom types").application;
    let (to, user) = raise(cx, key, Asked::Custom, application.decision_timeout);
    let conn = cx.state.conns[key].id;
    cx.tell(|| HubEvent::Custom {
        conn,
        user,
        kind: kind.to_owned(),
        json: String::from_utf8_lossy(text).into_owned(),
        reply: Reply::new(to),
    });
}

/// Asks the backend to answer `rpc` (see [`rpc_goes_to_backend`]); the client gets
/// `rpc_result` or `rpc_error` with its `id`.
pub(super) fn ask_rpc(cx: &mut Ctx, key: usize, rpc: Rpc) {
    let proxy = cx.hub().proxy.as_ref().expect("rpc goes to the backend");
    let timeout = cx.config().proxy.timeout + BACKEND_GRACE;
    let id = rpc.id.to_owned();
    let (to, user) = raise(cx, key, Asked::Rpc { id: id.clone() }, timeout);
    let conn = cx.state.conns[key].id.to_string();
    let body = proxy::rpc_body(&conn, &user, rpc.id, &rpc.method, rpc.data);
    let deadline = Instant::now() + cx.config().proxy.timeout;
    proxy.call(
        Hook::Rpc,
        body,
        deadline,
        Box::new(move |outcome| {
            let answer = match proxy::rpc_verdict(outcome) {
                Ok(data) => encode::json_frame(&ServerMessage::RpcResult {
                    id: &id,
                    data: &data,
                }),
                Err(code) => encode::json_frame(&ServerMessage::RpcError {
                    id: &id,
                    code: &code,
                }),
            };
            to.answer(Ruling::Send(answer));
        }),
    );
}
