//! Failure throttles: a key (an account, a client IP) gets a few free failures, then growing
//! delays. An attempt counts as a failure from the moment it is let through until it is taken
//! back, so parallel guesses cannot pass the check together. In one process it is a
//! [`Failures`] table per throttle, called in place.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
pub use switchboard_actors::throttle::Backoff;
use switchboard_actors::throttle::{Failures, PRUNE_EVERY};

/// One failure throttle. Each call is done when it returns, so a caller's next attempt sees it.
#[async_trait]
pub trait FailureThrottle: Send + Sync + 'static {
    /// Lets an attempt of `key` through (counted as a failure), or answers how long to wait.
    async fn attempt(&self, key: &str) -> Result<(), Duration>;
    /// The attempt of `key` failed: the delay it earned runs from now, not from when it was let
    /// through (checking a password can take a while on a busy server).
    async fn failed(&self, key: &str);
    /// The attempt of `key` succeeded: its failure is taken back, earlier ones stay.
    async fn take_back(&self, key: &str);
    /// Forgets every failure of `key` (its owner proved who they are).
    async fn forget(&self, key: &str);
}

/// A [`FailureThrottle`] of this process: one [`Failures`] table, pruned in the background.
pub struct LocalFailureThrottle {
    failures: Arc<Failures>,
}

impl LocalFailureThrottle {
    /// A throttle with `backoff`.
    pub fn new(backoff: Backoff) -> LocalFailureThrottle {
        let failures = Arc::new(Failures::new(backoff));
        super::prune_while_alive(&failures, PRUNE_EVERY, |failures| failures.prune(Instant::now()));
        LocalFailureThrottle { failures }
    }
}

#[async_trait]
impl FailureThrottle for LocalFailureThrottle {
    async fn attempt(&self, key: &str) -> Result<(), Duration> {
        self.failures.attempt(key, Instant::now())
    }

    async fn failed(&self, key: &str) {
        self.failures.failed(key, Instant::now());
    }

    async fn take_back(&self, key: &str) {
        self.failures.take_back(key);
    }

    async fn forget(&self, key: &str) {
        self.failures.forget(key);
    }
}
