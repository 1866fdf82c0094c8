//! The failure throttle's contract (`throttle.lua` against `Failures`): free failures, then a
//! delay that doubles up to a cap; an attempt counts as a failure from the moment it is let
//! through, a failure known late gets its whole delay from then, a success takes its attempt
//! back, forgetting starts afresh, and old failures are forgotten. One count over every node.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::{Cluster, NODES, eventually_async, on_every_engine, unique};
use switchboard::seams::throttle::{Backoff, FailureThrottle};

on_every_engine!(
    free_failures_pass_then_each_failure_doubles_the_delay_up_to_the_cap,
    parallel_attempts_on_every_node_let_exactly_the_free_failures_through,
    a_successful_attempt_is_taken_back_and_earlier_failures_stay,
    forgetting_a_key_starts_it_afresh_and_leaves_other_keys_alone,
    a_failure_known_late_gets_its_whole_delay_from_the_moment_it_is_known,
    failures_are_forgotten_once_none_came_for_forget_after_counted_from_the_last_known,
);

/// A backoff with short delays, remembered for a minute.
fn backoff(free_failures: u32, base_ms: u64, max_ms: u64) -> Backoff {
    Backoff {
        free_failures,
        base_delay: Duration::from_millis(base_ms),
        max_delay: Duration::from_millis(max_ms),
        forget_after: Duration::from_secs(60),
    }
}

/// Attempts until one is let through (a refused attempt counts nothing).
async fn attempt_until_let_through(throttle: &dyn FailureThrottle, key: &str) {
    eventually_async("an attempt to be let through", || async { throttle.attempt(key).await.ok() }).await;
}

/// The wait a refused attempt is told, failing if it was let through.
async fn refused(throttle: &dyn FailureThrottle, key: &str, case: &str) -> Duration {
    match throttle.attempt(key).await {
        Err(wait) => wait,
        Ok(()) => panic!("{case}: the attempt was let through"),
    }
}

/// Two free failures (the second starts the first delay), then 300, 600 and 1200 ms, capped at
/// 1200; a refused attempt is told at most its remaining delay and counts nothing.
async fn free_failures_pass_then_each_failure_doubles_the_delay_up_to_the_cap(cluster: &Cluster) {
    let throttles = cluster.throttles("contract_doubling", backoff(2, 300, 1200));
    let key = unique("doubling");
    let ms = Duration::from_millis;
    assert_eq!(throttles[0].attempt(&key).await, Ok(()), "the first failure is free");
    assert_eq!(throttles[1].attempt(&key).await, Ok(()), "the second is free and starts the delay");
    // (case, the delay this failure started: (lower, upper) bound of the wait told).
    let steps = [
        ("after the second failure", (ms(0), ms(300))),
        ("after the third", (ms(300), ms(600))),
        ("after the fourth", (ms(600), ms(1200))),
        ("after the fifth, capped", (ms(600), ms(1200))),
    ];
    for (n, (case, (above, at_most))) in steps.into_iter().enumerate() {
        let told_at = Instant::now();
        let wait = refused(&*throttles[n % NODES], &key, case).await;
        assert!(wait > above && wait <= at_most, "{case}: told to wait {wait:?}");
        let again = refused(&*throttles[(n + 1) % NODES], &key, case).await;
        assert!(again <= wait, "{case}: a refused attempt adds nothing ({again:?} after {wait:?})");
        attempt_until_let_through(&*throttles[n % NODES], &key).await;
        // Redis counts whole milliseconds.
        let waited = told_at.elapsed() + Duration::from_millis(1);
        assert!(waited >= wait, "{case}: let through after {waited:?}, told {wait:?}");
    }
}

/// Twelve guesses at once over both nodes: the free failures' worth pass, the rest are refused.
async fn parallel_attempts_on_every_node_let_exactly_the_free_failures_through(cluster: &Cluster) {
    let throttles = cluster.throttles("contract_parallel", backoff(3, 5_000, 5_000));
    let key = unique("parallel");
    let attempts = (0..12).map(|n| throttles[n % NODES].attempt(&key));
    let passed = join_all(attempts).await.into_iter().filter(Result::is_ok).count();
    assert_eq!(passed, 3, "three in flight at most");
}

/// A success takes back its own attempt only: with three free failures, two failures, a
/// success and then two more attempts pass, and the next is refused.
async fn a_successful_attempt_is_taken_back_and_earlier_failures_stay(cluster: &Cluster) {
    let throttles = cluster.throttles("contract_take_back", backoff(3, 5_000, 5_000));
    let key = unique("take-back");
    assert_eq!(throttles[0].attempt(&key).await, Ok(()), "failure 1");
    assert_eq!(throttles[1].attempt(&key).await, Ok(()), "an attempt that will succeed");
    throttles[1].take_back(&key).await;
    assert_eq!(throttles[0].attempt(&key).await, Ok(()), "failure 2");
    assert_eq!(throttles[1].attempt(&key).await, Ok(()), "failure 3 starts the delay");
    let wait = refused(&*throttles[0], &key, "after three failures").await;
    assert!(wait > Duration::from_secs(4), "the base delay: {wait:?}");
    throttles[0].take_back(&key).await;
    refused(&*throttles[1], &key, "a take-back leaves a running delay").await;
}

/// After `forget` a blocked key is let through at once and gets its free failures again;
/// another key's block stays.
async fn forgetting_a_key_starts_it_afresh_and_leaves_other_keys_alone(cluster: &Cluster) {
    let throttles = cluster.throttles("contract_forget", backoff(2, 5_000, 5_000));
    let (key, other) = (unique("forget"), unique("bystander"));
    for key in [&key, &key, &other, &other] {
        throttles[0].attempt(key).await.expect("free failures");
    }
    refused(&*throttles[1], &key, "blocked before forgetting").await;
    throttles[1].forget(&key).await;
    assert_eq!(throttles[0].attempt(&key).await, Ok(()), "let through at once");
    assert_eq!(throttles[1].attempt(&key).await, Ok(()), "and free again");
    refused(&*throttles[0], &key, "until its free failures are spent").await;
    refused(&*throttles[1], &other, "another key's block stays").await;
}

/// A failure reported 400 ms after its attempt was let through (a slow password check) blocks
/// for its whole delay from the report, not what is left of it; a report for a key never let
/// through changes nothing.
async fn a_failure_known_late_gets_its_whole_delay_from_the_moment_it_is_known(cluster: &Cluster) {
    let throttles = cluster.throttles("contract_late", backoff(1, 600, 600));
    let (key, never) = (unique("late"), unique("never"));
    throttles[0].attempt(&key).await.expect("the only free failure, starting 600 ms");
    tokio::time::sleep(Duration::from_millis(400)).await;
    throttles[1].failed(&key).await;
    let wait = refused(&*throttles[0], &key, "after the late failure").await;
    assert!(wait > Duration::from_millis(450), "the whole delay from the report, not 200 ms: {wait:?}");
    throttles[1].failed(&never).await;
    assert_eq!(throttles[0].attempt(&never).await, Ok(()), "a report alone blocks nothing");
}

/// Failures are forgotten `forget_after` after the last one known: with a second, one attempt
/// later counts from zero; counted from a failure reported late, the window runs from the report.
async fn failures_are_forgotten_once_none_came_for_forget_after_counted_from_the_last_known(
    cluster: &Cluster,
) {
    let forget_after = Duration::from_millis(1000);
    let backoff = Backoff { forget_after, ..backoff(2, 5_000, 5_000) };
    let throttles = cluster.throttles("contract_forget_after", backoff);

    let (key, late) = (unique("old"), unique("reported-late"));
    throttles[0].attempt(&key).await.expect("failure 1");
    throttles[1].attempt(&late).await.expect("failure 1, reported late");
    tokio::time::sleep(Duration::from_millis(600)).await;
    throttles[1].failed(&late).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1.1 s after its only failure: forgotten, so two more are free.
    assert_eq!(throttles[0].attempt(&key).await, Ok(()), "counted from zero");
    assert_eq!(throttles[1].attempt(&key).await, Ok(()), "the second free one");
    refused(&*throttles[0], &key, "then the delay").await;
    // 0.5 s after its failure was reported (1.1 s after its attempt): remembered.
    assert_eq!(throttles[0].attempt(&late).await, Ok(()), "the second failure starts the delay");
    refused(&*throttles[1], &late, "the report renewed the memory").await;
}
