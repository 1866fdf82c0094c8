//! Conversation: chats and their messages, chat turns with the assistant and image generation,
//! each a metered generation (docs/API.md §8). A paid request is checked in this order: its
//! fields and model (`Invalid`, `Forbidden`), ownership (`NotFound`), its `idempotency_key` (a
//! retry is answered with the first request's result), the paid-message limit (`RateLimited`),
//! then the hold of its worst case (`InsufficientCredits`, `DailyLimit`); only then does the
//! upstream start. Whatever ends a generation (complete, stopped, failed) settles its hold once.
//! Events for the user's sessions go through [`Notify`].
//!
//! - [`turn`]: a chat turn, and stopping one.
//! - [`images`]: images: generating one, the gallery, deleting one.
//! - [`generations`]: the generations running on this node.
//! - [`models`]: the catalogue and the assistant or generator of each model.

pub mod generations;
mod images;
pub mod models;
mod paid;
mod turn;

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

pub use self::generations::{GenerationKind, Generations, RunningGeneration};
pub use self::images::ImageRequest;
pub use self::models::Models;
pub use self::turn::ChatRequest;
use super::credits::{CreditError, CreditService};
use super::idempotency::{Idempotency, IdempotencyError};
use super::paging::{Page, PageError, PageLimit};
use super::text::ChatTitle;
use crate::catalogue::ModelRefused;
use crate::seams::limiter::Limiter;
use crate::seams::stops::StopRelay;
use crate::store::{Chat, ChatMessage, DynStore, Role, StoreError};

/// The title of a chat created without one.
const DEFAULT_TITLE: &str = "New chat";

/// Who asks: the user and their role (which models they may use).
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The user.
    pub user_id: &'a str,
    /// Their role.
    pub role: Role,
}

/// Why a request was refused or failed, as the client will be told.
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    /// A field is missing or wrong, or names a model or size the catalogue lacks.
    #[error("{0}")]
    Invalid(String),
    /// A model the user's role may not use.
    #[error("{0}")]
    Forbidden(String),
    /// No such chat, message or image, or not the user's.
    #[error("Not found")]
    NotFound,
    /// A per-user cap on stored things is reached.
    #[error("{0}")]
    QuotaExceeded(String),
    /// Too many paid messages.
    #[error("Too many paid messages; retry in {} ms", .retry_after.as_millis())]
    RateLimited {
        /// When a retry may succeed.
        retry_after: Duration,
    },
    /// The balance is below what the request must hold.
    #[error("Not enough credits: this needs {needed} and the balance is {balance}")]
    InsufficientCredits {
        /// The hold.
        needed: i64,
        /// The balance.
        balance: i64,
    },
    /// The hold would take the day's spending past the daily limit.
    #[error("The daily limit of {limit} credits is reached ({spent} spent today)")]
    DailyLimit {
        /// The limit.
        limit: i64,
        /// Spent today, holds counted.
        spent: i64,
        /// When the day ends (the next midnight UTC).
        resets_at: OffsetDateTime,
    },
    /// Storage or an upstream service failed; nothing was charged.
    #[error("{0}")]
    Unavailable(&'static str),
    /// A bug; the cause is logged where the error is answered.
    #[error("Internal error")]
    Internal(String),
}

impl From<StoreError> for ConversationError {
    fn from(e: StoreError) -> ConversationError {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "storage unavailable");
                ConversationError::Unavailable("Storage is unavailable; try again")
            }
            other => ConversationError::Internal(other.to_string()),
        }
    }
}

impl From<IdempotencyError> for ConversationError {
    fn from(e: IdempotencyError) -> ConversationError {
        match e {
            IdempotencyError::Invalid(problem) => ConversationError::Invalid(problem.into()),
            IdempotencyError::StillRunning => ConversationError::Unavailable(
                "The first request with this idempotency_key is still running; try again",
            ),
            IdempotencyError::ResultDeleted => ConversationError::NotFound,
            IdempotencyError::Store(e) => e.into(),
        }
    }
}

impl From<CreditError> for ConversationError {
    fn from(e: CreditError) -> ConversationError {
        match e {
            CreditError::Store(e) => e.into(),
            CreditError::UnknownUser => ConversationError::NotFound,
            CreditError::Insufficient { balance, needed } => {
                ConversationError::InsufficientCredits { needed, balance }
            }
            CreditError::DailyLimit { limit, spent } => {
                let tomorrow =
                    crate::store::utc_day(crate::store::now()).next_day().unwrap_or(time::Date::MAX);
                ConversationError::DailyLimit { limit, spent, resets_at: tomorrow.midnight().assume_utc() }
            }
        }
    }
}

impl From<ModelRefused> for ConversationError {
    fn from(e: ModelRefused) -> ConversationError {
        match e {
            ModelRefused::Unknown { .. } => ConversationError::Invalid(e.to_string()),
            ModelRefused::Forbidden { .. } => ConversationError::Forbidden(e.to_string()),
        }
    }
}

/// Chats, chat turns and images.
pub struct ConversationService {
    store: DynStore,
    credits: Arc<CreditService>,
    models: Models,
    paid_limit: Arc<dyn Limiter>,
    max_chats: i64,
    idempotency: Idempotency,
    generations: Generations,
    stops: Arc<dyn StopRelay>,
}

impl ConversationService {
    /// The service over the models of `models`; `paid_limit` counts paid requests per user,
    /// `max_chats` caps chats per user; `generations` is this node's registry of running ones and
    /// `stops` relays a stop to the node running a generation.
    pub fn new(
        store: DynStore,
        credits: Arc<CreditService>,
        models: Models,
        paid_limit: Arc<dyn Limiter>,
        max_chats: i64,
        generations: Generations,
        stops: Arc<dyn StopRelay>,
    ) -> ConversationService {
        let idempotency = Idempotency::new(store.clone());
        ConversationService { store, credits, models, paid_limit, max_chats, idempotency, generations, stops }
    }

    /// The models and their prices.
    pub fn catalogue(&self) -> &crate::catalogue::Catalogue {
        self.models.catalogue()
    }

    /// The generations running on this node.
    pub fn generations(&self) -> &Generations {
        &self.generations
    }

    /// Starts a chat ("New chat" without a title).
    pub async fn create_chat(
        &self,
        user_id: &str,
        title: Option<ChatTitle>,
    ) -> Result<Chat, ConversationError> {
        let title = title.map_or_else(|| DEFAULT_TITLE.to_owned(), ChatTitle::into_string);
        if self.store.chat_count(user_id).await? >= self.max_chats {
            return Err(ConversationError::QuotaExceeded(format!(
                "You have reached the limit of {} chats; delete one to start another",
                self.max_chats
            )));
        }
        let now = crate::store::now();
        let chat =
            Chat { id: new_id(), user_id: user_id.to_owned(), title, created_at: now, updated_at: now };
        self.store.insert_chat(&chat).await?;
        Ok(chat)
    }

    /// A page of the user's chats, most recently active first; `before` is the previous page's
    /// `next_before`.
    pub async fn chats(
        &self,
        user_id: &str,
        before: Option<&str>,
        limit: PageLimit,
    ) -> Result<Page<Chat>, PageError> {
        let before = before.map(ChatCursor::parse).transpose()?;
        let before = before.as_ref().map(|c| (c.updated_at, c.id.as_str()));
        let chats = self.store.chats_page(user_id, before, limit.get()).await?;
        Ok(Page::of(chats, limit, |last| Some(ChatCursor::of(last))))
    }

    /// The user's chat `chat_id`, or `NotFound` (also for other users' chats).
    pub async fn own_chat(&self, user_id: &str, chat_id: &str) -> Result<Chat, ConversationError> {
        match self.store.chat(chat_id).await? {
            Some(chat) if chat.user_id == user_id => Ok(chat),
            _ => Err(ConversationError::NotFound),
        }
    }

    /// Renames the user's chat; its
    /// place in the list stays, as no message arrived.
    pub async fn rename_chat(
        &self,
        user_id: &str,
        chat_id: &str,
        title: &ChatTitle,
    ) -> Result<Chat, ConversationError> {
        let title = title.as_str();
        self.own_chat(user_id, chat_id).await?;
        self.store.rename_chat(chat_id, title).await?.ok_or(ConversationError::NotFound)
    }

    /// Deletes the user's chat and its messages, which frees a place under the chat cap.
    pub async fn delete_chat(&self, user_id: &str, chat_id: &str) -> Result<(), ConversationError> {
        self.own_chat(user_id, chat_id).await?;
        if !self.store.delete_chat(chat_id).await? {
            // Deleted by another request a moment ago.
            return Err(ConversationError::NotFound);
        }
        Ok(())
    }

    /// The newest `limit` messages of the user's chat (before message `before`), oldest first. A
    /// reply still being written here shows the text so far and its last `seq`.
    pub async fn history(
        &self,
        user_id: &str,
        chat_id: &str,
        before: Option<&str>,
        limit: PageLimit,
    ) -> Result<Vec<(ChatMessage, Option<u64>)>, ConversationError> {
        self.own_chat(user_id, chat_id).await?;
        let messages = self.store.messages_page(chat_id, before, limit.get()).await?;
        Ok(messages
            .into_iter()
            .map(|mut message| match self.generations.get(user_id, &message.id) {
                Some(running) => {
                    message.content = running.content;
                    (message, Some(running.seq))
                }
                None => (message, None),
            })
            .collect())
    }
}

/// A new record id: a UUIDv7, so ids sort in creation order.
fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Where a page of chats ends: the last chat's `updated_at` (milliseconds) and id, written
/// `<millis>.<id>`. Chats are ordered by both, so a page never repeats or skips a chat that did
/// not move meanwhile.
struct ChatCursor {
    updated_at: OffsetDateTime,
    id: String,
}

impl ChatCursor {
    fn of(chat: &Chat) -> String {
        format!("{}.{}", chat.updated_at.unix_timestamp_nanos() / 1_000_000, chat.id)
    }

    /// Reads `<millis>.<id>`: 1 to 14 digits (every such time is a valid date) and 1 to 64
    /// characters of a UUID's alphabet, the form the API document gives, so that every
    /// cursor of that form reads a page and nothing else passes for one.
    fn parse(cursor: &str) -> Result<ChatCursor, PageError> {
        let (millis, id) = cursor.split_once('.').ok_or(PageError::BadCursor)?;
        let millis_ok = (1..=14).contains(&millis.len()) && millis.bytes().all(|b| b.is_ascii_digit());
        let id_ok = (1..=64).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-');
        if !(millis_ok && id_ok) {
            return Err(PageError::BadCursor);
        }
        let millis: i64 = millis.parse().map_err(|_| PageError::BadCursor)?;
        let updated_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
            .map_err(|_| PageError::BadCursor)?;
        Ok(ChatCursor { updated_at, id: id.to_owned() })
    }
}
