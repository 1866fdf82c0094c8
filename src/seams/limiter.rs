//! Rate limits: a key (a user id, a client IP, an email) is allowed one more request, or told how
//! long to wait. The in-process implementation is a GCRA [`RateLimiterActor`] per scope.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use actix::Addr;
use async_trait::async_trait;
pub use switchboard_actors::rate_limit::Decision;
use switchboard_actors::rate_limit::{Check, RateLimiterActor};

/// The key of per-IP limits. IPv6 clients are grouped by their /64, since one subscriber
/// usually holds a whole /64 and could otherwise use a fresh address for every request.
pub fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// Whole seconds, rounded up, so a client that waits that long is never early.
pub fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// One limit (one scope): counts requests per key.
#[async_trait]
pub trait Limiter: Send + Sync + 'static {
    /// Counts one request of `key` and says whether it may proceed.
    async fn check(&self, key: &str) -> Decision;
}

/// What a limiter answers when its engine cannot (the actor system is stopping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnavailable {
    /// Let the request through: for limits that protect against abuse of cheap requests, where
    /// refusing the last requests of a stopping server would only lose them.
    Allow,
    /// Refuse it (retry in a second): for limits in front of paid or stored work.
    Refuse,
}

/// A [`Limiter`] over a [`RateLimiterActor`] of this process.
pub struct LocalLimiter {
    actor: Addr<RateLimiterActor>,
    when_unavailable: WhenUnavailable,
}

impl LocalLimiter {
    /// A limiter over `actor`, answering `when_unavailable` if it cannot be reached.
    pub fn new(actor: RateLimiterActor, when_unavailable: WhenUnavailable) -> LocalLimiter {
        LocalLimiter { actor: actix::Actor::start(actor), when_unavailable }
    }
}

#[async_trait]
impl Limiter for LocalLimiter {
    async fn check(&self, key: &str) -> Decision {
        match self.actor.send(Check { key: key.to_owned() }).await {
            Ok(decision) => decision,
            Err(_) => {
                let allowed = self.when_unavailable == WhenUnavailable::Allow;
                let wait = if allowed { Duration::ZERO } else { Duration::from_secs(1) };
                Decision { allowed, limit: 0, remaining: 0, retry_after: wait, reset_after: wait }
            }
        }
    }
}
