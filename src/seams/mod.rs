//! Seams: the interfaces through which the node reaches what several nodes must share — the bus
//! to sessions, presence, limits, failure throttles and the per-user session cap. Each is a
//! trait with the in-process implementation beside it, built on the actors of
//! `switchboard-actors`; callers hold the trait, never an actor address, and each
//! implementation states once what happens when its engine cannot answer.

pub mod bus;
pub mod limiter;
pub mod presence;
pub mod session_cap;
pub mod throttle;

use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use switchboard_actors::presence::PresenceActor;

use self::bus::{Bus, LocalBus};
use self::presence::{LocalPresence, PresenceRegistry};
use self::session_cap::{LocalSessionCap, SessionCap};

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
        let actor = PresenceActor::with_heartbeat(heartbeat);
        let directory = actor.directory();
        let presence = actor.start();
        Realtime {
            bus: Arc::new(LocalBus::new(presence.clone(), directory)),
            presence: Arc::new(LocalPresence::new(presence)),
            session_cap: Arc::new(LocalSessionCap::new(max_sessions_per_user)),
        }
    }
}
