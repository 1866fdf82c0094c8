//! `Realtime`: what the gateway shares — the presence, credit and rate-limit actors, the
//! assistant and image generator — and the credit changes that tell every session of the user.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use switchboard_actors::credit::{CreditFailure, CreditRegistry, Ledger, LedgerFuture};
use switchboard_actors::presence::{PresenceActor, Revoke, RevokeScope, SessionEvent, ToUser};
use switchboard_actors::rate_limit::RateLimiterActor;

use super::protocol::ServerMessage;
use crate::assistant::Assistant;
use crate::config::Config;
use crate::images::ImageGenerator;
use crate::seams::limiter::{Limiter, LocalLimiter, WhenUnavailable};
use crate::seams::session_cap::{LocalSessionCap, SessionCap};
use crate::store::ledger::{self, CreditChange, CreditError};
use crate::store::{DynStore, LedgerEntry, StoreError};

/// Credit actors stop after this long without a change.
const CREDIT_ACTOR_IDLE: Duration = Duration::from_secs(120);

/// The store's ledger, as the credit actors see it. It also tells the user's sessions the new
/// balance, inside the credit actor's turn, so `credits.updated` frames arrive in ledger order.
pub struct StoreLedger {
    store: DynStore,
    presence: Addr<PresenceActor>,
}

impl Ledger for StoreLedger {
    type Change = CreditChange;
    type Applied = LedgerEntry;
    type Error = CreditError;

    fn apply(&self, _user_id: &str, change: CreditChange) -> LedgerFuture<LedgerEntry, CreditError> {
        let (store, presence) = (self.store.clone(), self.presence.clone());
        Box::pin(async move {
            let entry = ledger::apply(&*store, &change).await?;
            push_to(
                &presence,
                &entry.user_id,
                &ServerMessage::CreditsUpdated { credits: entry.balance_after },
                None,
            );
            Ok(entry)
        })
    }
}

/// Sends a frame to every session of a user through the presence actor.
fn push_to(presence: &Addr<PresenceActor>, user_id: &str, message: &ServerMessage, reply_to: Option<&str>) {
    crate::metrics::record_ws_message("out", message.kind());
    let frame: Arc<str> = message.encode(reply_to).into();
    presence.do_send(ToUser { user_id: user_id.into(), event: SessionEvent::Frame(frame) });
}

/// The realtime side of the server, shared by the WebSocket sessions and the REST handlers
/// that must reach sockets (revocation, grants).
pub struct Realtime {
    /// Sessions by user; fan-out.
    pub presence: Addr<PresenceActor>,
    /// Per-user credit actors.
    pub credits: Arc<CreditRegistry<StoreLedger>>,
    /// Paid WebSocket messages per user.
    pub paid_limit: Box<dyn Limiter>,
    /// Free WebSocket requests that touch storage, per user.
    pub free_limit: Box<dyn Limiter>,
    /// Open sessions per user.
    pub session_cap: Box<dyn SessionCap>,
    /// Chat replies.
    pub assistant: Arc<dyn Assistant>,
    /// Images.
    pub images: Arc<dyn ImageGenerator>,
    /// Server ping interval.
    pub heartbeat: Duration,
    /// Bytes queued for a client before it counts as slow.
    pub outbound_bytes: usize,
}

impl Realtime {
    /// Starts the actors on the current actix system.
    pub fn start(config: &Config, store: DynStore) -> Realtime {
        // Both refuse when the limiter cannot answer: what they guard costs storage or credits.
        let per_minute = |limit: u32| {
            let limit = NonZeroU32::new(limit).unwrap_or(NonZeroU32::MIN);
            Box::new(LocalLimiter::new(RateLimiterActor::per_minute(limit), WhenUnavailable::Refuse))
        };
        let presence = PresenceActor::default().start();
        Realtime {
            credits: CreditRegistry::new(
                Arc::new(StoreLedger { store, presence: presence.clone() }),
                CREDIT_ACTOR_IDLE,
            ),
            presence,
            paid_limit: per_minute(config.ws_rate_limit_per_minute),
            free_limit: per_minute(config.ws_free_per_minute),
            session_cap: Box::new(LocalSessionCap::new(config.ws_max_sessions_per_user as usize)),
            assistant: crate::assistant::from_config(config),
            images: crate::images::from_config(config),
            heartbeat: Duration::from_millis(config.ws_heartbeat_ms),
            outbound_bytes: config.ws_outbound_bytes as usize,
        }
    }

    /// Applies a balance change through the user's credit actor, which also tells every
    /// session of the user the new balance.
    pub async fn change_credits(&self, change: CreditChange) -> Result<LedgerEntry, CreditError> {
        let user_id = change.user_id.clone();
        match self.credits.apply(&user_id, change).await {
            Ok(entry) => Ok(entry),
            Err(CreditFailure::Ledger(e)) => Err(e),
            Err(CreditFailure::Unreachable) => {
                Err(StoreError::Unavailable("credit actor unreachable".into()).into())
            }
        }
    }

    /// Sends a frame to every session of a user.
    pub fn push(&self, user_id: &str, message: &ServerMessage, reply_to: Option<&str>) {
        push_to(&self.presence, user_id, message, reply_to);
    }

    /// Sends `session.revoked` and closes (4001) the sockets of a user: all of them, or those
    /// opened with a credential of one login session.
    pub fn revoke_sockets(&self, user_id: &str, auth_session: Option<&str>, reason: &'static str) {
        let scope = auth_session.map_or(RevokeScope::All, |sid| RevokeScope::LoginSession(sid.into()));
        self.presence.do_send(Revoke { user_id: user_id.into(), scope, reason });
    }

    /// Closes the sockets a user opened with an API key (after the key was replaced).
    pub fn revoke_api_key_sockets(&self, user_id: &str, reason: &'static str) {
        self.presence.do_send(Revoke { user_id: user_id.into(), scope: RevokeScope::ApiKeys, reason });
    }
}
