//! Admin routes: list and search users, one user with stats, change a user's role or active flag,
//! grant or take credits, read a user's ledger, and the presence snapshot. Every handler takes
//! [`Admin`], so non-admins get 403 and anonymous callers 401, and every change is a security
//! event in the log (`admin_role_changed`, `admin_active_changed`, `admin_credits_granted`).

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use validator::{Validate, ValidationError};

use crate::http::error::{ApiError, ErrorBody};
use crate::input::credentials::Admin;
use crate::input::json::ValidJson;
use crate::input::paging::{LedgerPageQuery, Paging};
use crate::input::query::Query;
use crate::security::client_ip::ClientIp;
use crate::services::accounts::admin::AccountChange;
use crate::services::credits::CreditError;
use crate::services::paging::PageLimit;
use crate::services::text::Reason;
use crate::state::AppState;
use crate::store::Role;
use crate::views::{OverviewView, PresenceSnapshotView, StatsResponse, UsagePage, UserView};

/// The largest credit change one grant may make, either way.
pub const MAX_GRANT: i64 = 1_000_000_000;

/// Paging and search of `GET /api/admin/users`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListUsersQuery {
    /// Part of an email, first name or last name, case-insensitive; at most 254 characters,
    /// no control characters.
    #[param(max_length = 254, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub q: Option<String>,
    /// Users per page, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Users to skip, 0 or more (default 0).
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// Answer of `GET /api/admin/users`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserListView {
    /// The page of matching users, oldest account first.
    pub users: Vec<UserView>,
    /// How many users match in all pages.
    pub total: i64,
}

/// Answer of `GET /api/admin/users/{id}`: the user's fields plus `stats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminUserView {
    /// The user, as `GET /api/me` shows it.
    #[serde(flatten)]
    pub user: UserView,
    /// Balance, counts and credits spent, as `GET /api/me/stats` shows them.
    pub stats: StatsResponse,
}

/// Body of `PATCH /api/admin/users/{id}`: at least one field. A field is left as it is by
/// leaving it out; `null` is refused, since it says nothing a missing field does not.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateUserRequest {
    /// `user` or `admin`; a change ends every session of the user.
    #[serde(default, deserialize_with = "crate::input::json::present")]
    #[schema(nullable = false)]
    pub role: Option<Role>,
    /// False deactivates the account and ends every session; true reactivates it.
    #[serde(default, deserialize_with = "crate::input::json::present")]
    #[schema(nullable = false)]
    pub active: Option<bool>,
}

/// Body of `POST /api/admin/users/{id}/credits`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantCreditsRequest {
    /// Credits to add (positive) or take (negative); not zero, at most 1,000,000,000 either way.
    #[validate(custom(function = "grant_amount"))]
    #[serde(deserialize_with = "crate::input::json::whole_number")]
    #[schema(schema_with = nonzero_amount_schema)]
    pub amount: i64,
    /// Why: 1 to 200 characters once trimmed, no control characters; recorded as the ledger
    /// entry's `ref`.
    pub reason: Reason,
}

/// The schema of `amount`: a whole number from −1e9 to −1 or from 1 to 1e9.
fn nonzero_amount_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    let range = |min: i64, max: i64| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(min as f64))
            .maximum(Some(max as f64))
    };
    OneOfBuilder::new()
        .item(range(-MAX_GRANT, -1))
        .item(range(1, MAX_GRANT))
        .description(Some(
            "Credits to add (positive) or take (negative); not zero, at most 1,000,000,000 either way.",
        ))
        .build()
        .into()
}

fn grant_amount(amount: i64) -> Result<(), ValidationError> {
    if amount == 0 || amount.unsigned_abs() > MAX_GRANT.unsigned_abs() {
        return Err(ValidationError::new("range")
            .with_message("must be a non-zero whole number between -1000000000 and 1000000000".into()));
    }
    Ok(())
}

/// Users whose email or names contain `q`, oldest account first, with the number of matches.
#[utoipa::path(get, path = "/api/admin/users", tag = "admin", params(ListUsersQuery),
    responses((status = 200, body = UserListView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_users(
    state: web::Data<AppState>,
    _admin: Admin,
    query: Query<ListUsersQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = PageLimit::new(query.limit).map_err(|problem| ApiError::field("limit", problem))?;
    let offset = query.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::field("offset", "must be 0 or more"));
    }
    let search = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if let Some(q) = search {
        // Control characters could match across the fields of the embedded store's search text.
        if q.chars().count() > 254 || q.chars().any(char::is_control) {
            return Err(ApiError::field("q", "must be at most 254 characters without control characters"));
        }
    }
    let (users, total) = state.accounts.list_users(search, limit.get(), offset).await?;
    let mut views = Vec::with_capacity(users.len());
    for user in &users {
        views.push(UserView::new(user, state.credits.standing(&user.id).await?));
    }
    Ok(HttpResponse::Ok().json(UserListView { users: views, total }))
}

/// One user with their stats.
#[utoipa::path(get, path = "/api/admin/users/{id}", tag = "admin",
    params(("id" = String, Path, description = "user id")),
    responses((status = 200, body = AdminUserView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_user(
    state: web::Data<AppState>,
    _admin: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = state.accounts.user(&id).await?;
    let stats = state.credits.stats(&user.id).await?;
    Ok(HttpResponse::Ok().json(AdminUserView {
        user: UserView::new(&user, state.credits.standing(&user.id).await?),
        stats: stats.into(),
    }))
}

/// Changes a user's role or active flag. A role change or a deactivation ends every session of
/// the user and closes their sockets at once; an admin cannot demote or deactivate themselves.
#[utoipa::path(patch, path = "/api/admin/users/{id}", tag = "admin",
    params(("id" = String, Path, description = "user id")), request_body = UpdateUserRequest,
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "an admin demoting or deactivating themselves"),
        (status = 422, body = ErrorBody)))]
pub async fn update_user(
    state: web::Data<AppState>,
    Admin(admin): Admin,
    ip: ClientIp,
    id: web::Path<String>,
    ValidJson(body): ValidJson<UpdateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    if body.role.is_none() && body.active.is_none() {
        return Err(ApiError::field("body", "must set role or active"));
    }
    let change = AccountChange { role: body.role, active: body.active };
    let user = state.accounts.change_account(&admin, &id, change, ip.0).await?;
    let standing = state.credits.standing(&user.id).await?;
    Ok(HttpResponse::Ok().json(UserView::new(&user, standing)))
}

/// Adds (or, with a negative amount, takes) credits: a ledger entry of type `grant` whose `ref` is
/// the reason, recording the admin. The user's sockets get `credits.updated`.
#[utoipa::path(post, path = "/api/admin/users/{id}/credits", tag = "admin",
    params(("id" = String, Path, description = "user id")), request_body = GrantCreditsRequest,
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the balance would drop below zero"),
        (status = 422, body = ErrorBody)))]
pub async fn grant_credits(
    state: web::Data<AppState>,
    Admin(admin): Admin,
    ip: ClientIp,
    id: web::Path<String>,
    ValidJson(body): ValidJson<GrantCreditsRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = state.accounts.user(&id).await?;
    let reason = &body.reason;
    let entry =
        state.credits.grant(&admin.user.id, &user.id, body.amount, reason).await.map_err(|e| match e {
            CreditError::Insufficient { .. } => {
                ApiError::Conflict("This grant would take the user's balance below zero")
            }
            other => other.into(),
        })?;
    tracing::info!(event = "admin_credits_granted", admin_id = %admin.user.id, user_id = %user.id,
        client_ip = %ip, amount = entry.amount, balance_after = entry.balance_after, entry_id = %entry.id,
        "admin granted credits");
    // The balance right after this grant, or a newer one if another change landed meanwhile.
    let standing = state.credits.standing(&user.id).await?;
    Ok(HttpResponse::Ok().json(UserView::new(&user, standing)))
}

/// A user's ledger, newest first, paged like `GET /api/me/usage`.
#[utoipa::path(get, path = "/api/admin/users/{id}/usage", tag = "admin",
    params(("id" = String, Path, description = "user id"), LedgerPageQuery),
    responses((status = 200, body = UsagePage), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn user_usage(
    state: web::Data<AppState>,
    _admin: Admin,
    id: web::Path<String>,
    page: Paging,
) -> Result<HttpResponse, ApiError> {
    let user = state.accounts.user(&id).await?;
    let usage = state.credits.usage(&user.id, page.before.as_deref(), page.limit).await?;
    Ok(HttpResponse::Ok().json(UsagePage::from(usage)))
}

/// Who is online.
#[utoipa::path(get, path = "/api/admin/presence", tag = "admin",
    responses((status = 200, body = PresenceSnapshotView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn presence(state: web::Data<AppState>, _admin: Admin) -> Result<HttpResponse, ApiError> {
    let snapshot = state.realtime.presence.snapshot().await.map_err(|_| ApiError::Unavailable)?;
    Ok(HttpResponse::Ok().json(PresenceSnapshotView::from(&snapshot)))
}

/// Users, who is online, nodes, today's credits and sign-ups, and the last 30 UTC days of both
/// (`days`, for the chart).
#[utoipa::path(get, path = "/api/admin/overview", tag = "admin",
    responses((status = 200, body = OverviewView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn overview(state: web::Data<AppState>, _admin: Admin) -> Result<HttpResponse, ApiError> {
    let overview = state.overview.overview().await?;
    Ok(HttpResponse::Ok().json(OverviewView::from(&overview)))
}
