//! Rate limits: a key (a user id, a client IP, an email) is allowed one more request, or told how
//! long to wait. The in-process implementation is the GCRA table [`RateLimits`] per scope, called
//! in place: it is shared by every worker thread, so no check waits for another.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
pub use switchboard_actors::rate_limit::Decision;
use switchboard_actors::rate_limit::{PRUNE_EVERY, RateLimits};

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

/// A [`Limiter`] of this process: one [`RateLimits`] table, pruned in the background.
pub struct LocalLimiter {
    limits: Arc<RateLimits>,
}

impl LocalLimiter {
    /// `limit` requests per `window` per key (at least one per second).
    pub fn new(limit: u32, window: Duration) -> LocalLimiter {
        let limit = NonZeroU32::new(limit).unwrap_or(NonZeroU32::MIN);
        let limits = Arc::new(RateLimits::per_window(limit, window));
        super::prune_while_alive(&limits, PRUNE_EVERY, RateLimits::prune);
        LocalLimiter { limits }
    }
}

#[async_trait]
impl Limiter for LocalLimiter {
    async fn check(&self, key: &str) -> Decision {
        self.limits.check(key)
    }
}
