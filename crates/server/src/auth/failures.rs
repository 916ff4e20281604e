//! Refusals for a missing or unknown token, counted per peer: a client that
//! keeps sending bad tokens is answered 429 instead of 401, and its
//! refusals are counted rather than each written to the audit log.
//!
//! Each peer address (the client's IP, or one shared key when the server
//! is embedded without connection info) has a bucket of
//! [`AuthFailureLimit::burst`] refusals, refilled at
//! [`AuthFailureLimit::per_minute`]. A refusal that finds the bucket empty
//! is answered **429** problem+json with `Retry-After` (the seconds until
//! one more refusal is allowed); the first of a run of them is recorded in
//! the audit log (status 429), the others only counted, and the count is
//! logged at `warn` when the peer's next refusal is allowed again. A
//! request with a known token is never limited. At most
//! [`MAX_PEERS`] buckets are kept: past it, full ones are forgotten first,
//! then all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most peers whose refusals are counted at once.
pub const MAX_PEERS: usize = 65_536;

/// How many refusals for a missing or unknown token one peer may get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthFailureLimit {
    /// Refusals allowed at once (TOML `auth_failure_burst`).
    pub burst: u32,
    /// Refusals allowed a minute after those (TOML `auth_failures_per_minute`).
    pub per_minute: u32,
}

impl AuthFailureLimit {
    /// The default: 20 at once, then 60 a minute.
    pub const DEFAULT: AuthFailureLimit = AuthFailureLimit { burst: 20, per_minute: 60 };
}

impl Default for AuthFailureLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What to answer a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// 401, recorded.
    Refuse,
    /// 429 with `Retry-After`; recorded when `first` of a run.
    Throttle { retry_after: Duration, first: bool },
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// Refusals answered 429 since the last one allowed.
    throttled: u64,
}

/// The per-peer buckets.
#[derive(Debug)]
pub(crate) struct AuthFailures {
    limit: AuthFailureLimit,
    peers: Mutex<HashMap<Option<IpAddr>, Bucket>>,
}

impl AuthFailures {
    pub(crate) fn new(limit: AuthFailureLimit) -> Self {
        Self { limit, peers: Mutex::new(HashMap::new()) }
    }

    fn per_second(&self) -> f64 {
        f64::from(self.limit.per_minute) / 60.0
    }

    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let earned = now.saturating_duration_since(bucket.at).as_secs_f64() * self.per_second();
        (bucket.tokens + earned).min(f64::from(self.limit.burst))
    }

    /// Counts one refusal for a missing or unknown token from `peer`.
    pub(crate) fn note(&self, peer: Option<IpAddr>) -> Verdict {
        self.note_at(peer, Instant::now())
    }

    fn note_at(&self, peer: Option<IpAddr>, now: Instant) -> Verdict {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if peers.len() >= MAX_PEERS && !peers.contains_key(&peer) {
            let burst = f64::from(self.limit.burst);
            peers.retain(|_, b| self.refilled(b, now) < burst);
            if peers.len() >= MAX_PEERS {
                peers.clear();
            }
        }
        let burst = f64::from(self.limit.burst);
        let bucket = peers.entry(peer).or_insert(Bucket { tokens: burst, at: now, throttled: 0 });
        bucket.tokens = self.refilled(bucket, now);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            let throttled = std::mem::take(&mut bucket.throttled);
            if throttled > 0 {
                let peer = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
                tracing::warn!(
                    %peer,
                    refusals = throttled,
                    "refusals for a missing or unknown token answered 429 and not recorded one by one"
                );
            }
            return Verdict::Refuse;
        }
        bucket.throttled += 1;
        let rate = self.per_second();
        let wait = if rate > 0.0 { (1.0 - bucket.tokens) / rate } else { 3600.0 };
        Verdict::Throttle {
            retry_after: Duration::from_secs_f64(wait.clamp(1.0, 3600.0).ceil()),
            first: bucket.throttled == 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn a_peer_gets_its_burst_then_one_refusal_per_refill_and_others_are_not_affected() {
        let limits = AuthFailures::new(AuthFailureLimit { burst: 3, per_minute: 60 });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limits.note_at(peer(1), t0), Verdict::Refuse);
        }
        let first = limits.note_at(peer(1), t0);
        assert_eq!(first, Verdict::Throttle { retry_after: Duration::from_secs(1), first: true });
        let again = limits.note_at(peer(1), t0 + Duration::from_millis(500));
        assert_eq!(again, Verdict::Throttle { retry_after: Duration::from_secs(1), first: false });
        assert_eq!(limits.note_at(peer(2), t0), Verdict::Refuse, "another peer has its own bucket");
        // One refusal a second once the burst is spent.
        assert_eq!(limits.note_at(peer(1), t0 + Duration::from_millis(1_600)), Verdict::Refuse);
        assert!(matches!(
            limits.note_at(peer(1), t0 + Duration::from_millis(1_700)),
            Verdict::Throttle { first: true, .. }
        ));
        // A quiet peer gets its whole burst back.
        for _ in 0..3 {
            assert_eq!(limits.note_at(peer(1), t0 + Duration::from_secs(10)), Verdict::Refuse);
        }
    }

    #[test]
    fn retry_after_says_when_the_next_refusal_is_allowed() {
        let limits = AuthFailures::new(AuthFailureLimit { burst: 1, per_minute: 2 });
        let t0 = Instant::now();
        assert_eq!(limits.note_at(None, t0), Verdict::Refuse);
        assert_eq!(
            limits.note_at(None, t0),
            Verdict::Throttle { retry_after: Duration::from_secs(30), first: true }
        );
    }

    #[test]
    fn the_buckets_are_bounded() {
        let limits = AuthFailures::new(AuthFailureLimit { burst: 2, per_minute: 60 });
        let t0 = Instant::now();
        for i in 0..(MAX_PEERS as u32 + 10) {
            limits.note_at(Some(IpAddr::from(i.to_be_bytes())), t0);
        }
        assert!(limits.peers.lock().unwrap().len() <= MAX_PEERS);
    }
}
