//! Brute-force throttles: login failures per account and per IP with growing delays that a
//! success resets, parallel guesses, password-reset requests per email and per IP, reset-token
//! guessing, and registration bursts. The test that reads the throttle counters runs its server as
//! a process of its own, so the attempts it counts are its own (`support/metrics.rs`).

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::*;
use crate::support::metrics::{Scrape, scrape};

const WRONG: &str = "not-the-right-passphrase";

/// POST /api/login as forwarded by the trusted proxy for `client_ip`.
async fn login_from(app: &TestApp, client_ip: &str, email: &str, password: &str) -> reqwest::Response {
    forwarded_for(app, Method::POST, "/api/login", client_ip)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn login_failures_of_one_account_get_growing_delays_and_a_success_starts_afresh() {
    // A process of its own, so that its counters move with this test's logins only.
    let (app, _server) = spawn_app_process(&["--login-failures-per-account", "3"]).await;
    let series =
        [("auth_logins_total", r#"result="throttled""#), ("rate_limited_total", r#"scope="login_account""#)];
    let counts = |s: &Scrape| series.map(|(name, label)| s.value(name, &[label]));
    let before = counts(&scrape(&app).await);
    let user = app.register_user().await;
    let bystander = app.register_user().await;

    for attempt in 1..=3 {
        let response = app.post_login(&user.email, WRONG).await;
        assert_error(
            response,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            &format!("failure {attempt}"),
        )
        .await;
    }
    let blocked = app.post_login(&user.email.to_uppercase(), &user.password).await;
    let first_delay = assert_throttled(blocked, "even the right password during the delay").await;
    assert_eq!(first_delay, 1, "the first delay is one second");
    assert_eq!(
        app.post_login(&bystander.email, &bystander.password).await.status(),
        StatusCode::OK,
        "others"
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let failure = app.post_login(&user.email, WRONG).await;
    assert_eq!(failure.status(), StatusCode::UNAUTHORIZED, "after the delay the password is checked again");
    let second_delay = assert_throttled(app.post_login(&user.email, WRONG).await, "the next failure").await;
    assert!(second_delay > first_delay, "the delay grows: {first_delay} s, then {second_delay} s");

    tokio::time::sleep(Duration::from_secs(second_delay) + Duration::from_millis(100)).await;
    assert_eq!(
        app.post_login(&user.email, &user.password).await.status(),
        StatusCode::OK,
        "the owner gets in"
    );
    for attempt in 1..=3 {
        let response = app.post_login(&user.email, WRONG).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "after the success, failure {attempt} is free"
        );
    }
    let after = counts(&scrape(&app).await);
    for ((name, label), (after, before)) in series.iter().zip(after.iter().zip(before)) {
        assert_eq!(after - before, 2.0, "{name}{{{label}}} counted the two throttled attempts");
    }
}

#[actix_web::test]
async fn unknown_emails_are_throttled_exactly_like_accounts() {
    let app = spawn_app_with(&["--login-failures-per-account", "2"]).await;
    let user = app.register_user().await;
    let unknown = unique_email();
    // Side by side, so both delays start at the same moment (each when its failure is known),
    // and both are asked about at once right after, well within the first delay of a second
    // however slow the machine is at hashing.
    for round in 0..2 {
        let (known, stranger) =
            tokio::join!(app.post_login(&user.email, WRONG), app.post_login(&unknown, WRONG));
        for (email, response) in [(&user.email, known), (&unknown, stranger)] {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{email} #{round}");
        }
    }
    let (known, stranger) = tokio::join!(app.post_login(&user.email, WRONG), app.post_login(&unknown, WRONG));
    assert_eq!(
        (known.status(), header(&known, "retry-after")),
        (stranger.status(), header(&stranger, "retry-after")),
        "the throttle does not tell which email has an account"
    );
    assert_eq!(known.bytes().await.unwrap(), stranger.bytes().await.unwrap());
}

#[actix_web::test]
async fn a_parallel_burst_of_guesses_cannot_slip_past_the_throttle() {
    let app = spawn_app_with(&["--login-failures-per-account", "3"]).await;
    let user = app.register_user().await;
    let guesses =
        (0..12).map(|i| app.post_login(&user.email, if i % 2 == 0 { WRONG } else { "guess-two-22" }));
    let statuses: Vec<StatusCode> = join_all(guesses).await.iter().map(|r| r.status()).collect();
    let tried = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let throttled = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((tried, throttled), (3, 9), "only 3 passwords were tried: {statuses:?}");
}

#[actix_web::test]
async fn login_failures_from_one_ip_are_throttled_across_accounts_and_other_ips_are_not() {
    let app = spawn_app_with(&["--login-failures-per-ip", "3", "--trusted-proxies", "127.0.0.1/32"]).await;
    let user = app.register_user().await;
    let attacker = "203.0.113.66";
    for _ in 0..3 {
        let response = login_from(&app, attacker, &unique_email(), WRONG).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "spraying from one IP");
    }
    let sprayed = login_from(&app, attacker, &user.email, &user.password).await;
    assert_throttled(sprayed, "the attacker's IP is in a delay, whatever the account").await;
    let owner = login_from(&app, "198.51.100.5", &user.email, &user.password).await;
    assert_eq!(owner.status(), StatusCode::OK, "the owner on another IP logs in");
}

#[actix_web::test]
async fn password_reset_requests_are_throttled_per_email_and_per_ip() {
    let args = [
        "--forgot-per-email-per-hour",
        "2",
        "--forgot-per-ip-per-hour",
        "4",
        "--trusted-proxies",
        "127.0.0.1/32",
    ];
    let app = spawn_app_with(&args).await;
    let forgot = |ip: &'static str, email: String| {
        forwarded_for(&app, Method::POST, "/api/password/forgot", ip).json(&json!({"email": email})).send()
    };
    let (victim, (a, b)) = (unique_email(), ("203.0.113.10", "203.0.113.11"));

    for round in 0..2 {
        assert_eq!(
            forgot(a, victim.clone()).await.unwrap().status(),
            StatusCode::ACCEPTED,
            "request {round}"
        );
    }
    let third =
        assert_throttled(forgot(a, victim.clone()).await.unwrap(), "a third mail for one address").await;
    assert!(third > 60, "the email's budget refills over the hour: Retry-After {third}");
    assert_throttled(forgot(b, victim.clone()).await.unwrap(), "the same address from another IP").await;
    assert_eq!(forgot(a, unique_email()).await.unwrap().status(), StatusCode::ACCEPTED, "IP a's 4th");
    assert_throttled(forgot(a, unique_email()).await.unwrap(), "IP a's 5th request this hour").await;
}

#[actix_web::test]
async fn reset_token_guessing_is_throttled_per_ip() {
    let app = spawn_app_with(&["--reset-failures-per-ip", "3", "--trusted-proxies", "127.0.0.1/32"]).await;
    let user = app.register_user().await;
    assert_eq!(app.post_json("/api/password/forgot", &json!({"email": user.email})).await.status(), 202);
    let token = reset_token_from_mail(app.wait_for_mail(1).await.last().unwrap());
    let reset = |ip: &'static str, token: String| {
        forwarded_for(&app, Method::POST, "/api/password/reset", ip)
            .json(&json!({"token": token, "new_password": "a-brand-new-passphrase-7"}))
            .send()
    };
    let guesser = "203.0.113.99";
    for guess in 0..3 {
        let response = reset(guesser, format!("guessed-token-{guess}")).await.unwrap();
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_token", &format!("guess {guess}")).await;
    }
    assert_throttled(reset(guesser, token.clone()).await.unwrap(), "even a good token from the guesser")
        .await;
    let owner = reset("198.51.100.8", token).await.unwrap();
    assert_eq!(
        owner.status(),
        StatusCode::NO_CONTENT,
        "the owner's IP is not throttled and the token still works"
    );
}

#[actix_web::test]
async fn registration_bursts_from_one_ip_are_throttled() {
    let app =
        spawn_app_with(&["--registrations-per-ip-per-hour", "3", "--trusted-proxies", "127.0.0.1/32"]).await;
    let register = |ip: &'static str| {
        let body =
            json!({"email": unique_email(), "password": PASSWORD, "first_name": "A", "last_name": "B"});
        forwarded_for(&app, Method::POST, "/api/register", ip).json(&body).send()
    };
    for round in 0..3 {
        assert_eq!(
            register("203.0.113.20").await.unwrap().status(),
            StatusCode::CREATED,
            "registration {round}"
        );
    }
    assert_throttled(register("203.0.113.20").await.unwrap(), "the 4th registration in an hour").await;
    assert_eq!(register("203.0.113.21").await.unwrap().status(), StatusCode::CREATED, "another IP");
}
