//! What the soak's clients read from the hub: each server message parsed whole (serde), as
//! the soak's clients are in several rooms and need the room of every message. The soak's
//! rates are modest, so the parse costs little next to the hub's work.

use std::borrow::Cow;

use serde::Deserialize;

use super::inbox::Stamp;

/// A server message, as far as the soak cares.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerMsg {
    /// Our join took effect; `offset` is the room's top (history on).
    Joined { room: String, offset: Option<u64> },
    /// Our leave took effect.
    Left { room: String },
    /// A chat message or an API publication with our stamp.
    Positioned {
        room: String,
        stamp: Stamp,
        offset: Option<u64>,
    },
    /// A chat message or publication without our stamp.
    Foreign,
    /// An `error`: the whole text.
    Error(String),
    /// Notices (welcome, user_joined, presence, …).
    Other,
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    room: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    data: Option<PublicationData<'a>>,
    #[serde(default)]
    offset: Option<u64>,
}

/// The body the soak's API publisher sends: `{"stamp":"STREAM:SEQ"}`.
#[derive(Deserialize)]
struct PublicationData<'a> {
    #[serde(default, borrow)]
    stamp: Option<Cow<'a, str>>,
}

/// The JSON body of an API publication of `stamp`.
pub fn publication_body(stamp: Stamp) -> String {
    format!(r#"{{"stamp":"{}:{}"}}"#, stamp.stream, stamp.seq)
}

/// Parses one server text message.
pub fn parse(text: &[u8]) -> ServerMsg {
    let Ok(raw) = serde_json::from_slice::<Raw>(text) else {
        return ServerMsg::Other;
    };
    let room = || raw.room.as_deref().unwrap_or_default().to_owned();
    let stamped = |s: Option<&str>| match s.and_then(Stamp::parse) {
        Some(stamp) => ServerMsg::Positioned {
            room: room(),
            stamp,
            offset: raw.offset,
        },
        None => ServerMsg::Foreign,
    };
    match &*raw.kind {
        "joined" => ServerMsg::Joined {
            room: room(),
            offset: raw.offset,
        },
        "left" => ServerMsg::Left { room: room() },
        "chat_message" => stamped(raw.message.as_deref()),
        "publication" => stamped(raw.data.as_ref().and_then(|d| d.stamp.as_deref())),
        "error" => ServerMsg::Error(String::from_utf8_lossy(text).into_owned()),
        _ => ServerMsg::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_soak_reads() {
        let stamp = Stamp { stream: 3, seq: 9 };
        let chat = br#"{"type":"chat_message","room":"r1","user_id":"u","message":"3:9 xx","time":1,"offset":12}"#;
        assert_eq!(
            parse(chat),
            ServerMsg::Positioned {
                room: "r1".into(),
                stamp,
                offset: Some(12)
            }
        );
        let body = publication_body(stamp);
        let publication =
            format!(r#"{{"type":"publication","room":"f","data":{body},"time":1,"offset":4}}"#);
        assert_eq!(
            parse(publication.as_bytes()),
            ServerMsg::Positioned {
                room: "f".into(),
                stamp,
                offset: Some(4)
            }
        );
        assert_eq!(
            parse(br#"{"type":"joined","room":"r","count":2,"epoch":"e","offset":7}"#),
            ServerMsg::Joined {
                room: "r".into(),
                offset: Some(7)
            }
        );
        assert_eq!(
            parse(br#"{"type":"joined","room":"r","count":2}"#),
            ServerMsg::Joined {
                room: "r".into(),
                offset: None
            }
        );
        assert_eq!(
            parse(br#"{"type":"left","room":"r","count":1}"#),
            ServerMsg::Left { room: "r".into() }
        );
        let foreign =
            br#"{"type":"chat_message","room":"r","user_id":"u","message":"hi","time":1}"#;
        assert_eq!(parse(foreign), ServerMsg::Foreign);
        assert!(matches!(
            parse(br#"{"type":"error","code":"x","error":"y"}"#),
            ServerMsg::Error(_)
        ));
        assert_eq!(
            parse(br#"{"type":"user_joined","room":"r","user_id":"u","count":3}"#),
            ServerMsg::Other
        );
        assert_eq!(parse(b"not json"), ServerMsg::Other);
    }
}
