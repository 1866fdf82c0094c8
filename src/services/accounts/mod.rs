//! Accounts: users and their credentials. Registration and the admin bootstrap, login with its
//! throttles, session tokens and their rotation, logout, the three credentials checked
//! (access token, API key, ws ticket), passwords (change, reset and its mail), API keys, and the
//! admin's changes of role and activity. Revocations reach the user's sockets through the bus.

pub mod admin;
pub mod passwords;
pub mod rules;
pub mod sessions;
pub mod throttles;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use time::{Duration as TimeDuration, OffsetDateTime};

use self::throttles::AuthThrottles;
use crate::auth::jwt::JwtKeys;
use crate::auth::password::{HashError, PasswordHasher};
use crate::auth::tokens::{self, API_KEY_PREFIX};
use crate::mail::Mailer;
use crate::seams::bus::{Bus, RevokeScope};
use crate::seams::presence::PresenceRegistry;
use crate::services::text::Name;
use crate::store::{DynStore, RefreshToken, RefreshUse, Role, Session, StoreError, User, UserUpdate};

/// Refresh tokens live 30 days.
pub const REFRESH_DAYS: i64 = 30;
/// How long after its rotation a refresh token may be presented again (its answer was lost)
/// and get the same new token, instead of revoking the session as a reuse.
pub const REFRESH_GRACE: TimeDuration = TimeDuration::seconds(5);

/// Why an account operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// No credential, or an invalid, expired or revoked one.
    #[error("authentication required")]
    Unauthorized,
    /// Wrong email or password (the same for both).
    #[error("invalid email or password")]
    InvalidCredentials,
    /// The account is deactivated.
    #[error("the account is disabled")]
    AccountDisabled,
    /// The email is registered already.
    #[error("the email is registered already")]
    EmailTaken,
    /// A reset token is unknown, used, expired or void.
    #[error("the reset link is invalid, used or expired")]
    InvalidResetToken,
    /// No such user.
    #[error("no such user")]
    NotFound,
    /// Too many attempts; retry after this long.
    #[error("throttled")]
    Throttled {
        /// How long until a retry may succeed.
        retry_after: Duration,
    },
    /// A change that would leave things in a bad state (an admin demoting themselves).
    #[error("{0}")]
    Conflict(&'static str),
    /// One field is wrong (the current password, a bootstrap setting).
    #[error("{field} {problem}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] HashError),
}

/// Which credential authenticated a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// An access token (header, query or ticket).
    AccessToken,
    /// An API key.
    ApiKey,
    /// The `sb_access` cookie.
    Cookie,
}

/// An authenticated, active user.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user as stored now.
    pub user: User,
    /// The login session of the credential; none for an API key.
    pub session_id: Option<String>,
    /// How the user authenticated.
    pub credential: Credential,
}

/// A new account's fields (already validated by [`rules`]).
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Email (normalised here).
    pub email: String,
    /// Password.
    pub password: String,
    /// Given name.
    pub first_name: Name,
    /// Family name.
    pub last_name: Name,
}

/// The tokens of a login session.
#[derive(Debug, Clone)]
pub struct SessionTokens {
    /// The session.
    pub session_id: String,
    /// A new access JWT.
    pub access_token: String,
    /// A new refresh token (single use).
    pub refresh_token: String,
}

/// Settings of the accounts service.
#[derive(Debug, Clone)]
pub struct AccountSettings {
    /// Credits of a new account.
    pub starting_credits: i64,
    /// Base URL of links in mail.
    pub public_url: String,
}

/// Users, credentials and sessions.
pub struct AccountService {
    store: DynStore,
    hasher: PasswordHasher,
    jwt: JwtKeys,
    mailer: Mailer,
    bus: Arc<dyn Bus>,
    presence: Arc<dyn PresenceRegistry>,
    throttles: AuthThrottles,
    settings: AccountSettings,
}

/// Where a login comes from, as the sessions list shows it.
#[derive(Debug, Clone)]
pub struct LoginOrigin {
    /// The client IP.
    pub ip: IpAddr,
    /// The `User-Agent` header, if any.
    pub user_agent: Option<String>,
}

/// The realtime seams the accounts service reaches: the bus (revocations) and presence (open
/// sockets per login session).
#[derive(Clone)]
pub struct AccountSeams {
    /// Revocations to sockets.
    pub bus: Arc<dyn Bus>,
    /// Who is online.
    pub presence: Arc<dyn PresenceRegistry>,
}

impl AccountService {
    /// The service over its engines.
    pub fn new(
        store: DynStore,
        hasher: PasswordHasher,
        jwt: JwtKeys,
        mailer: Mailer,
        seams: AccountSeams,
        throttles: AuthThrottles,
        settings: AccountSettings,
    ) -> AccountService {
        let AccountSeams { bus, presence } = seams;
        AccountService { store, hasher, jwt, mailer, bus, presence, throttles, settings }
    }

    /// Registers a user (counted against the IP's registrations first, so 409s cannot probe for
    /// accounts at full speed); answers the user and their first API key.
    pub async fn register(&self, account: NewAccount, ip: IpAddr) -> Result<(User, String), AccountError> {
        self.throttles.check_register(ip).await?;
        let (user, api_key) = self.create_user(account, Role::User).await?;
        tracing::info!(event = "user_registered", user_id = %user.id, client_ip = %ip, "user registered");
        Ok((user, api_key))
    }

    /// Inserts a user with the starting credits and a first API key.
    pub async fn create_user(&self, account: NewAccount, role: Role) -> Result<(User, String), AccountError> {
        let email = rules::normalise_email(&account.email);
        if self.store.user_by_email(&email).await?.is_some() {
            return Err(AccountError::EmailTaken);
        }
        let password_hash = self.hasher.hash(&account.password).await?;
        let api_key = tokens::new_api_key();
        let now = crate::store::now();
        let user = User {
            id: uuid::Uuid::now_v7().to_string(),
            email,
            password_hash,
            first_name: account.first_name.into_string(),
            last_name: account.last_name.into_string(),
            role,
            api_key_hash: tokens::sha256_hex(&api_key),
            api_key_prefix: tokens::api_key_prefix(&api_key),
            credits: self.settings.starting_credits,
            credits_seq: 0,
            initial_credits: self.settings.starting_credits,
            last_login: None,
            active: true,
            created_at: now,
            updated_at: now,
        };
        match self.store.insert_user(&user).await {
            Ok(()) => Ok((user, api_key)),
            // The unique index decides races between concurrent registrations of one email.
            Err(StoreError::Duplicate) => Err(AccountError::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks email and password (throttled per account and IP) and opens a login session,
    /// recording where it comes from.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        origin: LoginOrigin,
    ) -> Result<(User, SessionTokens), AccountError> {
        let ip = origin.ip;
        let email = rules::normalise_email(email);
        // A throttled attempt is refused before the password is looked at, so guesses during a
        // delay learn nothing, not even from timing.
        self.throttles.begin_login(ip, &email).await?;
        let user = self.store.user_by_email(&email).await?;
        // An unknown email still costs one hash, so the answer time does not reveal accounts.
        let matches = self.hasher.verify(password, user.as_ref().map(|u| u.password_hash.as_str())).await?;
        let user = match user {
            Some(user) if matches => user,
            _ => {
                self.throttles.login_failed(ip, &email).await;
                crate::metrics::record_login("failure");
                let user_id = user.as_ref().map(|u| u.id.as_str());
                tracing::info!(event = "login_failed", user_id, client_ip = %ip, "login failed");
                return Err(AccountError::InvalidCredentials);
            }
        };
        self.throttles.login_succeeded(ip, &email).await;
        if !user.active {
            crate::metrics::record_login("disabled");
            tracing::info!(event = "login_refused_disabled", user_id = %user.id, client_ip = %ip,
                "login refused: account disabled");
            return Err(AccountError::AccountDisabled);
        }
        let now = crate::store::now();
        let session = Session {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user.id.clone(),
            created_at: now,
            revoked_at: None,
            last_used_at: now,
            ip: Some(ip.to_string()),
            user_agent: origin.user_agent.map(|ua| sessions::clip_user_agent(&ua)),
        };
        self.store.insert_session(&session).await?;
        let update = UserUpdate { last_login: Some(now), ..Default::default() };
        let user = self.store.update_user(&user.id, &update, now).await?.unwrap_or(user);
        crate::metrics::record_login("success");
        tracing::info!(event = "login_succeeded", user_id = %user.id, client_ip = %ip, "login succeeded");
        let tokens = self.issue_tokens(&user, &session.id, None).await?;
        Ok((user, tokens))
    }

    /// The session a refresh token belongs to (its prefix), to check a cookie refresh's CSRF
    /// token before the refresh token is spent.
    pub fn refresh_token_session(token: &str) -> Option<&str> {
        token.split_once('.').map(|(sid, _)| sid)
    }

    /// Exchanges a refresh token for new tokens; a reused token revokes its whole session, except
    /// a retry within [`REFRESH_GRACE`] of its rotation while the token it was rotated into is
    /// still unused (the client lost the answer): that gets the same new refresh token again.
    pub async fn refresh(&self, token: &str, ip: IpAddr) -> Result<(User, SessionTokens), AccountError> {
        let sid = Self::refresh_token_session(token).ok_or(AccountError::Unauthorized)?;
        let now = crate::store::now();
        let found = match self.store.use_refresh_token(&tokens::sha256_hex(token), now).await? {
            RefreshUse::Fresh(found) => found,
            RefreshUse::Reused(found) if self.successor_unused(token, &found, now).await? => {
                tracing::info!(event = "refresh_token_retried", user_id = %found.user_id, client_ip = %ip,
                    "refresh token presented again within the grace window");
                found
            }
            RefreshUse::Reused(found) => {
                self.store.revoke_session(&found.session_id, now).await?;
                let scope = RevokeScope::LoginSession(found.session_id.as_str().into());
                self.bus.revoke(&found.user_id, scope, "refresh_token_reused");
                tracing::warn!(event = "refresh_token_reused", user_id = %found.user_id, client_ip = %ip,
                    "refresh token reused: session revoked");
                return Err(AccountError::Unauthorized);
            }
            RefreshUse::Unknown => return Err(AccountError::Unauthorized),
        };
        let session = self.store.session(&found.session_id).await?;
        if found.session_id != sid
            || found.expires_at <= now
            || session.is_none_or(|s| s.revoked_at.is_some())
        {
            return Err(AccountError::Unauthorized);
        }
        let user = self.store.user_by_id(&found.user_id).await?.ok_or(AccountError::Unauthorized)?;
        if !user.active {
            return Err(AccountError::AccountDisabled);
        }
        let tokens = self.issue_tokens(&user, &found.session_id, Some(token)).await?;
        // The sessions list shows when each was last used; a failed note of it costs nothing else.
        if let Err(e) = self.store.touch_session(&found.session_id, now).await {
            tracing::warn!(error = %e, "could not record the session's use");
        }
        Ok((user, tokens))
    }

    /// Whether `token`, already used, was rotated within the grace window and the token it was
    /// rotated into is still unused. The successor is written here too (a retry may overtake
    /// the first exchange between its two writes); both writes of the same token agree.
    async fn successor_unused(
        &self,
        token: &str,
        used: &RefreshToken,
        now: OffsetDateTime,
    ) -> Result<bool, AccountError> {
        // No use time yet: a racing exchange claimed the token and is still marking it (the
        // MongoDB store claims and marks in two writes), so the rotation is happening now.
        let used_at = used.used_at.unwrap_or(now);
        if now - used_at > REFRESH_GRACE {
            return Ok(false);
        }
        let successor = self.successor_token(token, &used.session_id);
        let hash = tokens::sha256_hex(&successor);
        let record = self.refresh_record(&hash, &used.session_id, &used.user_id, now);
        match self.store.insert_refresh_token(&record).await {
            Ok(()) | Err(StoreError::Duplicate) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(self.store.refresh_token(&hash).await?.is_some_and(|t| t.used_at.is_none()))
    }

    /// The refresh token that `token` of session `sid` rotates into.
    fn successor_token(&self, token: &str, sid: &str) -> String {
        format!("{sid}.{}", self.jwt.refresh_successor(token))
    }

    fn refresh_record(
        &self,
        token_hash: &str,
        sid: &str,
        user_id: &str,
        now: OffsetDateTime,
    ) -> RefreshToken {
        RefreshToken {
            token_hash: token_hash.to_owned(),
            session_id: sid.to_owned(),
            user_id: user_id.to_owned(),
            expires_at: now + TimeDuration::days(REFRESH_DAYS),
            used_at: None,
        }
    }

    /// Ends the principal's login session (an API key has none): its tokens fail at once and its
    /// sockets close.
    pub async fn logout(&self, principal: &Principal) -> Result<(), AccountError> {
        if let Some(sid) = &principal.session_id {
            self.store.revoke_session(sid, crate::store::now()).await?;
            self.bus.revoke(&principal.user.id, RevokeScope::LoginSession(sid.as_str().into()), "logout");
        }
        Ok(())
    }

    /// A new access token and refresh token for `user` in session `sid`; the refresh token is
    /// random at login, and derived from the one it replaces at a rotation.
    async fn issue_tokens(
        &self,
        user: &User,
        sid: &str,
        rotated_from: Option<&str>,
    ) -> Result<SessionTokens, AccountError> {
        let refresh_token = match rotated_from {
            Some(previous) => self.successor_token(previous, sid),
            None => format!("{sid}.{}", tokens::random_secret()),
        };
        let now = crate::store::now();
        let record = self.refresh_record(&tokens::sha256_hex(&refresh_token), sid, &user.id, now);
        match self.store.insert_refresh_token(&record).await {
            // A retry in the grace window may have written the same successor first.
            Err(StoreError::Duplicate) if rotated_from.is_some() => {}
            other => other?,
        }
        let access_token = self.jwt.issue_access(&user.id, user.role, sid);
        Ok(SessionTokens { session_id: sid.to_owned(), access_token, refresh_token })
    }

    /// Checks an access token: signature, expiry, session not revoked, user active.
    pub async fn by_access_token(
        &self,
        token: &str,
        credential: Credential,
    ) -> Result<Principal, AccountError> {
        let claims = self.jwt.verify_access(token).ok_or(AccountError::Unauthorized)?;
        self.session_user(&claims.sub, Some(&claims.sid), credential).await
    }

    /// Checks an API key.
    pub async fn by_api_key(&self, key: &str) -> Result<Principal, AccountError> {
        let user = self.store.user_by_api_key_hash(&tokens::sha256_hex(key)).await?;
        let user = user.ok_or(AccountError::Unauthorized)?;
        active(Principal { user, session_id: None, credential: Credential::ApiKey })
    }

    /// Checks a bearer credential: an API key when it has the `sk_` prefix, else an access token.
    pub async fn by_bearer(&self, token: &str) -> Result<Principal, AccountError> {
        if token.starts_with(API_KEY_PREFIX) {
            self.by_api_key(token).await
        } else {
            self.by_access_token(token, Credential::AccessToken).await
        }
    }

    /// Checks a single-use WebSocket ticket: signature, expiry, first use, then as its credential.
    pub async fn by_ws_ticket(&self, ticket: &str) -> Result<Principal, AccountError> {
        let claims = self.jwt.verify_ws_ticket(ticket).ok_or(AccountError::Unauthorized)?;
        let expires =
            time::OffsetDateTime::from_unix_timestamp(claims.exp).map_err(|_| AccountError::Unauthorized)?;
        if !self.store.consume_once(&format!("ws-ticket:{}", claims.jti), expires).await? {
            return Err(AccountError::Unauthorized);
        }
        // A ticket bought with an API key names no login session, but the key: it dies with it.
        // One that names neither has no credential behind it.
        let sid = Some(claims.sid.as_str()).filter(|sid| !sid.is_empty());
        if sid.is_none() && claims.key.is_none() {
            return Err(AccountError::Unauthorized);
        }
        let principal = self.session_user(&claims.sub, sid, Credential::AccessToken).await?;
        if let Some(key) = &claims.key
            && !tokens::constant_time_eq(key, &tokens::api_key_fingerprint(&principal.user.api_key_hash))
        {
            return Err(AccountError::Unauthorized);
        }
        Ok(principal)
    }

    /// A single-use ticket (30 s) for opening `/ws` with the principal's credential.
    pub fn ws_ticket(&self, principal: &Principal) -> String {
        let sid = principal.session_id.as_deref().unwrap_or_default();
        let key = (principal.credential == Credential::ApiKey)
            .then(|| tokens::api_key_fingerprint(&principal.user.api_key_hash));
        self.jwt.issue_ws_ticket(&principal.user.id, sid, key)
    }

    /// Changes the user's names.
    pub async fn update_names(
        &self,
        user_id: &str,
        first_name: &Name,
        last_name: &Name,
    ) -> Result<User, AccountError> {
        let update = UserUpdate {
            first_name: Some(first_name.to_string()),
            last_name: Some(last_name.to_string()),
            ..Default::default()
        };
        let user = self.store.update_user(user_id, &update, crate::store::now()).await?;
        user.ok_or(AccountError::Unauthorized)
    }

    /// Replaces the user's API key (shown once) after checking their password, and closes the
    /// sockets opened with the old one. The password is asked for because a key outlives the
    /// session that mints it: a stolen session must not be able to mint a lasting credential.
    pub async fn regenerate_api_key(
        &self,
        principal: &Principal,
        current_password: &str,
        ip: IpAddr,
    ) -> Result<String, AccountError> {
        self.check_current_password(principal, current_password, ip).await?;
        let user_id = principal.user.id.as_str();
        let api_key = tokens::new_api_key();
        let update = UserUpdate {
            api_key: Some((tokens::sha256_hex(&api_key), tokens::api_key_prefix(&api_key))),
            ..Default::default()
        };
        self.store.update_user(user_id, &update, crate::store::now()).await?;
        // Sockets opened with the old key (or with a ticket it bought) must not outlive it.
        self.bus.revoke(user_id, RevokeScope::ApiKeys, "api_key_regenerated");
        tracing::info!(event = "api_key_regenerated", user_id, client_ip = %ip, "API key regenerated");
        Ok(api_key)
    }

    /// Revokes every login session of a user and closes all their sockets (`session.revoked` with
    /// `reason`, then 4001).
    pub async fn end_all_sessions(&self, user_id: &str, reason: &'static str) -> Result<(), AccountError> {
        let revoked = self.store.revoke_user_sessions(user_id, crate::store::now()).await?;
        self.bus.revoke(user_id, RevokeScope::All, reason);
        tracing::info!(
            event = "sessions_revoked",
            user_id,
            sessions = revoked.len(),
            reason,
            "every session of the user ended"
        );
        Ok(())
    }

    /// The active user `user_id`, whose login session `sid` (when there is one) is theirs and open.
    async fn session_user(
        &self,
        user_id: &str,
        sid: Option<&str>,
        credential: Credential,
    ) -> Result<Principal, AccountError> {
        if let Some(sid) = sid {
            let session = self.store.session(sid).await?.ok_or(AccountError::Unauthorized)?;
            if session.revoked_at.is_some() || session.user_id != user_id {
                return Err(AccountError::Unauthorized);
            }
        }
        let user = self.store.user_by_id(user_id).await?.ok_or(AccountError::Unauthorized)?;
        active(Principal { user, session_id: sid.map(str::to_owned), credential })
    }
}

fn active(principal: Principal) -> Result<Principal, AccountError> {
    if principal.user.active { Ok(principal) } else { Err(AccountError::AccountDisabled) }
}
