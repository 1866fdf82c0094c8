//! Login sessions as their owner (or an admin) sees them: the live ones, where each came from and
//! how many sockets it has open, and ending one of them or every one but the current.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use futures_util::StreamExt;

use time::{Duration, OffsetDateTime};

use super::{AccountError, AccountService, Credential, Principal, REFRESH_DAYS};
use crate::auth::tokens;
use crate::seams::bus::RevokeScope;
use crate::seams::presence::{SocketCounts, SocketCredential};
use crate::store::UserUpdate;

/// The longest `User-Agent` kept; real ones are a few hundred characters.
const MAX_USER_AGENT_CHARS: usize = 512;

/// The `session.revoked` reason of a session its owner or an admin ended from the sessions list.
pub const SESSION_ENDED: &str = "session_ended";

/// Users whose sockets are checked against storage at once by [`AccountService::revalidate_sockets`].
const REVALIDATE_CONCURRENCY: usize = 16;

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

/// A user's live login sessions, and the sockets open with their API key (which has no session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSessions {
    /// The login sessions, most recently used first.
    pub sessions: Vec<LoginSession>,
    /// WebSockets open with the API key or a ticket it bought.
    pub api_key_sockets: usize,
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
    ) -> Result<LiveSessions, AccountError> {
        let now = crate::store::now();
        // A refresh token is issued at login and at each refresh, both of which set
        // `last_used_at`, so the newest one expires REFRESH_DAYS after it.
        let sessions = self.store.open_sessions(user_id, now - Duration::days(REFRESH_DAYS)).await?;
        let sockets = match self.presence.sockets_by_login_session(user_id).await {
            Ok(sockets) => sockets,
            Err(e) => {
                tracing::warn!(error = %e, user_id, "open sockets per session are unknown");
                SocketCounts::default()
            }
        };
        let sessions = sessions
            .into_iter()
            .map(|s| LoginSession {
                sockets: sockets.by_login_session.get(&s.id).copied().unwrap_or(0),
                current: current == Some(s.id.as_str()),
                id: s.id,
                created_at: s.created_at,
                last_used_at: s.last_used_at,
                ip: s.ip,
                user_agent: s.user_agent,
            })
            .collect();
        Ok(LiveSessions { sessions, api_key_sockets: sockets.api_key })
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
    /// principal used an API key, which has none); answers how many ended. The API key is voided
    /// too (and its sockets closed) unless it is what the principal came with: "sign out
    /// everywhere else" must also reach a key minted from a stolen session.
    pub async fn end_other_sessions(&self, principal: &Principal) -> Result<usize, AccountError> {
        let user_id = &principal.user.id;
        if principal.credential != Credential::ApiKey {
            let update = UserUpdate { api_key: Some(tokens::void_api_key()), ..Default::default() };
            self.store.update_user(user_id, &update, crate::store::now()).await?;
            self.bus.revoke(user_id, RevokeScope::ApiKeys, SESSION_ENDED);
        }
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

    /// Checks the credential of every socket open on this node against storage again and closes
    /// those that no longer hold: a revoked login session, a deactivated user, a replaced or voided
    /// API key. Run when a revocation may have been missed (this node's subscription to the
    /// cluster's revocations was down), so that revocations are never at-most-once. Answers how
    /// many users had sockets closed.
    pub async fn revalidate_sockets(&self) -> Result<usize, AccountError> {
        let sockets = self.presence.local_sockets().await.map_err(|_| {
            AccountError::Store(crate::store::StoreError::Unavailable("presence is unavailable".into()))
        })?;
        let mut by_user: HashMap<Arc<str>, Vec<SocketCredential>> = HashMap::new();
        for socket in sockets {
            by_user.entry(socket.user_id.clone()).or_default().push(socket);
        }
        let checks = futures_util::stream::iter(by_user)
            .map(|(user_id, sockets)| async move { self.revalidate_user(&user_id, &sockets).await })
            .buffer_unordered(REVALIDATE_CONCURRENCY);
        let outcomes: Vec<Result<bool, AccountError>> = checks.collect().await;
        let mut closed = 0;
        for outcome in outcomes {
            closed += usize::from(outcome?);
        }
        tracing::info!(
            event = "sockets_revalidated",
            users_closed = closed,
            "open sockets checked against storage"
        );
        Ok(closed)
    }

    /// Checks one user's sockets on this node (see [`Self::revalidate_sockets`]); true when some
    /// were closed.
    async fn revalidate_user(
        &self,
        user_id: &str,
        sockets: &[SocketCredential],
    ) -> Result<bool, AccountError> {
        let user = self.store.user_by_id(user_id).await?;
        let Some(user) = user.filter(|user| user.active) else {
            self.bus.revoke(user_id, RevokeScope::All, "account_disabled");
            return Ok(true);
        };
        let mut closed = false;
        let logins: HashSet<&Arc<str>> = sockets.iter().filter_map(|s| s.auth_session.as_ref()).collect();
        for login in logins {
            let session = self.store.session(login).await?;
            if session.is_none_or(|s| s.revoked_at.is_some() || s.user_id != user_id) {
                self.bus.revoke(user_id, RevokeScope::LoginSession(login.clone()), SESSION_ENDED);
                closed = true;
            }
        }
        let key_now = tokens::api_key_fingerprint(&user.api_key_hash);
        if sockets.iter().filter_map(|s| s.api_key.as_deref()).any(|key| key != key_now) {
            self.bus.revoke(user_id, RevokeScope::ApiKeys, "api_key_regenerated");
            closed = true;
        }
        Ok(closed)
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
