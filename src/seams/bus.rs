//! The bus: how a frame reaches one session, every session of a user, or the subscribed admins,
//! and how a revocation reaches the sockets it covers. In one process it is the presence actor,
//! which knows every session of the node; with several nodes it would carry the same messages
//! between them. Frames are already encoded text: the bus never looks inside.

use std::sync::Arc;

use actix::Addr;
pub use switchboard_actors::presence::RevokeScope;
use switchboard_actors::presence::{PresenceActor, Revoke, SessionEvent, ToSession, ToUser};

/// An encoded text frame, shared by every session it goes to.
pub type Frame = Arc<str>;

/// Delivers frames and revocations to sessions wherever they are.
pub trait Bus: Send + Sync + 'static {
    /// Sends `frame` to every session of `user_id`.
    fn to_user(&self, user_id: &str, frame: Frame);
    /// Sends `frame` to one session.
    fn to_session(&self, session_id: &str, frame: Frame);
    /// Sends `session.revoked` with `reason` to the sockets of `user_id` that `scope` covers and
    /// closes them (4001); sockets still opening are refused when they join.
    fn revoke(&self, user_id: &str, scope: RevokeScope, reason: &'static str);
}

/// The bus of one process: the presence actor routes each message to the sessions it names.
/// Messages are queued without waiting (`do_send`): a frame must not be dropped mid-stream,
/// and a session whose client stops reading is closed by its own byte budget.
pub struct LocalBus {
    presence: Addr<PresenceActor>,
}

impl LocalBus {
    /// A bus over the node's presence actor.
    pub fn new(presence: Addr<PresenceActor>) -> LocalBus {
        LocalBus { presence }
    }
}

impl Bus for LocalBus {
    fn to_user(&self, user_id: &str, frame: Frame) {
        self.presence.do_send(ToUser { user_id: user_id.into(), event: SessionEvent::Frame(frame) });
    }

    fn to_session(&self, session_id: &str, frame: Frame) {
        self.presence.do_send(ToSession { session_id: session_id.into(), event: SessionEvent::Frame(frame) });
    }

    fn revoke(&self, user_id: &str, scope: RevokeScope, reason: &'static str) {
        self.presence.do_send(Revoke { user_id: user_id.into(), scope, reason });
    }
}
