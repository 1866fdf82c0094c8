//! Admin routes. So far: the presence snapshot (the rest of the admin API comes with the admin issue).

use actix_web::{HttpResponse, web};
use serde::Serialize;
use switchboard_actors::presence::GetSnapshot;
use utoipa::ToSchema;

use crate::auth::extract::Admin;
use crate::error::{ApiError, ErrorBody};
use crate::startup::AppState;
use crate::ws::protocol::PresenceUserView;
use crate::ws::session::presence_view;

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

/// The presence snapshot of this node.
#[utoipa::path(get, path = "/api/admin/presence", tag = "admin",
    responses((status = 200, body = PresenceSnapshotView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn presence(state: web::Data<AppState>, _admin: Admin) -> Result<HttpResponse, ApiError> {
    let snapshot = state.realtime.presence.send(GetSnapshot).await.map_err(|_| ApiError::Unavailable)?;
    Ok(HttpResponse::Ok().json(PresenceSnapshotView {
        users: snapshot.users.iter().map(presence_view).collect(),
        active_users: snapshot.active_users,
        sessions: snapshot.sessions,
    }))
}
