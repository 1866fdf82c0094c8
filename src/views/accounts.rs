//! Users and their login sessions as REST shows them.

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::services::accounts::sessions::{LiveSessions, LoginSession};
use crate::services::credits::Standing;
use crate::store::{Role, User};

/// A user as clients see it (no hashes, no internal counters).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// Opaque id.
    pub id: String,
    /// Lower-cased email.
    pub email: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// `user` or `admin`.
    pub role: Role,
    /// Current balance.
    pub credits: i64,
    /// Credits held by the user's running generations (their worst case, until they settle).
    pub credits_held: i64,
    /// Credits spent today (UTC), holds counted.
    pub spent_today: i64,
    /// First 10 characters of the API key; null when there is none (a password change, a reset
    /// or signing out everywhere else voids it until a new one is made).
    pub api_key_prefix: Option<String>,
    /// False when deactivated.
    pub active: bool,
    /// Last successful login.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_login: Option<OffsetDateTime>,
    /// Registration time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl UserView {
    /// The view of `u` with where its credits stand (from the credits service: the same everywhere).
    pub fn new(u: &User, standing: Standing) -> UserView {
        UserView {
            id: u.id.clone(),
            email: u.email.clone(),
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            role: u.role,
            credits: standing.credits,
            credits_held: standing.held,
            spent_today: standing.spent_today,
            api_key_prefix: Some(u.api_key_prefix.clone()).filter(|prefix| !prefix.is_empty()),
            active: u.active,
            last_login: u.last_login,
            created_at: u.created_at,
        }
    }
}

/// One live login session (`GET /api/me/sessions`, and an admin's view of a user's).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// Opaque id; `DELETE /api/me/sessions/{id}` ends it.
    pub id: String,
    /// The login.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The login or the latest token refresh (not every request).
    #[serde(with = "time::serde::rfc3339")]
    pub last_used_at: OffsetDateTime,
    /// The client IP at login.
    pub ip: Option<String>,
    /// The `User-Agent` at login (at most 512 characters).
    pub user_agent: Option<String>,
    /// WebSockets open now with a credential of this session.
    pub sockets: usize,
    /// Whether this request came with this session's credential (always false for an admin's view).
    pub current: bool,
}

impl From<&LoginSession> for SessionView {
    fn from(s: &LoginSession) -> SessionView {
        SessionView {
            id: s.id.clone(),
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            ip: s.ip.clone(),
            user_agent: s.user_agent.clone(),
            sockets: s.sockets,
            current: s.current,
        }
    }
}

/// Answer of `GET /api/me/sessions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionsView {
    /// Live sessions (not ended, newest refresh token unexpired), most recently used first.
    pub sessions: Vec<SessionView>,
    /// WebSockets open with the API key (or a ws ticket it bought), which belong to no session.
    pub api_key_sockets: usize,
}

impl From<&LiveSessions> for SessionsView {
    fn from(live: &LiveSessions) -> SessionsView {
        SessionsView {
            sessions: live.sessions.iter().map(SessionView::from).collect(),
            api_key_sockets: live.api_key_sockets,
        }
    }
}
