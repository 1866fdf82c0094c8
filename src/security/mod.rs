//! Security hardening that cuts across routes (docs/SECURITY.md maps it to OWASP ASVS):
//!
//! - [`client_ip`]: the client IP, believing `X-Forwarded-For` only from trusted proxies.
//! - [`rate_limit`]: the REST rate limit on `/api/*` with the `RateLimit-*` headers.
//! - [`throttle`]: brute-force throttles of login, password reset and registration.
//! - [`origin`]: `Origin`/`Sec-Fetch-Site` checks for cookie-authenticated writes and WebSockets.
//! - [`headers`]: CSP, nosniff, frame, referrer, COOP/CORP, permissions and HSTS on every response.
//! - [`cors`]: CORS for `SWITCHBOARD_ALLOWED_ORIGINS` only.
//!
//! The CSRF token itself (double submit, bound to the session by HMAC) lives with the other
//! credential checks in `auth/extract.rs`.

pub mod client_ip;
pub mod cors;
pub mod headers;
pub mod origin;
pub mod rate_limit;
pub mod throttle;

use std::num::NonZeroU32;
use std::time::Duration;

use actix::{Actor, Addr};
use switchboard_actors::rate_limit::RateLimiterActor;
use switchboard_actors::throttle::{Backoff, FailureThrottleActor};

use crate::config::Config;

/// `scope` labels of `rate_limited_total` added by this module (besides `rest`).
pub const THROTTLE_SCOPES: [&str; 6] =
    ["login_account", "login_ip", "reset_ip", "forgot_email", "forgot_ip", "register_ip"];

const HOUR: Duration = Duration::from_secs(3600);

/// The limiter and throttle actors, shared by the middleware and the auth handlers.
pub struct Security {
    /// The REST rate limit, per user or client IP.
    pub rest: Addr<RateLimiterActor>,
    /// The brute-force throttles of the auth routes.
    pub auth: throttle::AuthThrottles,
}

impl Security {
    /// Starts the actors on the current actix system.
    pub fn start(config: &Config) -> Security {
        let per_hour = |limit: u32| RateLimiterActor::per_window(non_zero(limit), HOUR).start();
        let failures = |free: u32| FailureThrottleActor::new(Backoff::standard(free)).start();
        Security {
            rest: RateLimiterActor::per_minute(non_zero(config.rate_limit_per_minute)).start(),
            auth: throttle::AuthThrottles {
                login_account: failures(config.login_failures_per_account),
                login_ip: failures(config.login_failures_per_ip),
                reset_ip: failures(config.reset_failures_per_ip),
                forgot_email: per_hour(config.forgot_per_email_per_hour),
                forgot_ip: per_hour(config.forgot_per_ip_per_hour),
                register_ip: per_hour(config.registrations_per_ip_per_hour),
            },
        }
    }
}

/// Creates the `rate_limited_total` series of the throttles at zero (after the recorder is
/// installed), so dashboards see them before the first refusal.
pub fn register_metrics() {
    for scope in THROTTLE_SCOPES {
        let _ = ::metrics::counter!(crate::metrics::names::RATE_LIMITED_TOTAL, "scope" => scope);
    }
}

/// Whether a path is part of the REST API (`/api/*`).
pub fn is_api_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

fn non_zero(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN)
}
