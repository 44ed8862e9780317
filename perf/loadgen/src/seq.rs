//! Per-subscriber sequence tracking: detects lost, duplicated and reordered deliveries of one
//! publisher's numbered messages with O(1) memory while the server behaves (messages from
//! one publisher arrive in order), and stays exact when it does not.

/// Gaps remembered per subscriber; past this the oldest gap is written off as lost.
const MAX_GAPS: usize = 4096;

/// What one delivery was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First delivery, in order.
    New,
    /// First delivery, but after a later message (it fills a gap).
    Late,
    /// Already delivered before.
    Duplicate,
}

/// The sequence numbers one subscriber received.
#[derive(Debug, Default, Clone)]
pub struct SeqTracker {
    next: u64,
    /// Missing ranges `[from, to)` below `next`, oldest first.
    gaps: Vec<(u64, u64)>,
    written_off: u64,
    /// Deliveries seen a second time (or more).
    pub duplicates: u64,
    /// First deliveries that arrived after a later message.
    pub late: u64,
}

impl SeqTracker {
    /// Records delivery of `seq`.
    pub fn observe(&mut self, seq: u64) -> Seen {
        if seq == self.next {
            self.next += 1;
            return Seen::New;
        }
        if seq > self.next {
            if self.gaps.len() == MAX_GAPS {
                let (a, b) = self.gaps.remove(0);
                self.written_off += b - a;
            }
            self.gaps.push((self.next, seq));
            self.next = seq + 1;
            return Seen::New;
        }
        if let Some(i) = self.gaps.iter().rposition(|&(a, b)| a <= seq && seq < b) {
            let (a, b) = self.gaps[i];
            match (a < seq, seq + 1 < b) {
                (false, false) => {
                    self.gaps.remove(i);
                }
                (true, false) => self.gaps[i] = (a, seq),
                (false, true) => self.gaps[i] = (seq + 1, b),
                (true, true) => {
                    self.gaps[i] = (a, seq);
                    self.gaps.insert(i + 1, (seq + 1, b));
                }
            }
            self.late += 1;
            return Seen::Late;
        }
        self.duplicates += 1;
        Seen::Duplicate
    }

    /// Messages `0..published` that never arrived.
    pub fn lost(&self, published: u64) -> u64 {
        let in_gaps: u64 = self
            .gaps
            .iter()
            .map(|&(a, b)| b.min(published).saturating_sub(a))
            .sum();
        in_gaps + self.written_off + published.saturating_sub(self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order() {
        let mut t = SeqTracker::default();
        for s in 0..100 {
            assert_eq!(t.observe(s), Seen::New);
        }
        assert_eq!(t.lost(100), 0);
        assert_eq!(t.lost(103), 3);
        assert_eq!(t.duplicates, 0);
    }

    #[test]
    fn gaps_late_and_duplicates() {
        let mut t = SeqTracker::default();
        for s in [0, 1, 5, 6, 3, 9] {
            assert_ne!(t.observe(s), Seen::Duplicate);
        }
        // missing: 2, 4, 7, 8
        assert_eq!(t.lost(10), 4);
        assert_eq!(t.late, 1);
        assert_eq!(t.observe(3), Seen::Duplicate);
        assert_eq!(t.observe(9), Seen::Duplicate);
        assert_eq!(t.observe(7), Seen::Late);
        assert_eq!(t.observe(8), Seen::Late);
        assert_eq!(t.observe(2), Seen::Late);
        assert_eq!(t.observe(4), Seen::Late);
        assert_eq!(t.lost(10), 0);
        assert_eq!(t.duplicates, 2);
        assert_eq!(t.late, 5);
    }

    #[test]
    fn bounded_gaps() {
        let mut t = SeqTracker::default();
        for s in (0..(MAX_GAPS as u64 + 10) * 2).step_by(2) {
            t.observe(s);
        }
        assert!(t.gaps.len() <= MAX_GAPS);
        let published = (MAX_GAPS as u64 + 10) * 2;
        assert_eq!(t.lost(published), published / 2);
    }
}
