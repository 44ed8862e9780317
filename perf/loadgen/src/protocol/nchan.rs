//! nginx + nchan (`--protocol nchan`, perf/peers/nchan). Subscribers open a WebSocket on
//! `PATH/ROOM` (PATH from the URL, normally `/sub`): the upgrade subscribes them to the
//! channel, and every published message arrives raw, as its own text frame. Publishers
//! `POST` the message text to `/pub/ROOM` over HTTP/1.1 keep-alive; nchan answers `201` or
//! `202` with the channel's info. There is no join, leave or error message on the WebSocket.

use super::{HubProtocol, Incoming, PublishVia};
use crate::target::Target;

/// The nchan protocol.
#[derive(Debug, Clone, Default)]
pub struct Nchan;

impl HubProtocol for Nchan {
    fn request_target(&self, target: &Target, _user: &str, room: &str) -> String {
        let mut s = target.path.trim_end_matches('/').to_owned();
        s.push('/');
        s.push_str(room);
        if let Some(q) = &target.query {
            s.push('?');
            s.push_str(q);
        }
        s
    }

    fn joins_on_upgrade(&self) -> bool {
        true
    }

    fn encode_join(&self, _room: &str, _out: &mut Vec<u8>) {}

    fn encode_leave(&self, _room: &str, _out: &mut Vec<u8>) -> bool {
        false
    }

    fn publish_via(&self, _target: &Target, room: &str) -> PublishVia {
        PublishVia::HttpPost(format!("/pub/{room}"))
    }

    fn encode_publish(&self, _room: &str, message: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(message.as_bytes());
    }

    fn classify<'a>(&self, text: &'a [u8]) -> Incoming<'a> {
        Incoming::Chat {
            message: Some(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_messages() {
        let p = Nchan;
        let t = crate::target::parse("ws://127.0.0.1:3000/sub").unwrap();
        assert_eq!(p.request_target(&t, "u", "bench"), "/sub/bench");
        let t = crate::target::parse("ws://127.0.0.1:3000/sub/").unwrap();
        assert_eq!(p.request_target(&t, "u", "bench"), "/sub/bench");
        assert_eq!(
            p.publish_via(&t, "bench"),
            PublishVia::HttpPost("/pub/bench".into())
        );
        assert!(p.joins_on_upgrade());
        assert_eq!(
            p.classify(b"1:2 x"),
            Incoming::Chat {
                message: Some(&b"1:2 x"[..])
            }
        );
    }
}
