//! Rate limits and failure throttles over Redis: one script per check, so a check and its count
//! are one atomic step on every node's shared state (never read-then-write), with the same
//! arithmetic as the in-process engines, which answer instead while Redis is unreachable.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use fred::types::scripts::Script;

use super::{RedisLink, arg, num};
use crate::seams::limiter::{Decision, Limiter};
use crate::seams::throttle::{Backoff, FailureThrottle};

static GCRA: LazyLock<Script> = LazyLock::new(|| Script::from_lua(include_str!("gcra.lua")));
static THROTTLE: LazyLock<Script> = LazyLock::new(|| Script::from_lua(include_str!("throttle.lua")));

/// One limit shared by every node: a GCRA bucket per key in Redis.
pub struct RedisLimiter {
    link: Arc<RedisLink>,
    scope: &'static str,
    limit: u32,
    per_request: Duration,
    /// This node's own limiter, while Redis is unreachable.
    fallback: Box<dyn Limiter>,
}

impl RedisLimiter {
    /// `limit` requests per `window` per key of `scope`; `fallback` answers during an outage.
    pub fn new(
        link: Arc<RedisLink>,
        scope: &'static str,
        limit: u32,
        window: Duration,
        fallback: Box<dyn Limiter>,
    ) -> RedisLimiter {
        let limit = limit.max(1);
        let per_request = window.max(Duration::from_secs(1)) / limit;
        RedisLimiter { link, scope, limit, per_request, fallback }
    }
}

#[async_trait]
impl Limiter for RedisLimiter {
    async fn check(&self, key: &str) -> Decision {
        let bucket = format!("sb:rl:{}:{}", self.scope, key_digest(key));
        let period = i64::try_from(self.per_request.as_micros()).unwrap_or(i64::MAX).max(1);
        let answer: Result<(i64, i64, i64, i64), _> =
            self.link.eval(&GCRA, vec![bucket], vec![num(period), num(self.limit)]).await;
        match answer {
            Ok((allowed, remaining, retry_us, reset_us)) => Decision {
                allowed: allowed == 1,
                limit: self.limit,
                remaining: u32::try_from(remaining).unwrap_or(0),
                retry_after: micros(retry_us),
                reset_after: micros(reset_us),
            },
            Err(_) => self.fallback.check(key).await,
        }
    }
}

fn micros(value: i64) -> Duration {
    Duration::from_micros(u64::try_from(value).unwrap_or(0))
}

/// One failure throttle shared by every node.
pub struct RedisFailureThrottle {
    link: Arc<RedisLink>,
    scope: &'static str,
    backoff: Backoff,
    /// This node's own throttle, while Redis is unreachable.
    fallback: Box<dyn FailureThrottle>,
}

impl RedisFailureThrottle {
    /// A throttle of `scope` with `backoff`; `fallback` answers during an outage.
    pub fn new(
        link: Arc<RedisLink>,
        scope: &'static str,
        backoff: Backoff,
        fallback: Box<dyn FailureThrottle>,
    ) -> RedisFailureThrottle {
        RedisFailureThrottle { link, scope, backoff, fallback }
    }

    fn key(&self, key: &str) -> Vec<String> {
        vec![format!("sb:ft:{}:{}", self.scope, key_digest(key))]
    }

    /// Runs `op` of the script for `key`; false when Redis did not answer.
    async fn tell(&self, key: &str, op: &'static str) -> bool {
        self.link.eval::<i64>(&THROTTLE, self.key(key), self.args(op)).await.is_ok()
    }

    /// The script's arguments: the operation, then the backoff.
    fn args(&self, op: &'static str) -> Vec<fred::prelude::Value> {
        let ms = |d: Duration| num(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let b = self.backoff;
        vec![arg(op), num(b.free_failures), ms(b.base_delay), ms(b.max_delay), ms(b.forget_after)]
    }
}

#[async_trait]
impl FailureThrottle for RedisFailureThrottle {
    async fn attempt(&self, key: &str) -> Result<(), Duration> {
        match self.link.eval::<i64>(&THROTTLE, self.key(key), self.args("attempt")).await {
            Ok(0) => Ok(()),
            Ok(wait_ms) => Err(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0))),
            Err(_) => self.fallback.attempt(key).await,
        }
    }

    async fn failed(&self, key: &str) {
        if !self.tell(key, "failed").await {
            self.fallback.failed(key).await;
        }
    }

    async fn take_back(&self, key: &str) {
        if !self.tell(key, "take_back").await {
            self.fallback.take_back(key).await;
        }
    }

    async fn forget(&self, key: &str) {
        // Forgotten everywhere: the owner proved who they are.
        self.tell(key, "forget").await;
        self.fallback.forget(key).await;
    }
}

/// What a limit's key becomes in a Redis key name: a digest, not the key itself. Keys are emails,
/// IP addresses and user ids: personal data that has no business in Redis, and an email's `{…}`
/// would steer Redis Cluster's slot choice. 128 bits of SHA-256 keep keys apart.
fn key_digest(key: &str) -> String {
    let mut digest = crate::auth::tokens::sha256_hex(key);
    digest.truncate(32);
    digest
}
