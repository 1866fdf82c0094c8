//! Conversation: chats and their messages, a chat turn with the assistant, and image generation.
//! A paid request is checked in this order: its fields, ownership (`NotFound`), the paid-message
//! limit (`RateLimited`, never charged), the charge (`InsufficientCredits`), then the work; work
//! that fails is refunded. Events for the user's sessions go through [`Notify`]. Images are in
//! [`images`].

mod images;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

pub use self::images::ImageRequest;
use time::OffsetDateTime;

use super::credits::{CreditError, CreditService};
use super::idempotency::{self, Claim, ClaimGuard, Idempotency, IdempotencyError};
use super::paging::{Page, PageError, PageLimit};
use super::text::ChatTitle;
use super::{Event, Notify};
use crate::assistant::{Assistant, ChatTurn, TurnRole};
use crate::images::ImageGenerator;
use crate::seams::limiter::Limiter;
use crate::store::{Chat, ChatMessage, DynStore, IdempotentOutcome, MessageRole, ServiceType, StoreError};

/// Longest chat message, characters.
const MAX_CONTENT_CHARS: usize = 16_000;
/// The title of a chat created without one.
const DEFAULT_TITLE: &str = "New chat";

/// Why a request was refused or failed, as the client will be told.
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    /// A field is missing or wrong.
    #[error("{0}")]
    Invalid(String),
    /// No such chat or image, or not the user's.
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
    /// The balance is below the price.
    #[error("Not enough credits: this costs {price} and the balance is {balance}")]
    InsufficientCredits {
        /// The price.
        price: i64,
        /// The balance.
        balance: i64,
    },
    /// Storage or an upstream service failed; any charge was refunded.
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
            CreditError::Insufficient { balance } => ConversationError::Internal(format!(
                "an insufficient balance ({balance}) reported outside a charge"
            )),
        }
    }
}

/// Chats, chat turns and images.
pub struct ConversationService {
    store: DynStore,
    credits: Arc<CreditService>,
    assistant: Arc<dyn Assistant>,
    images: Arc<dyn ImageGenerator>,
    paid_limit: Arc<dyn Limiter>,
    max_chats: i64,
    idempotency: Idempotency,
}

impl ConversationService {
    /// The service; `paid_limit` counts paid requests per user, `max_chats` caps chats per user.
    pub fn new(
        store: DynStore,
        credits: Arc<CreditService>,
        assistant: Arc<dyn Assistant>,
        images: Arc<dyn ImageGenerator>,
        paid_limit: Arc<dyn Limiter>,
        max_chats: i64,
    ) -> ConversationService {
        let idempotency = Idempotency::new(store.clone());
        ConversationService { store, credits, assistant, images, paid_limit, max_chats, idempotency }
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

    /// The newest `limit` messages of the user's chat (before message `before`), oldest first.
    pub async fn history(
        &self,
        user_id: &str,
        chat_id: &str,
        before: Option<&str>,
        limit: PageLimit,
    ) -> Result<Vec<ChatMessage>, ConversationError> {
        self.own_chat(user_id, chat_id).await?;
        Ok(self.store.messages_page(chat_id, before, limit.get()).await?)
    }

    /// One chat turn: charges the price of a message, stores the user's message, streams the
    /// assistant's reply as deltas and stores it; `ChatDone` follows once both are stored. A reply
    /// that fails before it is stored is refunded. With an `idempotency_key` that the user's
    /// earlier request holds, nothing is charged or done: the answer is that request's `ChatDone`
    /// (returned, for the asking session alone), once its reply is stored.
    pub async fn send(
        &self,
        user_id: &str,
        chat_id: &str,
        content: String,
        idempotency_key: Option<&str>,
        notify: &dyn Notify,
    ) -> Result<Option<Event>, ConversationError> {
        if content.trim().is_empty() || content.chars().count() > MAX_CONTENT_CHARS {
            return Err(ConversationError::Invalid("content must be 1 to 16000 characters".into()));
        }
        self.own_chat(user_id, chat_id).await?;
        // Both ids are chosen now: the reply's is where a retry will find the result.
        let (message_id, reply_id) = (new_id(), new_id());
        let key = idempotency_key.map(|key| {
            let fingerprint = idempotency::fingerprint("chat.send", &[chat_id, &content]);
            let outcome = IdempotentOutcome::Chat { chat_id: chat_id.to_owned(), reply_id: reply_id.clone() };
            (key, fingerprint, outcome)
        });
        let (charged, claim) = match self.begin_paid(user_id, ServiceType::Chat, &message_id, key).await? {
            Begun::Replay(answer) => return Ok(Some(answer)),
            Begun::Charged { balance, claim } => (balance, claim),
        };
        let turn = Turn { user_id, chat_id, message_id: &message_id, reply_id: &reply_id };
        match self.converse(turn, content, charged, notify).await {
            Ok(()) => {
                if let Some(guard) = claim {
                    self.idempotency.complete(guard).await;
                }
                Ok(None)
            }
            Err(e) => {
                self.undo_paid(user_id, ServiceType::Chat, &message_id, claim).await;
                tracing::warn!(error = %e, "chat reply failed; charge refunded");
                Err(match e {
                    // The chat was deleted while its reply was streaming.
                    ConversationError::NotFound => ConversationError::NotFound,
                    _ => ConversationError::Unavailable(
                        "The assistant could not answer; your credits were refunded",
                    ),
                })
            }
        }
    }

    /// The event that answers a retry: the stored result of the key's first request, with the
    /// balance now.
    async fn replay(&self, user_id: &str, outcome: IdempotentOutcome) -> Result<Event, ConversationError> {
        let credits = self.credits.balance(user_id).await?;
        match outcome {
            IdempotentOutcome::Chat { chat_id, reply_id } => {
                let message = self.store.message(&reply_id).await?.ok_or(ConversationError::NotFound)?;
                Ok(Event::ChatDone { chat_id, message, credits })
            }
            IdempotentOutcome::Image { image_id } => {
                let image = self.store.image(&image_id).await?.ok_or(ConversationError::NotFound)?;
                Ok(Event::ImageCreated { image, credits })
            }
        }
    }

    /// Starts a paid request: claims its idempotency key (`key`: the key, the request's
    /// fingerprint and where its result will be), then charges `service` for `reference`. A key
    /// already answered gives the stored answer instead; a refused charge releases the claim.
    async fn begin_paid(
        &self,
        user_id: &str,
        service: ServiceType,
        reference: &str,
        key: Option<(&str, String, IdempotentOutcome)>,
    ) -> Result<Begun, ConversationError> {
        let claim = match key {
            Some((key, fingerprint, outcome)) => {
                match self.idempotency.claim(user_id, key, fingerprint, outcome).await? {
                    Claim::Replay(outcome) => return Ok(Begun::Replay(self.replay(user_id, outcome).await?)),
                    Claim::Run(guard) => Some(guard),
                }
            }
            None => None,
        };
        match self.charge(user_id, service, reference).await {
            Ok(balance) => Ok(Begun::Charged { balance, claim }),
            Err(e) => {
                if let Some(guard) = claim {
                    self.idempotency.release(guard).await;
                }
                Err(e)
            }
        }
    }

    /// Undoes a paid request whose work failed before its result was stored: refunds the charge
    /// and releases the key, so a retry runs afresh.
    async fn undo_paid(
        &self,
        user_id: &str,
        service: ServiceType,
        reference: &str,
        claim: Option<ClaimGuard>,
    ) {
        self.credits.refund(user_id, service, reference).await;
        if let Some(guard) = claim {
            self.idempotency.release(guard).await;
        }
    }

    /// The paid-message limit, then the charge; answers the balance after the charge.
    async fn charge(
        &self,
        user_id: &str,
        service: ServiceType,
        reference: &str,
    ) -> Result<i64, ConversationError> {
        let decision = self.paid_limit.check(user_id).await;
        if !decision.allowed {
            crate::metrics::record_rate_limited("ws");
            return Err(ConversationError::RateLimited { retry_after: decision.retry_after });
        }
        match self.credits.charge(user_id, service, reference).await {
            Ok(balance) => Ok(balance),
            Err(CreditError::Insufficient { balance }) => {
                Err(ConversationError::InsufficientCredits { price: self.credits.price(service), balance })
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Stores the user's message, streams the assistant's reply, stores it, and tells the user.
    async fn converse(
        &self,
        turn: Turn<'_>,
        content: String,
        charged_balance: i64,
        notify: &dyn Notify,
    ) -> Result<(), ConversationError> {
        let Turn { user_id, chat_id, message_id, reply_id } = turn;
        let user_message = ChatMessage {
            id: message_id.to_owned(),
            chat_id: chat_id.to_owned(),
            user_id: user_id.to_owned(),
            role: MessageRole::User,
            content,
            created_at: crate::store::now(),
        };
        self.store.insert_message(&user_message).await?;
        // An assistant that reads only the new message is given it without reading the chat.
        let history = match self.assistant.context_messages() {
            ..=1 => vec![user_message.clone()],
            context => self.store.messages_page(chat_id, None, context).await?,
        };
        notify.notify(user_id, Event::ChatMessage { chat_id: chat_id.to_owned(), message: user_message });
        let turns = history
            .into_iter()
            .map(|m| ChatTurn {
                role: if m.role == MessageRole::User { TurnRole::User } else { TurnRole::Assistant },
                content: m.content,
            })
            .collect();
        let reply_id = reply_id.to_owned();
        let assistant_failed = |e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, "assistant failed");
            ConversationError::Unavailable("assistant failed")
        };
        let mut deltas = self.assistant.reply(turns).await.map_err(|e| assistant_failed(&e))?;
        let mut reply = String::new();
        while let Some(delta) = deltas.next().await {
            let delta = delta.map_err(|e| assistant_failed(&e))?;
            reply.push_str(&delta);
            let event = Event::ChatDelta { chat_id: chat_id.to_owned(), message_id: reply_id.clone(), delta };
            notify.notify(user_id, event);
        }
        let now = crate::store::now();
        let assistant_message = ChatMessage {
            id: reply_id,
            chat_id: chat_id.to_owned(),
            user_id: user_id.to_owned(),
            role: MessageRole::Assistant,
            content: reply,
            created_at: now,
        };
        self.store.insert_message(&assistant_message).await?;
        // The chat is touched after the reply is stored: if it was deleted meanwhile, either its
        // deletion came after the reply and took it along, or the touch finds no chat and the
        // turn takes its messages back, so no message outlives its chat. A failed touch only
        // costs the chat its place in the list.
        match self.store.touch_chat(chat_id, now).await {
            Ok(true) => {}
            Ok(false) => {
                for id in [message_id, assistant_message.id.as_str()] {
                    self.store.delete_message(id).await?;
                }
                return Err(ConversationError::NotFound);
            }
            Err(e) => tracing::warn!(error = %e, "could not touch the chat"),
        }
        // Other charges of the user may have landed meanwhile, so the balance is read again; if
        // that read fails, the balance right after this message's charge is still true enough.
        let credits = self.credits.balance(user_id).await.unwrap_or(charged_balance);
        notify.notify(
            user_id,
            Event::ChatDone { chat_id: chat_id.to_owned(), message: assistant_message, credits },
        );
        Ok(())
    }
}

/// A paid request once begun: answered from its key's stored result, or charged (with the
/// key's claim to release if the work fails).
enum Begun {
    Replay(Event),
    Charged { balance: i64, claim: Option<ClaimGuard> },
}

/// The ids of one chat turn.
struct Turn<'a> {
    user_id: &'a str,
    chat_id: &'a str,
    /// The user's message (and the charge's reference).
    message_id: &'a str,
    /// The assistant's reply.
    reply_id: &'a str,
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
