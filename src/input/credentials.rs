//! Authentication as extractors: a handler that takes [`CurrentUser`] or [`Admin`] cannot
//! forget the check. Three credentials are accepted (docs/API.md §3): an access token, an API key,
//! and the browser's `sb_access` cookie (with a CSRF token on unsafe methods). The checks
//! themselves are the accounts service's; this module finds the credential in the request.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};

use crate::auth::tokens;
use crate::auth::{ACCESS_COOKIE, CSRF_COOKIE, CSRF_HEADER};
use crate::http::error::ApiError;
pub use crate::services::accounts::Credential;
use crate::services::accounts::Principal;
use crate::state::AppState;
use crate::store::Role;

/// The authenticated, active user of a request.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Principal);

impl Deref for CurrentUser {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
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

/// The principal of a request whose credential was already checked in full (by the REST limit,
/// which keys on it), kept in the request's extensions so the check is not made twice.
#[derive(Clone)]
struct Checked(Principal);

/// Finds and checks the credential of a request (the CSRF token too, for a cookie on an unsafe
/// method).
pub async fn authenticate(state: &AppState, req: &HttpRequest) -> Result<CurrentUser, ApiError> {
    let checked = req.extensions().get::<Checked>().map(|c| c.0.clone());
    let principal = match checked {
        Some(principal) => principal,
        None => principal(state, req).await?,
    };
    if principal.credential == Credential::Cookie && !req.method().is_safe() {
        check_csrf(state, req, principal.session_id.as_deref().unwrap_or_default())?;
    }
    Ok(CurrentUser(principal))
}

/// The user behind a request's credential when it checks out in full (signature or key, session
/// not revoked, user active), or `None`; remembered for the request's handler. The REST limit
/// keys on it, so a revoked or logged-out token cannot spend its user's budget.
pub async fn verified_principal(state: &AppState, req: &HttpRequest) -> Option<Principal> {
    let principal = principal(state, req).await.ok()?;
    req.extensions_mut().insert(Checked(principal.clone()));
    Some(principal)
}

/// Checks the credential of a request: a bearer token or API key, else the access cookie.
async fn principal(state: &AppState, req: &HttpRequest) -> Result<Principal, ApiError> {
    if req.headers().contains_key("authorization") || req.headers().contains_key("x-api-key") {
        return Ok(authenticate_bearer(state, req).await?.0);
    }
    if let Some(cookie) = req.cookie(ACCESS_COOKIE) {
        return Ok(state.accounts.by_access_token(cookie.value(), Credential::Cookie).await?);
    }
    Err(ApiError::Unauthorized)
}

/// Checks an `Authorization: Bearer` (JWT or API key) or `X-API-Key` credential.
pub async fn authenticate_bearer(state: &AppState, req: &HttpRequest) -> Result<CurrentUser, ApiError> {
    let token = bearer_credential(req).ok_or(ApiError::Unauthorized)?;
    let principal = if req.headers().contains_key("authorization") {
        state.accounts.by_bearer(&token).await?
    } else {
        state.accounts.by_api_key(&token).await?
    };
    Ok(CurrentUser(principal))
}

/// The credential of `Authorization: Bearer <token>` (else of `X-API-Key`), unchecked.
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
