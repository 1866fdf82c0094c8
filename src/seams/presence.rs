//! Presence: which sessions are open, by user. Sessions join when they open and leave with a
//! reason; admins read a snapshot and subscribe to changes; the gauges `active_users` and
//! `ws_sessions` follow. A session is known by its [`SessionInbox`], never by an actor address.
//! In one process it is the presence actor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr};
use async_trait::async_trait;
use switchboard_actors::presence::{
    Announce, GetSnapshot, Join, Leave, LocalChange, LocalSockets, LocalUsers, PresenceActor, Relay,
    ShutdownAll, SocketsByLoginSession, Subscribe, Unsubscribe,
};
pub use switchboard_actors::presence::{
    Inbox, LeaveReason, PresenceEvent, SessionEvent, SessionInbox, Snapshot, SocketCounts, SocketCredential,
    UserPresence,
};

use super::bus::LocalBus;

/// A session announcing itself.
pub struct Joining {
    /// The WebSocket session id.
    pub session_id: Arc<str>,
    /// Its user.
    pub user_id: Arc<str>,
    /// The user's email.
    pub email: Arc<str>,
    /// The login session its credential belongs to (none for API keys).
    pub auth_session: Option<Arc<str>>,
    /// For a socket opened with the API key (or a ticket it bought): a fingerprint of that key.
    pub api_key: Option<Arc<str>>,
    /// When its credential check began: a revocation handled after this moment covers the
    /// session even if it joins later (see [`super::bus::Bus::revoke`]).
    pub verified_at: Instant,
    /// Where this node delivers the session's events.
    pub inbox: Inbox,
}

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

/// The registry of one process: the presence actor, whose address stays in here.
#[derive(Clone)]
pub struct LocalPresence {
    presence: Addr<PresenceActor>,
}

impl LocalPresence {
    /// Starts the node's presence actor, sweeping every session's heartbeat each `heartbeat`;
    /// with a `relay` (several nodes) it tells its changes there instead of to its admins.
    /// Answers the registry and the bus of this node over the same actor.
    pub(super) fn start(heartbeat: Duration, relay: Option<Relay>) -> (LocalPresence, LocalBus) {
        let actor = match relay {
            Some(relay) => PresenceActor::relayed(heartbeat, relay),
            None => PresenceActor::with_heartbeat(heartbeat),
        };
        let directory = actor.directory();
        let presence = actor.start();
        let bus = LocalBus::new(presence.clone(), directory);
        (LocalPresence { presence }, bus)
    }

    /// Tells this node's subscribed admins of a change (one a relay learnt of).
    pub(super) fn announce(&self, event: PresenceEvent) {
        self.presence.do_send(Announce(event));
    }

    /// Every user with sessions on this node, as changes to publish again.
    pub(super) async fn local_users(&self) -> Result<Vec<LocalChange>, PresenceUnavailable> {
        self.presence.send(LocalUsers).await.map_err(|_| PresenceUnavailable)
    }
}

#[async_trait]
impl PresenceRegistry for LocalPresence {
    fn join(&self, session: Joining) {
        let Joining { session_id, user_id, email, auth_session, api_key, verified_at, inbox } = session;
        self.presence.do_send(Join { session_id, user_id, email, auth_session, api_key, verified_at, inbox });
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
