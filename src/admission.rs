//! Caps on open connections: in total, per client IP, per user.
//!
//! A handshake is admitted before the upgrade is answered, so a client over a cap gets a
//! plain HTTP refusal (503 for the total, 429 per IP or user) and nothing is registered.
//! Counting and checking happen in one atomic step, so two shards admitting at once
//! cannot both slip past a cap.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use crate::api::ApiError;
use crate::config::LimitsConfig;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `limits.max_connections` reached: 503.
    Full,
    /// `limits.connections_per_ip` reached: 429.
    TooManyFromIp,
    /// `limits.connections_per_user` reached: 429.
    TooManyForUser,
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        match refusal {
            Refusal::Full => ApiError::new(
                503,
                "server_full",
                "the server is at its connection limit; try again later",
            ),
            Refusal::TooManyFromIp => ApiError::new(
                429,
                "too_many_connections",
                "too many connections from this address",
            ),
            Refusal::TooManyForUser => ApiError::new(
                429,
                "too_many_connections",
                "too many connections for this user",
            ),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Admission {
    max_total: Option<usize>,
    max_per_ip: Option<usize>,
    total: AtomicUsize,
    /// Open connections per address; kept only when there is a per-IP cap.
    per_ip: DashMap<IpAddr, usize>,
}

impl Admission {
    pub fn new(limits: &LimitsConfig) -> Self {
        Self {
            max_total: limits.max_connections,
            max_per_ip: limits.connections_per_ip,
            total: AtomicUsize::new(0),
            per_ip: DashMap::new(),
        }
    }

    /// Counts a new connection from `ip`, unless a cap forbids it.
    pub fn admit(&self, ip: IpAddr) -> Result<(), Refusal> {
        let before = self.total.fetch_add(1, Ordering::AcqRel);
        if self.max_total.is_some_and(|max| before >= max) {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Full);
        }
        if let Some(max) = self.max_per_ip {
            let mut count = self.per_ip.entry(ip).or_insert(0);
            if *count >= max {
                drop(count);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::TooManyFromIp);
            }
            *count += 1;
        }
        Ok(())
    }

    /// Forgets a connection admitted from `ip`.
    pub fn release(&self, ip: IpAddr) {
        self.total.fetch_sub(1, Ordering::AcqRel);
        if self.max_per_ip.is_some() {
            if let Entry::Occupied(mut e) = self.per_ip.entry(ip) {
                *e.get_mut() -= 1;
                if *e.get() == 0 {
                    e.remove();
                }
            }
        }
    }

    /// Connections admitted and not yet released.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_and_release_frees_a_place() {
        let admission = Admission::new(&LimitsConfig {
            max_connections: Some(3),
            connections_per_ip: Some(2),
            ..LimitsConfig::default()
        });
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert_eq!(admission.admit(a), Ok(()));
        assert_eq!(admission.admit(a), Ok(()));
        assert_eq!(admission.admit(a), Err(Refusal::TooManyFromIp));
        assert_eq!(admission.admit(b), Ok(()));
        assert_eq!(admission.admit(b), Err(Refusal::Full));
        assert_eq!(admission.open(), 3);
        admission.release(a);
        assert_eq!(admission.admit(b), Ok(()));
        assert_eq!(admission.open(), 3);
    }
}
