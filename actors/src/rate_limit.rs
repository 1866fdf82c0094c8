//! Rate limits as an actor: GCRA buckets (the `governor` crate) per key — a user id or a client
//! IP — for one scope (paid WebSocket messages, REST requests…). One actor per scope; every
//! check is a message, answered with what the `RateLimit-*` headers and `retry_after_ms` need.

use std::num::NonZeroU32;
use std::time::Duration;

use actix::prelude::*;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

type KeyedLimiter =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// How often buckets that are full again are dropped, bounding memory.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Ask whether one more request of `key` fits.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Decision")]
pub struct Check {
    /// The user id or client IP the limit is counted for.
    pub key: String,
}

/// The answer to [`Check`].
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

/// GCRA buckets for one scope.
pub struct RateLimiterActor {
    limiter: KeyedLimiter,
    clock: DefaultClock,
    limit: u32,
    window: Duration,
}

impl RateLimiterActor {
    /// `limit` requests per minute per key, with bursts of up to `limit`.
    pub fn per_minute(limit: NonZeroU32) -> RateLimiterActor {
        RateLimiterActor::per_window(limit, Duration::from_secs(60))
    }

    /// `limit` requests per `window` per key, with bursts of up to `limit` (for slow scopes such
    /// as password-reset mails per hour). A zero window counts as one second.
    pub fn per_window(limit: NonZeroU32, window: Duration) -> RateLimiterActor {
        let window = window.max(Duration::from_secs(1));
        let clock = DefaultClock::default();
        let quota = Quota::with_period(window / limit.get())
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(limit);
        let limiter = RateLimiter::dashmap_with_clock(quota, clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        RateLimiterActor { limiter, clock, limit: limit.get(), window }
    }

    fn check(&self, key: &String) -> Decision {
        let per_request = self.window / self.limit;
        match self.limiter.check_key(key) {
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
}

impl Actor for RateLimiterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Thousands of checks per second queue here; the default mailbox of 16 would push back.
        ctx.set_mailbox_capacity(4096);
        ctx.run_interval(PRUNE_EVERY, |actor, _| {
            actor.limiter.retain_recent();
            actor.limiter.shrink_to_fit();
        });
    }
}

impl Handler<Check> for RateLimiterActor {
    type Result = MessageResult<Check>;

    fn handle(&mut self, msg: Check, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.check(&msg.key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix::test]
    async fn the_request_over_the_limit_is_refused_with_a_retry_time_and_other_keys_are_untouched() {
        let limiter = RateLimiterActor::per_minute(NonZeroU32::new(3).unwrap()).start();
        let check = |key: &str| limiter.send(Check { key: key.to_owned() });
        let first = check("alice").await.unwrap();
        assert!(first.allowed && first.limit == 3 && first.remaining == 2, "{first:?}");
        assert!(check("alice").await.unwrap().allowed);
        assert!(check("alice").await.unwrap().allowed);
        let refused = check("alice").await.unwrap();
        assert!(!refused.allowed, "the 4th request in a minute is refused");
        assert!(
            refused.retry_after > Duration::from_secs(15) && refused.retry_after <= Duration::from_secs(20),
            "{refused:?}"
        );
        assert!(check("bob").await.unwrap().allowed, "another key has its own bucket");
    }

    #[actix::test]
    async fn a_window_of_an_hour_refills_one_request_per_window_over_limit() {
        let hour = Duration::from_secs(3600);
        let limiter = RateLimiterActor::per_window(NonZeroU32::new(2).unwrap(), hour).start();
        let check = || limiter.send(Check { key: "carol@example.com".to_owned() });
        assert!(check().await.unwrap().allowed && check().await.unwrap().allowed, "a burst of 2");
        let refused = check().await.unwrap();
        assert!(!refused.allowed, "the 3rd within the hour is refused");
        assert!(
            refused.retry_after > hour / 2 - Duration::from_secs(5) && refused.retry_after <= hour / 2,
            "{refused:?}"
        );
        assert_eq!(refused.reset_after, hour, "{refused:?}");
    }
}
