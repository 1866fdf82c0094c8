//! Admin routes: list and search users, one user with stats, change a user's role or active flag,
//! grant or take credits, read a user's ledger, and the presence snapshot. Every handler takes
//! [`Admin`], so non-admins get 403 and anonymous callers 401, and every change is a security
//! event in the log (`admin_role_changed`, `admin_active_changed`, `admin_credits_granted`).

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use switchboard_actors::presence::GetSnapshot;
use utoipa::{IntoParams, ToSchema};
use validator::{Validate, ValidationError};

use super::json::ValidJson;
use super::profile::{CreditsUsedView, StatsResponse, UsageQuery, usage_page};
use super::query::Query;
use super::views::{UsagePage, UserView};
use crate::auth::extract::Admin;
use crate::error::{ApiError, ErrorBody};
use crate::security::client_ip::ClientIp;
use crate::startup::AppState;
use crate::store::ledger::{CreditChange, CreditError};
use crate::store::{Role, ServiceType, User, UserUpdate};
use crate::ws::protocol::PresenceUserView;
use crate::ws::session::presence_view;

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
    #[serde(default, deserialize_with = "super::json::present")]
    #[schema(nullable = false)]
    pub role: Option<Role>,
    /// False deactivates the account and ends every session; true reactivates it.
    #[serde(default, deserialize_with = "super::json::present")]
    #[schema(nullable = false)]
    pub active: Option<bool>,
}

/// Body of `POST /api/admin/users/{id}/credits`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantCreditsRequest {
    /// Credits to add (positive) or take (negative); not zero, at most 1,000,000,000 either way.
    #[validate(custom(function = "grant_amount"))]
    #[serde(deserialize_with = "super::json::whole_number")]
    #[schema(schema_with = nonzero_amount_schema)]
    pub amount: i64,
    /// Why, 1 to 200 characters (no control characters); recorded as the ledger entry's `ref`.
    #[validate(custom(function = "grant_reason"))]
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub reason: String,
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

fn grant_reason(reason: &str) -> Result<(), ValidationError> {
    if reason.trim().is_empty() || reason.chars().count() > 200 {
        return Err(ValidationError::new("length").with_message("must be 1 to 200 characters".into()));
    }
    if reason.chars().any(char::is_control) {
        return Err(ValidationError::new("control_characters")
            .with_message("must not contain control characters".into()));
    }
    Ok(())
}

/// Who is online, as `presence.snapshot` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PresenceSnapshotView {
    /// Users online, oldest connection first.
    pub users: Vec<PresenceUserView>,
    /// Distinct users online.
    pub active_users: usize,
    /// Open WebSocket sessions.
    pub sessions: usize,
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
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::field("limit", "must be 1 to 100"));
    }
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
    let (users, total) = state.store.list_users(search, limit, offset).await?;
    Ok(HttpResponse::Ok().json(UserListView { users: users.iter().map(UserView::from).collect(), total }))
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
    let user = find_user(&state, &id).await?;
    let stats = state.store.user_stats(&user.id).await?;
    Ok(HttpResponse::Ok().json(AdminUserView {
        stats: StatsResponse {
            credits: user.credits,
            total_chats: stats.total_chats,
            total_images: stats.total_images,
            credits_used: CreditsUsedView { chat: stats.credits_used.chat, image: stats.credits_used.image },
        },
        user: UserView::from(&user),
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
    // Refusing these keeps at least one admin able to act, and an admin from locking themselves out.
    if *id == admin.user.id && body.role == Some(Role::User) {
        return Err(ApiError::Conflict("You cannot remove your own admin role; ask another admin"));
    }
    if *id == admin.user.id && body.active == Some(false) {
        return Err(ApiError::Conflict("You cannot deactivate your own account; ask another admin"));
    }
    let before = find_user(&state, &id).await?;
    let role_changed = body.role.filter(|role| *role != before.role);
    let active_changed = body.active.filter(|active| *active != before.active);
    let update = UserUpdate { role: role_changed, active: active_changed, ..Default::default() };
    let now = crate::store::now();
    let user = if role_changed.is_some() || active_changed.is_some() {
        state.store.update_user(&before.id, &update, now).await?.ok_or(ApiError::NotFound)?
    } else {
        before.clone()
    };
    if let Some(role) = role_changed {
        tracing::info!(event = "admin_role_changed", admin_id = %admin.user.id, user_id = %user.id,
            client_ip = %ip, from = before.role.as_str(), to = role.as_str(), "admin changed a user's role");
    }
    if let Some(active) = active_changed {
        tracing::info!(event = "admin_active_changed", admin_id = %admin.user.id, user_id = %user.id,
            client_ip = %ip, active, "admin changed whether a user is active");
    }
    // Sessions end after the store changed, so a request racing this one already sees the new
    // role or flag: the extractors read both from the store on every request.
    let reason = match (active_changed, role_changed) {
        (Some(false), _) => Some("account_disabled"),
        (_, Some(_)) => Some("role_changed"),
        _ => None,
    };
    if active_changed == Some(false) {
        // A reset link mailed before the deactivation must not act on the account later.
        state.store.void_reset_tokens(&user.id).await?;
    }
    if let Some(reason) = reason {
        super::auth::end_all_sessions(&state, &user.id, reason).await?;
    }
    Ok(HttpResponse::Ok().json(UserView::from(&user)))
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
    let user = find_user(&state, &id).await?;
    let change = CreditChange {
        user_id: user.id.clone(),
        service_type: ServiceType::Grant,
        amount: body.amount,
        reference: Some(body.reason.trim().to_owned()),
        actor_id: Some(admin.user.id.clone()),
        refund_of: None,
    };
    let entry = state.realtime.change_credits(change).await.map_err(|e| match e {
        CreditError::Insufficient { .. } => {
            ApiError::Conflict("This grant would take the user's balance below zero")
        }
        other => other.into(),
    })?;
    tracing::info!(event = "admin_credits_granted", admin_id = %admin.user.id, user_id = %user.id,
        client_ip = %ip, amount = entry.amount, balance_after = entry.balance_after, entry_id = %entry.id,
        "admin granted credits");
    let mut user = find_user(&state, &user.id).await?;
    // The cached balance is normally this entry's or a newer one's; never show an older one.
    if user.credits_seq < entry.seq {
        user.credits = entry.balance_after;
    }
    Ok(HttpResponse::Ok().json(UserView::from(&user)))
}

/// A user's ledger, newest first, paged like `GET /api/me/usage`.
#[utoipa::path(get, path = "/api/admin/users/{id}/usage", tag = "admin",
    params(("id" = String, Path, description = "user id"), UsageQuery),
    responses((status = 200, body = UsagePage), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn user_usage(
    state: web::Data<AppState>,
    _admin: Admin,
    id: web::Path<String>,
    query: Query<UsageQuery>,
) -> Result<HttpResponse, ApiError> {
    let user = find_user(&state, &id).await?;
    usage_page(&state, &user.id, &query).await
}

/// The presence snapshot of this node.
#[utoipa::path(get, path = "/api/admin/presence", tag = "admin",
    responses((status = 200, body = PresenceSnapshotView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn presence(state: web::Data<AppState>, _admin: Admin) -> Result<HttpResponse, ApiError> {
    let snapshot = state.realtime.presence.send(GetSnapshot).await.map_err(|_| ApiError::Unavailable)?;
    Ok(HttpResponse::Ok().json(PresenceSnapshotView {
        users: snapshot.users.iter().map(presence_view).collect(),
        active_users: snapshot.active_users,
        sessions: snapshot.sessions,
    }))
}

async fn find_user(state: &AppState, id: &str) -> Result<User, ApiError> {
    state.store.user_by_id(id).await?.ok_or(ApiError::NotFound)
}
