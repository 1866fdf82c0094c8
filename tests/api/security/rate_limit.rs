//! The REST rate limit: per user when authenticated, else per client IP; `RateLimit-*` headers on
//! every `/api/*` answer; 429 with `Retry-After` over the limit; probes, metrics, pages and `/ws`
//! are not counted. The test that reads `rate_limited_total` runs its server as a process of its
//! own, so the refusals it counts are its own (`support/metrics.rs`).

use std::time::Instant;

use reqwest::{Method, StatusCode};

use super::*;
use crate::support::metrics::scrape;

#[actix_web::test]
async fn the_61st_request_within_a_minute_is_429_and_another_user_is_unaffected() {
    // A process of its own, so that its `rate_limited_total` counts this test's refusals only.
    let (app, _server) = spawn_app_process(&["--rate-limit-per-minute", "60"]).await;
    let rest = [r#"scope="rest""#];
    let refused_before = scrape(&app).await.value("rate_limited_total", &rest);
    let (alice, alice_token) = app.user_with_token().await;
    let (_, bob_token) = app.user_with_token().await;

    let started = Instant::now();
    let first = app.get_with("/api/me", &alice_token).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(number(&first, "ratelimit-limit", "first request"), 60);
    assert_eq!(number(&first, "ratelimit-remaining", "first request"), 59);
    assert!(number(&first, "ratelimit-reset", "first request") <= 60);
    let mut allowed = 1;
    let refused = loop {
        let response = app.get_with("/api/me", &alice_token).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            break response;
        }
        assert_eq!(response.status(), StatusCode::OK, "request {} of alice", allowed + 1);
        allowed += 1;
        assert!(allowed <= 70, "no 429 after {allowed} requests");
    };
    // One request a second refills, so a slow machine may see a few more than 60 pass.
    let refilled = started.elapsed().as_secs() + 1;
    assert!((60..=60 + refilled).contains(&allowed), "{allowed} requests passed in {:?}", started.elapsed());
    assert_eq!(number(&refused, "ratelimit-limit", "the 429"), 60);
    assert_eq!(number(&refused, "ratelimit-remaining", "the 429"), 0);
    assert!(number(&refused, "ratelimit-reset", "the 429") >= 1);
    assert_throttled(refused, "the request over the limit").await;

    let by_key = app.get_with("/api/me", &alice.api_key).await;
    assert_eq!(by_key.status(), StatusCode::TOO_MANY_REQUESTS, "alice's API key shares her budget");
    let bob = app.get_with("/api/me", &bob_token).await;
    assert_eq!(bob.status(), StatusCode::OK, "bob has a budget of his own");
    assert_eq!(number(&bob, "ratelimit-remaining", "bob"), 59);
    let refused = scrape(&app).await.value("rate_limited_total", &rest) - refused_before;
    assert_eq!(refused, 2.0, "rate_limited_total{{scope=\"rest\"}} counted alice's two refusals");
}

#[actix_web::test]
async fn anonymous_requests_share_the_ip_budget_and_invented_credentials_cannot_escape_it() {
    let app = spawn_app_with(&["--rate-limit-per-minute", "3"]).await;
    let invented = [
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
        "sk_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "sk_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    ];
    for (i, token) in invented.iter().enumerate() {
        let response = app.get_with("/api/me", token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "invented credential {i}");
        assert_eq!(number(&response, "ratelimit-remaining", "invented credential"), 2 - i as u64);
    }
    let another = app.get_with("/api/me", "sk_cccccccccccccccccccccccccccccccccccccccccccc").await;
    assert_throttled(another, "a fourth invented credential from the same IP").await;
    let anonymous =
        app.request(Method::POST, "/api/login").json(&serde_json::json!({})).send().await.unwrap();
    assert_throttled(anonymous, "an anonymous request from the same IP").await;
}

#[actix_web::test]
async fn probes_metrics_pages_and_the_websocket_path_are_not_counted() {
    let app = spawn_app_with(&["--rate-limit-per-minute", "2"]).await;
    for path in ["/healthz", "/readyz", "/metrics", "/login", "/", "/ws"] {
        for round in 0..4 {
            let response = app.request(Method::GET, path).send().await.unwrap();
            let case = format!("GET {path} #{round}");
            assert_ne!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{case}");
            assert!(header(&response, "ratelimit-limit").is_none(), "{case}: no RateLimit-* header");
        }
    }
    let api = app.request(Method::GET, "/api/openapi.json").send().await.unwrap();
    assert_eq!(
        number(&api, "ratelimit-remaining", "the first /api request"),
        1,
        "nothing was counted before"
    );
    let unknown = app.request(Method::GET, "/api/no-such-route").send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(number(&unknown, "ratelimit-remaining", "an unknown /api route"), 0, "/api/* is counted");
}

#[actix_web::test]
async fn a_logged_out_token_spends_its_address_budget_not_its_former_users() {
    let app = spawn_app_with(&["--rate-limit-per-minute", "20"]).await;
    let (user, stale) = app.user_with_token().await;
    let live = app.login(&user).await["access_token"].as_str().unwrap().to_owned();
    let logout = app.request(Method::POST, "/api/logout").bearer_auth(&stale).send().await.unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let mut refused = false;
    for n in 0..40 {
        let response = app.get_with("/api/me", &stale).await;
        match response.status() {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => {
                refused = true;
                break;
            }
            other => panic!("request {n} with the logged-out token: {other}"),
        }
    }
    assert!(refused, "the dead token's requests are limited (by address)");
    for (case, credential) in [("the live session", live.as_str()), ("the API key", user.api_key.as_str())] {
        let response = app.get_with("/api/me", credential).await;
        assert_eq!(response.status(), StatusCode::OK, "{case}: the user's own budget is untouched");
        assert!(number(&response, "ratelimit-remaining", case) >= 10, "{case}: and nearly whole");
    }
}
