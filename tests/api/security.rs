//! Security hardening (issue 4), each item with its hostile case: the REST rate limit, the client
//! IP behind trusted proxies, brute-force throttles, CSRF with origin checks, security headers
//! and CORS, and logs free of secrets with structured security events.

mod client_ip;
mod csrf;
mod headers;
mod logs;
mod rate_limit;
mod throttle;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use crate::support::app::*;

/// The value of a response header as text.
fn header(response: &Response, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// A numeric response header; panics naming the case when it is missing.
fn number(response: &Response, name: &str, case: &str) -> u64 {
    header(response, name)
        .unwrap_or_else(|| panic!("{case}: no {name} header"))
        .parse()
        .unwrap_or_else(|e| panic!("{case}: {name} is not a number: {e}"))
}

/// A request as a trusted proxy would forward it for `client_ip`.
fn forwarded_for(app: &TestApp, method: Method, path: &str, client_ip: &str) -> RequestBuilder {
    app.request(method, path).header("X-Forwarded-For", client_ip)
}

/// What a browser holds after logging in: the `Cookie` header to send and the CSRF token.
struct BrowserSession {
    cookies: String,
    csrf: String,
}

/// Logs `user` in and keeps the cookies as a browser would.
async fn browser_login(app: &TestApp, user: &TestUser) -> BrowserSession {
    let response = app.post_login(&user.email, &user.password).await;
    assert_eq!(response.status(), StatusCode::OK, "login succeeds");
    let value =
        |name: &str| cookie_value(&set_cookie(&response, name).unwrap_or_else(|| panic!("{name} set")));
    let (access, csrf) = (value("sb_access"), value("sb_csrf"));
    BrowserSession { cookies: format!("sb_access={access}; sb_csrf={csrf}"), csrf }
}

/// Asserts a 429 with a positive `Retry-After` and the contract's body; returns `Retry-After`.
async fn assert_throttled(response: Response, case: &str) -> u64 {
    let retry_after = number(&response, "retry-after", case);
    assert!(retry_after >= 1, "{case}: Retry-After {retry_after}");
    let body: Value = assert_error(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited", case).await;
    assert_eq!(body["error"], "Too many requests", "{case}: {body}");
    retry_after
}
