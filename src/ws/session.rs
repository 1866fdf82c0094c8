//! `WsSession`: one actix actor per WebSocket connection. Inbound frames arrive as an actor
//! stream (actix-ws) and are parsed here; answers and events leave through the connection's
//! [`Outbox`]. Requests that touch storage or cost credits run in spawned tasks
//! ([`super::requests`]) so the session keeps reading; their answers come back as [`Reply`]
//! messages, and events for every session of the user travel through the bus.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_ws::{AggregatedMessage, CloseCode, ProtocolError};

use super::error::RequestError;
use super::outbox::{Outbound, Outbox};
use super::protocol::{self, ClientMessage, GenerationView, ServerMessage, close};
use super::requests::{self, Reply, ReplyTo, Request};
use crate::seams::presence::{Joining, LeaveReason, SessionEvent};
use crate::seams::session_cap::SessionPlace;
use crate::security::ip_cap::IpPlace;
use crate::services::conversation::RunningGeneration;
use crate::state::AppState;
use crate::store::{Role, User};
use crate::views::PresenceSnapshotView;

/// Requests of one session that may wait for an answer at once (beyond: `rate_limited`).
const MAX_IN_FLIGHT: usize = 64;

/// Silent heartbeat intervals after which a connection is closed.
const MISSED_HEARTBEATS: u32 = 3;

/// Who a session belongs to: only what it needs while it lives (not the whole user record).
pub struct SessionUser {
    /// User id.
    pub id: Arc<str>,
    /// Email (shown to admins).
    pub email: Arc<str>,
    /// Role when the session opened (a role change ends the session).
    pub role: Role,
}

impl From<&User> for SessionUser {
    fn from(user: &User) -> SessionUser {
        SessionUser { id: user.id.as_str().into(), email: user.email.as_str().into(), role: user.role }
    }
}

/// How a session was authenticated, as it joins presence.
pub struct SessionCredential {
    /// The user.
    pub user: SessionUser,
    /// The login session of the credential; none for an API key.
    pub auth_session: Option<String>,
    /// The fingerprint of the API key it was opened with (directly or through a ticket).
    pub api_key: Option<String>,
    /// When the credential check began.
    pub verified_at: Instant,
    /// This session's place under the per-user cap, given back when the actor is dropped.
    pub place: SessionPlace,
    /// Its place under the per-IP cap of this node, given back likewise.
    pub ip_place: IpPlace,
    /// The balance for `hello`.
    pub credits: i64,
    /// The user's running generations for `hello`.
    pub generations: Vec<RunningGeneration>,
}

/// One WebSocket connection.
pub struct WsSession {
    id: Arc<str>,
    credential: SessionCredential,
    state: actix_web::web::Data<AppState>,
    outbound: Outbox,
    heartbeat: Duration,
    last_heard: Instant,
    leave_reason: LeaveReason,
    in_flight: Arc<AtomicUsize>,
}

impl WsSession {
    /// A session for `credential`, writing to `outbound`.
    pub fn new(
        credential: SessionCredential,
        state: actix_web::web::Data<AppState>,
        outbound: Outbox,
    ) -> WsSession {
        WsSession {
            id: uuid::Uuid::now_v7().to_string().into(),
            heartbeat: Duration::from_millis(state.config.ws_heartbeat_ms),
            credential,
            state,
            outbound,
            last_heard: Instant::now(),
            leave_reason: LeaveReason::Closed,
            in_flight: Arc::default(),
        }
    }

    fn user(&self) -> &SessionUser {
        &self.credential.user
    }

    /// Queues a frame; past the byte budget the client is not reading: close it as slow.
    fn queue(&mut self, frame: Outbound, ctx: &mut Context<Self>) {
        if !self.outbound.push(frame) {
            tracing::info!(session_id = %self.id, "closing a slow consumer");
            self.leave_reason = LeaveReason::Slow;
            self.outbound.close(close::SLOW, "slow consumer", true);
            ctx.stop();
        }
    }

    fn send(&mut self, message: &ServerMessage, reply_to: Option<&str>, ctx: &mut Context<Self>) {
        crate::metrics::record_ws_message("out", message.kind());
        self.queue(Outbound::Text(message.encode(reply_to).into()), ctx);
    }

    fn close(&mut self, code: u16, reason: &'static str, leave: LeaveReason, ctx: &mut Context<Self>) {
        self.leave_reason = leave;
        self.outbound.close(code, reason, false);
        ctx.stop();
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        let (id, message) = match protocol::parse(text) {
            Ok(parsed) => parsed,
            Err(bad) => {
                crate::metrics::record_ws_message("in", "invalid");
                return self.send(&RequestError::Invalid(bad.problem).frame(), bad.id.as_deref(), ctx);
            }
        };
        crate::metrics::record_ws_message("in", message.kind());
        let reply_to: Option<Arc<str>> = id.map(Into::into);
        match message {
            ClientMessage::Ping {} => self.send(&ServerMessage::Pong, reply_to.as_deref(), ctx),
            ClientMessage::PresenceSubscribe {} => self.subscribe(reply_to, ctx),
            ClientMessage::PresenceUnsubscribe {} => {
                self.state.realtime.presence.unsubscribe(&self.id);
                self.send(&ServerMessage::PresenceUnsubscribed, reply_to.as_deref(), ctx);
            }
            other => self.hand_off(other, reply_to, ctx),
        }
    }

    /// Runs a request that touches storage or costs credits in its own task, so the session
    /// keeps reading frames meanwhile.
    fn hand_off(&mut self, message: ClientMessage, reply_to: Option<Arc<str>>, ctx: &mut Context<Self>) {
        // A client may pipeline requests, but not without bound: each holds a task and storage
        // work until it is answered.
        if self.in_flight.load(Ordering::Acquire) >= MAX_IN_FLIGHT {
            crate::metrics::record_rate_limited("ws");
            return self.send(&RequestError::TooManyWaiting(MAX_IN_FLIGHT).frame(), reply_to.as_deref(), ctx);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let in_flight = self.in_flight.clone();
        let request = Request {
            state: self.state.clone(),
            user_id: self.user().id.to_string(),
            role: self.user().role,
            session: ReplyTo(ctx.address().recipient()),
            reply_to,
        };
        actix::spawn(async move {
            requests::handle(request, message).await;
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }

    fn subscribe(&mut self, reply_to: Option<Arc<str>>, ctx: &mut Context<Self>) {
        if self.user().role != Role::Admin {
            let error = RequestError::Forbidden("Only admins can follow presence".into()).frame();
            return self.send(&error, reply_to.as_deref(), ctx);
        }
        let presence = self.state.realtime.presence.clone();
        let session_id = self.id.clone();
        let request = async move { presence.subscribe(&session_id).await };
        ctx.spawn(request.into_actor(self).map(move |result, actor, ctx| {
            let message = match result {
                Ok(snapshot) => ServerMessage::PresenceSnapshot(PresenceSnapshotView::from(&snapshot)),
                Err(_) => RequestError::Unavailable("Presence is unavailable").frame(),
            };
            actor.send(&message, reply_to.as_deref(), ctx);
        }));
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        if self.last_heard.elapsed() > self.heartbeat * MISSED_HEARTBEATS {
            tracing::info!(session_id = %self.id, "closing a silent connection");
            return self.close(close::TIMEOUT, "heartbeat timeout", LeaveReason::Timeout, ctx);
        }
        self.queue(Outbound::Ping, ctx);
    }
}

impl Actor for WsSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        let user = &self.credential.user;
        tracing::info!(session_id = %self.id, user_id = %user.id, "WebSocket session opened");
        self.state.realtime.presence.join(Joining {
            session_id: self.id.clone(),
            user_id: user.id.clone(),
            email: user.email.clone(),
            auth_session: self.credential.auth_session.as_deref().map(Into::into),
            api_key: self.credential.api_key.as_deref().map(Into::into),
            verified_at: self.credential.verified_at,
            inbox: Arc::new(ctx.address()),
        });
        let hello = ServerMessage::Hello {
            session_id: self.id.to_string(),
            node: self.state.node.to_string(),
            user: protocol::HelloUser {
                id: user.id.to_string(),
                email: user.email.to_string(),
                role: user.role,
            },
            credits: self.credential.credits,
            heartbeat_ms: self.heartbeat.as_millis() as u64,
            max_message_bytes: protocol::MAX_MESSAGE_BYTES,
            generations: self.credential.generations.iter().map(GenerationView::from).collect(),
        };
        self.send(&hello, None, ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        tracing::info!(session_id = %self.id, reason = self.leave_reason.as_str(), "WebSocket session closed");
        self.state.realtime.presence.leave(&self.id, self.leave_reason);
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for WsSession {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        match item {
            Ok(AggregatedMessage::Text(text)) => self.on_text(&text, ctx),
            Ok(AggregatedMessage::Binary(_)) => {
                let error = RequestError::Invalid("binary frames are not accepted".into()).frame();
                self.send(&error, None, ctx);
            }
            Ok(AggregatedMessage::Ping(payload)) => self.queue(Outbound::Pong(payload), ctx),
            Ok(AggregatedMessage::Pong(_)) => {}
            Ok(AggregatedMessage::Close(_)) => {
                self.leave_reason = LeaveReason::Closed;
                ctx.stop();
            }
            Err(ProtocolError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                // actix-ws reports a text frame that is not UTF-8 this way.
                self.close(CloseCode::Invalid.into(), "text frame is not UTF-8", LeaveReason::Closed, ctx);
            }
            Err(ProtocolError::Overflow) | Err(ProtocolError::Io(_)) => {
                // Io is also what the continuation aggregator and the frame guard report for an
                // oversized message.
                self.close(close::TOO_BIG, "message too big", LeaveReason::Closed, ctx);
            }
            Err(e) => {
                tracing::debug!(session_id = %self.id, error = %e, "protocol error");
                self.close(CloseCode::Protocol.into(), "protocol error", LeaveReason::Closed, ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<SessionEvent> for WsSession {
    type Result = ();

    fn handle(&mut self, event: SessionEvent, ctx: &mut Context<Self>) {
        match event {
            SessionEvent::Frame(frame) => self.queue(Outbound::Text(frame), ctx),
            SessionEvent::Presence(event) => self.send(&ServerMessage::from(event), None, ctx),
            SessionEvent::Revoked { reason } => {
                self.send(&ServerMessage::SessionRevoked { reason: reason.to_owned() }, None, ctx);
                self.close(close::REVOKED, "session revoked", LeaveReason::Revoked, ctx);
            }
            SessionEvent::Shutdown => {
                self.close(close::SHUTDOWN, "server shutting down", LeaveReason::Shutdown, ctx)
            }
            SessionEvent::Heartbeat => self.heartbeat(ctx),
        }
    }
}

impl Handler<Reply> for WsSession {
    type Result = ();

    fn handle(&mut self, Reply(message, reply_to): Reply, ctx: &mut Context<Self>) {
        self.send(&message, reply_to.as_deref(), ctx);
    }
}
