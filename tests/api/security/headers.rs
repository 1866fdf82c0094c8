//! Security headers on every response (API, pages, errors, 404s), `Cache-Control` of API
//! answers, HSTS behind TLS, and CORS only for the allowed origins.

use reqwest::{Method, StatusCode};

use super::*;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Every header of docs/API.md §4 with its exact value.
const EXPECTED: [(&str, &str); 7] = [
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=()"),
];

/// The security header problems of one response, described.
fn problems(response: &reqwest::Response, case: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (name, expected) in EXPECTED {
        match header(response, name) {
            Some(value) if value == expected => {}
            other => found.push(format!("{case}: {name} is {other:?}")),
        }
    }
    if let Some(server) = header(response, "server") {
        found.push(format!("{case}: a Server header {server:?}"));
    }
    found
}

#[actix_web::test]
async fn every_response_carries_the_security_headers_whatever_answers_it() {
    let app = spawn_app_with(&["--rate-limit-per-minute", "12"]).await;
    let (_, token) = app.user_with_token().await;
    let mut failures = Vec::new();
    let requests = [
        ("GET /api/me with a token", app.request(Method::GET, "/api/me").bearer_auth(&token)),
        ("GET /api/me without a credential (401)", app.request(Method::GET, "/api/me")),
        ("an unknown API route (404)", app.request(Method::GET, "/api/no-such-thing")),
        ("an unknown page (404)", app.request(Method::GET, "/no-such-page")),
        ("a wrong method (405)", app.request(Method::DELETE, "/api/login")),
        (
            "malformed JSON (400)",
            app.request(Method::POST, "/api/login").header("content-type", "application/json").body("{"),
        ),
        ("GET /healthz", app.request(Method::GET, "/healthz")),
        ("GET /metrics", app.request(Method::GET, "/metrics")),
        ("the login page", app.request(Method::GET, "/login")),
        ("the root page", app.request(Method::GET, "/")),
    ];
    for (case, request) in requests {
        failures.extend(problems(&request.send().await.unwrap(), case));
    }
    let mut refused = None;
    for _ in 0..20 {
        let response = app.request(Method::GET, "/api/openapi.json").send().await.unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(response);
            break;
        }
    }
    let refused = refused.expect("a 429 within 20 requests at 12 a minute");
    failures.extend(problems(&refused, "a 429"));
    assert!(failures.is_empty(), "missing or wrong security headers:\n{}", failures.join("\n"));
}

#[actix_web::test]
async fn api_answers_are_not_stored_unless_they_choose_their_own_caching() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;
    let cases = [
        ("GET /api/me", app.request(Method::GET, "/api/me").bearer_auth(&token)),
        ("GET /api/me/stats", app.request(Method::GET, "/api/me/stats").bearer_auth(&token)),
        ("a 401", app.request(Method::GET, "/api/me")),
        ("an unknown API route", app.request(Method::GET, "/api/nothing")),
    ];
    for (case, request) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(header(&response, "cache-control").as_deref(), Some("no-store"), "{case}");
    }
    let openapi = app.request(Method::GET, "/api/openapi.json").send().await.unwrap();
    assert_ne!(header(&openapi, "cache-control").as_deref(), Some("no-store"), "the public OpenAPI document");
}

#[actix_web::test]
async fn hsts_is_sent_only_when_the_server_is_known_to_be_behind_tls() {
    let plain = spawn_app().await;
    let response = plain.request(Method::GET, "/healthz").send().await.unwrap();
    assert!(header(&response, "strict-transport-security").is_none(), "not over plain HTTP");

    let behind_tls = spawn_app_with(&["--secure-cookies"]).await;
    let response = behind_tls.request(Method::GET, "/healthz").send().await.unwrap();
    let hsts = header(&response, "strict-transport-security").expect("HSTS with --secure-cookies");
    assert!(hsts.contains("max-age=31536000"), "{hsts}");
}

#[actix_web::test]
async fn cors_answers_only_allowed_origins_and_never_with_a_wildcard() {
    let app = spawn_app_with(&["--allowed-origins", "http://app.example"]).await;
    let (_, token) = app.user_with_token().await;
    let preflight = |origin: &'static str| {
        app.request(Method::OPTIONS, "/api/me")
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "PUT")
            .header("Access-Control-Request-Headers", "content-type, x-csrf-token")
            .send()
    };

    let allowed = preflight("http://app.example").await.unwrap();
    assert!(allowed.status().is_success(), "preflight of an allowed origin: {}", allowed.status());
    assert_eq!(header(&allowed, "access-control-allow-origin").as_deref(), Some("http://app.example"));
    assert_eq!(header(&allowed, "access-control-allow-credentials").as_deref(), Some("true"));
    let methods = header(&allowed, "access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("PUT") && methods.contains("DELETE"), "{methods}");
    let headers = header(&allowed, "access-control-allow-headers").unwrap_or_default().to_lowercase();
    assert!(headers.contains("x-csrf-token") && headers.contains("content-type"), "{headers}");

    let foreign = preflight("http://evil.example").await.unwrap();
    assert!(header(&foreign, "access-control-allow-origin").is_none(), "no CORS for a foreign origin");

    for (origin, expected) in
        [("http://app.example", Some("http://app.example")), ("http://evil.example", None)]
    {
        let response = app
            .request(Method::GET, "/api/me")
            .bearer_auth(&token)
            .header("Origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(&response, "access-control-allow-origin").as_deref(),
            expected,
            "GET from {origin}"
        );
        assert_ne!(header(&response, "access-control-allow-origin").as_deref(), Some("*"));
        if expected.is_some() {
            let exposed = header(&response, "access-control-expose-headers").unwrap_or_default();
            assert!(exposed.contains("ratelimit-remaining") && exposed.contains("retry-after"), "{exposed}");
        }
    }
}
