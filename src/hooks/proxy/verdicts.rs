//! What each hook's outcome means for the hub: the verdicts of PROTOCOL.md ("Proxy
//! hooks"), as pure functions of the [`Outcome`], so that every case is decided here,
//! once, and tested without a backend.
//!
//! The proxy thread asks [`well_formed`] of every 200 before handing it over, so that an
//! answer of the wrong shape is counted as `bad_answer`; the verdicts still treat one as
//! a failure, whoever made the outcome.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::hook::{Failure, Hook, Outcome};
use crate::ids::{is_valid_room_name, is_valid_user_id};

/// What the connect hook decided.
#[derive(Debug)]
pub(crate) enum ConnectVerdict {
    /// 200 with a valid `user_id`: the connection is that user, joins `rooms`, and carries
    /// `data` (the backend's, as it wrote it).
    Accept {
        user: String,
        rooms: Vec<String>,
        data: Option<Box<RawValue>>,
    },
    /// A 4xx: the client gets this status and body before the upgrade.
    Refuse { status: u16, body: String },
    /// Anything else (a failure, a 200 without a valid `user_id` or with an invalid room,
    /// another status): the client gets 503.
    Fail,
}

/// The connect hook's verdict. `user_id` may be a string or a number (`42` is user
/// `"42"`); `rooms` and `data` may be left out.
pub(crate) fn connect_verdict(outcome: Outcome) -> ConnectVerdict {
    match outcome {
        Outcome::Answered { status: 200, body } => match parse_connect(&body) {
            Some(answer) => ConnectVerdict::Accept {
                user: answer.user_id.into_string(),
                rooms: answer.rooms,
                data: answer.data,
            },
            None => ConnectVerdict::Fail,
        },
        Outcome::Answered { status, body } if (400..500).contains(&status) => {
            ConnectVerdict::Refuse {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            }
        }
        _ => ConnectVerdict::Fail,
    }
}

/// The join hook's verdict: true (the join goes ahead) only on a 200 with a JSON object;
/// a 403, any other status or a failure refuses it (`forbidden`).
pub(crate) fn join_verdict(outcome: Outcome) -> bool {
    matches!(outcome, Outcome::Answered { status: 200, body } if parse_object(&body).is_some())
}

/// What the publish hook decided.
#[derive(Debug)]
pub(crate) enum PublishVerdict {
    /// 200 `{}`: broadcast the message as the client sent it.
    Allow,
    /// 200 `{"data": X}`: broadcast it with its `data` replaced by X (`null` included).
    Replace(Box<RawValue>),
    /// A 403, any other status, a 200 that is not a JSON object, or a failure: nothing is
    /// broadcast and the client gets `forbidden`.
    Refuse,
}

/// The publish hook's verdict.
pub(crate) fn publish_verdict(outcome: Outcome) -> PublishVerdict {
    match outcome {
        Outcome::Answered { status: 200, body } => match parse_data(&body) {
            Some(Some(data)) => PublishVerdict::Replace(data),
            Some(None) => PublishVerdict::Allow,
            None => PublishVerdict::Refuse,
        },
        _ => PublishVerdict::Refuse,
    }
}

/// The rpc hook's verdict: the `data` of a 200 `{"data": X}` for the client's
/// `rpc_result`, or the `code` of its `rpc_error`:
///
/// - `"timeout"`: no answer in time;
/// - `"unavailable"`: the backend is unreachable, answered 5xx, or the hub had too many
///   calls waiting;
/// - `"bad_answer"`: a 200 that is not a JSON object with `data`, or an answer too long;
/// - `"forbidden"`: the backend answered 403;
/// - `"status_<n>"`: it answered any other status `n` (`"status_404"`).
pub(crate) fn rpc_verdict(outcome: Outcome) -> Result<Box<RawValue>, String> {
    match outcome {
        Outcome::Answered { status: 200, body } => match parse_data(&body) {
            Some(Some(data)) => Ok(data),
            _ => Err(Failure::BadAnswer.label().to_owned()),
        },
        Outcome::Answered { status: 403, .. } => Err("forbidden".to_owned()),
        Outcome::Answered { status, .. } => Err(format!("status_{status}")),
        Outcome::Failed(Failure::Timeout) => Err("timeout".to_owned()),
        Outcome::Failed(Failure::BadAnswer) => Err(Failure::BadAnswer.label().to_owned()),
        Outcome::Failed(Failure::Unreachable | Failure::ServerError(_) | Failure::Busy) => {
            Err("unavailable".to_owned())
        }
    }
}

/// Whether `body`, answered with 200, is what `hook` needs; the others are `bad_answer`.
pub(crate) fn well_formed(hook: Hook, body: &[u8]) -> bool {
    match hook {
        Hook::Connect => parse_connect(body).is_some(),
        Hook::Join => parse_object(body).is_some(),
        Hook::Publish => parse_data(body).is_some(),
        Hook::Rpc => matches!(parse_data(body), Some(Some(_))),
    }
}

#[derive(Deserialize)]
struct ConnectAnswer {
    user_id: UserId,
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    data: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum UserId {
    Text(String),
    Number(serde_json::Number),
}

impl UserId {
    fn into_string(self) -> String {
        match self {
            UserId::Text(text) => text,
            UserId::Number(n) => n.to_string(),
        }
    }
}

fn parse_connect(body: &[u8]) -> Option<ConnectAnswer> {
    let answer: ConnectAnswer = serde_json::from_slice(body).ok()?;
    let user_ok = match &answer.user_id {
        UserId::Text(text) => is_valid_user_id(text),
        UserId::Number(n) => is_valid_user_id(&n.to_string()),
    };
    let rooms_ok = answer.rooms.iter().all(|room| is_valid_room_name(room));
    (user_ok && rooms_ok).then_some(answer)
}

fn parse_object(body: &[u8]) -> Option<BTreeMap<String, IgnoredAny>> {
    serde_json::from_slice(body).ok()
}

/// A JSON object's `data` field, raw (`Some(None)`: an object without one).
fn parse_data(body: &[u8]) -> Option<Option<Box<RawValue>>> {
    let mut fields: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(body).ok()?;
    Some(fields.remove("data"))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn answer(status: u16, body: &str) -> Outcome {
        Outcome::Answered {
            status,
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    const FAILURES: [Failure; 5] = [
        Failure::Timeout,
        Failure::Unreachable,
        Failure::ServerError(503),
        Failure::Busy,
        Failure::BadAnswer,
    ];

    #[test]
    fn connect_accepts_a_user_by_string_or_number() {
        match connect_verdict(answer(
            200,
            r#"{"user_id":"alice","rooms":["lobby","ops"],"data":{"plan":"pro"}}"#,
        )) {
            ConnectVerdict::Accept { user, rooms, data } => {
                assert_eq!(user, "alice");
                assert_eq!(rooms, ["lobby", "ops"]);
                assert_eq!(data.unwrap().get(), r#"{"plan":"pro"}"#);
            }
            other => panic!("{other:?}"),
        }
        match connect_verdict(answer(200, r#"{"user_id":42}"#)) {
            ConnectVerdict::Accept { user, rooms, data } => {
                assert_eq!(user, "42");
                assert!(rooms.is_empty());
                assert!(data.is_none());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn connect_fails_without_a_valid_user_and_passes_4xx_on() {
        let long = format!(r#"{{"user_id":"{}"}}"#, "u".repeat(129));
        for body in [
            "{}",
            r#"{"user_id":""}"#,
            r#"{"user_id":null}"#,
            r#"{"user_id":true}"#,
            r#"{"user_id":"a","rooms":["bad room"]}"#,
            r#"{"user_id":"a","rooms":"lobby"}"#,
            &long,
            "[]",
            "not json",
        ] {
            assert!(
                matches!(connect_verdict(answer(200, body)), ConnectVerdict::Fail),
                "{body}"
            );
            assert!(!well_formed(Hook::Connect, body.as_bytes()), "{body}");
        }
        match connect_verdict(answer(401, "token expired")) {
            ConnectVerdict::Refuse { status, body } => {
                assert_eq!((status, body.as_str()), (401, "token expired"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            connect_verdict(answer(403, "")),
            ConnectVerdict::Refuse { status: 403, .. }
        ));
        for other in [answer(204, ""), answer(302, ""), answer(500, "")] {
            assert!(matches!(connect_verdict(other), ConnectVerdict::Fail));
        }
        for failure in FAILURES {
            assert!(matches!(
                connect_verdict(Outcome::Failed(failure)),
                ConnectVerdict::Fail
            ));
        }
    }

    #[test]
    fn join_goes_ahead_on_200_only() {
        assert!(join_verdict(answer(200, "{}")));
        assert!(join_verdict(answer(200, r#"{"note":1}"#)));
        assert!(!join_verdict(answer(200, "ok")));
        assert!(!join_verdict(answer(403, "{}")));
        assert!(!join_verdict(answer(404, "{}")));
        for failure in FAILURES {
            assert!(!join_verdict(Outcome::Failed(failure)));
        }
    }

    #[test]
    fn publish_allows_replaces_or_refuses() {
        assert!(matches!(
            publish_verdict(answer(200, "{}")),
            PublishVerdict::Allow
        ));
        match publish_verdict(answer(200, r#"{"data":{"clean":true}}"#)) {
            PublishVerdict::Replace(data) => assert_eq!(data.get(), r#"{"clean":true}"#),
            other => panic!("{other:?}"),
        }
        match publish_verdict(answer(200, r#"{"data":null}"#)) {
            PublishVerdict::Replace(data) => assert_eq!(data.get(), "null"),
            other => panic!("{other:?}"),
        }
        for refused in [answer(200, "[]"), answer(403, "{}"), answer(400, "{}")] {
            assert!(matches!(publish_verdict(refused), PublishVerdict::Refuse));
        }
        for failure in FAILURES {
            assert!(matches!(
                publish_verdict(Outcome::Failed(failure)),
                PublishVerdict::Refuse
            ));
        }
    }

    #[test]
    fn rpc_answers_data_or_a_code() {
        assert_eq!(
            rpc_verdict(answer(200, r#"{"data":[1,2]}"#)).unwrap().get(),
            "[1,2]"
        );
        assert_eq!(
            rpc_verdict(answer(200, r#"{"data":null}"#)).unwrap().get(),
            "null"
        );
        let code = |outcome| rpc_verdict(outcome).unwrap_err();
        assert_eq!(code(answer(200, "{}")), "bad_answer");
        assert_eq!(code(answer(200, "nope")), "bad_answer");
        assert_eq!(code(answer(403, "{}")), "forbidden");
        assert_eq!(code(answer(404, "")), "status_404");
        assert_eq!(code(answer(204, "")), "status_204");
        assert_eq!(code(Outcome::Failed(Failure::Timeout)), "timeout");
        assert_eq!(code(Outcome::Failed(Failure::BadAnswer)), "bad_answer");
        for failure in [
            Failure::Unreachable,
            Failure::ServerError(502),
            Failure::Busy,
        ] {
            assert_eq!(code(Outcome::Failed(failure)), "unavailable");
        }
    }

    #[test]
    fn what_each_hook_takes_as_well_formed() {
        assert!(well_formed(Hook::Join, b"{}"));
        assert!(!well_formed(Hook::Join, b"null"));
        assert!(well_formed(Hook::Publish, b"{}"));
        assert!(well_formed(Hook::Publish, br#"{"data":1}"#));
        assert!(!well_formed(Hook::Publish, b"[]"));
        assert!(!well_formed(Hook::Rpc, b"{}"));
        assert!(well_formed(Hook::Rpc, br#"{"data":"x"}"#));
        assert!(well_formed(Hook::Connect, br#"{"user_id":"a"}"#));
    }
}
