//! `/metrics` as a Prometheus server and an operator see it: every name of docs/API.md §6, request
//! counts by route pattern (never by raw path), no personal data, a scrape `promtool` accepts, and
//! the optional bearer token.
//!
//! Every test here starts the server as a process of its own (`spawn_app_process`): the Prometheus
//! recorder is global to a process, so one shared with the other in-process test servers would
//! move with their traffic. In a process of its own only this test's requests count, and the
//! changes are asserted exactly (see `support/metrics.rs`).

use std::io::Write;
use std::process::{Command, Stdio};

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use crate::support::app::{TestApp, assert_error, spawn_app_process};
use crate::support::metrics::{Scrape, scrape, scrape_with};

/// Every metric name of docs/API.md §6, as it appears in a scrape.
const NAMES: [&str; 11] = [
    "active_users",
    "ws_sessions",
    "credit_usage_total",
    "http_requests_total",
    "http_request_duration_seconds_bucket",
    "ws_messages_total",
    "rate_limited_total",
    "auth_logins_total",
    "credits_insufficient_total",
    "ws_connects_total",
    "ws_outbound_dropped_total",
];

/// Where the Debian package `prometheus` installs `promtool`.
const PROMTOOL: &str = "/usr/bin/promtool";

/// Scrapes `app` until `ready` holds for the scrape (counters may be recorded just after the answer
/// that caused them), for at most 30 s; returns that scrape, or the last one.
async fn scrape_until(app: &TestApp, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = scrape(app).await;
        if ready(&body) || Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn the_scrape_names_every_metric_and_counts_requests_by_route_pattern() {
    let (app, _server) = spawn_app_process(&[]).await;
    let user = app.register_user().await;
    app.login(&user).await;
    let unknown = format!("/api/no-such-thing-{}", uuid::Uuid::new_v4().simple());
    let response = app.request(Method::GET, &unknown).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "an unknown path is 404");

    let login = [r#"method="POST""#, r#"route="/api/login""#, r#"status="200""#];
    let unmatched = [r#"route="unmatched""#, r#"status="404""#];
    let scraped = scrape_until(&app, |s| {
        s.samples("http_requests_total", &login).len() == 1
            && s.samples("http_requests_total", &unmatched).len() == 1
    })
    .await;
    let body = &scraped.0;

    for name in NAMES {
        assert!(body.lines().any(|line| line.starts_with(name)), "the scrape has {name}:\n{body}");
        let base = name.trim_end_matches("_bucket");
        assert!(body.contains(&format!("# HELP {base} ")), "{base} has a HELP line");
    }
    assert_eq!(scraped.value("http_requests_total", &login), 1.0, "the one login, under its route:\n{body}");
    assert_eq!(
        scraped.value("http_requests_total", &unmatched),
        1.0,
        "the one unknown path, as route=\"unmatched\":\n{body}"
    );
    let le = |bound: &str| {
        scraped.value(
            "http_request_duration_seconds_bucket",
            &[r#"route="/api/login""#, &format!(r#"le="{bound}""#)],
        )
    };
    assert_eq!(le("+Inf"), 1.0, "the login's duration is in the histogram:\n{body}");
    assert!(le("0.0005") <= le("0.5") && le("0.5") <= le("+Inf"), "the buckets are cumulative:\n{body}");
    assert!(!body.contains(&unknown), "the raw unknown path is not a label");
    assert!(!body.contains(&user.email), "no email appears in the scrape");
    assert!(!body.contains(&user.id), "no user id appears in the scrape");
}

#[actix_web::test]
async fn the_scrape_passes_promtool_check_metrics() {
    let (app, _server) = spawn_app_process(&[]).await;
    // Some traffic first, so counters, the histogram and error statuses are all present.
    app.register_user().await;
    app.request(Method::GET, "/no-such-page").send().await.unwrap();
    let body = scrape(&app).await.0;

    assert!(
        std::path::Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: install the Debian package `prometheus` (apt-get install prometheus) to run this test"
    );
    let mut promtool = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    promtool.stdin.take().unwrap().write_all(body.as_bytes()).expect("scrape written to promtool");
    let output = promtool.wait_with_output().expect("promtool finishes");
    assert!(
        output.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- scrape ---\n{body}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[actix_web::test]
async fn a_configured_metrics_token_is_required_to_scrape() {
    let (app, _server) = spawn_app_process(&["--metrics-token", "s3cret-metrics-token"]).await;

    let cases: [(&str, Option<&str>); 3] = [
        ("no Authorization header", None),
        ("a wrong token", Some("not-the-metrics-token")),
        ("the right token with a different length", Some("s3cret-metrics-token-and-more")),
    ];
    for (case, token) in cases {
        let mut request = app.request(Method::GET, "/metrics");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert!(response.headers().contains_key("www-authenticate"), "{case}: WWW-Authenticate is sent");
        assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized", case).await;
    }

    let body = scrape_with(&app, Some("s3cret-metrics-token")).await.0;
    assert!(body.contains("http_requests_total"), "the right token gets the scrape");
}

#[actix_web::test]
async fn ws_connects_total_counts_each_upgrade_by_its_result() {
    let (app, _server) = spawn_app_process(&["--ws-max-sessions-per-user", "1"]).await;
    let (_, token) = app.user_with_token().await;
    let results = ["accepted", "capped", "unauthorized", "forbidden", "failed"];
    let counts =
        |s: &Scrape| results.map(|result| s.value("ws_connects_total", &[&format!(r#"result="{result}""#)]));
    let before = counts(&scrape(&app).await);

    let _open = app.connect_ws(&token).await;
    let over_cap = app.try_connect_ws("", &[("authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(over_cap.err().map(|r| r.status), Some(429), "a second session is over the cap of 1");
    let forged = app.try_connect_ws("?token=not-a-token", &[]).await;
    assert_eq!(forged.err().map(|r| r.status), Some(401), "a forged token");
    let foreign = app
        .try_connect_ws("", &[("cookie", &format!("sb_access={token}")), ("origin", "https://evil.example")])
        .await;
    assert_eq!(foreign.err().map(|r| r.status), Some(403), "a cookie from a foreign origin");

    // One of each but `failed`; wait until all four are in, then take them exactly.
    let expected = [1.0, 1.0, 1.0, 1.0, 0.0];
    let grew = |s: &Scrape| counts(s).iter().zip(before).map(|(a, b)| a - b).sum::<f64>() >= 4.0;
    let after = counts(&scrape_until(&app, grew).await);
    for ((result, expected), (after, before)) in results.iter().zip(expected).zip(after.iter().zip(before)) {
        assert_eq!(after - before, expected, "upgrades counted as {result}");
    }
}

#[actix_web::test]
async fn a_successful_login_increments_auth_logins_total_success_by_one() {
    let (app, _server) = spawn_app_process(&[]).await;
    let user = app.register_user().await;
    let success = [r#"result="success""#];
    let before = scrape(&app).await.value("auth_logins_total", &success);

    app.login(&user).await;

    let grew = |s: &Scrape| s.value("auth_logins_total", &success) > before;
    let after = scrape_until(&app, grew).await.value("auth_logins_total", &success);
    assert_eq!(after - before, 1.0, "auth_logins_total{{result=\"success\"}} went from {before} to {after}");
}
