//! The limiter's contract (GCRA, `gcra.lua` against `RateLimits`): a key gets a burst of
//! `limit`, then one request per `window / limit`; what each check answers is what the
//! `RateLimit-*` headers and `retry_after_ms` tell clients, so the numbers are held exactly where
//! both engines compute them from the same instant, and within a tolerance where time passes.
//! The budget is one over every node.

use std::time::{Duration, Instant};

use super::{Cluster, NODES, eventually_async, on_every_engine, unique};

on_every_engine!(
    a_burst_of_the_limit_passes_on_any_node_then_the_next_request_waits_for_one_share,
    a_refused_key_passes_again_once_retry_after_has_passed_and_only_one_share_came_back,
    the_whole_burst_is_back_once_reset_after_has_passed,
);

/// A burst of `limit` counts `remaining` down and `reset_after` up one share at a time, wherever
/// the requests land; the next is refused for at most one share, its reset being the whole
/// window; another key is untouched.
async fn a_burst_of_the_limit_passes_on_any_node_then_the_next_request_waits_for_one_share(
    cluster: &Cluster,
) {
    let share = Duration::from_secs(1);
    let limiters = cluster.limiters("contract_burst", 4, share * 4);
    let key = unique("burst");
    for n in 0..4u32 {
        let decision = limiters[n as usize % NODES].check(&key).await;
        let case = format!("request {} of the burst: {decision:?}", n + 1);
        assert!(decision.allowed, "{case}");
        assert_eq!(decision.limit, 4, "{case}");
        assert_eq!(decision.remaining, 3 - n, "{case}");
        assert_eq!(decision.retry_after, Duration::ZERO, "{case}");
        assert_eq!(decision.reset_after, share * (n + 1), "{case}: a share per request used");
    }
    let refused = limiters[1].check(&key).await;
    assert!(!refused.allowed, "the fifth is refused: {refused:?}");
    assert_eq!((refused.limit, refused.remaining), (4, 0), "{refused:?}");
    assert!(
        refused.retry_after > Duration::ZERO && refused.retry_after <= share,
        "a refusal waits at most one share: {refused:?}"
    );
    assert_eq!(refused.reset_after, share * 4, "a refused key is full again after the window: {refused:?}");

    let other = limiters[0].check(&unique("other")).await;
    assert!(other.allowed && other.remaining == 3, "another key has its own burst: {other:?}");
}

/// Checking a refused key changes nothing; the first check after `retry_after` passes (never
/// early), and the one after it is refused again: one share came back, not the burst.
async fn a_refused_key_passes_again_once_retry_after_has_passed_and_only_one_share_came_back(
    cluster: &Cluster,
) {
    let share = Duration::from_millis(1500);
    let limiters = cluster.limiters("contract_refill", 2, share * 2);
    let key = unique("refill");
    for limiter in &limiters[..2] {
        assert!(limiter.check(&key).await.allowed, "the burst of 2");
    }
    let refused_at = Instant::now();
    let refused = limiters[0].check(&key).await;
    assert!(!refused.allowed, "{refused:?}");
    let passed = eventually_async("the key to pass again", || async {
        let decision = limiters[1].check(&key).await;
        decision.allowed.then_some((decision, refused_at.elapsed()))
    })
    .await;
    let (allowed, waited) = passed;
    // Redis counts microseconds and the process nanoseconds: a millisecond covers both.
    assert!(
        waited + Duration::from_millis(1) >= refused.retry_after,
        "passed after {waited:?}, before the retry_after of {:?}",
        refused.retry_after
    );
    assert!(waited <= refused.retry_after + Duration::from_millis(500), "passed only after {waited:?}");
    assert_eq!(allowed.remaining, 0, "the share it used was the only one: {allowed:?}");
    let again = limiters[0].check(&key).await;
    assert!(!again.allowed, "the next waits for another share: {again:?}");
    assert!(again.retry_after > share / 2, "about one share: {again:?}");
}

/// After the `reset_after` a refusal named, the whole burst passes again, counting down from
/// the top.
async fn the_whole_burst_is_back_once_reset_after_has_passed(cluster: &Cluster) {
    let limiters = cluster.limiters("contract_reset", 3, Duration::from_millis(1500));
    let key = unique("reset");
    for n in 0..3 {
        assert!(limiters[n % NODES].check(&key).await.allowed, "request {} of the burst", n + 1);
    }
    let refused_at = Instant::now();
    let refused = limiters[1].check(&key).await;
    assert!(!refused.allowed, "{refused:?}");
    // Waiting on what the limiter said is the case itself: checking sooner would spend shares.
    tokio::time::sleep_until((refused_at + refused.reset_after).into()).await;
    for n in 0..3u32 {
        let decision = limiters[n as usize % NODES].check(&key).await;
        assert!(decision.allowed, "request {} of the new burst: {decision:?}", n + 1);
        assert_eq!(decision.remaining, 2 - n, "request {} of the new burst: {decision:?}", n + 1);
    }
}
