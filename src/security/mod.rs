//! Security hardening that cuts across routes (docs/SECURITY.md maps it to OWASP ASVS):
//!
//! - [`client_ip`]: the client IP, believing `X-Forwarded-For` only from trusted proxies.
//! - [`rate_limit`]: the REST rate limit on `/api/*` with the `RateLimit-*` headers.
//! - [`origin`]: `Origin`/`Sec-Fetch-Site` checks for cookie-authenticated writes and WebSockets.
//! - [`headers`]: CSP, nosniff, frame, referrer, COOP/CORP, permissions and HSTS on every response.
//! - [`cors`]: CORS for `SWITCHBOARD_ALLOWED_ORIGINS` only.
//! - [`connections`]: per-IP caps on plain HTTP connections, and the deadline of every body.
//! - [`ip_cap`]: open connections per client IP (HTTP and WebSocket caps).
//!
//! The CSRF token itself (double submit, bound to the session by HMAC) lives with the other
//! credential checks in `input/credentials.rs`; the brute-force throttles of the account routes with
//! the accounts service (`services/accounts/throttles.rs`).

pub mod client_ip;
pub mod connections;
pub mod cors;
pub mod headers;
pub mod ip_cap;
pub mod origin;
pub mod rate_limit;

/// Whether a path is part of the REST API (`/api/*`).
pub fn is_api_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}
