//! Authentication as extractors: a handler that takes [`CurrentUser`] or [`Admin`] cannot
//! forget the check. Three credentials are accepted (API.md §3): an access token, an API key,
//! and the browser's `sb_access` cookie (with a CSRF token on unsafe methods).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};

use super::tokens::{self, API_KEY_PREFIX};
use super::{ACCESS_COOKIE, CSRF_COOKIE, CSRF_HEADER};
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::{Role, User};

/// Which credential authenticated a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// `Authorization: Bearer <jwt>`.
    AccessToken,
    /// `Authorization: Bearer sk_…` or `X-API-Key`.
    ApiKey,
    /// The `sb_access` cookie.
    Cookie,
}

/// The authenticated, active user of a request.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// The user as stored now.
    pub user: User,
    /// The login session, absent for API keys.
    pub session_id: Option<String>,
    /// How the request authenticated.
    pub credential: Credential,
}

/// A [`CurrentUser`] who is an admin; others get 403.
#[derive(Debug, Clone)]
pub struct Admin(pub CurrentUser);

impl FromRequest for CurrentUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state =
                req.app_data::<web::Data<AppState>>().ok_or(ApiError::Internal("no app state".into()))?;
            authenticate(state, &req).await
        })
    }
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let current = CurrentUser::from_request(req, payload);
        Box::pin(async move {
            let current = current.await?;
            if current.user.role != Role::Admin {
                return Err(ApiError::Forbidden);
            }
            Ok(Admin(current))
        })
    }
}

/// Finds and checks the credential of a request.
pub async fn authenticate(state: &AppState, req: &HttpRequest) -> Result<CurrentUser, ApiError> {
    if req.headers().contains_key("authorization") || req.headers().contains_key("x-api-key") {
        return authenticate_bearer(state, req).await;
    }
    if let Some(cookie) = req.cookie(ACCESS_COOKIE) {
        let current = by_access_token(state, cookie.value(), Credential::Cookie).await?;
        if !req.method().is_safe() {
            check_csrf(state, req, current.session_id.as_deref().unwrap_or_default())?;
        }
        return Ok(current);
    }
    Err(ApiError::Unauthorized)
}

/// Checks an `Authorization: Bearer` (JWT or API key) or `X-API-Key` credential.
pub async fn authenticate_bearer(state: &AppState, req: &HttpRequest) -> Result<CurrentUser, ApiError> {
    if let Some(value) = req.headers().get("authorization") {
        let value = value.to_str().map_err(|_| ApiError::Unauthorized)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        return if token.starts_with(API_KEY_PREFIX) {
            by_api_key(state, token).await
        } else {
            by_access_token(state, token, Credential::AccessToken).await
        };
    }
    if let Some(key) = req.headers().get("x-api-key") {
        return by_api_key(state, key.to_str().map_err(|_| ApiError::Unauthorized)?).await;
    }
    Err(ApiError::Unauthorized)
}

/// The credential of `Authorization: Bearer <token>` or `X-API-Key`, unchecked (for rate-limit keys).
pub fn bearer_credential(req: &HttpRequest) -> Option<String> {
    if let Some(value) = req.headers().get("authorization") {
        let value = value.to_str().ok()?;
        let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?;
        return Some(token.trim().to_owned());
    }
    req.headers().get("x-api-key").and_then(|v| v.to_str().ok()).map(|v| v.trim().to_owned())
}

/// The CSRF token bound to a session: an HMAC of its id, so it cannot be forged or moved.
pub fn csrf_token(state: &AppState, session_id: &str) -> String {
    tokens::hmac_token(&state.csrf_key, session_id)
}

/// The CSRF check of a cookie-authenticated unsafe request. First where it comes from: a
/// cross-site `Origin` or `Sec-Fetch-Site` is refused before any token is looked at
/// ([`crate::security::origin::cookie_write_allowed`]). Then double submit: the header must
/// equal the cookie, and both must be this session's token.
pub fn check_csrf(state: &AppState, req: &HttpRequest, session_id: &str) -> Result<(), ApiError> {
    if !crate::security::origin::cookie_write_allowed(req, state) {
        return Err(ApiError::CsrfFailed);
    }
    let header = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).ok_or(ApiError::CsrfFailed)?;
    let cookie = req.cookie(CSRF_COOKIE).ok_or(ApiError::CsrfFailed)?;
    let expected = csrf_token(state, session_id);
    if tokens::constant_time_eq(header, cookie.value()) && tokens::constant_time_eq(header, &expected) {
        Ok(())
    } else {
        Err(ApiError::CsrfFailed)
    }
}

async fn by_api_key(state: &AppState, key: &str) -> Result<CurrentUser, ApiError> {
    let user =
        state.store.user_by_api_key_hash(&tokens::sha256_hex(key)).await?.ok_or(ApiError::Unauthorized)?;
    active(CurrentUser { user, session_id: None, credential: Credential::ApiKey })
}

/// Checks an access token: signature, expiry, session not revoked, user active.
pub async fn by_access_token(
    state: &AppState,
    token: &str,
    credential: Credential,
) -> Result<CurrentUser, ApiError> {
    let claims = state.jwt.verify_access(token).ok_or(ApiError::Unauthorized)?;
    session_user(state, &claims.sub, Some(&claims.sid), credential).await
}

/// Checks a single-use WebSocket ticket: signature, expiry, first use, then as an access token.
pub async fn by_ws_ticket(state: &AppState, ticket: &str) -> Result<CurrentUser, ApiError> {
    let claims = state.jwt.verify_ws_ticket(ticket).ok_or(ApiError::Unauthorized)?;
    let expires =
        time::OffsetDateTime::from_unix_timestamp(claims.exp).map_err(|_| ApiError::Unauthorized)?;
    if !state.store.consume_once(&format!("ws-ticket:{}", claims.jti), expires).await? {
        return Err(ApiError::Unauthorized);
    }
    // A ticket bought with an API key names no login session, but the key: it dies with it.
    let sid = Some(claims.sid.as_str()).filter(|sid| !sid.is_empty());
    let current = session_user(state, &claims.sub, sid, Credential::AccessToken).await?;
    if let Some(key) = &claims.key
        && !tokens::constant_time_eq(key, &tokens::api_key_fingerprint(&current.user.api_key_hash))
    {
        return Err(ApiError::Unauthorized);
    }
    Ok(current)
}

/// The active user `user_id`, whose login session `sid` (when there is one) is theirs and open.
async fn session_user(
    state: &AppState,
    user_id: &str,
    sid: Option<&str>,
    credential: Credential,
) -> Result<CurrentUser, ApiError> {
    if let Some(sid) = sid {
        let session = state.store.session(sid).await?.ok_or(ApiError::Unauthorized)?;
        if session.revoked_at.is_some() || session.user_id != user_id {
            return Err(ApiError::Unauthorized);
        }
    }
    let user = state.store.user_by_id(user_id).await?.ok_or(ApiError::Unauthorized)?;
    active(CurrentUser { user, session_id: sid.map(str::to_owned), credential })
}

fn active(current: CurrentUser) -> Result<CurrentUser, ApiError> {
    if current.user.active { Ok(current) } else { Err(ApiError::AccountDisabled) }
}
