//! Passwords: the change (with the current password), the reset by mailed link, and the mails
//! that go with them. Setting a password voids every outstanding reset token first and ends every
//! session of the user.

use std::net::IpAddr;
use std::sync::Arc;

use time::Duration;

use super::{AccountError, AccountService, Principal};
use crate::auth::tokens;
use crate::store::{ResetToken, UserUpdate};

/// Reset tokens live 30 minutes.
pub const RESET_MINUTES: i64 = 30;

impl AccountService {
    /// Changes the password after checking the current one (sharing the login throttle of the
    /// account: a stolen token or API key must not become a way around it); every session ends.
    pub async fn change_password(
        &self,
        principal: &Principal,
        current_password: &str,
        new_password: &str,
        ip: IpAddr,
    ) -> Result<(), AccountError> {
        let user = &principal.user;
        self.check_current_password(principal, current_password, ip).await?;
        self.set_password(&user.id, new_password).await?;
        tracing::info!(event = "password_changed", user_id = %user.id, "password changed");
        Ok(())
    }

    /// Checks the password of the principal's user before a change that a stolen token alone
    /// must not make (a new password, a new API key), under the login throttle of the account:
    /// a stolen token or API key must not become a way around it.
    pub(super) async fn check_current_password(
        &self,
        principal: &Principal,
        current_password: &str,
        ip: IpAddr,
    ) -> Result<(), AccountError> {
        let user = &principal.user;
        self.throttles.begin_login(ip, &user.email).await?;
        if !self.hasher.verify(current_password, Some(&user.password_hash)).await? {
            self.throttles.login_failed(ip, &user.email).await;
            return Err(AccountError::Invalid {
                field: "current_password",
                problem: "is not the current password".into(),
            });
        }
        self.throttles.login_succeeded(ip, &user.email).await;
        Ok(())
    }

    /// Mails a reset link when the account exists and is active. Counted against the IP and the
    /// email (whether or not it has an account); the work happens after the answer, so neither
    /// body nor timing tells whether the account exists.
    pub async fn request_reset(self: &Arc<Self>, email: &str, ip: IpAddr) -> Result<(), AccountError> {
        let email = super::rules::normalise_email(email);
        self.throttles.check_forgot(ip, &email).await?;
        let accounts = self.clone();
        tokio::spawn(async move {
            if let Err(e) = accounts.send_reset_mail(&email, ip).await {
                tracing::error!(error = %e, "password reset mail failed");
            }
        });
        Ok(())
    }

    async fn send_reset_mail(&self, email: &str, ip: IpAddr) -> Result<(), AccountError> {
        let Some(user) = self.store.user_by_email(email).await? else { return Ok(()) };
        if !user.active {
            return Ok(());
        }
        let token = tokens::random_secret();
        let now = crate::store::now();
        let record = ResetToken {
            token_hash: tokens::sha256_hex(&token),
            user_id: user.id.clone(),
            expires_at: now + Duration::minutes(RESET_MINUTES),
            created_at: now,
        };
        self.store.replace_reset_token(&record).await?;
        let link = format!("{}/reset-password?token={token}", self.settings.public_url);
        let text = format!(
            "Hello {},\n\nsomeone asked to reset the password of your Switchboard account.\n\
             Open this link within {RESET_MINUTES} minutes to choose a new one:\n\n{link}\n\n\
             If it was not you, ignore this mail; your password stays as it is.\n",
            user.first_name
        );
        self.mailer.send(&user.email, "Reset your Switchboard password", &text).await;
        tracing::info!(event = "password_reset_requested", user_id = %user.id, client_ip = %ip,
            "password reset requested");
        Ok(())
    }

    /// Sets a new password with a reset token (single use, 30 minutes, newest only), ends every
    /// session, and mails a notice afterwards.
    pub async fn reset_password(
        self: &Arc<Self>,
        token: &str,
        new_password: &str,
        ip: IpAddr,
    ) -> Result<(), AccountError> {
        self.throttles.begin_reset(ip).await?;
        let now = crate::store::now();
        let Some(user_id) = self.store.consume_reset_token(&tokens::sha256_hex(token), now).await? else {
            // Tokens carry 256 random bits, so guessing is hopeless anyway; the throttle (which
            // counted this attempt already) keeps a guesser from even trying at speed.
            self.throttles.reset_failed(ip).await;
            tracing::info!(event = "password_reset_failed", client_ip = %ip, "password reset with a bad token");
            return Err(AccountError::InvalidResetToken);
        };
        self.throttles.reset_succeeded(ip).await;
        // A deactivated account keeps its password: its tokens were voided at deactivation, and
        // one issued while that was under way must not act on it either.
        let active = self.store.user_by_id(&user_id).await?.is_some_and(|user| user.active);
        if !active {
            tracing::info!(event = "password_reset_failed", user_id = %user_id, client_ip = %ip,
                "password reset of a deactivated account refused");
            return Err(AccountError::InvalidResetToken);
        }
        self.set_password(&user_id, new_password).await?;
        tracing::info!(event = "password_reset_used", user_id = %user_id, client_ip = %ip, "password reset used");
        // A notice to the account's address, sent after the answer; it carries no token or link
        // that acts on the account, and a failure only reaches the log.
        let accounts = self.clone();
        tokio::spawn(async move { accounts.send_reset_notice(&user_id).await });
        Ok(())
    }

    async fn send_reset_notice(&self, user_id: &str) {
        let user = match self.store.user_by_id(user_id).await {
            Ok(Some(user)) => user,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, user_id, "password change notice failed");
                return;
            }
        };
        let text = format!(
            "Hello {},\n\nthe password of your Switchboard account was changed with a reset link \
             just now, and every device that was signed in has been signed out.\n\n\
             If it was you, there is nothing more to do.\n\
             If it wasn't you, someone may be able to read your mail: secure your mailbox, then ask \
             for a new reset link at {}/forgot-password and choose a new password.\n",
            user.first_name, self.settings.public_url
        );
        self.mailer.send(&user.email, "Your Switchboard password was changed", &text).await;
    }

    /// Stores a new password hash, voids the API key and revokes every session of the user.
    /// Outstanding reset tokens are voided first, so none issued before the change can overwrite
    /// the new password. The API key goes too: one minted by whoever held a session must not
    /// outlive the step that takes the account back.
    async fn set_password(&self, user_id: &str, password: &str) -> Result<(), AccountError> {
        let hash = self.hasher.hash(password).await?;
        self.store.void_reset_tokens(user_id).await?;
        let update = UserUpdate {
            password_hash: Some(hash),
            api_key: Some(tokens::void_api_key()),
            ..Default::default()
        };
        self.store.update_user(user_id, &update, crate::store::now()).await?.ok_or(AccountError::NotFound)?;
        self.end_all_sessions(user_id, "password_changed").await
    }
}
