//! Failure throttles as an actor: per key (an account, a client IP), a few free failures, then a
//! delay that doubles with every further failure up to a cap, as OWASP's authentication cheat
//! sheet suggests for brute-force defence.
//!
//! Why not a [`crate::rate_limit::RateLimiterActor`]: a GCRA bucket counts every request and
//! refills at a fixed rate. A login throttle must count only failures, forget them when the real
//! user gets in, and make each further failure cost more than the last; no bucket does that.
//! Nothing here is ever permanent: every block ends after at most `max_delay`, and a key with no
//! failure for `forget_after` starts afresh.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;

/// How often keys that are neither blocked nor remembered any longer are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How the delays grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Failures answered normally; the last of them starts the first delay (at least 1).
    pub free_failures: u32,
    /// The delay after the last free failure; each further failure doubles it.
    pub base_delay: Duration,
    /// The longest delay: the throttle slows an attacker, it never locks the owner out.
    pub max_delay: Duration,
    /// A key without a failure for this long starts again from zero.
    pub forget_after: Duration,
}

impl Backoff {
    /// `free_failures` free failures, then 1 s, 2 s, 4 s … up to 15 minutes; forgotten after an hour.
    pub fn standard(free_failures: u32) -> Backoff {
        Backoff {
            free_failures: free_failures.max(1),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(60 * 60),
        }
    }

    /// The block imposed by the `failures`-th failure in a row.
    fn delay_after(&self, failures: u32) -> Duration {
        if failures < self.free_failures {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free_failures).min(31);
        self.base_delay.saturating_mul(1 << doublings).min(self.max_delay)
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    blocked_until: Instant,
}

/// The throttle's bookkeeping without the actor, so it can be tested with a chosen clock.
///
/// An attempt counts as a failure from the moment it is let through, and is taken back when it
/// succeeds. Counting afterwards would let a burst of parallel guesses all pass the check before
/// the first of them failed.
#[derive(Debug)]
pub struct Failures {
    backoff: Backoff,
    entries: HashMap<String, Entry>,
}

impl Failures {
    /// An empty table.
    pub fn new(backoff: Backoff) -> Failures {
        Failures { backoff, entries: HashMap::new() }
    }

    /// How long `key` must still wait at `now`, if it is blocked.
    pub fn blocked_for(&self, key: &str, now: Instant) -> Option<Duration> {
        let entry = self.entries.get(key)?;
        (entry.blocked_until > now).then(|| entry.blocked_until - now)
    }

    /// Lets an attempt of `key` through at `now` and counts it as a failure, or answers how long
    /// `key` must still wait.
    pub fn attempt(&mut self, key: &str, now: Instant) -> Result<(), Duration> {
        if let Some(wait) = self.blocked_for(key, now) {
            return Err(wait);
        }
        self.fail(key, now);
        Ok(())
    }

    /// Counts a failure of `key` at `now`; returns the block it now has (zero while free).
    pub fn fail(&mut self, key: &str, now: Instant) -> Duration {
        let backoff = self.backoff;
        let entry = self.entries.entry(key.to_owned()).or_insert(Entry {
            failures: 0,
            last_failure: now,
            blocked_until: now,
        });
        if now.saturating_duration_since(entry.last_failure) > backoff.forget_after {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        let delay = backoff.delay_after(entry.failures);
        entry.blocked_until = entry.blocked_until.max(now + delay);
        delay
    }

    /// The attempt of `key` let through at some earlier moment has now failed: the delay its
    /// failure earned runs from `now`, so checking a password slowly (a busy server) does not
    /// use the delay up before the client hears of the failure.
    pub fn failed(&mut self, key: &str, now: Instant) {
        let backoff = self.backoff;
        if let Some(entry) = self.entries.get_mut(key) {
            entry.last_failure = entry.last_failure.max(now);
            entry.blocked_until = entry.blocked_until.max(now + backoff.delay_after(entry.failures));
        }
    }

    /// Takes back the failure counted for an attempt that succeeded. Earlier failures, and a
    /// delay already running, stay.
    pub fn take_back(&mut self, key: &str) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.failures = entry.failures.saturating_sub(1);
        }
    }

    /// Forgets every failure of `key` (its owner proved who they are).
    pub fn forget(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Drops keys that are not blocked and whose failures are old enough to forget.
    pub fn prune(&mut self, now: Instant) {
        let forget_after = self.backoff.forget_after;
        self.entries.retain(|_, entry| {
            entry.blocked_until > now || now.saturating_duration_since(entry.last_failure) <= forget_after
        });
    }

    /// Keys remembered (for tests and memory checks).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Lets one attempt of `key` through, counted as a failure until taken back, or answers how
/// long `key` must still wait.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), Duration>")]
pub struct Attempt {
    /// The account or client IP.
    pub key: String,
}

/// The attempt of `key` succeeded: its failure is taken back, earlier ones stay.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct TakeBack {
    /// The account or client IP.
    pub key: String,
}

/// The attempt of `key` failed: the delay it earned runs from now.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Failed {
    /// The account or client IP.
    pub key: String,
}

/// Forgets every failure of `key`, after its owner proved who they are.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Forget {
    /// The account or client IP.
    pub key: String,
}

/// One throttle (for example "login failures per account"), an actor so that every check and
/// count of one key is serialised without locks.
pub struct FailureThrottleActor {
    failures: Failures,
}

impl FailureThrottleActor {
    /// A throttle with this backoff.
    pub fn new(backoff: Backoff) -> FailureThrottleActor {
        FailureThrottleActor { failures: Failures::new(backoff) }
    }
}

impl Actor for FailureThrottleActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A password-spraying burst queues here; the default mailbox of 16 would push back.
        ctx.set_mailbox_capacity(4096);
        ctx.run_interval(PRUNE_EVERY, |actor, _| actor.failures.prune(Instant::now()));
    }
}

impl Handler<Attempt> for FailureThrottleActor {
    type Result = Result<(), Duration>;

    fn handle(&mut self, msg: Attempt, _: &mut Context<Self>) -> Result<(), Duration> {
        self.failures.attempt(&msg.key, Instant::now())
    }
}

impl Handler<TakeBack> for FailureThrottleActor {
    type Result = ();

    fn handle(&mut self, msg: TakeBack, _: &mut Context<Self>) {
        self.failures.take_back(&msg.key);
    }
}

impl Handler<Failed> for FailureThrottleActor {
    type Result = ();

    fn handle(&mut self, msg: Failed, _: &mut Context<Self>) {
        self.failures.failed(&msg.key, Instant::now());
    }
}

impl Handler<Forget> for FailureThrottleActor {
    type Result = ();

    fn handle(&mut self, msg: Forget, _: &mut Context<Self>) {
        self.failures.forget(&msg.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn free_failures_cost_nothing_then_each_failure_doubles_the_delay_up_to_the_cap() {
        let mut table = Failures::new(Backoff::standard(3));
        let start = Instant::now();
        let delays: Vec<Duration> = (0..16).map(|i| table.fail("alice", start + SECOND * i)).collect();
        assert_eq!(&delays[..3], &[Duration::ZERO, Duration::ZERO, SECOND], "the third starts 1 s");
        assert_eq!(&delays[3..6], &[SECOND * 2, SECOND * 4, SECOND * 8], "doubling");
        assert_eq!(delays[15], Duration::from_secs(900), "capped at 15 minutes");
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "never shrinks: {delays:?}");
    }

    #[test]
    fn a_block_ends_by_itself_and_other_keys_are_untouched() {
        let mut table = Failures::new(Backoff::standard(1));
        let start = Instant::now();
        assert_eq!(table.fail("alice", start), SECOND);
        assert_eq!(table.blocked_for("alice", start + SECOND / 2), Some(SECOND / 2));
        assert_eq!(table.blocked_for("alice", start + SECOND), None, "the block ends");
        assert_eq!(table.blocked_for("bob", start), None, "another key is free");
    }

    #[test]
    fn a_failure_known_late_gets_its_whole_delay_from_the_moment_it_is_known() {
        let mut table = Failures::new(Backoff::standard(1));
        let start = Instant::now();
        table.attempt("alice", start).expect("let through");
        // The password check took two seconds: the one-second delay would be over already.
        table.failed("alice", start + SECOND * 2);
        assert_eq!(table.blocked_for("alice", start + SECOND * 2), Some(SECOND), "the whole delay, from now");
        assert_eq!(table.blocked_for("alice", start + SECOND * 3), None, "and no longer");
        table.failed("bob", start);
        assert_eq!(table.blocked_for("bob", start), None, "a key never let through is untouched");
    }

    #[test]
    fn forgetting_a_key_after_a_success_starts_it_afresh() {
        let mut table = Failures::new(Backoff::standard(2));
        let start = Instant::now();
        for i in 0..5 {
            table.fail("alice", start + SECOND * i);
        }
        table.forget("alice");
        assert_eq!(table.blocked_for("alice", start + SECOND * 5), None);
        assert_eq!(table.fail("alice", start + SECOND * 5), Duration::ZERO, "free again");
    }

    #[test]
    fn old_failures_are_forgotten_and_pruned() {
        let backoff = Backoff { forget_after: SECOND * 10, ..Backoff::standard(2) };
        let mut table = Failures::new(backoff);
        let start = Instant::now();
        table.fail("alice", start);
        table.fail("alice", start);
        assert_eq!(table.fail("alice", start + SECOND * 11), Duration::ZERO, "the count restarted");
        table.prune(start + SECOND * 30);
        assert!(table.is_empty(), "nothing blocked or recent is kept");
    }

    #[test]
    fn attempts_count_as_failures_so_a_parallel_burst_cannot_pass_the_check_together() {
        let mut table = Failures::new(Backoff::standard(3));
        let now = Instant::now();
        let answers: Vec<bool> = (0..10).map(|_| table.attempt("alice", now).is_ok()).collect();
        assert_eq!(answers.iter().filter(|ok| **ok).count(), 3, "three in flight at most: {answers:?}");
    }

    #[test]
    fn a_successful_attempt_is_taken_back_and_earlier_failures_stay() {
        let mut table = Failures::new(Backoff::standard(3));
        let now = Instant::now();
        table.attempt("10.0.0.1", now).unwrap();
        table.attempt("10.0.0.1", now).unwrap();
        table.take_back("10.0.0.1");
        assert_eq!(table.fail("10.0.0.1", now), Duration::ZERO, "one earlier failure + this one: still free");
        assert_eq!(table.fail("10.0.0.1", now), SECOND, "the third starts the delay");
    }

    #[actix::test]
    async fn the_actor_refuses_while_blocked_and_forgets() {
        let throttle = FailureThrottleActor::new(Backoff::standard(1)).start();
        let key = || "10.0.0.1".to_owned();
        assert_eq!(throttle.send(Attempt { key: key() }).await.unwrap(), Ok(()));
        let refused = throttle.send(Attempt { key: key() }).await.unwrap();
        assert!(refused.is_err_and(|wait| wait <= SECOND), "{refused:?}");
        throttle.send(Forget { key: key() }).await.unwrap();
        assert_eq!(throttle.send(Attempt { key: key() }).await.unwrap(), Ok(()));
        throttle.send(TakeBack { key: key() }).await.unwrap();
    }
}
