//! Login sessions over REST: the signed-in user's live sessions, ending one or every other one,
//! and an admin's view of a user's sessions with the power to end one. An ended session's tokens
//! fail at once and its sockets get `session.revoked` (`session_ended`) and close 4001.

use actix_web::{HttpResponse, web};

use crate::http::error::{ApiError, ErrorBody};
use crate::input::credentials::{Admin, CurrentUser};
use crate::security::client_ip::ClientIp;
use crate::state::AppState;
use crate::views::SessionsView;

/// The signed-in user's live login sessions, most recently used first; `current` marks the one
/// this request came with (none for an API key).
#[utoipa::path(get, path = "/api/me/sessions", tag = "sessions",
    responses((status = 200, body = SessionsView), (status = 401, body = ErrorBody)))]
pub async fn my_sessions(state: web::Data<AppState>, current: CurrentUser) -> Result<HttpResponse, ApiError> {
    let sessions = state.accounts.live_sessions(&current.user.id, current.session_id.as_deref()).await?;
    Ok(HttpResponse::Ok().json(SessionsView::from(&sessions)))
}

/// Ends one of the user's sessions at once (the current one too: that signs this browser out).
/// Another user's session, an unknown one or one that has ended: 404.
#[utoipa::path(delete, path = "/api/me/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "session id")),
    responses((status = 204, description = "the session ended; its sockets closed with 4001"),
        (status = 404, body = ErrorBody)))]
pub async fn end_my_session(
    state: web::Data<AppState>,
    current: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.accounts.end_session(&current.user.id, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Ends every session of the user but the current one (with an API key, which has no session,
/// every one).
#[utoipa::path(post, path = "/api/me/sessions/revoke-others", tag = "sessions",
    responses((status = 204, description = "every other session ended"), (status = 401, body = ErrorBody)))]
pub async fn end_other_sessions(
    state: web::Data<AppState>,
    current: CurrentUser,
) -> Result<HttpResponse, ApiError> {
    state.accounts.end_other_sessions(&current).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A user's live login sessions, shaped as `GET /api/me/sessions` (`current` is always false).
#[utoipa::path(get, path = "/api/admin/users/{id}/sessions", tag = "admin",
    params(("id" = String, Path, description = "user id")),
    responses((status = 200, body = SessionsView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn user_sessions(
    state: web::Data<AppState>,
    _admin: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = state.accounts.user(&id).await?;
    let sessions = state.accounts.live_sessions(&user.id, None).await?;
    Ok(HttpResponse::Ok().json(SessionsView::from(&sessions)))
}

/// Ends one session of a user at once; a security event in the log (`admin_session_ended`).
#[utoipa::path(delete, path = "/api/admin/users/{id}/sessions/{sid}", tag = "admin",
    params(("id" = String, Path, description = "user id"), ("sid" = String, Path, description = "session id")),
    responses((status = 204, description = "the session ended; its sockets closed with 4001"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn end_user_session(
    state: web::Data<AppState>,
    Admin(admin): Admin,
    ip: ClientIp,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (user_id, session_id) = path.into_inner();
    state.accounts.admin_end_session(&admin, &user_id, &session_id, ip.0).await?;
    Ok(HttpResponse::NoContent().finish())
}
