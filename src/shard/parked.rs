//! Connections whose input the shard has stopped reading for now.
//!
//! Readiness comes once per change (see [`super::poller`]), so a connection not read to
//! the end must be remembered until it may be read again: the readers' resume task reads
//! the ones listed `again`; the others wait in their list until what they wait for
//! happens, and are then listed `again`. Each list holds a connection once, however many
//! events arrive for it meanwhile.

use indexmap::IndexSet;

use super::token::Token;

#[derive(Default)]
pub(crate) struct Parked {
    /// To read at the resume task's next turn: they gave up their turn with input left,
    /// or what they waited for has happened.
    again: IndexSet<Token>,
    /// Paused while the shard holds back messages for other shards.
    paused: IndexSet<Token>,
    /// Waiting on the answer to a question (or to the backend's connect hook).
    answering: IndexSet<Token>,
}

impl Parked {
    pub fn read_again(&mut self, token: Token) {
        self.again.insert(token);
    }

    pub fn pause(&mut self, token: Token) {
        self.paused.insert(token);
    }

    pub fn await_answer(&mut self, token: Token) {
        self.answering.insert(token);
    }

    /// The shard no longer holds back: the paused are read again. True if any was.
    pub fn unpause(&mut self) -> bool {
        let any = !self.paused.is_empty();
        self.again.extend(self.paused.drain(..));
        any
    }

    /// An answer came: those waiting on one look again whether it was theirs. True if
    /// any waited.
    pub fn answered(&mut self) -> bool {
        let any = !self.answering.is_empty();
        self.again.extend(self.answering.drain(..));
        any
    }

    /// Takes the ones to read again, leaving `spare`'s allocation in their place.
    pub fn take_again(&mut self, spare: IndexSet<Token>) -> IndexSet<Token> {
        std::mem::replace(&mut self.again, spare)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ConnectionId;

    fn token(key: usize) -> Token {
        Token::of(key, ConnectionId::new(0, key as u64 + 100))
    }

    #[test]
    fn each_list_holds_a_connection_once_and_moves_to_again_in_order() {
        let mut parked = Parked::default();
        for _ in 0..3 {
            parked.pause(token(2));
            parked.await_answer(token(5));
        }
        parked.pause(token(1));
        assert!(parked.unpause());
        assert!(!parked.unpause(), "nothing is paused any more");
        assert!(parked.answered());
        parked.read_again(token(2));
        let again = parked.take_again(IndexSet::new());
        assert_eq!(
            again.into_iter().collect::<Vec<_>>(),
            [token(2), token(1), token(5)]
        );
        assert!(parked.take_again(IndexSet::new()).is_empty());
    }

    #[test]
    fn a_token_names_the_slot_and_the_connection_in_it() {
        let old = Token::of(7, ConnectionId::new(0, 1));
        let new = Token::of(7, ConnectionId::new(0, 2));
        assert_eq!((old.key(), new.key()), (7, 7));
        assert_ne!(old, new, "a newer connection in the same slot");
    }
}
