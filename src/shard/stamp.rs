//! A reading of one of the shard's compact clocks (milliseconds or the hub's
//! microseconds, see [`Shard::now_ms`](super::Shard::now_ms)), kept with room for "none"
//! in four bytes: every connection holds two of them.

use std::num::NonZeroU32;

/// A clock reading; `Option<Stamp>` is four bytes. A reading of 0 is kept as 1: one
/// tick off, once per turn of the clock, which no measure taken from it notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp(NonZeroU32);

impl Stamp {
    pub fn of(reading: u32) -> Stamp {
        Stamp(NonZeroU32::new(reading).unwrap_or(NonZeroU32::MIN))
    }

    pub fn get(self) -> u32 {
        self.0.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_keeps_its_reading_and_none_costs_nothing() {
        assert_eq!(Stamp::of(1234).get(), 1234);
        assert_eq!(Stamp::of(0).get(), 1);
        assert_eq!(std::mem::size_of::<Option<Stamp>>(), 4);
    }
}
