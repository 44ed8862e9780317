//! The per-connection token bucket on incoming messages.
//!
//! Each message takes a token; tokens come back at `limits.messages_per_second`, up to
//! `limits.burst`. A message without a token is refused with `rate_limited`. A client
//! that keeps being refused, with no second-long pause, for `limits.abuse_close_after` is
//! abusive and is closed with 1008. Times are milliseconds on the shard's clock, kept in
//! 32 bits (with wrapping arithmetic) so the bucket costs a connection 16 bytes.

use crate::config::LimitsConfig;

/// A gap in refusals this long ends an abuse streak.
const STREAK_GAP_MS: u32 = 1000;

/// What to do with one incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the rate.
    Allow,
    /// Over the rate: refuse it with `rate_limited`.
    Refuse,
    /// Over the rate for too long: close the connection.
    Abuse,
}

/// Empty until the connection opens and fills it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TokenBucket {
    tokens: f32,
    updated_ms: u32,
    streak_since_ms: u32,
    last_refused_ms: u32,
    in_streak: bool,
}

impl TokenBucket {
    pub fn full(limits: &LimitsConfig, now_ms: u32) -> Self {
        Self {
            tokens: limits.burst as f32,
            updated_ms: now_ms,
            streak_since_ms: 0,
            last_refused_ms: 0,
            in_streak: false,
        }
    }

    pub fn take(&mut self, limits: &LimitsConfig, now_ms: u32) -> Verdict {
        let elapsed = now_ms.wrapping_sub(self.updated_ms);
        self.updated_ms = now_ms;
        let refill = elapsed as f32 * limits.messages_per_second as f32 / 1000.0;
        self.tokens = (self.tokens + refill).min(limits.burst as f32);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allow;
        }
        if !self.in_streak || now_ms.wrapping_sub(self.last_refused_ms) > STREAK_GAP_MS {
            self.in_streak = true;
            self.streak_since_ms = now_ms;
        }
        self.last_refused_ms = now_ms;
        let abuse_ms = limits.abuse_close_after.as_millis().min(u32::MAX as u128) as u32;
        if now_ms.wrapping_sub(self.streak_since_ms) >= abuse_ms {
            Verdict::Abuse
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> LimitsConfig {
        LimitsConfig {
            messages_per_second: 10,
            burst: 5,
            abuse_close_after: Duration::from_secs(3),
            ..LimitsConfig::default()
        }
    }

    #[test]
    fn the_burst_passes_then_the_rate_applies() {
        let l = limits();
        let mut b = TokenBucket::full(&l, 1000);
        for _ in 0..5 {
            assert_eq!(b.take(&l, 1000), Verdict::Allow);
        }
        assert_eq!(b.take(&l, 1000), Verdict::Refuse);
        // 10 per second: one token every 100 ms.
        assert_eq!(b.take(&l, 1100), Verdict::Allow);
        assert_eq!(b.take(&l, 1100), Verdict::Refuse);
    }

    #[test]
    fn sustained_abuse_closes_but_a_pause_forgives() {
        let l = limits();
        let mut b = TokenBucket::full(&l, 0);
        let mut t = 0;
        let mut verdict = Verdict::Allow;
        // Hammer at 1000 messages per second.
        while verdict != Verdict::Abuse && t < 10_000 {
            verdict = b.take(&l, t);
            t += 1;
        }
        assert_eq!(verdict, Verdict::Abuse);
        assert!((3000..3100).contains(&t), "closed after {t} ms");

        let mut b = TokenBucket::full(&l, 0);
        for t in 0..2500 {
            b.take(&l, t);
        }
        // A 1.5 s pause ends the streak; hammering again starts a new one.
        assert_eq!(b.take(&l, 4000), Verdict::Allow);
        for t in 4001..6000 {
            assert_ne!(b.take(&l, t), Verdict::Abuse, "at {t}");
        }
    }

    #[test]
    fn the_clock_may_wrap() {
        let l = limits();
        let mut b = TokenBucket::full(&l, u32::MAX - 50);
        for _ in 0..5 {
            b.take(&l, u32::MAX - 50);
        }
        assert_eq!(
            b.take(&l, 60),
            Verdict::Allow,
            "111 ms later, across the wrap"
        );
    }
}
