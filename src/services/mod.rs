//! Services: the single home of each concern, between the edges (REST handlers, the WebSocket
//! session) and the engines (actors, store). Plain Rust: no actix-web or actix-ws type appears
//! here. Edges parse and authorise, call one service, and turn its result or its domain error into
//! a response or frames.
//!
//! - [`accounts`]: users, credentials, sessions, passwords and their mail, admin changes.
//! - [`credits`]: every balance change (hold, settle, grant) and the balance everyone shows.
//! - [`conversation`]: chats, a chat turn with the assistant, image generation.
//! - [`overview`]: the admin's figures of users, presence, credits and sign-ups.
//! - [`idempotency`]: `idempotency_key`s of paid requests, so a retry is charged once.
//! - [`ledger_check`]: `switchboard check-ledger`, the ledger's invariants user by user.
//! - [`paging`]: the one rule for page sizes.
//! - [`text`]: the one rule for bounded text (names, chat titles, grant reasons).

pub mod accounts;
pub mod conversation;
pub mod credits;
pub mod idempotency;
pub mod ledger_check;
pub mod overview;
pub mod paging;
pub mod text;

use crate::store::{ChatMessage, Image};

/// Something a service tells every session of a user.
#[derive(Debug, Clone)]
pub enum Event {
    /// The balance changed (a hold, settle, grant or allowance).
    CreditsUpdated {
        /// The balance now.
        credits: i64,
    },
    /// The user's chat message was stored.
    ChatMessage {
        /// Its chat.
        chat_id: String,
        /// The message.
        message: ChatMessage,
    },
    /// A reply started: its id, model and what it holds.
    ChatStarted {
        /// Its chat.
        chat_id: String,
        /// The reply's message id (the generation).
        message_id: String,
        /// The chat model writing it.
        model: String,
        /// Credits held for it.
        held: i64,
        /// The balance after the hold.
        credits: i64,
    },
    /// The next piece of the assistant's reply.
    ChatDelta {
        /// Its chat.
        chat_id: String,
        /// The reply's message id.
        message_id: String,
        /// Its place in the reply: 1, 2, 3…
        seq: u64,
        /// The text.
        delta: String,
    },
    /// The assistant's reply ended (complete, stopped or failed) and is stored and settled.
    ChatDone {
        /// Its chat.
        chat_id: String,
        /// The reply, with its status, model, charge and usage.
        message: ChatMessage,
        /// The balance now.
        credits: i64,
    },
    /// An image was generated, stored and settled.
    ImageCreated {
        /// The image, with its model and charge.
        image: Image,
        /// The balance now.
        credits: i64,
    },
}

/// Where services send [`Event`]s; the WebSocket edge turns them into frames for the user's
/// sessions (and, for a request, marks them as its answers).
pub trait Notify: Send + Sync {
    /// Tells every session of `user_id`.
    fn notify(&self, user_id: &str, event: Event);
}
