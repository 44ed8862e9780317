//! Checking a room's offsets (neonex with history on, PROTOCOL.md "Version 1.1 additions"):
//! every positioned message a member receives carries `"offset": N`, one more per message in
//! the room, and `joined` gives the room's top when the join took effect. A member must then
//! see `top + 1, top + 2, …` with no gap and no duplicate, across a drop and a recovery too.
//!
//! [`OffsetTracker`] follows one member's offsets in one room with O(1) memory while the
//! server keeps its promise, and stays exact (up to a bound on remembered gaps) when not.

/// Gaps remembered per member; past this the oldest gap is written off (still counted).
const MAX_GAPS: usize = 4096;

/// What one received offset was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSeen {
    /// The next one expected.
    Next,
    /// Later than expected: the offsets in between (`missing` of them) were skipped.
    Gap {
        /// Offsets skipped.
        missing: u64,
    },
    /// One that had been skipped, arriving late (the order was broken).
    Late,
    /// One already received, or one at or below the top the tracker started after.
    Duplicate,
}

/// The offsets one member received in one room.
#[derive(Debug, Clone)]
pub struct OffsetTracker {
    /// The next offset expected.
    next: u64,
    /// Skipped ranges `[from, to)` below `next`, oldest first.
    gaps: Vec<(u64, u64)>,
    /// Skipped offsets of gaps forgotten past [`MAX_GAPS`].
    written_off: u64,
    /// Offsets given up on purpose by [`skip_to`](Self::skip_to) (a recovery the server
    /// refused): not missing, not received.
    pub skipped: u64,
    /// Times an offset came later than the next expected (each gap counts once).
    pub gap_events: u64,
    /// Offsets received again (or at or below the starting top).
    pub duplicates: u64,
    /// Skipped offsets that arrived afterwards.
    pub reordered: u64,
    /// The first gap: (expected, got).
    pub first_gap: Option<(u64, u64)>,
    /// The first duplicate offset: (offset, next expected then).
    pub first_duplicate: Option<(u64, u64)>,
}

impl OffsetTracker {
    /// A tracker for a member whose `joined` said `top`: it expects `top + 1` next.
    pub fn after(top: u64) -> Self {
        Self {
            next: top.saturating_add(1),
            gaps: Vec::new(),
            written_off: 0,
            skipped: 0,
            gap_events: 0,
            duplicates: 0,
            reordered: 0,
            first_gap: None,
            first_duplicate: None,
        }
    }

    /// The highest offset received so far (or the starting top).
    pub fn last(&self) -> u64 {
        self.next - 1
    }

    /// Records receipt of `offset`.
    pub fn observe(&mut self, offset: u64) -> OffsetSeen {
        if offset == self.next {
            self.next += 1;
            return OffsetSeen::Next;
        }
        if offset > self.next {
            let missing = offset - self.next;
            if self.gaps.len() == MAX_GAPS {
                let (a, b) = self.gaps.remove(0);
                self.written_off += b - a;
            }
            self.gaps.push((self.next, offset));
            self.first_gap.get_or_insert((self.next, offset));
            self.gap_events += 1;
            self.next = offset + 1;
            return OffsetSeen::Gap { missing };
        }
        if let Some(i) = self
            .gaps
            .iter()
            .rposition(|&(a, b)| a <= offset && offset < b)
        {
            let (a, b) = self.gaps[i];
            match (a < offset, offset + 1 < b) {
                (false, false) => {
                    self.gaps.remove(i);
                }
                (true, false) => self.gaps[i] = (a, offset),
                (false, true) => self.gaps[i] = (offset + 1, b),
                (true, true) => {
                    self.gaps[i] = (a, offset);
                    self.gaps.insert(i + 1, (offset + 1, b));
                }
            }
            self.reordered += 1;
            return OffsetSeen::Late;
        }
        self.duplicates += 1;
        self.first_duplicate.get_or_insert((offset, self.next));
        OffsetSeen::Duplicate
    }

    /// Gives up the offsets up to `top` that were not received yet (the server answered a
    /// recovery with `recovered:false`: they will not come). They count as
    /// [`skipped`](Self::skipped), not as missing; the tracker expects `top + 1` next.
    pub fn skip_to(&mut self, top: u64) {
        if top >= self.next {
            self.skipped += top + 1 - self.next;
            self.next = top + 1;
        }
    }

    /// Offsets skipped between those received (not counting the tail after the last one).
    pub fn missing_inside(&self) -> u64 {
        self.written_off + self.gaps.iter().map(|&(a, b)| b - a).sum::<u64>()
    }

    /// True when the offsets received so far have no hole and no repeat.
    pub fn contiguous(&self) -> bool {
        self.missing_inside() == 0 && self.duplicates == 0 && self.reordered == 0
    }
}

/// Totals of many trackers (one worker thread's members, then the whole run's).
#[derive(Debug, Clone, Default)]
pub struct OffsetTotals {
    /// Trackers added.
    pub members: u64,
    /// Offsets missing (inside, plus the tail up to the final top once known).
    pub missing: u64,
    /// Gaps (each jump forward counts once).
    pub gap_events: u64,
    /// Offsets received twice or more.
    pub duplicates: u64,
    /// Skipped offsets that arrived late.
    pub reordered: u64,
    /// Offsets given up after a refused recovery.
    pub skipped: u64,
    /// Members with at least one missing offset.
    pub members_with_gaps: u64,
    /// Members with at least one duplicate.
    pub members_with_duplicates: u64,
    /// Each member's last offset, and whether it was already counted in
    /// `members_with_gaps`: to count the tails once the room's final top is known.
    pub lasts: Vec<(u64, bool)>,
    /// Chat messages that came without an offset.
    pub without_offset: u64,
    /// The first gap: "member I: expected E, got G".
    pub first_gap: Option<String>,
    /// The first duplicate: "member I: offset O again (expected E)".
    pub first_duplicate: Option<String>,
}

impl OffsetTotals {
    /// Adds member `who`'s tracker (its tail is counted later, by [`finish`](Self::finish)).
    pub fn add(&mut self, who: &str, t: &OffsetTracker, without_offset: u64) {
        self.members += 1;
        let inside = t.missing_inside();
        self.missing += inside;
        self.gap_events += t.gap_events;
        self.duplicates += t.duplicates;
        self.reordered += t.reordered;
        self.skipped += t.skipped;
        self.members_with_duplicates += u64::from(t.duplicates > 0);
        self.members_with_gaps += u64::from(inside > 0);
        self.lasts.push((t.last(), inside > 0));
        self.without_offset += without_offset;
        if let (None, Some((expected, got))) = (&self.first_gap, t.first_gap) {
            self.first_gap = Some(format!("{who}: expected offset {expected}, got {got}"));
        }
        if let (None, Some((offset, expected))) = (&self.first_duplicate, t.first_duplicate) {
            self.first_duplicate = Some(format!(
                "{who}: offset {offset} again (expected {expected})"
            ));
        }
    }

    /// Merges another set of totals.
    pub fn merge(&mut self, other: &OffsetTotals) {
        self.members += other.members;
        self.missing += other.missing;
        self.gap_events += other.gap_events;
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
        self.skipped += other.skipped;
        self.members_with_gaps += other.members_with_gaps;
        self.members_with_duplicates += other.members_with_duplicates;
        self.lasts.extend_from_slice(&other.lasts);
        self.without_offset += other.without_offset;
        if self.first_gap.is_none() {
            self.first_gap.clone_from(&other.first_gap);
        }
        if self.first_duplicate.is_none() {
            self.first_duplicate.clone_from(&other.first_duplicate);
        }
    }

    /// Counts every member's tail: the offsets after its last one up to `top`, the room's
    /// final top. Call once, after every member was added.
    pub fn finish(&mut self, top: u64) {
        for (last, counted) in std::mem::take(&mut self.lasts) {
            let tail = top.saturating_sub(last);
            if tail > 0 {
                self.missing += tail;
                self.gap_events += 1;
                self.members_with_gaps += u64::from(!counted);
                if self.first_gap.is_none() {
                    self.first_gap = Some(format!(
                        "a member's last offset was {last}, the room's top is {top}"
                    ));
                }
            }
        }
    }
}

/// The offset check of a run, in its report (JSON key `history`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct OffsetReport {
    /// The room's epoch, from the first `joined`.
    pub epoch: Option<String>,
    /// `joined` messages that named another epoch than the first one.
    pub epoch_changes: u64,
    /// The room's final top offset (the highest offset any connection received).
    pub top_offset: u64,
    /// Members whose offsets were checked.
    pub members: u64,
    /// Offsets that never reached a member (between those it got, and after its last one up
    /// to `top_offset`), summed over members.
    pub offsets_missing: u64,
    /// Gaps: each run of missing offsets of one member counts once.
    pub offset_gaps: u64,
    /// Offsets a member received a second time.
    pub offset_duplicates: u64,
    /// Missing offsets that arrived after a later one.
    pub offsets_reordered: u64,
    /// Members with at least one gap.
    pub members_with_gaps: u64,
    /// Members with at least one duplicate.
    pub members_with_duplicates: u64,
    /// Chat messages that carried no offset.
    pub messages_without_offset: u64,
    /// The first gap seen.
    pub first_gap: Option<String>,
    /// The first duplicate seen.
    pub first_duplicate: Option<String>,
}

impl OffsetReport {
    /// The report of `totals`, already [`finish`](OffsetTotals::finish)ed with `top`.
    pub fn new(totals: &OffsetTotals, top: u64, epoch: Option<String>, epoch_changes: u64) -> Self {
        Self {
            epoch,
            epoch_changes,
            top_offset: top,
            members: totals.members,
            offsets_missing: totals.missing,
            offset_gaps: totals.gap_events,
            offset_duplicates: totals.duplicates,
            offsets_reordered: totals.reordered,
            members_with_gaps: totals.members_with_gaps,
            members_with_duplicates: totals.members_with_duplicates,
            messages_without_offset: totals.without_offset,
            first_gap: totals.first_gap.clone(),
            first_duplicate: totals.first_duplicate.clone(),
        }
    }

    /// Every member got every offset once, in order, in one epoch.
    pub fn ok(&self) -> bool {
        self.offsets_missing == 0
            && self.offset_duplicates == 0
            && self.offsets_reordered == 0
            && self.messages_without_offset == 0
            && self.epoch_changes == 0
    }

    /// The rows of a human report, one `row(name, value)` each; `members` names them.
    pub fn print_rows(&self, row: &dyn Fn(&str, String), members: &str) {
        row(
            "history offsets",
            format!(
                "epoch {}, top {}, {} {members} checked",
                self.epoch.as_deref().unwrap_or("-"),
                self.top_offset,
                self.members
            ),
        );
        row(
            "offset gaps / missing",
            format!(
                "{} / {} ({} {members} with gaps)",
                self.offset_gaps, self.offsets_missing, self.members_with_gaps
            ),
        );
        row(
            "offset duplicates / reordered",
            format!(
                "{} / {} ({} {members} with duplicates)",
                self.offset_duplicates, self.offsets_reordered, self.members_with_duplicates
            ),
        );
        if self.messages_without_offset > 0 || self.epoch_changes > 0 {
            row(
                "without offset / epoch changes",
                format!("{} / {}", self.messages_without_offset, self.epoch_changes),
            );
        }
        for (k, v) in [
            ("first offset gap", &self.first_gap),
            ("first offset duplicate", &self.first_duplicate),
        ] {
            if let Some(v) = v {
                row(k, v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl OffsetTracker {
        /// Offsets up to `top` that never arrived: inside, and the tail after the last.
        fn missing_to(&self, top: u64) -> u64 {
            self.missing_inside() + top.saturating_sub(self.last())
        }
    }

    #[test]
    fn contiguous_from_the_joined_top() {
        let mut t = OffsetTracker::after(41);
        assert_eq!(t.last(), 41);
        for o in 42..142 {
            assert_eq!(t.observe(o), OffsetSeen::Next);
        }
        assert!(t.contiguous());
        assert_eq!(t.last(), 141);
        assert_eq!(t.missing_to(141), 0);
        assert_eq!(t.missing_to(145), 4);
        let fresh = OffsetTracker::after(0);
        assert_eq!(fresh.missing_to(3), 3);
    }

    #[test]
    fn gap() {
        let mut t = OffsetTracker::after(0);
        assert_eq!(t.observe(1), OffsetSeen::Next);
        assert_eq!(t.observe(2), OffsetSeen::Next);
        assert_eq!(t.observe(5), OffsetSeen::Gap { missing: 2 });
        assert_eq!(t.observe(6), OffsetSeen::Next);
        assert_eq!(t.observe(9), OffsetSeen::Gap { missing: 2 });
        assert!(!t.contiguous());
        assert_eq!((t.gap_events, t.missing_inside()), (2, 4));
        assert_eq!(t.first_gap, Some((3, 5)));
        assert_eq!(t.missing_to(10), 5);
        // A late one fills part of a gap: reordered, no longer missing.
        assert_eq!(t.observe(4), OffsetSeen::Late);
        assert_eq!(t.observe(7), OffsetSeen::Late);
        assert_eq!(t.observe(8), OffsetSeen::Late);
        assert_eq!((t.missing_inside(), t.reordered, t.duplicates), (1, 3, 0));
        assert_eq!(t.observe(3), OffsetSeen::Late);
        assert_eq!(t.missing_inside(), 0);
        assert!(!t.contiguous(), "reordered is not contiguous");
    }

    #[test]
    fn duplicate() {
        let mut t = OffsetTracker::after(10);
        // At or below the top the member joined after: it should never come.
        assert_eq!(t.observe(10), OffsetSeen::Duplicate);
        assert_eq!(t.first_duplicate, Some((10, 11)));
        assert_eq!(t.observe(11), OffsetSeen::Next);
        assert_eq!(t.observe(12), OffsetSeen::Next);
        assert_eq!(t.observe(12), OffsetSeen::Duplicate);
        assert_eq!(t.observe(11), OffsetSeen::Duplicate);
        assert_eq!(t.observe(13), OffsetSeen::Next);
        assert_eq!((t.duplicates, t.missing_inside(), t.last()), (3, 0, 13));
        assert!(!t.contiguous());
        // A gap's own end offset is no duplicate; a filled gap's offset, again, is.
        assert_eq!(t.observe(15), OffsetSeen::Gap { missing: 1 });
        assert_eq!(t.observe(14), OffsetSeen::Late);
        assert_eq!(t.observe(14), OffsetSeen::Duplicate);
        assert_eq!(t.duplicates, 4);
    }

    #[test]
    fn recovery_across_a_drop_and_a_refused_one() {
        // Saw 1..=20, dropped, recovered: the replay 21..=30 then live 31.. continue it.
        let mut t = OffsetTracker::after(0);
        (1..=20).for_each(|o| assert_eq!(t.observe(o), OffsetSeen::Next));
        (21..=35).for_each(|o| assert_eq!(t.observe(o), OffsetSeen::Next));
        assert!(t.contiguous());
        // Refused (recovered:false, top 50): 36..=50 are given up, not missing.
        t.skip_to(50);
        assert_eq!((t.skipped, t.last(), t.missing_to(50)), (15, 50, 0));
        assert_eq!(t.observe(51), OffsetSeen::Next);
        // A replay after a refusal would be a repeat of what was given up.
        assert_eq!(t.observe(40), OffsetSeen::Duplicate);
        // skip_to below what was received changes nothing.
        t.skip_to(20);
        assert_eq!((t.skipped, t.last()), (15, 51));
    }

    #[test]
    fn bounded_gaps() {
        let mut t = OffsetTracker::after(0);
        let n = (MAX_GAPS as u64 + 10) * 2;
        for o in (2..=n).step_by(2) {
            t.observe(o);
        }
        assert!(t.gaps.len() <= MAX_GAPS);
        assert_eq!(t.missing_inside(), n / 2);
        assert_eq!(t.gap_events, n / 2);
    }

    #[test]
    fn totals_count_tails_once_the_top_is_known() {
        let mut whole = OffsetTotals::default();
        let mut a = OffsetTotals::default();
        let mut ok = OffsetTracker::after(0);
        (1..=10).for_each(|o| {
            ok.observe(o);
        });
        a.add("member 1", &ok, 0);
        let mut short = OffsetTracker::after(0);
        (1..=7).for_each(|o| {
            short.observe(o);
        });
        a.add("member 2", &short, 0);
        let mut b = OffsetTotals::default();
        let mut holey = OffsetTracker::after(0);
        for o in [1, 2, 4, 5, 5, 6, 7, 8, 9] {
            holey.observe(o);
        }
        b.add("member 3", &holey, 2);
        whole.merge(&a);
        whole.merge(&b);
        whole.finish(10);
        assert_eq!(whole.members, 3);
        // member 2: its tail 8..=10; member 3: 3 inside and its tail 10.
        assert_eq!(whole.missing, 3 + 1 + 1);
        assert_eq!(whole.gap_events, 3);
        assert_eq!(whole.duplicates, 1);
        assert_eq!(whole.members_with_gaps, 2);
        assert_eq!(whole.members_with_duplicates, 1);
        assert_eq!(whole.without_offset, 2);
        assert_eq!(
            whole.first_gap.as_deref(),
            Some("member 3: expected offset 3, got 4")
        );
        assert_eq!(
            whole.first_duplicate.as_deref(),
            Some("member 3: offset 5 again (expected 6)")
        );
    }
}
