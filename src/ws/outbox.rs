//! The outbound side of one connection: frames are queued for a writer task that owns the
//! actix-ws `Session`, and the bytes waiting are counted against a budget. A client whose backlog
//! passes the budget is not reading: it is closed (4002) and its backlog dropped, so it never
//! slows the session actor or anyone else.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use actix_ws::{CloseCode, CloseReason};
use tokio::sync::mpsc;

use crate::seams::bus::Frame;

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
    pub fn push(&self, frame: Outbound) -> bool {
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
    pub fn close(&self, code: u16, reason: &'static str, abandon: bool) {
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
    Text(Frame),
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
                Outbound::Text(text) => session.text(text).await,
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
