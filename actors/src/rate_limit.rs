//! Rate limits: GCRA buckets (the `governor` crate) per key — a user id or a client IP — for one
//! scope (paid WebSocket messages, REST requests…). A plain struct, not an actor: governor keeps
//! its buckets in a sharded map and updates each with one compare-and-swap, so checks from every
//! worker thread run side by side, and a mailbox in front of it would only queue them. Each check
//! answers what the `RateLimit-*` headers and `retry_after_ms` need.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

type KeyedLimiter =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// How often buckets that are full again should be dropped ([`RateLimits::prune`]), bounding memory.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The answer to a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed (and was counted).
    pub allowed: bool,
    /// Requests per window.
    pub limit: u32,
    /// Requests left right now.
    pub remaining: u32,
    /// When refused: how long until one request fits.
    pub retry_after: Duration,
    /// Seconds until the bucket is full again (for `RateLimit-Reset`).
    pub reset_after: Duration,
}

/// GCRA buckets for one scope, shared by every thread that checks it.
pub struct RateLimits {
    limiter: KeyedLimiter,
    clock: DefaultClock,
    limit: u32,
    window: Duration,
}

impl RateLimits {
    /// `limit` requests per minute per key, with bursts of up to `limit`.
    pub fn per_minute(limit: NonZeroU32) -> RateLimits {
        RateLimits::per_window(limit, Duration::from_secs(60))
    }

    /// `limit` requests per `window` per key, with bursts of up to `limit` (for slow scopes such
    /// as password-reset mails per hour). A zero window counts as one second.
    pub fn per_window(limit: NonZeroU32, window: Duration) -> RateLimits {
        let window = window.max(Duration::from_secs(1));
        let clock = DefaultClock::default();
        let quota = Quota::with_period(window / limit.get())
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(limit);
        let limiter = RateLimiter::dashmap_with_clock(quota, clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        RateLimits { limiter, clock, limit: limit.get(), window }
    }

    /// Counts one request of `key` if it fits, and says so.
    pub fn check(&self, key: &str) -> Decision {
        let per_request = self.window / self.limit;
        match self.limiter.check_key(&key.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    limit: self.limit,
                    remaining,
                    retry_after: Duration::ZERO,
                    reset_after: per_request * (self.limit - remaining),
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Decision {
                    allowed: false,
                    limit: self.limit,
                    remaining: 0,
                    retry_after: wait,
                    reset_after: per_request * self.limit,
                }
            }
        }
    }

    /// Drops the buckets that are full again (a key seen again starts full, so nothing
    /// changes for it); call every [`PRUNE_EVERY`].
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys with a bucket (for tests and memory checks).
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// Whether no key has a bucket.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_over_the_limit_is_refused_with_a_retry_time_and_other_keys_are_untouched() {
        let limits = RateLimits::per_minute(NonZeroU32::new(3).unwrap());
        let first = limits.check("alice");
        assert!(first.allowed && first.limit == 3 && first.remaining == 2, "{first:?}");
        assert!(limits.check("alice").allowed);
        assert!(limits.check("alice").allowed);
        let refused = limits.check("alice");
        assert!(!refused.allowed, "the 4th request in a minute is refused");
        assert!(
            refused.retry_after > Duration::from_secs(15) && refused.retry_after <= Duration::from_secs(20),
            "{refused:?}"
        );
        assert!(limits.check("bob").allowed, "another key has its own bucket");
    }

    #[test]
    fn a_window_of_an_hour_refills_one_request_per_window_over_limit() {
        let hour = Duration::from_secs(3600);
        let limits = RateLimits::per_window(NonZeroU32::new(2).unwrap(), hour);
        let check = || limits.check("carol@example.com");
        assert!(check().allowed && check().allowed, "a burst of 2");
        let refused = check();
        assert!(!refused.allowed, "the 3rd within the hour is refused");
        assert!(
            refused.retry_after > hour / 2 - Duration::from_secs(5) && refused.retry_after <= hour / 2,
            "{refused:?}"
        );
        assert_eq!(refused.reset_after, hour, "{refused:?}");
    }

    #[test]
    fn checks_from_many_threads_at_once_allow_exactly_the_burst() {
        let limits = RateLimits::per_minute(NonZeroU32::new(50).unwrap());
        let allowed: usize = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| (0..40).filter(|_| limits.check("dave").allowed).count()))
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).sum()
        });
        assert_eq!(allowed, 50, "320 checks at once, a burst of 50");
    }

    #[test]
    fn pruning_drops_only_buckets_that_are_full_again() {
        let limits = RateLimits::per_window(NonZeroU32::new(2).unwrap(), Duration::from_secs(3600));
        limits.check("erin");
        assert_eq!(limits.len(), 1);
        limits.prune();
        assert_eq!(limits.len(), 1, "a bucket still refilling is kept");
        assert_eq!(limits.check("erin").remaining, 0, "and still counts");
    }
}
