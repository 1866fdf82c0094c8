//! Presence: which sessions are open, by user. Sessions join when they open and leave with a
//! reason; admins read a snapshot and subscribe to changes; the gauges `active_users` and
//! `ws_sessions` follow. In one process it is the presence actor.

use actix::Addr;
use async_trait::async_trait;
/// A session announcing itself: its id, user, login session, when its credential check began
/// (see [`super::bus::Bus::revoke`]) and where this node delivers its events.
pub use switchboard_actors::presence::Join as Joining;
use switchboard_actors::presence::{
    GetSnapshot, Leave, LocalSockets, PresenceActor, ShutdownAll, SocketsByLoginSession, Subscribe,
    Unsubscribe,
};
pub use switchboard_actors::presence::{
    LeaveReason, PresenceEvent, Snapshot, SocketCounts, SocketCredential, UserPresence,
};

/// The registry could not answer (the node is stopping).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("presence is unavailable")]
pub struct PresenceUnavailable;

/// Who is online, and the admins following it.
#[async_trait]
pub trait PresenceRegistry: Send + Sync + 'static {
    /// Registers a session (refused at once, with `session.revoked`, if a remembered revocation covers it).
    fn join(&self, session: Joining);
    /// Removes a session.
    fn leave(&self, session_id: &str, reason: LeaveReason);
    /// Everyone online now.
    async fn snapshot(&self) -> Result<Snapshot, PresenceUnavailable>;
    /// The server nodes whose sessions this registry counts.
    fn nodes(&self) -> usize {
        1
    }
    /// A user's open sockets per login session, and those opened with the API key.
    async fn sockets_by_login_session(&self, user_id: &str) -> Result<SocketCounts, PresenceUnavailable>;
    /// What every socket open on this node was opened with.
    async fn local_sockets(&self) -> Result<Vec<SocketCredential>, PresenceUnavailable>;
    /// Subscribes an admin's session to changes and answers the snapshot to start from.
    async fn subscribe(&self, session_id: &str) -> Result<Snapshot, PresenceUnavailable>;
    /// Stops changes for a session.
    fn unsubscribe(&self, session_id: &str);
    /// Tells every session of this node that the server stops (close 1001); answers how many.
    async fn close_all(&self) -> usize;
}

/// The registry of one process: the presence actor.
pub struct LocalPresence {
    presence: Addr<PresenceActor>,
}

impl LocalPresence {
    /// A registry over the node's presence actor.
    pub fn new(presence: Addr<PresenceActor>) -> LocalPresence {
        LocalPresence { presence }
    }
}

#[async_trait]
impl PresenceRegistry for LocalPresence {
    fn join(&self, session: Joining) {
        self.presence.do_send(session);
    }

    fn leave(&self, session_id: &str, reason: LeaveReason) {
        self.presence.do_send(Leave { session_id: session_id.into(), reason });
    }

    async fn snapshot(&self) -> Result<Snapshot, PresenceUnavailable> {
        self.presence.send(GetSnapshot).await.map_err(|_| PresenceUnavailable)
    }

    async fn sockets_by_login_session(&self, user_id: &str) -> Result<SocketCounts, PresenceUnavailable> {
        self.presence
            .send(SocketsByLoginSession { user_id: user_id.into() })
            .await
            .map_err(|_| PresenceUnavailable)
    }

    async fn local_sockets(&self) -> Result<Vec<SocketCredential>, PresenceUnavailable> {
        self.presence.send(LocalSockets).await.map_err(|_| PresenceUnavailable)
    }

    async fn subscribe(&self, session_id: &str) -> Result<Snapshot, PresenceUnavailable> {
        self.presence.send(Subscribe { session_id: session_id.into() }).await.map_err(|_| PresenceUnavailable)
    }

    fn unsubscribe(&self, session_id: &str) {
        self.presence.do_send(Unsubscribe { session_id: session_id.into() });
    }

    async fn close_all(&self) -> usize {
        // Nothing to close when the actor is gone.
        self.presence.send(ShutdownAll).await.unwrap_or(0)
    }
}
