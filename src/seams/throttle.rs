//! Failure throttles: a key (an account, a client IP) gets a few free failures, then growing
//! delays. An attempt counts as a failure from the moment it is let through until it is taken
//! back, so parallel guesses cannot pass the check together. In one process it is a
//! [`FailureThrottleActor`] per throttle.

use std::time::Duration;

use actix::{Actor, Addr};
use async_trait::async_trait;
use switchboard_actors::throttle::{Attempt, Backoff, Failed, FailureThrottleActor, Forget, TakeBack};

/// One failure throttle.
#[async_trait]
pub trait FailureThrottle: Send + Sync + 'static {
    /// Lets an attempt of `key` through (counted as a failure), or answers how long to wait.
    async fn attempt(&self, key: &str) -> Result<(), Duration>;
    /// The attempt of `key` failed: the delay it earned runs from now, not from when it was let
    /// through (checking a password can take a while on a busy server).
    fn failed(&self, key: &str);
    /// The attempt of `key` succeeded: its failure is taken back, earlier ones stay.
    fn take_back(&self, key: &str);
    /// Forgets every failure of `key` (its owner proved who they are).
    fn forget(&self, key: &str);
}

/// A [`FailureThrottle`] over an actor of this process. When the actor cannot answer (the
/// system is stopping) attempts are let through: a throttle slows guessing, and the stopping
/// server answers nothing more for long.
pub struct LocalFailureThrottle {
    actor: Addr<FailureThrottleActor>,
}

impl LocalFailureThrottle {
    /// A throttle with `backoff`.
    pub fn new(backoff: Backoff) -> LocalFailureThrottle {
        LocalFailureThrottle { actor: FailureThrottleActor::new(backoff).start() }
    }
}

#[async_trait]
impl FailureThrottle for LocalFailureThrottle {
    async fn attempt(&self, key: &str) -> Result<(), Duration> {
        self.actor.send(Attempt { key: key.to_owned() }).await.unwrap_or(Ok(()))
    }

    fn failed(&self, key: &str) {
        self.actor.do_send(Failed { key: key.to_owned() });
    }

    fn take_back(&self, key: &str) {
        self.actor.do_send(TakeBack { key: key.to_owned() });
    }

    fn forget(&self, key: &str) {
        self.actor.do_send(Forget { key: key.to_owned() });
    }
}
