//! The signed-in user's own account: profile, stats, usage ledger, API key, password.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use validator::{Validate, ValidationError};

use super::json::ValidJson;
use super::query::Query;
use super::validate;
use super::views::{LedgerEntryView, UsagePage, UserView};
use crate::auth::extract::CurrentUser;
use crate::auth::tokens;
use crate::error::{ApiError, ErrorBody};
use crate::startup::AppState;
use crate::store::UserUpdate;

/// Body of `PUT /api/me`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfileRequest {
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
    /// Not accepted: the email cannot change (422). Left out of the document, which allows no
    /// other fields than the names.
    #[serde(default)]
    #[schema(ignore)]
    #[validate(custom(function = "email_is_fixed"))]
    pub email: Option<serde_json::Value>,
}

fn email_is_fixed(_: &serde_json::Value) -> Result<(), ValidationError> {
    Err(ValidationError::new("immutable").with_message("cannot be changed".into()))
}

/// Body of `POST /api/me/password`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// The password now.
    #[validate(custom(function = "validate::login_password"))]
    #[schema(min_length = 1, max_length = 256)]
    pub current_password: String,
    /// The new password: 8 to 128 characters, not a common password.
    #[validate(custom(function = "validate::new_password"))]
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

/// Answer of `GET /api/me/stats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsResponse {
    /// Current balance.
    pub credits: i64,
    /// Chats created.
    pub total_chats: i64,
    /// Images generated.
    pub total_images: i64,
    /// Credits spent per service, net of refunds.
    pub credits_used: CreditsUsedView,
}

/// Credits spent per service.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreditsUsedView {
    /// On chat messages.
    pub chat: i64,
    /// On images.
    pub image: i64,
}

/// Answer of `POST /api/me/api-key`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyResponse {
    /// The new key, shown this once; the old one no longer works.
    pub api_key: String,
}

/// Paging of a ledger.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Entries per page, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// `next_before` of the previous page.
    #[param(pattern = "^[0-9]+$")]
    pub before: Option<String>,
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/me", tag = "profile", responses((status = 200, body = UserView), (status = 401, body = ErrorBody)))]
pub async fn get_me(current: CurrentUser) -> HttpResponse {
    HttpResponse::Ok().json(UserView::from(&current.user))
}

/// Changes first and last name.
#[utoipa::path(put, path = "/api/me", tag = "profile", request_body = UpdateProfileRequest,
    responses((status = 200, body = UserView), (status = 422, body = ErrorBody)))]
pub async fn update_me(
    state: web::Data<AppState>,
    current: CurrentUser,
    ValidJson(body): ValidJson<UpdateProfileRequest>,
) -> Result<HttpResponse, ApiError> {
    let update = UserUpdate {
        first_name: Some(body.first_name.trim().to_owned()),
        last_name: Some(body.last_name.trim().to_owned()),
        ..Default::default()
    };
    let user = state.store.update_user(&current.user.id, &update, crate::store::now()).await?;
    let user = user.ok_or(ApiError::Unauthorized)?;
    Ok(HttpResponse::Ok().json(UserView::from(&user)))
}

/// Balance, counts and credits spent per service.
#[utoipa::path(get, path = "/api/me/stats", tag = "profile", responses((status = 200, body = StatsResponse)))]
pub async fn stats(state: web::Data<AppState>, current: CurrentUser) -> Result<HttpResponse, ApiError> {
    // The ledger, not the cached balance on the user: the stats page is where users check.
    let (_, credits) = crate::store::ledger::balance(&*state.store, &current.user.id).await?;
    let stats = state.store.user_stats(&current.user.id).await?;
    Ok(HttpResponse::Ok().json(StatsResponse {
        credits,
        total_chats: stats.total_chats,
        total_images: stats.total_images,
        credits_used: CreditsUsedView { chat: stats.credits_used.chat, image: stats.credits_used.image },
    }))
}

/// The signed-in user's ledger, newest first.
#[utoipa::path(get, path = "/api/me/usage", tag = "profile", params(UsageQuery),
    responses((status = 200, body = UsagePage), (status = 422, body = ErrorBody)))]
pub async fn usage(
    state: web::Data<AppState>,
    current: CurrentUser,
    query: Query<UsageQuery>,
) -> Result<HttpResponse, ApiError> {
    usage_page(&state, &current.user.id, &query).await
}

/// A page of any user's ledger (also used by the admin routes).
pub async fn usage_page(
    state: &AppState,
    user_id: &str,
    query: &UsageQuery,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::field("limit", "must be 1 to 100"));
    }
    let before = match &query.before {
        Some(cursor) => {
            Some(cursor.parse::<i64>().map_err(|_| ApiError::field("before", "is not a valid cursor"))?)
        }
        None => None,
    };
    let entries = state.store.ledger_page(user_id, before, limit).await?;
    let next_before = match entries.last() {
        Some(last) if entries.len() as i64 == limit && last.seq > 1 => Some(last.seq.to_string()),
        _ => None,
    };
    let entries = entries.iter().map(LedgerEntryView::from).collect();
    Ok(HttpResponse::Ok().json(UsagePage { entries, next_before }))
}

/// Replaces the API key; the old key fails at once.
#[utoipa::path(post, path = "/api/me/api-key", tag = "profile", responses((status = 200, body = ApiKeyResponse)))]
pub async fn regenerate_api_key(
    state: web::Data<AppState>,
    current: CurrentUser,
    ip: crate::security::client_ip::ClientIp,
) -> Result<HttpResponse, ApiError> {
    let api_key = tokens::new_api_key();
    let update = UserUpdate {
        api_key: Some((tokens::sha256_hex(&api_key), tokens::api_key_prefix(&api_key))),
        ..Default::default()
    };
    state.store.update_user(&current.user.id, &update, crate::store::now()).await?;
    // Sockets opened with the old key (or with a ticket it bought) must not outlive it.
    state.realtime.revoke_api_key_sockets(&current.user.id, "api_key_regenerated");
    tracing::info!(event = "api_key_regenerated", user_id = %current.user.id, client_ip = %ip,
        "API key regenerated");
    Ok(HttpResponse::Ok().json(ApiKeyResponse { api_key }))
}

/// Changes the password after checking the current one; every session ends.
#[utoipa::path(post, path = "/api/me/password", tag = "profile", request_body = ChangePasswordRequest,
    responses((status = 204), (status = 422, body = ErrorBody)))]
pub async fn change_password(
    state: web::Data<AppState>,
    current: CurrentUser,
    ip: crate::security::client_ip::ClientIp,
    ValidJson(body): ValidJson<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    // The same throttle as login: a stolen token or API key must not become a way to guess
    // the password without the login throttle.
    state.security.auth.begin_login(ip, &current.user.email).await?;
    if !state.hasher.verify(&body.current_password, Some(&current.user.password_hash)).await? {
        return Err(ApiError::field("current_password", "is not the current password"));
    }
    state.security.auth.login_succeeded(ip, &current.user.email);
    super::auth::set_password(&state, &current.user.id, &body.new_password).await?;
    tracing::info!(event = "password_changed", user_id = %current.user.id, "password changed");
    Ok(HttpResponse::NoContent().finish())
}
