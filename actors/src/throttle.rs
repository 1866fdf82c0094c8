//! Failure throttles: per key (an account, a client IP), a few free failures, then a
//! delay that doubles with every further failure up to a cap, as OWASP's authentication cheat
//! sheet suggests for brute-force defence.
//!
//! Why not a [`crate::rate_limit::RateLimits`]: a GCRA bucket counts every request and
//! refills at a fixed rate. A login throttle must count only failures, forget them when the real
//! user gets in, and make each further failure cost more than the last; no bucket does that.
//! Nothing here is ever permanent: every block ends after at most `max_delay`, and a key with no
//! failure for `forget_after` starts afresh.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::one::RefMut;

/// How often keys that are neither blocked nor remembered any longer should be dropped
/// ([`Failures::prune`]).
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

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

/// One throttle (for example "login failures per account"): failures per key, with the time
/// passed in so it can be tested with a chosen clock.
///
/// A plain struct, not an actor: keys live in a sharded map and every operation on a key is one
/// step under that key's shard lock (no await inside), so a check and its count cannot be split
/// and different keys never wait for each other. A mailbox in front would only queue them.
///
/// An attempt counts as a failure from the moment it is let through, and is taken back when it
/// succeeds. Counting afterwards would let a burst of parallel guesses all pass the check before
/// the first of them failed.
#[derive(Debug)]
pub struct Failures {
    backoff: Backoff,
    entries: DashMap<String, Entry>,
}

impl Failures {
    /// An empty table.
    pub fn new(backoff: Backoff) -> Failures {
        Failures { backoff, entries: DashMap::new() }
    }

    /// How long `key` must still wait at `now`, if it is blocked.
    pub fn blocked_for(&self, key: &str, now: Instant) -> Option<Duration> {
        let entry = self.entries.get(key)?;
        (entry.blocked_until > now).then(|| entry.blocked_until - now)
    }

    /// Lets an attempt of `key` through at `now` and counts it as a failure, or answers how long
    /// `key` must still wait. One step: parallel attempts of one key are counted one by one.
    pub fn attempt(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut entry = self.entry(key, now);
        if entry.blocked_until > now {
            return Err(entry.blocked_until - now);
        }
        self.count_failure(&mut entry, now);
        Ok(())
    }

    /// Counts a failure of `key` at `now`; returns the block it now has (zero while free).
    pub fn fail(&self, key: &str, now: Instant) -> Duration {
        self.count_failure(&mut self.entry(key, now), now)
    }

    /// The attempt of `key` let through at some earlier moment has now failed: the delay its
    /// failure earned runs from `now`, so checking a password slowly (a busy server) does not
    /// use the delay up before the client hears of the failure.
    pub fn failed(&self, key: &str, now: Instant) {
        let backoff = self.backoff;
        if let Some(mut entry) = self.entries.get_mut(key) {
            entry.last_failure = entry.last_failure.max(now);
            entry.blocked_until = entry.blocked_until.max(now + backoff.delay_after(entry.failures));
        }
    }

    /// Takes back the failure counted for an attempt that succeeded. Earlier failures, and a
    /// delay already running, stay.
    pub fn take_back(&self, key: &str) {
        if let Some(mut entry) = self.entries.get_mut(key) {
            entry.failures = entry.failures.saturating_sub(1);
        }
    }

    /// Forgets every failure of `key` (its owner proved who they are).
    pub fn forget(&self, key: &str) {
        self.entries.remove(key);
    }

    /// Drops keys that are not blocked and whose failures are old enough to forget; call every
    /// [`PRUNE_EVERY`].
    pub fn prune(&self, now: Instant) {
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

    /// `key`'s entry, locked until the guard is dropped.
    fn entry(&self, key: &str, now: Instant) -> RefMut<'_, String, Entry> {
        let fresh = Entry { failures: 0, last_failure: now, blocked_until: now };
        match self.entries.get_mut(key) {
            Some(entry) => entry,
            None => self.entries.entry(key.to_owned()).or_insert(fresh),
        }
    }

    fn count_failure(&self, entry: &mut Entry, now: Instant) -> Duration {
        let backoff = self.backoff;
        if now.saturating_duration_since(entry.last_failure) > backoff.forget_after {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        let delay = backoff.delay_after(entry.failures);
        entry.blocked_until = entry.blocked_until.max(now + delay);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn free_failures_cost_nothing_then_each_failure_doubles_the_delay_up_to_the_cap() {
        let table = Failures::new(Backoff::standard(3));
        let start = Instant::now();
        let delays: Vec<Duration> = (0..16).map(|i| table.fail("alice", start + SECOND * i)).collect();
        assert_eq!(&delays[..3], &[Duration::ZERO, Duration::ZERO, SECOND], "the third starts 1 s");
        assert_eq!(&delays[3..6], &[SECOND * 2, SECOND * 4, SECOND * 8], "doubling");
        assert_eq!(delays[15], Duration::from_secs(900), "capped at 15 minutes");
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "never shrinks: {delays:?}");
    }

    #[test]
    fn a_block_ends_by_itself_and_other_keys_are_untouched() {
        let table = Failures::new(Backoff::standard(1));
        let start = Instant::now();
        assert_eq!(table.fail("alice", start), SECOND);
        assert_eq!(table.blocked_for("alice", start + SECOND / 2), Some(SECOND / 2));
        assert_eq!(table.blocked_for("alice", start + SECOND), None, "the block ends");
        assert_eq!(table.blocked_for("bob", start), None, "another key is free");
    }

    #[test]
    fn a_failure_known_late_gets_its_whole_delay_from_the_moment_it_is_known() {
        let table = Failures::new(Backoff::standard(1));
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
        let table = Failures::new(Backoff::standard(2));
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
        let table = Failures::new(backoff);
        let start = Instant::now();
        table.fail("alice", start);
        table.fail("alice", start);
        assert_eq!(table.fail("alice", start + SECOND * 11), Duration::ZERO, "the count restarted");
        table.prune(start + SECOND * 30);
        assert!(table.is_empty(), "nothing blocked or recent is kept");
    }

    #[test]
    fn attempts_count_as_failures_so_a_parallel_burst_cannot_pass_the_check_together() {
        let table = Failures::new(Backoff::standard(3));
        let now = Instant::now();
        let answers: Vec<bool> = (0..10).map(|_| table.attempt("alice", now).is_ok()).collect();
        assert_eq!(answers.iter().filter(|ok| **ok).count(), 3, "three in flight at most: {answers:?}");
    }

    #[test]
    fn a_successful_attempt_is_taken_back_and_earlier_failures_stay() {
        let table = Failures::new(Backoff::standard(3));
        let now = Instant::now();
        table.attempt("10.0.0.1", now).unwrap();
        table.attempt("10.0.0.1", now).unwrap();
        table.take_back("10.0.0.1");
        assert_eq!(table.fail("10.0.0.1", now), Duration::ZERO, "one earlier failure + this one: still free");
        assert_eq!(table.fail("10.0.0.1", now), SECOND, "the third starts the delay");
    }

    #[test]
    fn attempts_from_many_threads_at_once_let_exactly_the_free_failures_through() {
        let table = Failures::new(Backoff::standard(3));
        let now = Instant::now();
        let passed: usize = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| (0..25).filter(|_| table.attempt("mallory", now).is_ok()).count()))
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).sum()
        });
        assert_eq!(passed, 3, "200 parallel guesses, 3 let through");
        assert!(table.blocked_for("mallory", now).is_some(), "and the key is blocked");
    }
}
