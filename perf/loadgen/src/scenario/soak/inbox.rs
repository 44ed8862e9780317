//! What one client received in one room, checked as it arrives: exactly once and in order.
//!
//! Every message the soak publishes carries a stamp `STREAM:SEQ`: a stream is one
//! publisher's messages to one room, numbered from 0. The hub promises that one
//! publisher's messages reach every member in the order sent, exactly once; with history
//! on, also that a member sees the room's offsets `top + 1, top + 2, …` without a hole or a
//! repeat, `top` being what its `joined` said. [`Inbox`] checks both with memory per stream,
//! not per message.

use std::collections::HashMap;

use crate::offsets::OffsetTracker;

/// A message's stamp: which stream, which message of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub stream: u64,
    pub seq: u64,
}

impl Stamp {
    /// Writes `STREAM:SEQ`, padded with a space and `x` up to `bytes`.
    pub fn write(self, bytes: usize) -> String {
        let mut text = format!("{}:{}", self.stream, self.seq);
        if text.len() < bytes {
            text.push(' ');
            text.extend(std::iter::repeat_n('x', bytes - text.len()));
        }
        text
    }

    /// Reads the stamp at the front of a message text; `None` if it has none.
    pub fn parse(text: &str) -> Option<Stamp> {
        let head = text.split(' ').next()?;
        let (stream, seq) = head.split_once(':')?;
        Some(Stamp {
            stream: stream.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// Faults found in deliveries; all zero when the hub kept its promises.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Faults {
    /// Messages of a stream skipped (a later one came first and they never did).
    pub skipped: u64,
    /// Messages that came again, or after a later one of their stream.
    pub repeated: u64,
    /// Offsets skipped inside what was received.
    pub offset_gaps: u64,
    /// Offsets received twice, or after a later one.
    pub offset_repeats: u64,
    /// Positioned messages without an offset although the room's `joined` had one.
    pub without_offset: u64,
}

impl Faults {
    pub fn add(&mut self, o: &Faults) {
        self.skipped += o.skipped;
        self.repeated += o.repeated;
        self.offset_gaps += o.offset_gaps;
        self.offset_repeats += o.offset_repeats;
        self.without_offset += o.without_offset;
    }

    pub fn any(&self) -> bool {
        *self != Faults::default()
    }
}

/// One client's deliveries in one room.
#[derive(Debug)]
pub struct Inbox {
    /// The next sequence number expected per stream.
    next: HashMap<u64, u64>,
    /// A member from before the first publish: every stream must start at 0. A client
    /// that joined later takes each stream's first message as its start.
    from_start: bool,
    offsets: Option<OffsetTracker>,
    /// First deliveries, in order.
    pub unique: u64,
    faults: Faults,
}

impl Inbox {
    /// An inbox for a member whose `joined` gave `top` (history on) or nothing.
    pub fn new(from_start: bool, top: Option<u64>) -> Self {
        Self {
            next: HashMap::new(),
            from_start,
            offsets: top.map(OffsetTracker::after),
            unique: 0,
            faults: Faults::default(),
        }
    }

    /// Records one delivery; true when it is a first delivery.
    pub fn observe(&mut self, stamp: Stamp, offset: Option<u64>) -> bool {
        let start = if self.from_start { 0 } else { stamp.seq };
        let next = self.next.entry(stamp.stream).or_insert(start);
        let new = stamp.seq >= *next;
        if new {
            self.faults.skipped += stamp.seq - *next;
            *next = stamp.seq + 1;
            self.unique += 1;
        } else {
            self.faults.repeated += 1;
        }
        match (&mut self.offsets, offset) {
            (Some(tracker), Some(o)) => {
                tracker.observe(o);
            }
            (Some(_), None) => self.faults.without_offset += 1,
            (None, _) => {}
        }
        new
    }

    /// The faults found so far.
    pub fn faults(&self) -> Faults {
        let mut f = self.faults;
        if let Some(t) = &self.offsets {
            f.offset_gaps = t.missing_inside();
            f.offset_repeats = t.duplicates + t.reordered;
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(stream: u64, seq: u64) -> Stamp {
        Stamp { stream, seq }
    }

    #[test]
    fn stamps_round_trip() {
        let text = s(12, 345).write(20);
        assert_eq!(text.len(), 20);
        assert!(text.starts_with("12:345 x"));
        assert_eq!(Stamp::parse(&text), Some(s(12, 345)));
        assert_eq!(Stamp::parse(&s(1, 2).write(0)), Some(s(1, 2)));
        assert_eq!(Stamp::parse("hello"), None);
        assert_eq!(Stamp::parse("1:x"), None);
    }

    #[test]
    fn in_order_from_the_start() {
        let mut inbox = Inbox::new(true, Some(0));
        // Two streams interleaved: each in order, the room's offsets one by one.
        inbox.observe(s(1, 0), Some(1));
        inbox.observe(s(2, 0), Some(2));
        inbox.observe(s(1, 1), Some(3));
        assert_eq!(inbox.unique, 3);
        assert!(!inbox.faults().any(), "{:?}", inbox.faults());
    }

    #[test]
    fn finds_every_fault() {
        let mut inbox = Inbox::new(true, Some(10));
        inbox.observe(s(1, 1), Some(11)); // seq 0 of stream 1 skipped
        inbox.observe(s(1, 1), Some(11)); // repeated, offset repeated
        inbox.observe(s(1, 2), Some(14)); // offsets 12, 13 missing
        inbox.observe(s(1, 3), None);
        let f = inbox.faults();
        assert_eq!((f.skipped, f.repeated), (1, 1));
        assert_eq!(
            (f.offset_gaps, f.offset_repeats, f.without_offset),
            (2, 1, 1)
        );
        assert_eq!(inbox.unique, 3);
    }

    #[test]
    fn a_late_joiner_starts_each_stream_where_it_finds_it() {
        let mut inbox = Inbox::new(false, None);
        inbox.observe(s(7, 40), None);
        inbox.observe(s(7, 41), None);
        assert!(!inbox.faults().any());
        inbox.observe(s(7, 43), None);
        assert_eq!(inbox.faults().skipped, 1);
    }
}
