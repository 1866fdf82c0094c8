//! The bus: how a frame reaches one session or every session of a user, and how a revocation
//! reaches the sockets it covers. In one process it is the presence actor and its directory of
//! sessions' inboxes; with several nodes ([`super::redis::RedisBus`]) it also carries them between
//! nodes. Frames are already encoded text: the bus never looks inside.

use actix::Addr;
pub use switchboard_actors::presence::RevokeScope;
use switchboard_actors::presence::{Directory, PresenceActor, Revoke, SessionEvent};

/// An encoded text frame, shared (not copied) by every session it goes to.
pub type Frame = switchboard_actors::presence::ByteString;

/// Every reason a revocation tells the client (`session.revoked {reason}`), so one that crossed
/// nodes as text finds its static name again.
pub const REVOKE_REASONS: &[&str] = &[
    "logout",
    "refresh_token_reused",
    "api_key_regenerated",
    "password_changed",
    "account_disabled",
    "role_changed",
    "session_ended",
    switchboard_actors::presence::STALE_CHECK_REASON,
];

/// Delivers frames and revocations to sessions wherever they are.
pub trait Bus: Send + Sync + 'static {
    /// Sends `frame` to every session of `user_id`.
    fn to_user(&self, user_id: &str, frame: Frame);
    /// Sends `session.revoked` with `reason` to the sockets of `user_id` that `scope` covers and
    /// closes them (4001); sockets still opening are refused when they join.
    fn revoke(&self, user_id: &str, scope: RevokeScope, reason: &'static str);
}

/// The bus of one process. Frames for a user go straight to the inboxes of their sessions
/// through the presence actor's directory, so fan-out is not bound to one thread; revocations go
/// through the presence actor itself, which knows sessions by credential and remembers
/// revocations. Events are queued without waiting: a frame must not be dropped mid-stream, and a
/// session whose client stops reading is closed by its own byte budget. Built with the
/// registry over the same actor ([`super::presence::LocalPresence`]).
#[derive(Clone)]
pub struct LocalBus {
    presence: Addr<PresenceActor>,
    directory: Directory,
}

impl LocalBus {
    /// A bus over the node's presence actor and its directory.
    pub(super) fn new(presence: Addr<PresenceActor>, directory: Directory) -> LocalBus {
        LocalBus { presence, directory }
    }
}

impl Bus for LocalBus {
    fn to_user(&self, user_id: &str, frame: Frame) {
        self.directory.to_user(user_id, SessionEvent::Frame(frame));
    }

    fn revoke(&self, user_id: &str, scope: RevokeScope, reason: &'static str) {
        self.presence.do_send(Revoke { user_id: user_id.into(), scope, reason });
    }
}
