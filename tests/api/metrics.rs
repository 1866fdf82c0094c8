//! `/metrics` as a Prometheus server and an operator see it: every name of docs/API.md §6, request
//! counts by route pattern (never by raw path), no personal data, a scrape `promtool` accepts, and
//! the optional bearer token.
//!
//! The recorder is global to the test process and other tests run in parallel, so counts are
//! compared as "grew by at least", never as exact values.

use std::io::Write;
use std::process::{Command, Stdio};

use reqwest::{Method, StatusCode};

use crate::support::app::{TestApp, assert_error, spawn_app, spawn_app_with};

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

/// GET /metrics, optionally with a bearer token; asserts 200 and returns the body.
async fn scrape(app: &TestApp, token: Option<&str>) -> String {
    let mut request = app.request(Method::GET, "/metrics");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    assert_eq!(response.status(), StatusCode::OK, "the scrape succeeds");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "exposition content type, got {content_type}"
    );
    response.text().await.unwrap()
}

/// The sample lines of `name` whose labels include every `label="value"` pair of `labels`.
fn samples<'a>(scrape: &'a str, name: &str, labels: &[&str]) -> Vec<&'a str> {
    scrape
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .collect()
}

/// The value of the one sample of `name` with `labels`.
fn value(scrape: &str, name: &str, labels: &[&str]) -> f64 {
    let lines = samples(scrape, name, labels);
    assert_eq!(lines.len(), 1, "one {name} sample with {labels:?}, found {lines:?}");
    let number = lines[0].rsplit(' ').next().unwrap();
    number.parse().unwrap_or_else(|e| panic!("{name} value {number:?}: {e}"))
}

#[actix_web::test]
async fn the_scrape_names_every_metric_and_counts_requests_by_route_pattern() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    app.login(&user).await;
    let unknown = format!("/api/no-such-thing-{}", uuid::Uuid::new_v4().simple());
    let response = app.request(Method::GET, &unknown).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "an unknown path is 404");

    let body = scrape(&app, None).await;

    for name in NAMES {
        assert!(body.lines().any(|line| line.starts_with(name)), "the scrape has {name}:\n{body}");
        let base = name.trim_end_matches("_bucket");
        assert!(body.contains(&format!("# HELP {base} ")), "{base} has a HELP line");
    }
    assert!(
        !samples(
            &body,
            "http_requests_total",
            &[r#"method="POST""#, r#"route="/api/login""#, r#"status="200""#]
        )
        .is_empty(),
        "the successful login is counted under its route:\n{body}"
    );
    assert!(
        !samples(&body, "http_requests_total", &[r#"route="unmatched""#, r#"status="404""#]).is_empty(),
        "unknown paths are counted as route=\"unmatched\":\n{body}"
    );
    assert!(
        !samples(&body, "http_request_duration_seconds_bucket", &[r#"route="/api/login""#, r#"le="0.5""#])
            .is_empty(),
        "request durations are a real histogram with buckets:\n{body}"
    );
    assert!(!body.contains(&unknown), "the raw unknown path is not a label");
    assert!(!body.contains(&user.email), "no email appears in the scrape");
    assert!(!body.contains(&user.id), "no user id appears in the scrape");
}

#[actix_web::test]
async fn the_scrape_passes_promtool_check_metrics() {
    let app = spawn_app().await;
    // Some traffic first, so counters, the histogram and error statuses are all present.
    app.register_user().await;
    app.request(Method::GET, "/no-such-page").send().await.unwrap();
    let body = scrape(&app, None).await;

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
    let app = spawn_app_with(&["--metrics-token", "s3cret-metrics-token"]).await;

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

    let body = scrape(&app, Some("s3cret-metrics-token")).await;
    assert!(body.contains("http_requests_total"), "the right token gets the scrape");
}

#[actix_web::test]
async fn ws_connects_total_counts_each_upgrade_by_its_result() {
    let app = spawn_app_with(&["--ws-max-sessions-per-user", "1"]).await;
    let (_, token) = app.user_with_token().await;
    let count =
        |body: &str, result: &str| value(body, "ws_connects_total", &[&format!(r#"result="{result}""#)]);
    let before = scrape(&app, None).await;

    let _open = app.connect_ws(&token).await;
    let over_cap = app.try_connect_ws("", &[("authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(over_cap.err().map(|r| r.status), Some(429), "a second session is over the cap of 1");
    let forged = app.try_connect_ws("?token=not-a-token", &[]).await;
    assert_eq!(forged.err().map(|r| r.status), Some(401), "a forged token");
    let foreign = app
        .try_connect_ws("", &[("cookie", &format!("sb_access={token}")), ("origin", "https://evil.example")])
        .await;
    assert_eq!(foreign.err().map(|r| r.status), Some(403), "a cookie from a foreign origin");

    let after = scrape(&app, None).await;
    for result in ["accepted", "capped", "unauthorized", "forbidden"] {
        assert_eq!(count(&after, result) - count(&before, result), 1.0, "one upgrade {result}");
    }
    assert_eq!(count(&after, "failed"), count(&before, "failed"), "nothing else failed");
}

#[actix_web::test]
async fn a_successful_login_increments_auth_logins_total_success() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let success = [r#"result="success""#];
    let before = value(&scrape(&app, None).await, "auth_logins_total", &success);

    app.login(&user).await;

    let after = value(&scrape(&app, None).await, "auth_logins_total", &success);
    assert!(after >= before + 1.0, "auth_logins_total{{result=\"success\"}} grew from {before} to {after}");
}
