//! Accounts and sessions: register, login, refresh, logout, password reset, ws tickets.

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use time::Duration;
use utoipa::ToSchema;
use validator::Validate;

use super::json::{OptionalJson, ValidJson};
use super::validate;
use super::views::UserView;
use crate::auth::extract::{CurrentUser, csrf_token};
use crate::auth::jwt::{ACCESS_TOKEN_SECONDS, WS_TICKET_SECONDS};
use crate::auth::{ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE, REFRESH_PATH, tokens};
use crate::error::{ApiError, ErrorBody};
use crate::security::client_ip::ClientIp;
use crate::startup::AppState;
use crate::store::{RefreshToken, RefreshUse, ResetToken, Role, Session, StoreError, User};

/// Refresh tokens live 30 days.
const REFRESH_DAYS: i64 = 30;
/// Reset tokens live 30 minutes.
const RESET_MINUTES: i64 = 30;

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
    /// Given name, 1 to 100 characters.
    #[validate(custom(function = "validate::name"))]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub first_name: String,
    /// Family name, 1 to 100 characters.
    #[validate(custom(function = "validate::name"))]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub last_name: String,
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
    // Counted before the email is checked, so 409s cannot probe for accounts at full speed.
    state.security.auth.check_register(ip).await?;
    let (user, api_key) = create_user(&state, &body, Role::User).await?;
    tracing::info!(event = "user_registered", user_id = %user.id, client_ip = %ip, "user registered");
    Ok(HttpResponse::Created().json(RegisterResponse { user: UserView::from(&user), api_key }))
}

/// Inserts a new user; shared by registration and the admin bootstrap.
pub async fn create_user(
    state: &AppState,
    body: &RegisterRequest,
    role: Role,
) -> Result<(User, String), ApiError> {
    let email = validate::normalise_email(&body.email);
    if state.store.user_by_email(&email).await?.is_some() {
        return Err(ApiError::EmailTaken);
    }
    let password_hash = state.hasher.hash(&body.password).await?;
    let api_key = tokens::new_api_key();
    let now = crate::store::now();
    let user = User {
        id: uuid::Uuid::now_v7().to_string(),
        email,
        password_hash,
        first_name: body.first_name.trim().to_owned(),
        last_name: body.last_name.trim().to_owned(),
        role,
        api_key_hash: tokens::sha256_hex(&api_key),
        api_key_prefix: tokens::api_key_prefix(&api_key),
        credits: state.config.starting_credits,
        credits_seq: 0,
        initial_credits: state.config.starting_credits,
        last_login: None,
        active: true,
        created_at: now,
        updated_at: now,
    };
    match state.store.insert_user(&user).await {
        Ok(()) => Ok((user, api_key)),
        // The unique index decides races between concurrent registrations of one email.
        Err(StoreError::Duplicate) => Err(ApiError::EmailTaken),
        Err(e) => Err(e.into()),
    }
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
    let email = validate::normalise_email(&body.email);
    // A throttled attempt is refused before the password is looked at, so guesses during a
    // delay learn nothing, not even from timing.
    state.security.auth.begin_login(ip, &email).await?;
    let user = state.store.user_by_email(&email).await?;
    // An unknown email still costs one hash, so the answer time does not reveal accounts.
    let matches =
        state.hasher.verify(&body.password, user.as_ref().map(|u| u.password_hash.as_str())).await?;
    let user = match user {
        Some(user) if matches => user,
        _ => {
            crate::metrics::record_login("failure");
            let user_id = user.as_ref().map(|u| u.id.as_str());
            tracing::info!(event = "login_failed", user_id, client_ip = %ip, "login failed");
            return Err(ApiError::InvalidCredentials);
        }
    };
    state.security.auth.login_succeeded(ip, &email);
    if !user.active {
        crate::metrics::record_login("disabled");
        tracing::info!(event = "login_refused_disabled", user_id = %user.id, client_ip = %ip,
            "login refused: account disabled");
        return Err(ApiError::AccountDisabled);
    }
    let now = crate::store::now();
    let session = Session {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: user.id.clone(),
        created_at: now,
        revoked_at: None,
    };
    state.store.insert_session(&session).await?;
    let update = crate::store::UserUpdate { last_login: Some(now), ..Default::default() };
    let user = state.store.update_user(&user.id, &update, now).await?.unwrap_or(user);
    crate::metrics::record_login("success");
    tracing::info!(event = "login_succeeded", user_id = %user.id, client_ip = %ip, "login succeeded");
    issue_tokens(&req, &state, &user, &session.id).await
}

/// Exchanges a refresh token for new tokens; a reused token revokes its whole session.
#[utoipa::path(post, path = "/api/token/refresh", tag = "auth", request_body(content = RefreshRequest, description = "or the sb_refresh cookie with X-CSRF-Token"),
    security(()),
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "the account is disabled, or a cookie refresh lacks its CSRF token")))]
pub async fn refresh(
    req: HttpRequest,
    state: web::Data<AppState>,
    OptionalJson(body): OptionalJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let (token, from_cookie) = match body {
        Some(body) => (body.refresh_token, false),
        None => (req.cookie(REFRESH_COOKIE).ok_or(ApiError::Unauthorized)?.value().to_owned(), true),
    };
    // Refresh tokens start with their session id, so the CSRF token of a cookie request is
    // checked before the refresh token is used: a refused request must not spend it.
    let sid = token.split_once('.').map(|(sid, _)| sid.to_owned()).ok_or(ApiError::Unauthorized)?;
    if from_cookie {
        super::super::auth::extract::check_csrf(&state, &req, &sid)?;
    }
    let now = crate::store::now();
    let found = match state.store.use_refresh_token(&tokens::sha256_hex(&token), now).await? {
        RefreshUse::Fresh(found) => found,
        RefreshUse::Reused(found) => {
            state.store.revoke_session(&found.session_id, now).await?;
            state.realtime.revoke_sockets(&found.user_id, Some(&found.session_id), "refresh_token_reused");
            let client_ip = crate::security::client_ip::client_ip(&req, &state.config.trusted_proxies);
            tracing::warn!(event = "refresh_token_reused", user_id = %found.user_id, %client_ip,
                "refresh token reused: session revoked");
            return Err(ApiError::Unauthorized);
        }
        RefreshUse::Unknown => return Err(ApiError::Unauthorized),
    };
    let session = state.store.session(&found.session_id).await?;
    if found.session_id != sid || found.expires_at <= now || session.is_none_or(|s| s.revoked_at.is_some()) {
        return Err(ApiError::Unauthorized);
    }
    let user = state.store.user_by_id(&found.user_id).await?.ok_or(ApiError::Unauthorized)?;
    if !user.active {
        return Err(ApiError::AccountDisabled);
    }
    issue_tokens(&req, &state, &user, &found.session_id).await
}

/// Ends the current session: its access and refresh tokens stop working at once. Without a
/// valid access credential (the 15-minute cookie has expired) it still clears the cookies, so
/// the browser cannot sign itself back in with the refresh cookie.
#[utoipa::path(post, path = "/api/logout", tag = "auth", security((), ("bearer" = []), ("api_key" = []), ("cookie" = [])),
    responses((status = 204, description = "signed out (also without a valid credential: the cookies are cleared)"),
        (status = 403, body = ErrorBody, description = "a cookie logout without its CSRF token, or a disabled account")))]
pub async fn logout(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match crate::auth::extract::authenticate(&state, &req).await {
        Ok(current) => {
            if let Some(sid) = &current.session_id {
                state.store.revoke_session(sid, crate::store::now()).await?;
                state.realtime.revoke_sockets(&current.user.id, Some(sid), "logout");
            }
        }
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
    let email = validate::normalise_email(&body.email);
    // Keyed by the email whether or not it has an account, so a 429 says nothing about accounts.
    state.security.auth.check_forgot(ip, &email).await?;
    // The work happens after the answer, so neither body nor timing tells whether the account exists.
    let state = state.into_inner();
    actix_web::rt::spawn(async move {
        if let Err(e) = send_reset_mail(&state, &email, ip).await {
            tracing::error!(error = %e, "password reset mail failed");
        }
    });
    Ok(HttpResponse::Accepted()
        .json(AcceptedResponse { message: "If the account exists, a reset link is on its way" }))
}

async fn send_reset_mail(state: &AppState, email: &str, ip: ClientIp) -> Result<(), ApiError> {
    let Some(user) = state.store.user_by_email(email).await? else { return Ok(()) };
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
    state.store.replace_reset_token(&record).await?;
    let link = format!("{}/reset-password?token={token}", state.config.public_url());
    let text = format!(
        "Hello {},\n\nsomeone asked to reset the password of your Switchboard account.\n\
         Open this link within {RESET_MINUTES} minutes to choose a new one:\n\n{link}\n\n\
         If it was not you, ignore this mail; your password stays as it is.\n",
        user.first_name
    );
    state.mailer.send(&user.email, "Reset your Switchboard password", &text).await;
    tracing::info!(event = "password_reset_requested", user_id = %user.id, client_ip = %ip,
        "password reset requested");
    Ok(())
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
    state.security.auth.begin_reset(ip).await?;
    let now = crate::store::now();
    let Some(user_id) = state.store.consume_reset_token(&tokens::sha256_hex(&body.token), now).await? else {
        // Tokens carry 256 random bits, so guessing is hopeless anyway; the throttle (which
        // counted this attempt already) keeps a guesser from even trying at speed.
        tracing::info!(event = "password_reset_failed", client_ip = %ip, "password reset with a bad token");
        return Err(ApiError::InvalidToken("The reset link is invalid, used or expired"));
    };
    state.security.auth.reset_succeeded(ip);
    // A deactivated account keeps its password: its tokens were voided at deactivation, and one
    // issued while that was under way must not act on it either.
    let active = state.store.user_by_id(&user_id).await?.is_some_and(|user| user.active);
    if !active {
        tracing::info!(event = "password_reset_failed", user_id = %user_id, client_ip = %ip,
            "password reset of a deactivated account refused");
        return Err(ApiError::InvalidToken("The reset link is invalid, used or expired"));
    }
    set_password(&state, &user_id, &body.new_password).await?;
    tracing::info!(event = "password_reset_used", user_id = %user_id, client_ip = %ip, "password reset used");
    // A notice to the account's address, sent after the answer; it carries no token or link that
    // acts on the account, and a failure only reaches the log.
    let state = state.into_inner();
    actix_web::rt::spawn(async move {
        let user = match state.store.user_by_id(&user_id).await {
            Ok(Some(user)) => user,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, user_id = %user_id, "password change notice failed");
                return;
            }
        };
        let text = format!(
            "Hello {},\n\nthe password of your Switchboard account was changed with a reset link \
             just now, and every device that was signed in has been signed out.\n\n\
             If it was you, there is nothing more to do.\n\
             If it wasn't you, someone may be able to read your mail: secure your mailbox, then ask \
             for a new reset link at {}/forgot-password and choose a new password.\n",
            user.first_name,
            state.config.public_url()
        );
        state.mailer.send(&user.email, "Your Switchboard password was changed", &text).await;
    });
    Ok(HttpResponse::NoContent().finish())
}

/// Stores a new password hash and revokes every session of the user. Outstanding reset tokens
/// are voided first, so none issued before the change can overwrite the new password.
pub async fn set_password(state: &AppState, user_id: &str, password: &str) -> Result<(), ApiError> {
    let hash = state.hasher.hash(password).await?;
    state.store.void_reset_tokens(user_id).await?;
    let now = crate::store::now();
    let update = crate::store::UserUpdate { password_hash: Some(hash), ..Default::default() };
    state.store.update_user(user_id, &update, now).await?.ok_or(ApiError::NotFound)?;
    end_all_sessions(state, user_id, "password_changed").await
}

/// Revokes every login session of a user and closes all their sockets (`session.revoked` with
/// `reason`, then 4001): after a password change or reset, a deactivation or a role change.
pub async fn end_all_sessions(state: &AppState, user_id: &str, reason: &'static str) -> Result<(), ApiError> {
    let revoked = state.store.revoke_user_sessions(user_id, crate::store::now()).await?;
    state.realtime.revoke_sockets(user_id, None, reason);
    tracing::info!(
        event = "sessions_revoked",
        user_id,
        sessions = revoked.len(),
        reason,
        "every session of the user ended"
    );
    Ok(())
}

/// A single-use ticket (30 s) for browsers opening `/ws`, where headers cannot be set.
#[utoipa::path(post, path = "/api/ws-ticket", tag = "auth", responses((status = 200, body = WsTicketResponse), (status = 401, body = ErrorBody)))]
pub async fn ws_ticket(state: web::Data<AppState>, current: CurrentUser) -> HttpResponse {
    let sid = current.session_id.as_deref().unwrap_or_default();
    let key = (current.credential == crate::auth::extract::Credential::ApiKey)
        .then(|| tokens::api_key_fingerprint(&current.user.api_key_hash));
    let ticket = state.jwt.issue_ws_ticket(&current.user.id, sid, key);
    HttpResponse::Ok().json(WsTicketResponse { ticket, expires_in: WS_TICKET_SECONDS })
}

async fn issue_tokens(
    req: &HttpRequest,
    state: &AppState,
    user: &User,
    sid: &str,
) -> Result<HttpResponse, ApiError> {
    let refresh_token = format!("{sid}.{}", tokens::random_secret());
    let now = crate::store::now();
    state
        .store
        .insert_refresh_token(&RefreshToken {
            token_hash: tokens::sha256_hex(&refresh_token),
            session_id: sid.to_owned(),
            user_id: user.id.clone(),
            expires_at: now + Duration::days(REFRESH_DAYS),
            used_at: None,
        })
        .await?;
    let access_token = state.jwt.issue_access(&user.id, user.role, sid);
    let secure = secure_cookies(req, state);
    let cookies = [
        cookie(ACCESS_COOKIE, access_token.clone(), "/", true, SameSite::Lax, ACCESS_TOKEN_SECONDS, secure),
        cookie(
            REFRESH_COOKIE,
            refresh_token.clone(),
            REFRESH_PATH,
            true,
            SameSite::Strict,
            REFRESH_DAYS * 86_400,
            secure,
        ),
        cookie(CSRF_COOKIE, csrf_token(state, sid), "/", false, SameSite::Lax, REFRESH_DAYS * 86_400, secure),
    ];
    let mut response = HttpResponse::Ok();
    for c in cookies {
        response.cookie(c);
    }
    Ok(response.json(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ACCESS_TOKEN_SECONDS,
        refresh_token,
        user: UserView::from(user),
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
