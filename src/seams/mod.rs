//! Seams: the interfaces through which the node reaches what several nodes must share — the bus
//! to sessions, presence, limits, failure throttles and the per-user session cap. Each is a
//! trait with the in-process implementation beside it, built on the engines of
//! `switchboard-actors`, and a Redis one in [`redis`] for several nodes; callers hold the trait,
//! never an actor address or a connection, and each implementation states once what happens
//! when its engine cannot answer. [`Seams`] builds one or the other.
//!
//! No seam's API carries an actix type: a session is known by its
//! [`presence::SessionInbox`], and the addresses of the presence actor stay inside
//! [`bus::LocalBus`] and [`presence::LocalPresence`]. `tests/api/seam_contract/` holds every
//! in-process and Redis implementation to the same cases.

pub mod bus;
pub mod limiter;
pub mod presence;
pub mod redis;
pub mod session_cap;
pub mod stops;
pub mod throttle;

use std::sync::Arc;
use std::time::Duration;

use self::bus::Bus;
use self::limiter::{Limiter, LocalLimiter};
use self::presence::{LocalPresence, PresenceRegistry};
use self::redis::{RedisBus, RedisFailureThrottle, RedisLimiter, RedisLink, RedisPresence, RedisSessionCap};
use self::session_cap::{LocalSessionCap, SessionCap};
use self::throttle::{Backoff, FailureThrottle, LocalFailureThrottle};

/// Builds every seam: in process, or over Redis when the node has a link to it.
pub struct Seams {
    redis: Option<Arc<RedisLink>>,
}

impl Seams {
    /// Seams of one process.
    pub fn local() -> Seams {
        Seams { redis: None }
    }

    /// Seams shared with the other nodes through `link`.
    pub fn redis(link: Arc<RedisLink>) -> Seams {
        Seams { redis: Some(link) }
    }

    /// The link to Redis, when there is one (for `/readyz`).
    pub fn redis_link(&self) -> Option<Arc<RedisLink>> {
        self.redis.clone()
    }

    /// The bus, presence and session cap; the presence actor sweeps every session's heartbeat
    /// each `heartbeat`.
    pub fn realtime(&self, max_sessions_per_user: usize, heartbeat: Duration) -> Realtime {
        match &self.redis {
            None => Realtime::local(max_sessions_per_user, heartbeat),
            Some(link) => {
                let cap = Arc::new(RedisSessionCap::new(link.clone(), max_sessions_per_user));
                let (presence, local_bus) = RedisPresence::start(link.clone(), heartbeat, cap.clone());
                Realtime {
                    bus: Arc::new(RedisBus::new(link.clone(), local_bus)),
                    presence: Arc::new(presence),
                    session_cap: cap,
                }
            }
        }
    }

    /// The relay of `chat.stop` to the node running a generation; `on_stop` is what this node
    /// does with a stop relayed to it.
    pub fn stops(&self, on_stop: stops::OnStop) -> Arc<dyn stops::StopRelay> {
        match &self.redis {
            None => Arc::new(stops::LocalStops),
            Some(link) => Arc::new(redis::RedisStops::start(link.clone(), on_stop)),
        }
    }

    /// `limit` requests per `window` per key of `scope`.
    pub fn limiter(&self, scope: &'static str, limit: u32, window: Duration) -> Arc<dyn Limiter> {
        let local = LocalLimiter::new(limit, window);
        match &self.redis {
            None => Arc::new(local),
            Some(link) => Arc::new(RedisLimiter::new(link.clone(), scope, limit, window, Box::new(local))),
        }
    }

    /// A failure throttle of `scope`.
    pub fn throttle(&self, scope: &'static str, backoff: Backoff) -> Box<dyn FailureThrottle> {
        let local = LocalFailureThrottle::new(backoff);
        match &self.redis {
            None => Box::new(local),
            Some(link) => Box::new(RedisFailureThrottle::new(link.clone(), scope, backoff, Box::new(local))),
        }
    }
}

/// The seams the realtime side shares: the bus, presence and the session cap.
#[derive(Clone)]
pub struct Realtime {
    /// Frames and revocations to sessions.
    pub bus: Arc<dyn Bus>,
    /// Who is online.
    pub presence: Arc<dyn PresenceRegistry>,
    /// Open sessions per user.
    pub session_cap: Arc<dyn SessionCap>,
}

impl Realtime {
    /// The in-process seams: one presence actor behind the bus and the registry, which also
    /// sweeps every session's heartbeat each `heartbeat`.
    pub fn local(max_sessions_per_user: usize, heartbeat: Duration) -> Realtime {
        let (presence, bus) = LocalPresence::start(heartbeat, None);
        Realtime {
            bus: Arc::new(bus),
            presence: Arc::new(presence),
            session_cap: Arc::new(LocalSessionCap::new(max_sessions_per_user)),
        }
    }
}

/// Calls `prune` on `table` every `every` for as long as anything else holds it, so an
/// in-process table forgets keys it no longer needs without a timer of its own in the hot path.
fn prune_while_alive<T: Send + Sync + 'static>(table: &Arc<T>, every: Duration, prune: fn(&T)) {
    let table = Arc::downgrade(table);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(table) = table.upgrade() else { return };
            prune(&table);
        }
    });
}
