//! Who is online, as both edges show it (`presence.snapshot` and `GET /api/admin/presence`).

use serde::Serialize;

use crate::seams::presence::{Snapshot, UserPresence};

/// One user in presence frames.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PresenceUserView {
    /// User id.
    pub user_id: String,
    /// Email.
    pub email: String,
    /// Open sessions.
    pub sessions: usize,
    /// Start of the oldest open session.
    #[serde(with = "time::serde::rfc3339")]
    pub connected_since: time::OffsetDateTime,
}

/// Who is online (`presence.snapshot`, and `GET /api/admin/presence`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PresenceSnapshotView {
    /// Users online, oldest connection first.
    pub users: Vec<PresenceUserView>,
    /// Distinct users online.
    pub active_users: usize,
    /// Open WebSocket sessions.
    pub sessions: usize,
}

impl From<&UserPresence> for PresenceUserView {
    fn from(user: &UserPresence) -> PresenceUserView {
        PresenceUserView {
            user_id: user.user_id.to_string(),
            email: user.email.to_string(),
            sessions: user.sessions,
            connected_since: time::OffsetDateTime::from(user.connected_since),
        }
    }
}

impl From<&Snapshot> for PresenceSnapshotView {
    fn from(s: &Snapshot) -> PresenceSnapshotView {
        PresenceSnapshotView {
            users: s.users.iter().map(PresenceUserView::from).collect(),
            active_users: s.active_users,
            sessions: s.sessions,
        }
    }
}
