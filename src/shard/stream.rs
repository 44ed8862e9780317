//! One room's stream, as its home shard keeps it: the offsets it has handed out, its
//! epoch, and the positioned messages it still holds, each as the very frame its
//! recipients got (a replay is never encoded again).
//!
//! Offsets start at 1 and grow by one per positioned message. The held messages are the
//! newest ones, contiguous, at most `history.size` of them and none older than
//! `history.ttl`: what a recovery may replay.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::protocol::Recover;
use crate::room::Room;
use crate::stats::RecoveryOutcome;

/// Why a recovery could not be made whole (it is never made in part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecoveryFailure {
    /// The client's epoch is not the stream's, or its offset is past the stream's top:
    /// it saw another stream.
    Epoch,
    /// Some message after the client's offset is no longer held (the ring passed it, or
    /// it expired).
    Gap,
    /// More messages were missed than `history.max_recover`.
    TooMany,
}

impl From<RecoveryFailure> for RecoveryOutcome {
    fn from(failure: RecoveryFailure) -> Self {
        match failure {
            RecoveryFailure::Epoch => RecoveryOutcome::Epoch,
            RecoveryFailure::Gap => RecoveryOutcome::Gap,
            RecoveryFailure::TooMany => RecoveryOutcome::TooMany,
        }
    }
}

/// A positioned message the stream still holds.
struct Held {
    offset: u64,
    frame: Bytes,
    at: Instant,
}

pub(crate) struct Stream {
    epoch: Arc<str>,
    /// The incarnation of the room the stream serves now.
    pub room: Arc<Room>,
    /// The last offset handed out; 0 before the first.
    top: u64,
    held: VecDeque<Held>,
    bytes: usize,
}

/// Characters of an epoch: 62^8 possibilities, enough that two lifetimes of one room
/// never share one.
const EPOCH_LEN: usize = 8;

/// A fresh random epoch.
pub(crate) fn new_epoch() -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(EPOCH_LEN)
        .collect()
}

impl Stream {
    /// A new stream for `room`, with a fresh random epoch and nothing in it.
    pub fn new(room: Arc<Room>) -> Self {
        Self {
            epoch: new_epoch().into(),
            room,
            top: 0,
            held: VecDeque::new(),
            bytes: 0,
        }
    }

    /// The stream of `room` as another holder (the cluster's journal) numbers it: epoch
    /// `epoch`, at offset `top`, holding nothing yet.
    pub fn resumed(room: Arc<Room>, epoch: Arc<str>, top: u64) -> Self {
        Self {
            epoch,
            room,
            top,
            held: VecDeque::new(),
            bytes: 0,
        }
    }

    /// True if every message after `since` up to the top is held.
    pub fn holds_after(&self, since: u64) -> bool {
        since >= self.top || self.held.front().is_some_and(|h| h.offset <= since + 1)
    }

    pub fn epoch(&self) -> &Arc<str> {
        &self.epoch
    }

    /// The last offset handed out.
    pub fn top(&self) -> u64 {
        self.top
    }

    /// The offset the next message gets.
    pub fn next_offset(&self) -> u64 {
        self.top + 1
    }

    /// Messages and bytes held.
    pub fn usage(&self) -> (usize, usize) {
        (self.held.len(), self.bytes)
    }

    /// Takes the message at [`Stream::next_offset`], whose frame is `frame`, keeping at
    /// most `size` messages.
    pub fn append(&mut self, frame: Bytes, now: Instant, size: usize) {
        self.top += 1;
        self.bytes += frame.len();
        self.held.push_back(Held {
            offset: self.top,
            frame,
            at: now,
        });
        while self.held.len() > size {
            self.drop_oldest();
        }
    }

    /// Lets go of the messages older than `ttl`.
    pub fn expire(&mut self, now: Instant, ttl: Duration) {
        while self
            .held
            .front()
            .is_some_and(|h| now.saturating_duration_since(h.at) > ttl)
        {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some(old) = self.held.pop_front() {
            self.bytes -= old.frame.len();
        }
    }

    /// Every message after `from.offset`, in order, if the client's epoch is this one and
    /// each of them is held, and there are at most `max`; otherwise why not.
    pub fn recover(&self, from: &Recover, max: usize) -> Result<Vec<Bytes>, RecoveryFailure> {
        if *from.epoch != *self.epoch || from.offset > self.top {
            return Err(RecoveryFailure::Epoch);
        }
        let missed = self.top - from.offset;
        if missed == 0 {
            return Ok(Vec::new());
        }
        if missed > max as u64 {
            return Err(RecoveryFailure::TooMany);
        }
        let Some(oldest) = self.held.front().map(|h| h.offset) else {
            return Err(RecoveryFailure::Gap);
        };
        if oldest > from.offset + 1 {
            return Err(RecoveryFailure::Gap);
        }
        let skip = (from.offset + 1 - oldest) as usize;
        Ok(self
            .held
            .iter()
            .skip(skip)
            .map(|h| h.frame.clone())
            .collect())
    }

    /// The held messages after offset `since`, oldest first, at most `limit`, with their
    /// offsets.
    pub fn read(&self, since: u64, limit: usize) -> Vec<(u64, Bytes)> {
        let skip = self.held.front().map_or(0, |h| {
            since.saturating_add(1).saturating_sub(h.offset) as usize
        });
        self.held
            .iter()
            .skip(skip)
            .take(limit)
            .map(|h| (h.offset, h.frame.clone()))
            .collect()
    }

    /// True when the stream holds nothing.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> Stream {
        Stream::new(Arc::new(Room::new(1, "r".into(), true, 1, false)))
    }

    fn frame(n: u64) -> Bytes {
        Bytes::from(format!("m{n}"))
    }

    fn fill(s: &mut Stream, n: u64, size: usize, now: Instant) {
        for _ in 0..n {
            let next = s.next_offset();
            s.append(frame(next), now, size);
        }
    }

    fn from(s: &Stream, offset: u64) -> Recover {
        Recover {
            offset,
            epoch: s.epoch().to_string(),
        }
    }

    #[test]
    fn offsets_count_from_one_and_the_ring_keeps_the_newest() {
        let mut s = stream();
        let now = Instant::now();
        assert_eq!(s.next_offset(), 1);
        fill(&mut s, 5, 3, now);
        assert_eq!(s.top(), 5);
        assert_eq!(s.usage(), (3, 6));
        let read: Vec<u64> = s.read(0, 10).into_iter().map(|(o, _)| o).collect();
        assert_eq!(read, [3, 4, 5]);
        assert_eq!(s.read(3, 1)[0], (4, frame(4)));
        assert!(s.read(5, 10).is_empty());
    }

    #[test]
    fn recovery_is_whole_or_refused_with_its_reason() {
        let mut s = stream();
        let now = Instant::now();
        fill(&mut s, 10, 5, now);
        assert_eq!(
            s.recover(&from(&s, 7), 300).unwrap(),
            [frame(8), frame(9), frame(10)]
        );
        assert_eq!(s.recover(&from(&s, 5), 300).unwrap().len(), 5);
        assert!(s.recover(&from(&s, 10), 300).unwrap().is_empty());
        assert_eq!(s.recover(&from(&s, 4), 300), Err(RecoveryFailure::Gap));
        assert_eq!(s.recover(&from(&s, 7), 2), Err(RecoveryFailure::TooMany));
        assert_eq!(s.recover(&from(&s, 11), 300), Err(RecoveryFailure::Epoch));
        let other = Recover {
            offset: 9,
            epoch: "another".into(),
        };
        assert_eq!(s.recover(&other, 300), Err(RecoveryFailure::Epoch));
    }

    #[test]
    fn expired_messages_leave_a_gap_but_keep_the_top() {
        let mut s = stream();
        let start = Instant::now();
        fill(&mut s, 3, 100, start);
        fill(&mut s, 2, 100, start + Duration::from_secs(5));
        s.expire(start + Duration::from_secs(8), Duration::from_secs(4));
        assert_eq!(s.usage().0, 2);
        assert_eq!(s.recover(&from(&s, 2), 300), Err(RecoveryFailure::Gap));
        assert_eq!(s.recover(&from(&s, 3), 300).unwrap().len(), 2);
        s.expire(start + Duration::from_secs(20), Duration::from_secs(4));
        assert!(s.is_empty());
        assert_eq!(s.top(), 5);
        assert!(s.recover(&from(&s, 5), 300).unwrap().is_empty());
    }

    #[test]
    fn every_stream_has_its_own_epoch() {
        assert_ne!(stream().epoch(), stream().epoch());
        assert_eq!(stream().epoch().len(), EPOCH_LEN);
    }
}
