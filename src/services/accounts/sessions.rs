//! Login sessions as their owner (or an admin) sees them: the live ones, where each came from and
//! how many sockets it has open, and ending one of them or every one but the current.

use std::collections::HashMap;
use std::net::IpAddr;

use time::{Duration, OffsetDateTime};

use super::{AccountError, AccountService, Principal, REFRESH_DAYS};
use crate::seams::bus::RevokeScope;

/// The longest `User-Agent` kept; real ones are a few hundred characters.
const MAX_USER_AGENT_CHARS: usize = 512;

/// The `session.revoked` reason of a session its owner or an admin ended from the sessions list.
pub const SESSION_ENDED: &str = "session_ended";

/// One live login session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSession {
    /// Its id.
    pub id: String,
    /// The login.
    pub created_at: OffsetDateTime,
    /// The login or the latest refresh.
    pub last_used_at: OffsetDateTime,
    /// The client IP at login.
    pub ip: Option<String>,
    /// The `User-Agent` at login.
    pub user_agent: Option<String>,
    /// WebSockets open with a credential of this session.
    pub sockets: usize,
    /// Whether the asking request came with this session's credential.
    pub current: bool,
}

/// A `User-Agent` as stored: control characters dropped, at most 512 characters.
pub fn clip_user_agent(user_agent: &str) -> String {
    user_agent
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_USER_AGENT_CHARS)
        .collect::<String>()
        .trim()
        .to_owned()
}

impl AccountService {
    /// The user's live sessions (not revoked, newest refresh token unexpired), most recently used
    /// first; `current` marks the asking one. Open sockets come from presence; when it cannot
    /// answer, the list is still given, with no sockets counted (ending a stolen session must not
    /// wait for presence).
    pub async fn live_sessions(
        &self,
        user_id: &str,
        current: Option<&str>,
    ) -> Result<Vec<LoginSession>, AccountError> {
        let now = crate::store::now();
        // A refresh token is issued at login and at each refresh, both of which set
        // `last_used_at`, so the newest one expires REFRESH_DAYS after it.
        let sessions = self.store.open_sessions(user_id, now - Duration::days(REFRESH_DAYS)).await?;
        let sockets = match self.presence.sockets_by_login_session(user_id).await {
            Ok(sockets) => sockets,
            Err(e) => {
                tracing::warn!(error = %e, user_id, "open sockets per session are unknown");
                HashMap::new()
            }
        };
        Ok(sessions
            .into_iter()
            .map(|s| LoginSession {
                sockets: sockets.get(&s.id).copied().unwrap_or(0),
                current: current == Some(s.id.as_str()),
                id: s.id,
                created_at: s.created_at,
                last_used_at: s.last_used_at,
                ip: s.ip,
                user_agent: s.user_agent,
            })
            .collect())
    }

    /// Ends one session of `user_id` at once: its tokens fail and its sockets close (4001).
    /// `NotFound` for an unknown session, another user's, or one that has ended already.
    pub async fn end_session(&self, user_id: &str, session_id: &str) -> Result<(), AccountError> {
        match self.store.session(session_id).await? {
            Some(session) if session.user_id == user_id && session.revoked_at.is_none() => {}
            _ => return Err(AccountError::NotFound),
        }
        if !self.store.revoke_session(session_id, crate::store::now()).await? {
            // Someone else ended it a moment ago.
            return Err(AccountError::NotFound);
        }
        self.bus.revoke(user_id, RevokeScope::LoginSession(session_id.into()), SESSION_ENDED);
        tracing::info!(event = "session_ended", user_id, session_id, "a login session was ended");
        Ok(())
    }

    /// Ends every session of the principal's user but the principal's own (all of them when the
    /// principal used an API key, which has none); answers how many ended.
    pub async fn end_other_sessions(&self, principal: &Principal) -> Result<usize, AccountError> {
        let user_id = &principal.user.id;
        // Expired sessions too: nothing could use them, but "every other session" means every one.
        let open = self.store.open_sessions(user_id, OffsetDateTime::UNIX_EPOCH).await?;
        let mut ended = 0;
        for session in open.iter().filter(|s| Some(s.id.as_str()) != principal.session_id.as_deref()) {
            if self.store.revoke_session(&session.id, crate::store::now()).await? {
                self.bus.revoke(
                    user_id,
                    RevokeScope::LoginSession(session.id.as_str().into()),
                    SESSION_ENDED,
                );
                ended += 1;
            }
        }
        tracing::info!(event = "other_sessions_ended", user_id = %user_id, sessions = ended,
            "every other login session was ended");
        Ok(ended)
    }

    /// An admin ends one session of a user (see [`AccountService::end_session`]); a security event.
    pub async fn admin_end_session(
        &self,
        admin: &Principal,
        user_id: &str,
        session_id: &str,
        client_ip: IpAddr,
    ) -> Result<(), AccountError> {
        self.end_session(user_id, session_id).await?;
        tracing::info!(event = "admin_session_ended", admin_id = %admin.user.id, user_id, session_id,
            client_ip = %client_ip, "admin ended a user's session");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_lose_control_characters_and_are_cut_to_512_characters() {
        assert_eq!(clip_user_agent(" Mozilla/5.0\n(X11)\u{7} "), "Mozilla/5.0(X11)");
        assert_eq!(clip_user_agent(&"é".repeat(600)).chars().count(), 512);
    }
}
