//! Brute-force throttles of the account routes:
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
//! Failures use [`FailureThrottle`]s (1 s after the free ones, doubling, at most 15 minutes,
//! reset by a successful login for the account); an attempt counts as a failure from the moment
//! it is let through until it succeeds, so parallel guesses cannot all slip past the check.
//! Bursts use [`Limiter`] buckets. Keys by email are kept whether or not the account exists, so
//! throttling reveals nothing about accounts. Every refusal is a `Throttled` error, a
//! `rate_limited_total{scope}` count and a log event.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::AccountError;
use crate::seams::limiter::{Limiter, ip_key};
use crate::seams::throttle::FailureThrottle;

/// The throttles of the account routes.
pub struct AuthThrottles {
    /// Failed logins per account (email).
    pub login_account: Box<dyn FailureThrottle>,
    /// Failed logins per client IP.
    pub login_ip: Box<dyn FailureThrottle>,
    /// Failed password resets (bad tokens) per client IP.
    pub reset_ip: Box<dyn FailureThrottle>,
    /// Reset requests per email.
    pub forgot_email: Arc<dyn Limiter>,
    /// Reset requests per client IP.
    pub forgot_ip: Arc<dyn Limiter>,
    /// Registrations per client IP.
    pub register_ip: Arc<dyn Limiter>,
}

impl AuthThrottles {
    /// Lets a login attempt through, or refuses it while its IP or its account is in a delay.
    /// The attempt counts as a failure of both until [`AuthThrottles::login_succeeded`].
    pub async fn begin_login(&self, ip: IpAddr, email: &str) -> Result<(), AccountError> {
        if let Err(wait) = self.login_ip.attempt(&ip_key(ip)).await {
            crate::metrics::record_login("throttled");
            return Err(refuse("login_ip", ip, wait));
        }
        if let Err(wait) = self.login_account.attempt(email).await {
            // No password was tried, so the IP's count is given back.
            self.login_ip.take_back(&ip_key(ip)).await;
            crate::metrics::record_login("throttled");
            return Err(refuse("login_account", ip, wait));
        }
        Ok(())
    }

    /// The login attempt failed (wrong password, or the current password in a change): the
    /// delays it earned for the account and the IP run from now.
    pub async fn login_failed(&self, ip: IpAddr, email: &str) {
        self.login_account.failed(email).await;
        self.login_ip.failed(&ip_key(ip)).await;
    }

    /// The password was right: the account's failures are forgotten, and the IP gets back the
    /// one counted for this attempt. The IP's earlier failures stay, so an attacker who owns an
    /// account cannot wipe the IP's record by logging into it between guesses.
    pub async fn login_succeeded(&self, ip: IpAddr, email: &str) {
        self.login_account.forget(email).await;
        self.login_ip.take_back(&ip_key(ip)).await;
    }

    /// Lets a password reset through, or refuses it while its IP is in a delay after bad
    /// tokens. The attempt counts as a failure until [`AuthThrottles::reset_succeeded`].
    pub async fn begin_reset(&self, ip: IpAddr) -> Result<(), AccountError> {
        self.reset_ip.attempt(&ip_key(ip)).await.map_err(|wait| refuse("reset_ip", ip, wait))
    }

    /// The reset token was bad: the delay it earned for the IP runs from now.
    pub async fn reset_failed(&self, ip: IpAddr) {
        self.reset_ip.failed(&ip_key(ip)).await;
    }

    /// The reset token was good: the attempt is not a failure.
    pub async fn reset_succeeded(&self, ip: IpAddr) {
        self.reset_ip.take_back(&ip_key(ip)).await;
    }

    /// Counts a reset request against its IP, then its email; refuses when either is spent.
    pub async fn check_forgot(&self, ip: IpAddr, email: &str) -> Result<(), AccountError> {
        bucket("forgot_ip", &*self.forgot_ip, &ip_key(ip), ip).await?;
        bucket("forgot_email", &*self.forgot_email, email, ip).await
    }

    /// Counts a registration against its IP; refuses when the IP's budget is spent.
    pub async fn check_register(&self, ip: IpAddr) -> Result<(), AccountError> {
        bucket("register_ip", &*self.register_ip, &ip_key(ip), ip).await
    }
}

async fn bucket(
    scope: &'static str,
    limiter: &dyn Limiter,
    key: &str,
    ip: IpAddr,
) -> Result<(), AccountError> {
    let decision = limiter.check(key).await;
    if decision.allowed { Ok(()) } else { Err(refuse(scope, ip, decision.retry_after)) }
}

/// The refusal of a throttle, with its metric and security event.
fn refuse(scope: &'static str, ip: IpAddr, wait: Duration) -> AccountError {
    crate::metrics::record_rate_limited(scope);
    let retry_after_secs = crate::seams::limiter::ceil_secs(wait).max(1);
    tracing::warn!(event = "throttled", scope, client_ip = %ip, retry_after_secs, "request throttled");
    AccountError::Throttled { retry_after: wait }
}
