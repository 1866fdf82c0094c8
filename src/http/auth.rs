//! Accounts and sessions: register, login, refresh, logout, password reset, ws tickets.

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::Validate;

use crate::auth::jwt::{ACCESS_TOKEN_SECONDS, WS_TICKET_SECONDS};
use crate::auth::{ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE, REFRESH_PATH};
use crate::http::error::{ApiError, ErrorBody};
use crate::input::credentials::{CurrentUser, authenticate, check_csrf, csrf_token};
use crate::input::json::{OptionalJson, ValidJson};
use crate::security::client_ip::ClientIp;
use crate::services::accounts::rules as validate;
use crate::services::accounts::{AccountService, LoginOrigin, NewAccount, REFRESH_DAYS, SessionTokens};
use crate::services::text::Name;
use crate::state::AppState;
use crate::store::User;
use crate::views::UserView;

/// Body of `POST /api/register`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Email address (unique, case-insensitive).
    #[validate(custom(function = "validate::email"))]
    #[schema(format = "email", max_length = 254)]
    pub email: String,
    /// 8 to 128 characters, not a common password.
    #[validate(custom(function = "validate::new_password"))]
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    /// Given name: 1 to 100 characters once trimmed, no control characters.
    pub first_name: Name,
    /// Family name: 1 to 100 characters once trimmed, no control characters.
    pub last_name: Name,
}

/// Answer of `POST /api/register`: the API key is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisterResponse {
    /// The new account.
    pub user: UserView,
    /// The full API key; afterwards only its prefix is shown.
    pub api_key: String,
}

/// Body of `POST /api/login`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email address.
    #[validate(length(min = 1, max = 254))]
    #[schema(min_length = 1, max_length = 254)]
    pub email: String,
    /// Password (1 to 1024 bytes).
    #[validate(custom(function = "validate::login_password"))]
    #[schema(min_length = 1, max_length = 256)]
    pub password: String,
}

/// Tokens of a session, from login and refresh.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Opaque, single-use refresh token (30 days).
    pub refresh_token: String,
    /// The user.
    pub user: UserView,
}

/// Body of `POST /api/token/refresh` (or none, with the `sb_refresh` cookie).
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from login or the previous refresh.
    #[validate(length(min = 1, max = 256))]
    #[schema(min_length = 1, max_length = 256)]
    pub refresh_token: String,
}

/// Body of `POST /api/password/forgot`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotRequest {
    /// The account's email.
    #[validate(custom(function = "validate::email"))]
    #[schema(format = "email", max_length = 254)]
    pub email: String,
}

/// Body of `POST /api/password/reset`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The token from the mailed link.
    #[validate(length(min = 1, max = 256))]
    #[schema(min_length = 1, max_length = 256)]
    pub token: String,
    /// The new password: 8 to 128 characters, not a common password.
    #[validate(custom(function = "validate::new_password"))]
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

/// Answer of `POST /api/password/forgot`: the same whether or not the account exists.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedResponse {
    /// What happens next.
    pub message: &'static str,
}

/// Answer of `POST /api/ws-ticket`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WsTicketResponse {
    /// Pass as `/ws?ticket=`; works once, within `expires_in` seconds.
    pub ticket: String,
    /// Seconds of validity.
    pub expires_in: i64,
}

/// Creates an account with the starting credits and a first API key.
#[utoipa::path(post, path = "/api/register", tag = "auth", request_body = RegisterRequest, security(()),
    responses((status = 201, body = RegisterResponse), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "too many registrations from this IP")))]
pub async fn register(
    state: web::Data<AppState>,
    ip: ClientIp,
    ValidJson(body): ValidJson<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let account = NewAccount {
        email: body.email,
        password: body.password,
        first_name: body.first_name,
        last_name: body.last_name,
    };
    let (user, api_key) = state.accounts.register(account, ip.0).await?;
    let standing = state.credits.standing(&user.id).await?;
    Ok(HttpResponse::Created().json(RegisterResponse { user: UserView::new(&user, standing), api_key }))
}

/// Checks email and password and opens a session (tokens in the body and as cookies).
#[utoipa::path(post, path = "/api/login", tag = "auth", request_body = LoginRequest, security(()),
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "too many failures for this account or IP")))]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    ip: ClientIp,
    ValidJson(body): ValidJson<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let user_agent = req.headers().get(actix_web::http::header::USER_AGENT).and_then(|v| v.to_str().ok());
    let origin = LoginOrigin { ip: ip.0, user_agent: user_agent.map(str::to_owned) };
    let (user, tokens) = state.accounts.login(&body.email, &body.password, origin).await?;
    token_response(&req, &state, &user, tokens).await
}

/// Exchanges a refresh token for new tokens; a reused token revokes its whole session.
#[utoipa::path(post, path = "/api/token/refresh", tag = "auth", request_body(content = RefreshRequest, description = "or the sb_refresh cookie with X-CSRF-Token"),
    security(()),
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "the account is disabled, or a cookie refresh lacks its CSRF token")))]
pub async fn refresh(
    req: HttpRequest,
    state: web::Data<AppState>,
    ip: ClientIp,
    OptionalJson(body): OptionalJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let (token, from_cookie) = match body {
        Some(body) => (body.refresh_token, false),
        None => (req.cookie(REFRESH_COOKIE).ok_or(ApiError::Unauthorized)?.value().to_owned(), true),
    };
    // Refresh tokens start with their session id, so the CSRF token of a cookie request is
    // checked before the refresh token is used: a refused request must not spend it.
    let sid = AccountService::refresh_token_session(&token).ok_or(ApiError::Unauthorized)?;
    if from_cookie {
        check_csrf(&state, &req, sid)?;
    }
    let (user, tokens) = state.accounts.refresh(&token, ip.0).await?;
    token_response(&req, &state, &user, tokens).await
}

/// Ends the current session: its access and refresh tokens stop working at once. Without a
/// valid access credential (the 15-minute cookie has expired) it still clears the cookies, so
/// the browser cannot sign itself back in with the refresh cookie.
#[utoipa::path(post, path = "/api/logout", tag = "auth", security((), ("bearer" = []), ("api_key" = []), ("cookie" = [])),
    responses((status = 204, description = "signed out (also without a valid credential: the cookies are cleared)"),
        (status = 403, body = ErrorBody, description = "a cookie logout without its CSRF token, or a disabled account")))]
pub async fn logout(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match authenticate(&state, &req).await {
        Ok(current) => state.accounts.logout(&current).await?,
        Err(ApiError::Unauthorized) => {}
        Err(other) => return Err(other),
    }
    let mut response = HttpResponse::NoContent();
    for cookie in cleared_cookies(&req, &state) {
        response.cookie(cookie);
    }
    Ok(response.finish())
}

/// Mails a reset link when the account exists; always 202 with the same body.
#[utoipa::path(post, path = "/api/password/forgot", tag = "auth", request_body = ForgotRequest, security(()),
    responses((status = 202, body = AcceptedResponse), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "too many requests for this email or IP")))]
pub async fn forgot_password(
    state: web::Data<AppState>,
    ip: ClientIp,
    ValidJson(body): ValidJson<ForgotRequest>,
) -> Result<HttpResponse, ApiError> {
    state.accounts.request_reset(&body.email, ip.0).await?;
    Ok(HttpResponse::Accepted()
        .json(AcceptedResponse { message: "If the account exists, a reset link is on its way" }))
}

/// Sets a new password with a reset token (single use, 30 minutes, newest only) and ends every session.
#[utoipa::path(post, path = "/api/password/reset", tag = "auth", request_body = ResetRequest, security(()),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "too many bad tokens from this IP")))]
pub async fn reset_password(
    state: web::Data<AppState>,
    ip: ClientIp,
    ValidJson(body): ValidJson<ResetRequest>,
) -> Result<HttpResponse, ApiError> {
    state.accounts.reset_password(&body.token, &body.new_password, ip.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A single-use ticket (30 s) for browsers opening `/ws`, where headers cannot be set.
#[utoipa::path(post, path = "/api/ws-ticket", tag = "auth", responses((status = 200, body = WsTicketResponse), (status = 401, body = ErrorBody)))]
pub async fn ws_ticket(state: web::Data<AppState>, current: CurrentUser) -> HttpResponse {
    let ticket = state.accounts.ws_ticket(&current);
    HttpResponse::Ok().json(WsTicketResponse { ticket, expires_in: WS_TICKET_SECONDS })
}

/// The tokens of a session as the body and as cookies.
async fn token_response(
    req: &HttpRequest,
    state: &AppState,
    user: &User,
    tokens: SessionTokens,
) -> Result<HttpResponse, ApiError> {
    let secure = secure_cookies(req, state);
    let cookies = [
        cookie(
            ACCESS_COOKIE,
            tokens.access_token.clone(),
            "/",
            true,
            SameSite::Lax,
            ACCESS_TOKEN_SECONDS,
            secure,
        ),
        cookie(
            REFRESH_COOKIE,
            tokens.refresh_token.clone(),
            REFRESH_PATH,
            true,
            SameSite::Strict,
            REFRESH_DAYS * 86_400,
            secure,
        ),
        cookie(
            CSRF_COOKIE,
            csrf_token(state, &tokens.session_id),
            "/",
            false,
            SameSite::Lax,
            REFRESH_DAYS * 86_400,
            secure,
        ),
    ];
    let standing = state.credits.standing(&user.id).await?;
    let mut response = HttpResponse::Ok();
    for c in cookies {
        response.cookie(c);
    }
    Ok(response.json(TokenResponse {
        access_token: tokens.access_token,
        token_type: "Bearer",
        expires_in: ACCESS_TOKEN_SECONDS,
        refresh_token: tokens.refresh_token,
        user: UserView::new(user, standing),
    }))
}

fn secure_cookies(req: &HttpRequest, state: &AppState) -> bool {
    state.config.secure_cookies || req.app_config().secure()
}

fn cookie(
    name: &'static str,
    value: String,
    path: &'static str,
    http_only: bool,
    same_site: SameSite,
    max_age_secs: i64,
    secure: bool,
) -> Cookie<'static> {
    Cookie::build(name, value)
        .path(path)
        .http_only(http_only)
        .same_site(same_site)
        .secure(secure)
        .max_age(CookieDuration::seconds(max_age_secs))
        .finish()
}

/// Cookies that overwrite and expire the session cookies.
pub fn cleared_cookies(req: &HttpRequest, state: &AppState) -> Vec<Cookie<'static>> {
    let secure = secure_cookies(req, state);
    [
        (ACCESS_COOKIE, "/", true, SameSite::Lax),
        (REFRESH_COOKIE, REFRESH_PATH, true, SameSite::Strict),
        (CSRF_COOKIE, "/", false, SameSite::Lax),
    ]
    .into_iter()
    .map(|(name, path, http_only, same_site)| {
        cookie(name, String::new(), path, http_only, same_site, 0, secure)
    })
    .collect()
}
