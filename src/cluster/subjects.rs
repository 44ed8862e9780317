//! The NATS subjects of a hub, all under `cluster.subject_prefix` (`P` below):
//!
//! | subject | who subscribes | what travels |
//! | --- | --- | --- |
//! | `P.room.<room>` | every node with members of the room, while it has them | the room's frames |
//! | `P.all` | every node | frames for every connection |
//! | `P.events` | every node | connection events and heartbeats ([`super::wire`]) |
//! | `P.node.<tag>.deliver` | node `<tag>` | frames for one of its users or connections |
//! | `P.node.<tag>.snapshot` | node `<tag>` | requests for a snapshot of its connections |
//! | `P.node.<tag>.command` | node `<tag>` | commands for its connections ([`super::command`]) |
//! | `P.history.<room>` | the JetStream stream `P_history` | the room's positioned messages, with history on ([`super::journal`]) |
//!
//! A room name may hold dots, which NATS reads as token separators; in a subject each dot
//! is written `%2E` (a room name has no `%` of its own), so every room is one token.

/// The subjects of one hub.
#[derive(Debug, Clone)]
pub(crate) struct Subjects {
    prefix: String,
}

impl Subjects {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub fn room(&self, name: &str) -> String {
        format!("{}.room.{}", self.prefix, name.replace('.', "%2E"))
    }

    pub fn all(&self) -> String {
        format!("{}.all", self.prefix)
    }

    pub fn events(&self) -> String {
        format!("{}.events", self.prefix)
    }

    pub fn deliver(&self, node: u16) -> String {
        format!("{}.node.{node}.deliver", self.prefix)
    }

    /// The subject of a room's positioned messages in the journal.
    pub fn history(&self, room: &str) -> String {
        format!("{}.history.{}", self.prefix, room.replace('.', "%2E"))
    }

    /// Every room's subject in the journal.
    pub fn history_all(&self) -> String {
        format!("{}.history.>", self.prefix)
    }

    /// The name of the journal's JetStream stream (a name holds no dot).
    pub fn journal(&self) -> String {
        format!("{}_history", self.prefix.replace('.', "_"))
    }

    pub fn command(&self, node: u16) -> String {
        format!("{}.node.{node}.command", self.prefix)
    }

    pub fn snapshot(&self, node: u16) -> String {
        format!("{}.node.{node}.snapshot", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_room_is_one_token() {
        let s = Subjects::new("acme.neonex");
        assert_eq!(s.room("general"), "acme.neonex.room.general");
        assert_eq!(s.room("a.b"), "acme.neonex.room.a%2Eb");
        assert_eq!(s.room(".x."), "acme.neonex.room.%2Ex%2E");
        assert_eq!(s.deliver(7), "acme.neonex.node.7.deliver");
        assert_eq!(s.history("a.b"), "acme.neonex.history.a%2Eb");
        assert_eq!(s.journal(), "acme_neonex_history");
    }
}
