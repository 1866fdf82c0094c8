//! `WsSession`: one actix actor per WebSocket connection. Inbound frames arrive as an actor
//! stream (actix-ws); outbound frames go through a bounded queue to a writer task that owns the
//! actix-ws `Session`, so a client that stops reading fills its own queue and is closed, and never
//! slows the actor or anyone else. Paid work (chat replies, images) runs in spawned tasks that
//! push their frames through the presence actor to every session of the user.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError};
use switchboard_actors::presence::{
    Join, Leave, LeaveReason, PresenceEvent, SessionEvent, Subscribe, Unsubscribe, UserPresence,
};
use tokio::sync::mpsc;

use super::protocol::{self, ClientMessage, ErrorCode, PresenceUserView, ServerMessage, close};
use super::work::{self, Request};
use crate::seams::session_cap::SessionPlace;
use crate::startup::AppState;
use crate::store::{Role, User};

/// Requests of one session that may wait for an answer at once (beyond: `rate_limited`).
const MAX_IN_FLIGHT: usize = 64;

/// Silent heartbeat intervals after which a connection is closed.
const MISSED_HEARTBEATS: u32 = 3;

/// The outbound queue of one connection: frames go to the writer task through an unbounded
/// channel, and the bytes waiting in it are counted against a budget. A client whose backlog
/// passes the budget is not reading: it is closed (4002) and the writer drops its backlog.
pub struct Outbox {
    frames: mpsc::UnboundedSender<Outbound>,
    shared: Arc<OutboxState>,
    budget: usize,
}

/// What the session and its writer share.
#[derive(Default)]
pub struct OutboxState {
    queued_bytes: AtomicUsize,
    abandoned: AtomicBool,
}

impl Outbox {
    /// An outbox with a byte budget, and the receiving end for [`write_frames`].
    pub fn new(budget: usize) -> (Outbox, mpsc::UnboundedReceiver<Outbound>, Arc<OutboxState>) {
        let (frames, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(OutboxState::default());
        (Outbox { frames, shared: shared.clone(), budget }, rx, shared)
    }

    /// Queues a frame; false when the budget would be exceeded (the frame is not queued).
    fn push(&self, frame: Outbound) -> bool {
        let size = frame.size();
        let queued = self.shared.queued_bytes.fetch_add(size, Ordering::AcqRel) + size;
        if queued > self.budget {
            self.shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            return false;
        }
        // The writer only ends after the session, so a send error cannot lose a live frame.
        let _ = self.frames.send(frame);
        true
    }

    /// Ends the connection with a close frame; with `abandon`, frames still queued are dropped.
    fn close(&self, code: u16, reason: &'static str, abandon: bool) {
        if abandon {
            self.shared.abandoned.store(true, Ordering::Release);
        }
        let _ = self.frames.send(Outbound::Close(code, reason));
    }
}

/// What the writer task sends to the client.
#[derive(Debug)]
pub enum Outbound {
    /// A text frame.
    Text(Arc<str>),
    /// Answer to a client ping.
    Pong(actix_web::web::Bytes),
    /// Server heartbeat.
    Ping,
    /// Close the connection with this code and reason.
    Close(u16, &'static str),
}

impl Outbound {
    /// Bytes this frame counts against the budget.
    fn size(&self) -> usize {
        match self {
            Outbound::Text(text) => text.len(),
            Outbound::Pong(payload) => payload.len(),
            Outbound::Ping | Outbound::Close(..) => 0,
        }
    }
}

/// A frame produced outside the actor (by a spawned task) for this session only.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reply(pub ServerMessage, pub Option<Arc<str>>);

/// One WebSocket connection.
pub struct WsSession {
    id: Arc<str>,
    user: User,
    auth_session: Option<Arc<str>>,
    verified_at: Instant,
    /// This session's place under the per-user cap, given back when the actor is dropped.
    _place: SessionPlace,
    state: actix_web::web::Data<AppState>,
    outbound: Outbox,
    last_heard: Instant,
    leave_reason: LeaveReason,
    in_flight: Arc<AtomicUsize>,
}

impl WsSession {
    /// A session for `user`, whose credential was checked at `verified_at`, writing to `outbound`.
    pub fn new(
        user: User,
        auth_session: Option<String>,
        verified_at: Instant,
        place: SessionPlace,
        state: actix_web::web::Data<AppState>,
        outbound: Outbox,
    ) -> WsSession {
        WsSession {
            id: uuid::Uuid::now_v7().to_string().into(),
            user,
            auth_session: auth_session.map(Into::into),
            verified_at,
            _place: place,
            state,
            outbound,
            last_heard: Instant::now(),
            leave_reason: LeaveReason::Closed,
            in_flight: Arc::default(),
        }
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
                let error = ServerMessage::error(ErrorCode::InvalidMessage, bad.problem);
                return self.send(&error, bad.id.as_deref(), ctx);
            }
        };
        crate::metrics::record_ws_message("in", message.kind());
        let reply_to: Option<Arc<str>> = id.map(Into::into);
        match message {
            ClientMessage::Ping {} => self.send(&ServerMessage::Pong, reply_to.as_deref(), ctx),
            ClientMessage::PresenceSubscribe {} => self.subscribe(reply_to, ctx),
            ClientMessage::PresenceUnsubscribe {} => {
                self.state.realtime.presence.do_send(Unsubscribe { session_id: self.id.clone() });
                self.send(&ServerMessage::PresenceUnsubscribed, reply_to.as_deref(), ctx);
            }
            other => {
                // A client may pipeline requests, but not without bound: each holds a task and
                // storage work until it is answered.
                if self.in_flight.load(Ordering::Acquire) >= MAX_IN_FLIGHT {
                    crate::metrics::record_rate_limited("ws");
                    let error = ServerMessage::Error {
                        code: ErrorCode::RateLimited,
                        message: format!("At most {MAX_IN_FLIGHT} requests may wait for an answer at once"),
                        retry_after_ms: Some(100),
                    };
                    return self.send(&error, reply_to.as_deref(), ctx);
                }
                self.in_flight.fetch_add(1, Ordering::AcqRel);
                let in_flight = self.in_flight.clone();
                let request = Request {
                    state: self.state.clone(),
                    user_id: self.user.id.clone(),
                    session: ctx.address().recipient(),
                    reply_to,
                };
                // Storage and paid work run off the actor, so the session keeps reading frames.
                actix::spawn(async move {
                    work::handle(request, other).await;
                    in_flight.fetch_sub(1, Ordering::AcqRel);
                });
            }
        }
    }

    fn subscribe(&mut self, reply_to: Option<Arc<str>>, ctx: &mut Context<Self>) {
        if self.user.role != Role::Admin {
            let error = ServerMessage::error(ErrorCode::Forbidden, "Only admins can follow presence");
            return self.send(&error, reply_to.as_deref(), ctx);
        }
        let request = self.state.realtime.presence.send(Subscribe { session_id: self.id.clone() });
        ctx.spawn(request.into_actor(self).map(move |result, actor, ctx| match result {
            Ok(snapshot) => {
                let message = ServerMessage::PresenceSnapshot {
                    users: snapshot.users.iter().map(presence_view).collect(),
                    active_users: snapshot.active_users,
                    sessions: snapshot.sessions,
                };
                actor.send(&message, reply_to.as_deref(), ctx);
            }
            Err(_) => {
                let error = ServerMessage::error(ErrorCode::Unavailable, "Presence is unavailable");
                actor.send(&error, reply_to.as_deref(), ctx)
            }
        }));
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let interval = self.state.realtime.heartbeat;
        if self.last_heard.elapsed() > interval * MISSED_HEARTBEATS {
            tracing::info!(session_id = %self.id, "closing a silent connection");
            return self.close(close::TIMEOUT, "heartbeat timeout", LeaveReason::Timeout, ctx);
        }
        self.queue(Outbound::Ping, ctx);
    }
}

/// The presence view of one user.
pub fn presence_view(user: &UserPresence) -> PresenceUserView {
    PresenceUserView {
        user_id: user.user_id.to_string(),
        email: user.email.to_string(),
        sessions: user.sessions,
        connected_since: time::OffsetDateTime::from(user.connected_since),
    }
}

impl Actor for WsSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        let realtime = &self.state.realtime;
        realtime.presence.do_send(Join {
            session_id: self.id.clone(),
            user_id: self.user.id.as_str().into(),
            email: self.user.email.as_str().into(),
            auth_session: self.auth_session.clone(),
            verified_at: self.verified_at,
            recipient: ctx.address().recipient(),
        });
        ctx.run_interval(realtime.heartbeat, Self::heartbeat);
        let hello = ServerMessage::Hello {
            session_id: self.id.to_string(),
            user: protocol::HelloUser {
                id: self.user.id.clone(),
                email: self.user.email.clone(),
                role: self.user.role,
            },
            credits: self.user.credits,
            heartbeat_ms: realtime.heartbeat.as_millis() as u64,
            max_message_bytes: protocol::MAX_MESSAGE_BYTES,
        };
        self.send(&hello, None, ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.state
            .realtime
            .presence
            .do_send(Leave { session_id: self.id.clone(), reason: self.leave_reason });
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for WsSession {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        match item {
            Ok(AggregatedMessage::Text(text)) => self.on_text(&text, ctx),
            Ok(AggregatedMessage::Binary(_)) => {
                let error = ServerMessage::error(ErrorCode::InvalidMessage, "binary frames are not accepted");
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
            SessionEvent::Presence(event) => {
                let message = match event {
                    PresenceEvent::Joined(user) => ServerMessage::PresenceJoined(presence_view(&user)),
                    PresenceEvent::Left { user_id, email, reason } => ServerMessage::PresenceLeft {
                        user_id: user_id.to_string(),
                        email: email.to_string(),
                        reason: reason.as_str(),
                    },
                    PresenceEvent::Sessions { user_id, sessions } => {
                        ServerMessage::PresenceSessions { user_id: user_id.to_string(), sessions }
                    }
                };
                self.send(&message, None, ctx);
            }
            SessionEvent::Revoked { reason } => {
                self.send(&ServerMessage::SessionRevoked { reason: reason.to_owned() }, None, ctx);
                self.close(close::REVOKED, "session revoked", LeaveReason::Revoked, ctx);
            }
            SessionEvent::Shutdown => {
                self.close(close::SHUTDOWN, "server shutting down", LeaveReason::Shutdown, ctx)
            }
        }
    }
}

impl Handler<Reply> for WsSession {
    type Result = ();

    fn handle(&mut self, Reply(message, reply_to): Reply, ctx: &mut Context<Self>) {
        self.send(&message, reply_to.as_deref(), ctx);
    }
}

/// Drains the outbound queue into the socket; ends with a close frame.
pub async fn write_frames(
    mut session: actix_ws::Session,
    mut outbound: mpsc::UnboundedReceiver<Outbound>,
    shared: Arc<OutboxState>,
) {
    let mut close_reason = None;
    while let Some(frame) = outbound.recv().await {
        if let Outbound::Close(code, reason) = frame {
            close_reason =
                Some(CloseReason { code: CloseCode::from(code), description: Some(reason.to_owned()) });
            break;
        }
        if shared.abandoned.load(Ordering::Acquire) {
            // A slow consumer: skip its backlog and go straight to the close frame.
            continue;
        }
        let size = frame.size();
        let send = async {
            match frame {
                Outbound::Text(text) => session.text(text.to_string()).await,
                Outbound::Pong(payload) => session.pong(&payload).await,
                Outbound::Ping | Outbound::Close(..) => session.ping(b"").await,
            }
        };
        // A client that reads nothing for this long is gone or hostile: drop the connection.
        let sent = tokio::time::timeout(SEND_TIMEOUT, send).await;
        shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
        if !matches!(sent, Ok(Ok(()))) {
            return;
        }
    }
    let _ = tokio::time::timeout(SEND_TIMEOUT, session.close(close_reason)).await;
}

/// How long one frame may wait for the client to read before the connection is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
