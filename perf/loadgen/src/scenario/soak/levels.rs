//! Memory and open files over the run, reduced to the levels that the soak compares.
//!
//! * A **level** is the median of the per-second samples in a window of
//!   `max(5 s, 5% of the run)`: one sample catches the hub in the middle of a churn
//!   client's visit or an API call; the median of many does not.
//! * **Post-warm-up** is the window that ends when the warm-up (the first 20% of the load,
//!   by default) ends; **end** the window that ends with the load.
//! * RSS: the end level and the sample taken after everything closed must stay within
//!   the tolerance (5%) above the post-warm-up level. Less is fine: memory given back.
//! * Open files are compared at equal connection counts. While the load runs, each
//!   sample's files minus the hub's WebSocket connections (from `/stats` of the same
//!   second) is what the hub holds besides them: its end level must stay within the
//!   tolerance, but at least 2 files, of its post-warm-up level (the two readings are not
//!   atomic, and an API call or a handshake holds a socket that is no WebSocket
//!   connection yet). After everything closed and the hub counts 0 connections, its open
//!   files must be within the tolerance, but at least 1, of the baseline taken the same
//!   way before the first soak client connected.

use serde::Serialize;

use super::sampler::Sample;

/// Where the levels are taken.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    /// Seconds of load.
    pub duration: f64,
    /// Share of the load that is warm-up.
    pub warmup: f64,
}

impl Windows {
    /// Width of a level's window, seconds.
    pub fn width(&self) -> f64 {
        (self.duration * 0.05).max(5.0)
    }

    /// End of the warm-up, seconds after the load began.
    pub fn warm_end(&self) -> f64 {
        self.duration * self.warmup
    }
}

/// The levels of one quantity.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Level {
    /// Before the first soak client connected.
    pub before: u64,
    /// Median over the window ending with the warm-up.
    pub warm: u64,
    /// Median over the window ending with the load.
    pub end: u64,
    /// After every soak client closed and the hub counted none.
    pub after: u64,
}

/// Median of `pick` over the load-phase samples with `from < t <= to`; `None` if none.
fn median(samples: &[Sample], from: f64, to: f64, pick: impl Fn(&Sample) -> i64) -> Option<i64> {
    let mut v: Vec<i64> = samples
        .iter()
        .filter(|s| s.phase == "load" && s.t > from && s.t <= to)
        .map(pick)
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(v[v.len() / 2])
}

/// The levels of `pick`, from the run's samples and the ones before and after.
pub fn level(
    w: Windows,
    samples: &[Sample],
    before: &Sample,
    after: &Sample,
    pick: impl Fn(&Sample) -> i64,
) -> Result<Level, String> {
    let width = w.width();
    let warm = median(samples, w.warm_end() - width, w.warm_end(), &pick)
        .ok_or("no sample in the post-warm-up window")?;
    let end = median(samples, w.duration - width, w.duration, &pick)
        .ok_or("no sample in the end window")?;
    let clamp = |x: i64| x.max(0) as u64;
    Ok(Level {
        before: clamp(pick(before)),
        warm: clamp(warm),
        end: clamp(end),
        after: clamp(pick(after)),
    })
}

/// Files the hub holds besides its WebSocket connections.
pub fn fd_overhead(s: &Sample) -> i64 {
    s.fds as i64 - s.hub.connections as i64
}

/// The most `base` may grow to: `base` plus `tolerance` of it, but at least `floor`.
pub fn allowed(base: u64, tolerance: f64, floor: u64) -> u64 {
    base + ((base as f64 * tolerance).ceil() as u64).max(floor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::soak::sampler::HubCounters;

    fn s(t: f64, rss: u64, fds: u64, conns: u64) -> Sample {
        Sample {
            t,
            phase: "load",
            rss_kib: rss,
            fds,
            hub: HubCounters {
                connections: conns,
                ..HubCounters::default()
            },
        }
    }

    #[test]
    fn levels_are_medians_of_their_windows() {
        let w = Windows {
            duration: 100.0,
            warmup: 0.2,
        };
        assert_eq!((w.width(), w.warm_end()), (5.0, 20.0));
        // RSS 1000 around the warm-up's end with one outlier, 1040 at the end.
        let mut samples: Vec<Sample> = (1..=100).map(|t| s(t as f64, 900, 50, 40)).collect();
        for t in 16..=20 {
            samples[t - 1].rss_kib = 1000;
        }
        samples[17].rss_kib = 5000;
        for t in 96..=100 {
            samples[t - 1] = s(t as f64, 1040, 52, 41);
        }
        let before = Sample {
            phase: "before",
            ..s(-1.0, 500, 20, 0)
        };
        let after = Sample {
            phase: "after",
            ..s(110.0, 990, 21, 0)
        };
        let rss = level(w, &samples, &before, &after, |s| s.rss_kib as i64).unwrap();
        assert_eq!(
            (rss.before, rss.warm, rss.end, rss.after),
            (500, 1000, 1040, 990)
        );
        let fds = level(w, &samples, &before, &after, fd_overhead).unwrap();
        assert_eq!((fds.before, fds.warm, fds.end, fds.after), (20, 10, 11, 21));
        assert!(level(w, &samples[..10], &before, &after, fd_overhead).is_err());
    }

    #[test]
    fn allowances() {
        assert_eq!(allowed(1000, 0.05, 0), 1050);
        assert_eq!(allowed(20, 0.05, 1), 21);
        assert_eq!(allowed(20, 0.05, 2), 22);
        assert_eq!(allowed(100, 0.05, 2), 105);
    }
}
