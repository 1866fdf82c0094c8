//! The signed-in user's own account: profile, stats, usage ledger, API key, password.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::{Validate, ValidationError};

use crate::http::error::{ApiError, ErrorBody};
use crate::input::credentials::CurrentUser;
use crate::input::json::ValidJson;
use crate::input::paging::{LedgerPageQuery, Paging};
use crate::input::query::Query;
use crate::security::client_ip::ClientIp;
use crate::services::accounts::rules as validate;
use crate::services::credits::DayWindow;
use crate::services::text::Name;
use crate::state::AppState;
use crate::views::{DailyUsageView, StatsResponse, UsagePage, UserView};

/// Body of `PUT /api/me`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfileRequest {
    /// Given name: 1 to 100 characters once trimmed, no control characters.
    pub first_name: Name,
    /// Family name: 1 to 100 characters once trimmed, no control characters.
    pub last_name: Name,
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

/// The query of `GET /api/me/usage/daily`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DailyQuery {
    /// UTC days to cover, ending today: 1 to 90 (default 30).
    #[param(minimum = 1, maximum = 90)]
    pub days: Option<i64>,
}

/// Body of `POST /api/me/api-key`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegenerateApiKeyRequest {
    /// The password now: a key outlives the session that mints it.
    #[validate(custom(function = "validate::login_password"))]
    #[schema(min_length = 1, max_length = 256)]
    pub current_password: String,
}

/// Answer of `POST /api/me/api-key`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyResponse {
    /// The new key, shown this once; the old one no longer works.
    pub api_key: String,
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/me", tag = "profile", responses((status = 200, body = UserView), (status = 401, body = ErrorBody)))]
pub async fn get_me(state: web::Data<AppState>, current: CurrentUser) -> Result<HttpResponse, ApiError> {
    let standing = state.credits.standing(&current.user.id).await?;
    Ok(HttpResponse::Ok().json(UserView::new(&current.user, standing)))
}

/// Changes first and last name.
#[utoipa::path(put, path = "/api/me", tag = "profile", request_body = UpdateProfileRequest,
    responses((status = 200, body = UserView), (status = 422, body = ErrorBody)))]
pub async fn update_me(
    state: web::Data<AppState>,
    current: CurrentUser,
    ValidJson(body): ValidJson<UpdateProfileRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = state.accounts.update_names(&current.user.id, &body.first_name, &body.last_name).await?;
    let standing = state.credits.standing(&user.id).await?;
    Ok(HttpResponse::Ok().json(UserView::new(&user, standing)))
}

/// Balance, counts and credits spent per service.
#[utoipa::path(get, path = "/api/me/stats", tag = "profile", responses((status = 200, body = StatsResponse)))]
pub async fn stats(state: web::Data<AppState>, current: CurrentUser) -> Result<HttpResponse, ApiError> {
    let stats = state.credits.stats(&current.user.id).await?;
    Ok(HttpResponse::Ok().json(StatsResponse::from(stats)))
}

/// The signed-in user's ledger, newest first.
#[utoipa::path(get, path = "/api/me/usage", tag = "profile", params(LedgerPageQuery),
    responses((status = 200, body = UsagePage), (status = 422, body = ErrorBody)))]
pub async fn usage(
    state: web::Data<AppState>,
    current: CurrentUser,
    page: Paging,
) -> Result<HttpResponse, ApiError> {
    let usage = state.credits.usage(&current.user.id, page.before.as_deref(), page.limit).await?;
    Ok(HttpResponse::Ok().json(UsagePage::from(usage)))
}

/// Credits per UTC day, oldest first, every day present: `chat` and `image` spent (net of that
/// day's refunds of the same service), `grant` (signed) and `refund`.
#[utoipa::path(get, path = "/api/me/usage/daily", tag = "profile", params(DailyQuery),
    responses((status = 200, body = DailyUsageView), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn daily_usage(
    state: web::Data<AppState>,
    current: CurrentUser,
    query: Query<DailyQuery>,
) -> Result<HttpResponse, ApiError> {
    let window = DayWindow::new(query.days).map_err(|problem| ApiError::field("days", problem))?;
    let days = state.credits.daily_usage(Some(&current.user.id), window).await?;
    Ok(HttpResponse::Ok().json(DailyUsageView::from(days.as_slice())))
}

/// Replaces the API key after checking the password; the old key fails at once and its sockets
/// close. Wrong passwords count against the account's login throttle.
#[utoipa::path(post, path = "/api/me/api-key", tag = "profile", request_body = RegenerateApiKeyRequest,
    responses((status = 200, body = ApiKeyResponse), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn regenerate_api_key(
    state: web::Data<AppState>,
    current: CurrentUser,
    ip: ClientIp,
    ValidJson(body): ValidJson<RegenerateApiKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    let api_key = state.accounts.regenerate_api_key(&current, &body.current_password, ip.0).await?;
    Ok(HttpResponse::Ok().json(ApiKeyResponse { api_key }))
}

/// Changes the password after checking the current one; every session ends.
#[utoipa::path(post, path = "/api/me/password", tag = "profile", request_body = ChangePasswordRequest,
    responses((status = 204), (status = 422, body = ErrorBody)))]
pub async fn change_password(
    state: web::Data<AppState>,
    current: CurrentUser,
    ip: ClientIp,
    ValidJson(body): ValidJson<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    state.accounts.change_password(&current, &body.current_password, &body.new_password, ip.0).await?;
    Ok(HttpResponse::NoContent().finish())
}
