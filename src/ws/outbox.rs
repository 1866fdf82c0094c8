//! The outbound side of one connection: frames are queued for a writer task that owns the
//! actix-ws `Session`, and the bytes waiting are counted against a budget. A client whose backlog
//! passes the budget is not reading: it is closed (4002) and its backlog dropped, so it never
//! slows the session actor or anyone else.
//!
//! The queue is a `VecDeque` behind a mutex with a `Notify`, not a channel: a channel allocates
//! a block of slots up front, and an idle session should cost only what it holds. The queue
//! gives back its memory once a burst has drained.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix_ws::{CloseCode, CloseReason};
use tokio::sync::Notify;

use crate::seams::bus::Frame;

/// How long one frame may wait for the client to read before the connection is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Room an empty queue may keep; more is given back, so an idle session holds little.
const IDLE_CAPACITY: usize = 8;

/// The session's end of the outbound queue.
pub struct Outbox {
    shared: Arc<Shared>,
    budget: usize,
}

/// The writer task's end of the outbound queue.
pub struct OutboxReader {
    shared: Arc<Shared>,
}

/// What the session and its writer share.
#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Notify,
    queued_bytes: AtomicUsize,
    abandoned: AtomicBool,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Outbound>,
    /// The session is gone: once the queue is empty, the writer ends.
    ended: bool,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Each critical section is one push or pop, so a panic cannot leave the queue half-changed.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, frame: Outbound) {
        self.queue().frames.push_back(frame);
        self.wake.notify_one();
    }
}

impl Outbox {
    /// An outbox with a byte budget, and the end [`write_frames`] reads.
    pub fn new(budget: usize) -> (Outbox, OutboxReader) {
        let shared = Arc::new(Shared::default());
        (Outbox { shared: shared.clone(), budget }, OutboxReader { shared })
    }

    /// Queues a frame; false when the budget would be exceeded (the frame is not queued).
    pub fn push(&self, frame: Outbound) -> bool {
        let size = frame.size();
        let queued = self.shared.queued_bytes.fetch_add(size, Ordering::AcqRel) + size;
        if queued > self.budget {
            self.shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            crate::metrics::record_ws_outbound_dropped("slow_consumer");
            return false;
        }
        self.shared.push(frame);
        true
    }

    /// Ends the connection with a close frame; with `abandon`, frames still queued are dropped.
    pub fn close(&self, code: u16, reason: &'static str, abandon: bool) {
        if abandon {
            self.shared.abandoned.store(true, Ordering::Release);
        }
        self.shared.push(Outbound::Close(code, reason));
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.shared.queue().ended = true;
        self.shared.wake.notify_one();
    }
}

impl OutboxReader {
    /// The next frame, waiting for one; `None` once the session is gone and the queue empty.
    async fn next(&self) -> Option<Outbound> {
        loop {
            {
                let mut queue = self.shared.queue();
                if let Some(frame) = queue.frames.pop_front() {
                    if queue.frames.is_empty() && queue.frames.capacity() > IDLE_CAPACITY {
                        queue.frames.shrink_to_fit();
                    }
                    return Some(frame);
                }
                if queue.ended {
                    return None;
                }
            }
            // A push between the check above and this wait leaves a permit: no wake-up is lost.
            self.shared.wake.notified().await;
        }
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
pub async fn write_frames(mut session: actix_ws::Session, outbound: OutboxReader) {
    let shared = outbound.shared.clone();
    let mut close_reason = None;
    while let Some(frame) = outbound.next().await {
        if let Outbound::Close(code, reason) = frame {
            close_reason =
                Some(CloseReason { code: CloseCode::from(code), description: Some(reason.to_owned()) });
            break;
        }
        if shared.abandoned.load(Ordering::Acquire) {
            // A slow consumer: skip its backlog and go straight to the close frame.
            crate::metrics::record_ws_outbound_dropped("slow_consumer");
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
        match sent {
            Ok(Ok(())) => {}
            // The client went away; what was queued for it has nobody to go to.
            Ok(Err(_)) => return,
            Err(_) => {
                crate::metrics::record_ws_outbound_dropped("send_timeout");
                return;
            }
        }
    }
    let _ = tokio::time::timeout(SEND_TIMEOUT, session.close(close_reason)).await;
}
