//! One contract for the seams, run against each engine: every case runs once in process and
//! once over Redis (`<case>::in_process`, `<case>::redis`), as `store_contract` does for
//! storage, so a Lua script and the Rust it mirrors are held to the same rules.
//!
//! A case gets a [`Cluster`] of two nodes. In process, both nodes are the one process (the same
//! seams); over Redis, each node is a [`RedisLink`] of its own, with its own node name, on a
//! Redis of the test's own. A case that passes on both holds several nodes to the rules of one
//! process, which is what docs/SCALING.md promises. The Redis limiter and throttle are built
//! without an in-process fallback (a fallback would pass a case without Redis), and the
//! realtime cases cross nodes, which the fallbacks cannot.
//!
//! Cases wait on state, never for a fixed time, except where the time is the case (a password
//! check that takes a while, a failure left to be forgotten).

mod limiter;
mod realtime;
mod session_cap;
mod throttle;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use switchboard::seams::limiter::{Decision, Limiter};
use switchboard::seams::presence::{Joining, PresenceEvent, SessionEvent, SessionInbox, Snapshot};
use switchboard::seams::redis::{RedisFailureThrottle, RedisLimiter, RedisLink};
use switchboard::seams::throttle::{Backoff, FailureThrottle};
use switchboard::seams::{Realtime, Seams};

use crate::support::redis::RedisServer;

/// Nodes in every cluster.
const NODES: usize = 2;

/// How long a case waits for a state before it fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// The heartbeat of the realtime seams: Redis nodes beat every half of it.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Runs each named case against both engines, as the tests `<case>::in_process` and
/// `<case>::redis`.
macro_rules! on_every_engine {
    ($($case:ident),+ $(,)?) => {$(
        mod $case {
            #[actix_web::test]
            async fn in_process() {
                let cluster = crate::seam_contract::Cluster::start(crate::seam_contract::Engine::InProcess).await;
                super::$case(&cluster).await;
            }

            #[actix_web::test]
            async fn redis() {
                let cluster = crate::seam_contract::Cluster::start(crate::seam_contract::Engine::Redis).await;
                super::$case(&cluster).await;
                cluster.assert_redis_answered();
            }
        }
    )+};
}
use on_every_engine;

/// The engine under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The in-process seams (one process).
    InProcess,
    /// The Redis seams, one link per node.
    Redis,
}

/// The seams of [`NODES`] nodes on one engine.
pub struct Cluster {
    engine: Engine,
    links: Vec<Arc<RedisLink>>,
    _redis: Option<RedisServer>,
}

impl Cluster {
    /// A cluster on `engine`; over Redis, with a Redis of its own and one link per node.
    pub async fn start(engine: Engine) -> Cluster {
        let (mut links, mut redis) = (Vec::new(), None);
        if engine == Engine::Redis {
            let server = RedisServer::start().await;
            for node in 0..NODES {
                let link = RedisLink::connect(&server.url(), format!("node-{node}")).await.expect("connect");
                assert!(link.is_up(), "node-{node} reaches the test's Redis");
                links.push(link);
            }
            redis = Some(server);
        }
        Cluster { engine, links, _redis: redis }
    }

    /// Every node's limiter of `scope`: `limit` requests per `window` per key.
    pub fn limiters(&self, scope: &'static str, limit: u32, window: Duration) -> Vec<Arc<dyn Limiter>> {
        match self.engine {
            Engine::InProcess => {
                let limiter = Seams::local().limiter(scope, limit, window);
                vec![limiter; NODES]
            }
            Engine::Redis => (self.links.iter())
                .map(|link| {
                    let limiter = RedisLimiter::new(link.clone(), scope, limit, window, Box::new(NoFallback));
                    Arc::new(limiter) as Arc<dyn Limiter>
                })
                .collect(),
        }
    }

    /// Every node's failure throttle of `scope`.
    pub fn throttles(&self, scope: &'static str, backoff: Backoff) -> Vec<Arc<dyn FailureThrottle>> {
        match self.engine {
            Engine::InProcess => {
                let throttle: Arc<dyn FailureThrottle> = Seams::local().throttle(scope, backoff).into();
                vec![throttle; NODES]
            }
            Engine::Redis => (self.links.iter())
                .map(|link| {
                    let throttle =
                        RedisFailureThrottle::new(link.clone(), scope, backoff, Box::new(NoFallback));
                    Arc::new(throttle) as Arc<dyn FailureThrottle>
                })
                .collect(),
        }
    }

    /// Every node's bus, presence and session cap (`max_sessions` per user), once every node
    /// knows of the others.
    pub async fn realtime(&self, max_sessions: usize) -> Vec<Realtime> {
        match self.engine {
            Engine::InProcess => vec![Seams::local().realtime(max_sessions, HEARTBEAT); NODES],
            Engine::Redis => {
                let nodes: Vec<Realtime> = (self.links.iter())
                    .map(|link| Seams::redis(link.clone()).realtime(max_sessions, HEARTBEAT))
                    .collect();
                eventually("every node lists every node", || {
                    nodes.iter().all(|node| node.presence.nodes() == NODES).then_some(())
                })
                .await;
                nodes
            }
        }
    }

    /// Over Redis, the links were up all along: no answer came from elsewhere.
    fn assert_redis_answered(&self) {
        for link in &self.links {
            assert!(link.is_up(), "{} still reaches Redis at the end of the case", link.node());
        }
    }
}

/// Stands where the Redis engines keep their in-process fallback: a case that reaches it did
/// not test Redis, so it fails.
struct NoFallback;

#[async_trait]
impl Limiter for NoFallback {
    async fn check(&self, key: &str) -> Decision {
        panic!("the Redis limiter fell back to the in-process one for {key}: Redis did not answer")
    }
}

#[async_trait]
impl FailureThrottle for NoFallback {
    async fn attempt(&self, key: &str) -> Result<(), Duration> {
        panic!("the Redis throttle fell back to the in-process one for {key}: Redis did not answer")
    }
    async fn failed(&self, key: &str) {
        panic!("the Redis throttle fell back for failed({key})")
    }
    async fn take_back(&self, key: &str) {
        panic!("the Redis throttle fell back for take_back({key})")
    }
    async fn forget(&self, key: &str) {
        // Forgetting is also done in the fallback on purpose (forgotten everywhere).
        let _ = key;
    }
}

/// A key no other case uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Waits until `probe` answers, polling; fails naming `what` after [`PATIENCE`].
async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`eventually`] for a probe that must await.
async fn eventually_async<T, F>(what: &str, mut probe: impl FnMut() -> F) -> T
where
    F: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A session's inbox that records what it is told (heartbeats aside).
#[derive(Default)]
struct TestInbox {
    events: Mutex<Vec<SessionEvent>>,
}

impl SessionInbox for TestInbox {
    fn deliver(&self, event: SessionEvent) {
        if !matches!(event, SessionEvent::Heartbeat) {
            self.events.lock().unwrap().push(event);
        }
    }
}

impl TestInbox {
    /// The frames received, as text, in order.
    fn frames(&self) -> Vec<String> {
        let events = self.events.lock().unwrap();
        let frames = events.iter().filter_map(|e| match e {
            SessionEvent::Frame(frame) => Some(frame.to_string()),
            _ => None,
        });
        frames.collect()
    }

    /// The reason of the revocation received, if one was.
    fn revoked(&self) -> Option<&'static str> {
        let events = self.events.lock().unwrap();
        events.iter().find_map(|e| match e {
            SessionEvent::Revoked { reason } => Some(*reason),
            _ => None,
        })
    }

    /// Whether the session was told that the server stops.
    fn shut_down(&self) -> bool {
        self.events.lock().unwrap().iter().any(|e| matches!(e, SessionEvent::Shutdown))
    }

    /// The presence events received about `user`, in order, in a short spelling.
    fn presence_of(&self, user: &str) -> Vec<String> {
        let events = self.events.lock().unwrap();
        let presence = events.iter().filter_map(|e| match e {
            SessionEvent::Presence(PresenceEvent::Joined(who)) if &*who.user_id == user => {
                Some(format!("joined {}", who.sessions))
            }
            SessionEvent::Presence(PresenceEvent::Sessions { user_id, sessions }) if &**user_id == user => {
                Some(format!("sessions {sessions}"))
            }
            SessionEvent::Presence(PresenceEvent::Left { user_id, reason, .. }) if &**user_id == user => {
                Some(format!("left {}", reason.as_str()))
            }
            _ => None,
        });
        presence.collect()
    }
}

/// A session of `user` opened with a credential of `login` (none: the API key), checked at
/// `verified_at`; answers its id, its join and its inbox.
fn session_at(user: &str, login: Option<&str>, verified_at: Instant) -> (Arc<str>, Joining, Arc<TestInbox>) {
    let inbox = Arc::new(TestInbox::default());
    let id: Arc<str> = unique("ws").into();
    let join = Joining {
        session_id: id.clone(),
        user_id: user.into(),
        email: format!("{user}@example.com").into(),
        auth_session: login.map(Into::into),
        api_key: login.is_none().then(|| "key-fingerprint".into()),
        verified_at,
        inbox: inbox.clone(),
    };
    (id, join, inbox)
}

/// [`session_at`] with a credential checked just now.
fn session(user: &str, login: Option<&str>) -> (Arc<str>, Joining, Arc<TestInbox>) {
    session_at(user, login, Instant::now())
}

/// Each user's sessions in a snapshot, by user id.
fn sessions_by_user(snapshot: &Snapshot) -> Vec<(String, usize)> {
    let mut users: Vec<_> = snapshot.users.iter().map(|u| (u.user_id.to_string(), u.sessions)).collect();
    users.sort();
    users
}

/// Waits until every node's snapshot shows `expected` (user, sessions) pairs, sorted by user.
async fn wait_for_presence(nodes: &[Realtime], expected: &[(&str, usize)], what: &str) {
    let expected: &Vec<(String, usize)> = &expected.iter().map(|(u, n)| (u.to_string(), *n)).collect();
    eventually_async(what, || async move {
        for node in nodes {
            let snapshot = node.presence.snapshot().await.ok()?;
            let total: usize = expected.iter().map(|(_, n)| n).sum();
            let matches = sessions_by_user(&snapshot) == *expected
                && snapshot.active_users == expected.len()
                && snapshot.sessions == total;
            if !matches {
                return None;
            }
        }
        Some(())
    })
    .await;
}
