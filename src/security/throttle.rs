//! Brute-force throttles of the auth routes, called by the handlers in `http/auth.rs`:
//!
//! | scope | key | kind | default |
//! |---|---|---|---|
//! | `login_account` | normalised email | failures, growing delays | 5 free |
//! | `login_ip` | client IP | failures, growing delays | 20 free |
//! | `reset_ip` | client IP | failed `/api/password/reset` | 10 free |
//! | `forgot_email` | normalised email | requests per hour | 5 |
//! | `forgot_ip` | client IP | requests per hour | 20 |
//! | `register_ip` | client IP | requests per hour | 20 |
//!
//! Failures use [`FailureThrottleActor`] (1 s after the free ones, doubling, at most 15 minutes,
//! reset by a successful login for the account); an attempt counts as a failure from the moment
//! it is let through until it succeeds, so parallel guesses cannot all slip past the check.
//! Bursts use [`RateLimiterActor`] buckets. Keys by
//! email are kept whether or not the account exists, so throttling reveals nothing about accounts.
//! Every refusal is 429 with `Retry-After`, a `rate_limited_total{scope}` count and a log event.

use std::time::Duration;

use actix::Addr;
use switchboard_actors::rate_limit::{Check, RateLimiterActor};
use switchboard_actors::throttle::{Attempt, FailureThrottleActor, Forget, TakeBack};

use super::client_ip::ClientIp;
use super::rate_limit::ceil_secs;
use crate::error::ApiError;

/// The throttle actors of the auth routes.
pub struct AuthThrottles {
    /// Failed logins per account (email).
    pub login_account: Addr<FailureThrottleActor>,
    /// Failed logins per client IP.
    pub login_ip: Addr<FailureThrottleActor>,
    /// Failed password resets (bad tokens) per client IP.
    pub reset_ip: Addr<FailureThrottleActor>,
    /// Reset requests per email.
    pub forgot_email: Addr<RateLimiterActor>,
    /// Reset requests per client IP.
    pub forgot_ip: Addr<RateLimiterActor>,
    /// Registrations per client IP.
    pub register_ip: Addr<RateLimiterActor>,
}

impl AuthThrottles {
    /// Lets a login attempt through, or refuses it while its IP or its account is in a delay.
    /// The attempt counts as a failure of both until [`AuthThrottles::login_succeeded`].
    pub async fn begin_login(&self, ip: ClientIp, email: &str) -> Result<(), ApiError> {
        if let Ok(Err(wait)) = self.login_ip.send(Attempt { key: ip.limit_key() }).await {
            crate::metrics::record_login("throttled");
            return Err(refuse("login_ip", ip, wait));
        }
        if let Ok(Err(wait)) = self.login_account.send(Attempt { key: email.to_owned() }).await {
            // No password was tried, so the IP's count is given back.
            self.login_ip.do_send(TakeBack { key: ip.limit_key() });
            crate::metrics::record_login("throttled");
            return Err(refuse("login_account", ip, wait));
        }
        Ok(())
    }

    /// The password was right: the account's failures are forgotten, and the IP gets back the
    /// one counted for this attempt. The IP's earlier failures stay, so an attacker who owns an
    /// account cannot wipe the IP's record by logging into it between guesses.
    pub fn login_succeeded(&self, ip: ClientIp, email: &str) {
        self.login_account.do_send(Forget { key: email.to_owned() });
        self.login_ip.do_send(TakeBack { key: ip.limit_key() });
    }

    /// Lets a password reset through, or refuses it while its IP is in a delay after bad
    /// tokens. The attempt counts as a failure until [`AuthThrottles::reset_succeeded`].
    pub async fn begin_reset(&self, ip: ClientIp) -> Result<(), ApiError> {
        match self.reset_ip.send(Attempt { key: ip.limit_key() }).await {
            Ok(Err(wait)) => Err(refuse("reset_ip", ip, wait)),
            _ => Ok(()),
        }
    }

    /// The reset token was good: the attempt is not a failure.
    pub fn reset_succeeded(&self, ip: ClientIp) {
        self.reset_ip.do_send(TakeBack { key: ip.limit_key() });
    }

    /// Counts a reset request against its IP, then its email; refuses when either is spent.
    pub async fn check_forgot(&self, ip: ClientIp, email: &str) -> Result<(), ApiError> {
        bucket("forgot_ip", &self.forgot_ip, ip.limit_key(), ip).await?;
        bucket("forgot_email", &self.forgot_email, email.to_owned(), ip).await
    }

    /// Counts a registration against its IP; refuses when the IP's budget is spent.
    pub async fn check_register(&self, ip: ClientIp) -> Result<(), ApiError> {
        bucket("register_ip", &self.register_ip, ip.limit_key(), ip).await
    }
}

async fn bucket(
    scope: &'static str,
    limiter: &Addr<RateLimiterActor>,
    key: String,
    ip: ClientIp,
) -> Result<(), ApiError> {
    match limiter.send(Check { key }).await {
        Ok(decision) if !decision.allowed => Err(refuse(scope, ip, decision.retry_after)),
        _ => Ok(()),
    }
}

/// The 429 of a throttle, with its metric and security event.
fn refuse(scope: &'static str, ip: ClientIp, wait: Duration) -> ApiError {
    let retry_after_secs = ceil_secs(wait).max(1);
    crate::metrics::record_rate_limited(scope);
    tracing::warn!(event = "throttled", scope, client_ip = %ip, retry_after_secs, "request throttled");
    ApiError::RateLimited { retry_after_secs }
}
