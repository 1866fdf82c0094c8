//! Presence: every WebSocket session of this node, by user. Keeps the `active_users` and
//! `ws_sessions` gauges, tells subscribed admins who joins (a user's first session) and leaves
//! (their last), and routes pushes to every session of a user.
//!
//! Revocations are remembered for a while ([`REVOCATION_MEMORY`]): a socket whose credential was
//! checked before a revocation that covers it, but which joins only after that revocation was
//! handled (it was still opening), is refused at [`Join`] as if it had been open. Older joins
//! than the memory reaches are refused outright, so no socket can slip between the two.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
pub use bytestring::ByteString;
use dashmap::DashMap;

/// Gauge: distinct users with at least one open WebSocket.
pub const ACTIVE_USERS: &str = "active_users";
/// Gauge: open WebSocket sessions.
pub const WS_SESSIONS: &str = "ws_sessions";
/// Gauge: distinct users with at least one open WebSocket on this node (with several nodes,
/// [`ACTIVE_USERS`] counts every node).
pub const NODE_ACTIVE_USERS: &str = "node_active_users";
/// Gauge: open WebSocket sessions on this node.
pub const NODE_WS_SESSIONS: &str = "node_ws_sessions";

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// The client closed it.
    Closed,
    /// Heartbeats went unanswered.
    Timeout,
    /// Logout, password change, deactivation or role change.
    Revoked,
    /// The client did not read its socket.
    Slow,
    /// The server is stopping.
    Shutdown,
    /// The node that held the session stopped answering (several nodes only).
    NodeLost,
}

impl LeaveReason {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Closed => "closed",
            LeaveReason::Timeout => "timeout",
            LeaveReason::Revoked => "revoked",
            LeaveReason::Slow => "slow",
            LeaveReason::Shutdown => "shutdown",
            LeaveReason::NodeLost => "node_lost",
        }
    }

    /// The reason spelled `wire`, if it is one.
    pub fn parse(wire: &str) -> Option<LeaveReason> {
        use LeaveReason::*;
        [Closed, Timeout, Revoked, Slow, Shutdown, NodeLost].into_iter().find(|r| r.as_str() == wire)
    }
}

/// A presence change, as admins see it.
#[derive(Debug, Clone, PartialEq)]
pub enum PresenceEvent {
    /// A user opened their first session.
    Joined(UserPresence),
    /// A user closed their last session.
    Left {
        /// Who.
        user_id: Arc<str>,
        /// Their email.
        email: Arc<str>,
        /// Why the last session ended.
        reason: LeaveReason,
    },
    /// A user's number of sessions changed (and is still above zero).
    Sessions {
        /// Who.
        user_id: Arc<str>,
        /// Open sessions now.
        sessions: usize,
    },
}

/// What a session is told.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum SessionEvent {
    /// A frame the gateway already encoded (`credits.updated`, `chat.delta`…), sent as is. The
    /// text is shared: every session of a user gets the same bytes, never a copy.
    Frame(ByteString),
    /// A presence change (for admin subscribers).
    Presence(PresenceEvent),
    /// The session's credential was revoked: say why and close (4001).
    Revoked {
        /// Short reason for the client (`logout`, `password_changed`…).
        reason: &'static str,
    },
    /// The server is stopping: close with 1001.
    Shutdown,
    /// Time for the session's heartbeat: ping the client, or close a silent one. One sweep
    /// of the presence actor sends it to every session, instead of a timer in each.
    Heartbeat,
}

/// Where a session's events go. Presence and the directory hold inboxes, never a session's
/// type or address, so whatever can queue a [`SessionEvent`] can be a session: the WebSocket
/// session actor (through the impl for [`Addr`] below), or a channel in a test.
pub trait SessionInbox: Send + Sync + 'static {
    /// Queues `event` for the session without waiting. It must not drop frames (a long streamed
    /// reply would be corrupted): a session whose client stops reading is closed by its own byte
    /// budget, which bounds what waits in its inbox.
    fn deliver(&self, event: SessionEvent);
}

/// A session's inbox, shared by presence and the directory.
pub type Inbox = Arc<dyn SessionInbox>;

/// A session actor's mailbox is its inbox. `do_send`, not `try_send`: a burst may pass the
/// mailbox capacity, and dropping frames would corrupt the stream (see [`SessionInbox::deliver`]).
impl<A> SessionInbox for Addr<A>
where
    A: Actor + Handler<SessionEvent>,
    A::Context: actix::dev::ToEnvelope<A, SessionEvent>,
{
    fn deliver(&self, event: SessionEvent) {
        self.do_send(event);
    }
}

/// One user's presence.
#[derive(Debug, Clone, PartialEq)]
pub struct UserPresence {
    /// User id.
    pub user_id: Arc<str>,
    /// Email.
    pub email: Arc<str>,
    /// Open sessions.
    pub sessions: usize,
    /// Start of the oldest open session.
    pub connected_since: SystemTime,
}

/// Everyone online on this node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// Users online, oldest connection first.
    pub users: Vec<UserPresence>,
    /// Distinct users.
    pub active_users: usize,
    /// Sessions.
    pub sessions: usize,
}

/// A change of one user's sessions on this node, told to the relay of a presence that spans
/// several nodes. It carries the user's whole local state, not a difference, so telling it twice
/// changes nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalChange {
    /// Who.
    pub user_id: Arc<str>,
    /// Their email.
    pub email: Arc<str>,
    /// Their sessions open on this node now (0: their last one here closed).
    pub sessions: usize,
    /// Start of their oldest session on this node.
    pub since: SystemTime,
    /// Why a session closed; `None` when one opened.
    pub reason: Option<LeaveReason>,
}

impl LocalChange {
    /// The event admins of this node alone would see for the change.
    pub fn local_event(&self) -> PresenceEvent {
        match (self.sessions, self.reason) {
            (0, reason) => PresenceEvent::Left {
                user_id: self.user_id.clone(),
                email: self.email.clone(),
                reason: reason.unwrap_or(LeaveReason::Closed),
            },
            (1, None) => PresenceEvent::Joined(UserPresence {
                user_id: self.user_id.clone(),
                email: self.email.clone(),
                sessions: 1,
                connected_since: self.since,
            }),
            (sessions, _) => PresenceEvent::Sessions { user_id: self.user_id.clone(), sessions },
        }
    }
}

/// Where a relayed presence actor sends its [`LocalChange`]s (called on the actor's thread, in
/// the order the changes happen).
pub type Relay = Box<dyn Fn(LocalChange) + Send>;

/// Tell this node's subscribed admins of a presence change (from the relay).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Announce(pub PresenceEvent);

/// Every user with sessions on this node, as [`LocalChange`]s without a reason (for a relay
/// that has to publish the node's whole state again).
#[derive(Message)]
#[rtype(result = "Vec<LocalChange>")]
pub struct LocalUsers;

/// How long revocations are remembered for sockets that were still opening; a socket whose
/// credential was checked longer ago than this when it joins is refused.
pub const REVOCATION_MEMORY: Duration = Duration::from_secs(60);

/// The `session.revoked` reason of a socket refused because its credential check is too old.
pub const STALE_CHECK_REASON: &str = "credential_check_expired";

/// A session opened.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    /// The WebSocket session id.
    pub session_id: Arc<str>,
    /// Its user.
    pub user_id: Arc<str>,
    /// The user's email.
    pub email: Arc<str>,
    /// The login session its credential belongs to (none for API keys).
    pub auth_session: Option<Arc<str>>,
    /// For a socket opened with the API key (or a ticket it bought): a fingerprint of that key,
    /// so the node can tell later whether the key is still the user's.
    pub api_key: Option<Arc<str>>,
    /// When its credential was checked (taken before the check began): a revocation handled
    /// after this moment covers the session even if it joins later.
    pub verified_at: Instant,
    /// Where to deliver events.
    pub inbox: Inbox,
}

/// A session closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    /// The WebSocket session id.
    pub session_id: Arc<str>,
    /// Why.
    pub reason: LeaveReason,
}

/// Subscribe an admin session to presence events; answers the snapshot to start from.
#[derive(Message)]
#[rtype(result = "Snapshot")]
pub struct Subscribe {
    /// The subscribing WebSocket session (must have joined).
    pub session_id: Arc<str>,
}

/// Stop presence events for a session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    /// The WebSocket session.
    pub session_id: Arc<str>,
}

/// Who is online now.
#[derive(Message)]
#[rtype(result = "Snapshot")]
pub struct GetSnapshot;

/// How many sessions a user has open (for the per-user cap).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountSessions {
    /// Whose.
    pub user_id: Arc<str>,
}

/// A user's open sockets, counted per login session (API-key sockets, which have none, are left out).
#[derive(Message)]
#[rtype(result = "SocketCounts")]
pub struct SocketsByLoginSession {
    /// Whose.
    pub user_id: Arc<str>,
}

/// The credentials of every socket open on this node, so that they can be checked against
/// storage again (after a revocation may have been missed).
#[derive(Message)]
#[rtype(result = "Vec<SocketCredential>")]
pub struct LocalSockets;

/// What an open socket was opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketCredential {
    /// Its user.
    pub user_id: Arc<str>,
    /// Its login session, if it was opened with one.
    pub auth_session: Option<Arc<str>>,
    /// The fingerprint of its API key, if it was opened with one.
    pub api_key: Option<Arc<str>>,
}

/// A user's open sockets by the credential they were opened with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketCounts {
    /// Sockets per login session.
    pub by_login_session: HashMap<String, usize>,
    /// Sockets opened with the API key (or a ticket it bought), which have no login session.
    pub api_key: usize,
}

/// Deliver an event to every session of a user.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ToUser {
    /// Whose sessions.
    pub user_id: Arc<str>,
    /// What.
    pub event: SessionEvent,
}

/// Deliver an event to one session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ToSession {
    /// The WebSocket session.
    pub session_id: Arc<str>,
    /// What.
    pub event: SessionEvent,
}

/// Which of a user's sockets a [`Revoke`] closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeScope {
    /// Every socket of the user.
    All,
    /// Sockets opened with a credential of this login session.
    LoginSession(Arc<str>),
    /// Sockets opened with an API key (no login session).
    ApiKeys,
}

/// Revoke sockets of a user.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Revoke {
    /// Whose sockets.
    pub user_id: Arc<str>,
    /// Which of them.
    pub scope: RevokeScope,
    /// Reason told to the client.
    pub reason: &'static str,
}

/// Tell every session the server is stopping.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ShutdownAll;

/// Revocations of the last [`REVOCATION_MEMORY`], by what they covered: when each was handled
/// and the reason told to the sockets.
#[derive(Default)]
struct Revocations {
    /// Every socket of the user.
    users: HashMap<Arc<str>, (Instant, &'static str)>,
    /// Sockets of one login session.
    login_sessions: HashMap<Arc<str>, (Instant, &'static str)>,
    /// The user's API-key sockets.
    api_keys: HashMap<Arc<str>, (Instant, &'static str)>,
}

impl Revocations {
    fn record(&mut self, user_id: &Arc<str>, scope: &RevokeScope, reason: &'static str) {
        let entry = (Instant::now(), reason);
        match scope {
            RevokeScope::All => self.users.insert(user_id.clone(), entry),
            RevokeScope::LoginSession(sid) => self.login_sessions.insert(sid.clone(), entry),
            RevokeScope::ApiKeys => self.api_keys.insert(user_id.clone(), entry),
        };
    }

    /// The reason of a remembered revocation handled after `join`'s credential was checked.
    fn covering(&self, join: &Join) -> Option<&'static str> {
        if join.verified_at.elapsed() > REVOCATION_MEMORY {
            return Some(STALE_CHECK_REASON);
        }
        let later = |entry: Option<&(Instant, &'static str)>| {
            entry.filter(|(at, _)| *at >= join.verified_at).map(|(_, reason)| *reason)
        };
        let by_credential = match &join.auth_session {
            Some(sid) => later(self.login_sessions.get(sid)),
            None => later(self.api_keys.get(&join.user_id)),
        };
        later(self.users.get(&join.user_id)).or(by_credential)
    }

    fn forget_old(&mut self) {
        let fresh = |(at, _): &mut (Instant, &'static str)| at.elapsed() <= REVOCATION_MEMORY;
        self.users.retain(|_, entry| fresh(entry));
        self.login_sessions.retain(|_, entry| fresh(entry));
        self.api_keys.retain(|_, entry| fresh(entry));
    }
}

struct SessionEntry {
    user_id: Arc<str>,
    auth_session: Option<Arc<str>>,
    api_key: Option<Arc<str>>,
    inbox: Inbox,
}

struct UserEntry {
    email: Arc<str>,
    sessions: HashMap<Arc<str>, SystemTime>,
}

/// Every session of the node by user, shared with whoever sends to users: a frame for a user's
/// sessions goes straight to their mailboxes, not through the presence actor, so fan-out is not
/// bound to one thread. The presence actor keeps it (a session is listed from its accepted
/// `Join` to its `Leave`).
#[derive(Clone, Default)]
pub struct Directory {
    users: Arc<DashMap<Arc<str>, Vec<Listed>>>,
}

/// One listed session: its id and its inbox.
type Listed = (Arc<str>, Inbox);

impl Directory {
    /// Queues `event` for every session of `user_id` on this node; answers how many.
    pub fn to_user(&self, user_id: &str, event: SessionEvent) -> usize {
        let Some(sessions) = self.users.get(user_id) else { return 0 };
        // Queued without waiting and never dropped (see `SessionInbox::deliver`); the shard's
        // read lock is held only while the events are queued.
        for (_, inbox) in sessions.iter() {
            inbox.deliver(event.clone());
        }
        sessions.len()
    }

    fn add(&self, user_id: &Arc<str>, session_id: &Arc<str>, inbox: &Inbox) {
        self.users.entry(user_id.clone()).or_default().push((session_id.clone(), inbox.clone()));
    }

    fn remove(&self, user_id: &str, session_id: &str) {
        if let Some(mut sessions) = self.users.get_mut(user_id) {
            sessions.retain(|(id, _)| &**id != session_id);
        }
        self.users.remove_if(user_id, |_, sessions| sessions.is_empty());
    }
}

/// The node's presence registry. Alone, it tells subscribed admins of its own changes; relayed
/// (several nodes), it tells each change to the relay instead, and admins hear what the relay
/// [`Announce`]s.
#[derive(Default)]
pub struct PresenceActor {
    sessions: HashMap<Arc<str>, SessionEntry>,
    users: HashMap<Arc<str>, UserEntry>,
    subscribers: HashSet<Arc<str>>,
    revocations: Revocations,
    directory: Directory,
    heartbeat: Option<Duration>,
    relay: Option<Relay>,
}

impl PresenceActor {
    /// A presence actor that tells every session to beat its heart every `interval`.
    pub fn with_heartbeat(interval: Duration) -> PresenceActor {
        PresenceActor { heartbeat: Some(interval), ..PresenceActor::default() }
    }

    /// A presence actor whose changes go to `relay` (see [`LocalChange`]).
    pub fn relayed(interval: Duration, relay: Relay) -> PresenceActor {
        PresenceActor { relay: Some(relay), ..PresenceActor::with_heartbeat(interval) }
    }

    /// The directory of this actor's sessions, for sending to users without going through it.
    pub fn directory(&self) -> Directory {
        self.directory.clone()
    }

    fn deliver(&self, session_id: &str, event: SessionEvent) {
        if let Some(session) = self.sessions.get(session_id) {
            session.inbox.deliver(event);
        }
    }

    fn broadcast(&self, event: PresenceEvent) {
        for subscriber in &self.subscribers {
            self.deliver(subscriber, SessionEvent::Presence(event.clone()));
        }
    }

    fn user_presence(user_id: &Arc<str>, user: &UserEntry) -> UserPresence {
        UserPresence {
            user_id: user_id.clone(),
            email: user.email.clone(),
            sessions: user.sessions.len(),
            connected_since: Self::since(user),
        }
    }

    fn snapshot(&self) -> Snapshot {
        let mut users: Vec<_> = self.users.iter().map(|(id, u)| Self::user_presence(id, u)).collect();
        users.sort_by_key(|u| u.connected_since);
        Snapshot { active_users: users.len(), sessions: self.sessions.len(), users }
    }

    fn update_gauges(&self) {
        let (users, sessions) = (self.users.len() as f64, self.sessions.len() as f64);
        metrics::gauge!(NODE_ACTIVE_USERS).set(users);
        metrics::gauge!(NODE_WS_SESSIONS).set(sessions);
        if self.relay.is_none() {
            metrics::gauge!(ACTIVE_USERS).set(users);
            metrics::gauge!(WS_SESSIONS).set(sessions);
        }
    }

    /// Tells the relay, or else this node's admins, that `user_id`'s sessions changed.
    fn changed(&self, user_id: &Arc<str>, email: &Arc<str>, reason: Option<LeaveReason>) {
        let (sessions, since) =
            self.users.get(user_id).map_or((0, SystemTime::now()), |u| (u.sessions.len(), Self::since(u)));
        let change = LocalChange { user_id: user_id.clone(), email: email.clone(), sessions, since, reason };
        match &self.relay {
            Some(relay) => relay(change),
            None => self.broadcast(change.local_event()),
        }
    }

    fn since(user: &UserEntry) -> SystemTime {
        user.sessions.values().min().copied().unwrap_or_else(SystemTime::now)
    }
}

impl Actor for PresenceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(16_384);
        self.update_gauges();
        ctx.run_interval(REVOCATION_MEMORY / 2, |actor, _| actor.revocations.forget_old());
        if let Some(interval) = self.heartbeat {
            ctx.run_interval(interval, |actor, _| {
                for session_id in actor.sessions.keys() {
                    actor.deliver(session_id, SessionEvent::Heartbeat);
                }
            });
        }
    }
}

impl Handler<Join> for PresenceActor {
    type Result = ();

    fn handle(&mut self, msg: Join, _: &mut Context<Self>) {
        if let Some(reason) = self.revocations.covering(&msg) {
            // Never registered: the socket closes itself, and its `Leave` finds nothing.
            msg.inbox.deliver(SessionEvent::Revoked { reason });
            return;
        }
        self.users
            .entry(msg.user_id.clone())
            .or_insert_with(|| UserEntry { email: msg.email.clone(), sessions: HashMap::new() })
            .sessions
            .insert(msg.session_id.clone(), SystemTime::now());
        self.directory.add(&msg.user_id, &msg.session_id, &msg.inbox);
        self.sessions.insert(
            msg.session_id,
            SessionEntry {
                user_id: msg.user_id.clone(),
                auth_session: msg.auth_session,
                api_key: msg.api_key,
                inbox: msg.inbox,
            },
        );
        self.update_gauges();
        self.changed(&msg.user_id, &msg.email, None);
    }
}

impl Handler<Leave> for PresenceActor {
    type Result = ();

    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) {
        self.subscribers.remove(&msg.session_id);
        let Some(session) = self.sessions.remove(&msg.session_id) else { return };
        self.directory.remove(&session.user_id, &msg.session_id);
        let Some(user) = self.users.get_mut(&session.user_id) else { return };
        user.sessions.remove(&msg.session_id);
        let email = user.email.clone();
        if user.sessions.is_empty() {
            self.users.remove(&session.user_id);
        }
        self.update_gauges();
        self.changed(&session.user_id, &email, Some(msg.reason));
    }
}

impl Handler<Announce> for PresenceActor {
    type Result = ();

    fn handle(&mut self, msg: Announce, _: &mut Context<Self>) {
        self.broadcast(msg.0);
    }
}

impl Handler<LocalUsers> for PresenceActor {
    type Result = MessageResult<LocalUsers>;

    fn handle(&mut self, _: LocalUsers, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.users
                .iter()
                .map(|(id, user)| LocalChange {
                    user_id: id.clone(),
                    email: user.email.clone(),
                    sessions: user.sessions.len(),
                    since: Self::since(user),
                    reason: None,
                })
                .collect(),
        )
    }
}

impl Handler<Subscribe> for PresenceActor {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Self::Result {
        if self.sessions.contains_key(&msg.session_id) {
            self.subscribers.insert(msg.session_id);
        }
        MessageResult(self.snapshot())
    }
}

impl Handler<Unsubscribe> for PresenceActor {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) {
        self.subscribers.remove(&msg.session_id);
    }
}

impl Handler<GetSnapshot> for PresenceActor {
    type Result = MessageResult<GetSnapshot>;

    fn handle(&mut self, _: GetSnapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.snapshot())
    }
}

impl Handler<CountSessions> for PresenceActor {
    type Result = usize;

    fn handle(&mut self, msg: CountSessions, _: &mut Context<Self>) -> usize {
        self.users.get(&msg.user_id).map_or(0, |u| u.sessions.len())
    }
}

impl Handler<SocketsByLoginSession> for PresenceActor {
    type Result = MessageResult<SocketsByLoginSession>;

    fn handle(&mut self, msg: SocketsByLoginSession, _: &mut Context<Self>) -> Self::Result {
        let mut counts = SocketCounts::default();
        let sessions = self.users.get(&msg.user_id).into_iter().flat_map(|u| u.sessions.keys());
        for session in sessions.filter_map(|id| self.sessions.get(id)) {
            match &session.auth_session {
                Some(login) => *counts.by_login_session.entry(login.to_string()).or_insert(0) += 1,
                None => counts.api_key += 1,
            }
        }
        MessageResult(counts)
    }
}

impl Handler<LocalSockets> for PresenceActor {
    type Result = MessageResult<LocalSockets>;

    fn handle(&mut self, _: LocalSockets, _: &mut Context<Self>) -> Self::Result {
        let sockets = self.sessions.values().map(|s| SocketCredential {
            user_id: s.user_id.clone(),
            auth_session: s.auth_session.clone(),
            api_key: s.api_key.clone(),
        });
        MessageResult(sockets.collect())
    }
}

impl Handler<ToUser> for PresenceActor {
    type Result = ();

    fn handle(&mut self, msg: ToUser, _: &mut Context<Self>) {
        self.directory.to_user(&msg.user_id, msg.event);
    }
}

impl Handler<ToSession> for PresenceActor {
    type Result = ();

    fn handle(&mut self, msg: ToSession, _: &mut Context<Self>) {
        self.deliver(&msg.session_id, msg.event);
    }
}

impl Handler<Revoke> for PresenceActor {
    type Result = usize;

    fn handle(&mut self, msg: Revoke, _: &mut Context<Self>) -> usize {
        self.revocations.record(&msg.user_id, &msg.scope, msg.reason);
        let targets: Vec<Arc<str>> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.user_id == msg.user_id)
            .filter(|(_, s)| match &msg.scope {
                RevokeScope::All => true,
                RevokeScope::LoginSession(id) => s.auth_session.as_ref() == Some(id),
                RevokeScope::ApiKeys => s.auth_session.is_none(),
            })
            .map(|(id, _)| id.clone())
            .collect();
        for session_id in &targets {
            self.deliver(session_id, SessionEvent::Revoked { reason: msg.reason });
        }
        targets.len()
    }
}

impl Handler<ShutdownAll> for PresenceActor {
    type Result = usize;

    fn handle(&mut self, _: ShutdownAll, _: &mut Context<Self>) -> usize {
        for session_id in self.sessions.keys() {
            self.deliver(session_id, SessionEvent::Shutdown);
        }
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An inbox that records every event it gets, as it gets it.
    #[derive(Default)]
    struct Probe {
        events: Arc<Mutex<Vec<SessionEvent>>>,
    }

    impl SessionInbox for Probe {
        fn deliver(&self, event: SessionEvent) {
            self.events.lock().unwrap().push(event);
        }
    }

    fn probe() -> (Inbox, Arc<Mutex<Vec<SessionEvent>>>) {
        let probe = Probe::default();
        let events = probe.events.clone();
        (Arc::new(probe), events)
    }

    fn join(session: &str, user: &str, inbox: Inbox) -> Join {
        Join {
            session_id: session.into(),
            user_id: user.into(),
            email: format!("{user}@example.com").into(),
            auth_session: Some(format!("login-{session}").into()),
            api_key: None,
            verified_at: Instant::now(),
            inbox,
        }
    }

    #[actix::test]
    async fn presence_lists_a_user_until_their_last_socket_closes() {
        let presence = PresenceActor::default().start();
        let (admin, admin_events) = probe();
        presence.send(join("admin-ws", "admin", admin)).await.unwrap();
        let snapshot = presence.send(Subscribe { session_id: "admin-ws".into() }).await.unwrap();
        assert_eq!((snapshot.active_users, snapshot.sessions), (1, 1));

        let (tab1, _) = probe();
        let (tab2, _) = probe();
        presence.send(join("ws1", "ada", tab1)).await.unwrap();
        presence.send(join("ws2", "ada", tab2)).await.unwrap();
        assert_eq!(presence.send(CountSessions { user_id: "ada".into() }).await.unwrap(), 2);
        presence.send(Leave { session_id: "ws1".into(), reason: LeaveReason::Closed }).await.unwrap();
        assert_eq!(presence.send(GetSnapshot).await.unwrap().active_users, 2, "ada still has a tab");
        presence.send(Leave { session_id: "ws2".into(), reason: LeaveReason::Timeout }).await.unwrap();
        assert_eq!(presence.send(GetSnapshot).await.unwrap().active_users, 1);

        let events = admin_events.lock().unwrap();
        let kinds: Vec<String> = events
            .iter()
            .map(|e| match e {
                SessionEvent::Presence(PresenceEvent::Joined(u)) => format!("joined {}", u.user_id),
                SessionEvent::Presence(PresenceEvent::Sessions { user_id, sessions }) => {
                    format!("sessions {user_id} {sessions}")
                }
                SessionEvent::Presence(PresenceEvent::Left { user_id, reason, .. }) => {
                    format!("left {user_id} {}", reason.as_str())
                }
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(kinds, ["joined ada", "sessions ada 2", "sessions ada 1", "left ada timeout"]);
    }

    #[actix::test]
    async fn open_sockets_are_counted_per_login_session_of_one_user() {
        let presence = PresenceActor::default().start();
        let joins = [
            ("ws1", "ada", Some("login-1")),
            ("ws2", "ada", Some("login-1")),
            ("ws3", "ada", Some("login-2")),
            ("ws4", "ada", None),
            ("ws5", "bob", Some("login-3")),
        ];
        for (session, user, login) in joins {
            let (inbox, _) = probe();
            let join = Join { auth_session: login.map(Into::into), ..join(session, user, inbox) };
            presence.send(join).await.unwrap();
        }
        let counts = presence.send(SocketsByLoginSession { user_id: "ada".into() }).await.unwrap();
        let expected = HashMap::from([("login-1".to_owned(), 2), ("login-2".to_owned(), 1)]);
        assert_eq!(counts.by_login_session, expected, "two sockets of one login, one of another");
        assert_eq!(counts.api_key, 1, "the API-key socket is counted apart");
        let nobody = presence.send(SocketsByLoginSession { user_id: "eve".into() }).await.unwrap();
        assert_eq!(nobody, SocketCounts::default(), "a user without sockets has no counts");
    }

    #[actix::test]
    async fn revoking_one_login_session_closes_only_its_sockets() {
        let presence = PresenceActor::default().start();
        let (a, a_events) = probe();
        let (b, b_events) = probe();
        presence.send(join("ws-a", "ada", a)).await.unwrap();
        presence.send(join("ws-b", "ada", b)).await.unwrap();
        let revoked = presence
            .send(Revoke {
                user_id: "ada".into(),
                scope: RevokeScope::LoginSession("login-ws-a".into()),
                reason: "logout",
            })
            .await
            .unwrap();
        assert_eq!(revoked, 1);
        presence
            .send(ToUser { user_id: "ada".into(), event: SessionEvent::Frame(ByteString::from_static("{}")) })
            .await
            .unwrap();
        assert!(matches!(a_events.lock().unwrap()[0], SessionEvent::Revoked { reason: "logout" }));
        assert_eq!(b_events.lock().unwrap().len(), 1, "b only got the frame");
    }

    #[actix::test]
    async fn a_socket_checked_before_a_revocation_is_refused_when_it_joins_after_it() {
        let presence = PresenceActor::default().start();
        let checked_before = Instant::now();
        presence
            .send(Revoke {
                user_id: "ada".into(),
                scope: RevokeScope::LoginSession("login-a".into()),
                reason: "logout",
            })
            .await
            .unwrap();
        // (case, session, login session, checked at, refused).
        let cases = [
            ("same login, checked before the logout", "late", "login-a", checked_before, true),
            ("same login, checked after the logout", "fresh", "login-a", Instant::now(), false),
            ("another login, checked before", "other", "login-b", checked_before, false),
            (
                "a check older than the memory",
                "stale",
                "login-b",
                checked_before - REVOCATION_MEMORY * 2,
                true,
            ),
        ];
        let mut accepted = 0;
        for (case, session, login, verified_at, refused) in cases {
            let (inbox, events) = probe();
            let join = Join { auth_session: Some(login.into()), verified_at, ..join(session, "ada", inbox) };
            presence.send(join).await.unwrap();
            let revoked = events.lock().unwrap().iter().any(|e| matches!(e, SessionEvent::Revoked { .. }));
            assert_eq!(revoked, refused, "{case}");
            accepted += usize::from(!refused);
            let joined = presence.send(GetSnapshot).await.unwrap().sessions;
            assert_eq!(joined, accepted, "{case}: registered only when accepted");
        }
    }
}
