//! Domain records as storage keeps them: plain Rust types, free of SQL, BSON and HTTP.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What a user may do: everything is `User` unless an admin says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An ordinary account.
    User,
    /// May manage users and watch presence.
    Admin,
}

impl Role {
    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    /// Parses the stored spelling; anything unknown is the least privileged role.
    pub fn parse(s: &str) -> Role {
        if s == "admin" { Role::Admin } else { Role::User }
    }
}

/// An account, with its secrets in hashed form.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// Opaque id (a UUIDv7 string).
    pub id: String,
    /// Normalised to lower case; unique.
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Privileges.
    pub role: Role,
    /// SHA-256 of the API key, hex; unique.
    pub api_key_hash: String,
    /// The first 10 characters of the API key, safe to show.
    pub api_key_prefix: String,
    /// Cached balance: the `balance_after` of the ledger entry numbered `credits_seq`.
    pub credits: i64,
    /// Sequence number of the ledger entry `credits` was read from (0: no entry yet).
    pub credits_seq: i64,
    /// Balance before the first ledger entry.
    pub initial_credits: i64,
    /// Last successful login.
    pub last_login: Option<OffsetDateTime>,
    /// Deactivated users cannot log in or use any credential.
    pub active: bool,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last change to the record.
    pub updated_at: OffsetDateTime,
}

/// The balance cached on a user and the ledger entry it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedBalance {
    /// The entry's `seq` (0: before any entry).
    pub seq: i64,
    /// Its `balance_after` (the starting credits before any entry).
    pub credits: i64,
}

impl User {
    /// The balance cached on this record.
    pub fn cached_balance(&self) -> CachedBalance {
        CachedBalance { seq: self.credits_seq, credits: self.credits }
    }
}

/// A partial update of a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    /// New given name.
    pub first_name: Option<String>,
    /// New family name.
    pub last_name: Option<String>,
    /// New argon2id hash.
    pub password_hash: Option<String>,
    /// New API key hash and prefix.
    pub api_key: Option<(String, String)>,
    /// New role.
    pub role: Option<Role>,
    /// Activate or deactivate.
    pub active: Option<bool>,
    /// Record a login.
    pub last_login: Option<OffsetDateTime>,
}

/// What [`UserStore::update_user_keeping_an_admin`](super::UserStore::update_user_keeping_an_admin)
/// did.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminKept {
    /// The user as updated.
    Updated(Box<User>),
    /// No such user.
    NotFound,
    /// Refused: the user is the only active admin left.
    LastAdmin,
}

/// A login session: what refresh tokens and access tokens hang off.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Opaque id, carried in access tokens as `sid`.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Start of the session.
    pub created_at: OffsetDateTime,
    /// Set once the session is revoked; its tokens then fail.
    pub revoked_at: Option<OffsetDateTime>,
    /// The login and every refresh since: the newest refresh token was issued then, so the
    /// session lives until this plus the refresh tokens' lifetime. Sessions stored before this
    /// field existed read back with their `created_at`.
    pub last_used_at: OffsetDateTime,
    /// The client IP at login, when known.
    pub ip: Option<String>,
    /// The browser's or client's `User-Agent` at login (cut to 512 characters), when sent.
    pub user_agent: Option<String>,
}

/// One refresh token of a session (stored as a hash).
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshToken {
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// Session it belongs to.
    pub session_id: String,
    /// Owner of the session.
    pub user_id: String,
    /// After this the token is refused.
    pub expires_at: OffsetDateTime,
    /// Set when the token was exchanged; a second use is theft.
    pub used_at: Option<OffsetDateTime>,
}

/// What presenting a refresh token found.
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshUse {
    /// No such token.
    Unknown,
    /// The token was unused and is now marked used.
    Fresh(RefreshToken),
    /// The token had been used before: the session must be revoked.
    Reused(RefreshToken),
}

/// A password-reset token (stored as a hash).
#[derive(Debug, Clone, PartialEq)]
pub struct ResetToken {
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// Whose password it resets.
    pub user_id: String,
    /// After this the token is refused.
    pub expires_at: OffsetDateTime,
    /// Issue time.
    pub created_at: OffsetDateTime,
}

/// What a ledger entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceType {
    /// A chat message.
    Chat,
    /// A generated image.
    Image,
    /// Credits given by an admin.
    Grant,
    /// A charge given back because the work failed (before metering).
    Refund,
    /// The periodic top-up of a balance to the allowance.
    Allowance,
}

impl ServiceType {
    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::Chat => "chat",
            ServiceType::Image => "image",
            ServiceType::Grant => "grant",
            ServiceType::Refund => "refund",
            ServiceType::Allowance => "allowance",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<ServiceType> {
        Some(match s {
            "chat" => ServiceType::Chat,
            "image" => ServiceType::Image,
            "grant" => ServiceType::Grant,
            "refund" => ServiceType::Refund,
            "allowance" => ServiceType::Allowance,
            _ => return None,
        })
    }
}

/// What a ledger entry does (docs/API.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A flat charge before the work (entries made before metering).
    Charge,
    /// Credits reserved for a generation, its worst case (negative).
    Hold,
    /// The end of a generation: what its hold did not use, given back (≥ 0), with the usage.
    Settle,
    /// An admin's grant or take-back.
    Grant,
    /// A flat charge given back (entries made before metering).
    Refund,
    /// The periodic top-up to the allowance.
    Allowance,
}

impl EntryKind {
    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Charge => "charge",
            EntryKind::Hold => "hold",
            EntryKind::Settle => "settle",
            EntryKind::Grant => "grant",
            EntryKind::Refund => "refund",
            EntryKind::Allowance => "allowance",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<EntryKind> {
        Some(match s {
            "charge" => EntryKind::Charge,
            "hold" => EntryKind::Hold,
            "settle" => EntryKind::Settle,
            "grant" => EntryKind::Grant,
            "refund" => EntryKind::Refund,
            "allowance" => EntryKind::Allowance,
            _ => return None,
        })
    }

    /// The kind of an entry stored before kinds were (its service tells it).
    pub fn of_legacy(service: ServiceType) -> EntryKind {
        match service {
            ServiceType::Chat | ServiceType::Image => EntryKind::Charge,
            ServiceType::Grant => EntryKind::Grant,
            ServiceType::Refund => EntryKind::Refund,
            ServiceType::Allowance => EntryKind::Allowance,
        }
    }
}

/// Tokens a chat turn used: the upstream's own figures, or the server's count (`estimated`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenUsage {
    /// Tokens read.
    pub input_tokens: u64,
    /// Tokens written.
    pub output_tokens: u64,
    /// Whether the server counted them because the upstream reported none.
    pub estimated: bool,
}

/// One change of a user's balance. Entries of a user are numbered 1, 2, 3… without gaps;
/// the unique `(user_id, seq)` index makes each insert the atomic step of a balance change.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEntry {
    /// Opaque id.
    pub id: String,
    /// Whose balance.
    pub user_id: String,
    /// Position in the user's ledger, from 1.
    pub seq: i64,
    /// What it was for.
    pub service_type: ServiceType,
    /// Negative for use, positive for grants and refunds.
    pub amount: i64,
    /// Balance after this entry.
    pub balance_after: i64,
    /// What it refers to (a message or image id, a refunded entry, a grant reason).
    pub reference: Option<String>,
    /// The admin who made a grant.
    pub actor_id: Option<String>,
    /// For a refund: the service whose charge it gives back.
    pub refund_of: Option<ServiceType>,
    /// When it happened.
    pub created_at: OffsetDateTime,
    /// What it does.
    pub kind: EntryKind,
    /// For a hold or settle: the model of the generation.
    pub model: Option<String>,
    /// For a settle: the tokens the generation used (chat) or none (image).
    pub usage: Option<TokenUsage>,
    /// Credits held by the user's running generations after this entry: each hold adds what it
    /// reserved, each settle takes its hold away. `user.credits_held` is the newest entry's.
    pub held_after: i64,
    /// Credits spent on this entry's UTC day after it, holds counted (what the daily limit
    /// counts); `None` for entries stored before it was kept.
    pub day_spent_after: Option<i64>,
}

impl LedgerEntry {
    /// What this entry adds to its day's spending: the use of paid work (holds and flat charges),
    /// less what settles and refunds give back. Grants and allowances spend nothing.
    pub fn spend(&self) -> i64 {
        spend_of(self.service_type, self.amount)
    }
}

/// What an entry of `service` moving `amount` adds to its day's spending (see
/// [`LedgerEntry::spend`]).
pub fn spend_of(service: ServiceType, amount: i64) -> i64 {
    match service {
        ServiceType::Chat | ServiceType::Image | ServiceType::Refund => -amount,
        ServiceType::Grant | ServiceType::Allowance => 0,
    }
}

/// Credits a user has spent, per paid service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreditsUsed {
    /// Spent on chat messages, net of refunds.
    pub chat: i64,
    /// Spent on images, net of refunds.
    pub image: i64,
}

/// Counts shown on a profile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserStats {
    /// Chats the user created.
    pub total_chats: i64,
    /// Images the user generated.
    pub total_images: i64,
    /// Credits spent.
    pub credits_used: CreditsUsed,
}

/// Credits moved on one UTC day, summed per kind of entry, as stored (signed like the entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerDay {
    /// The UTC day.
    pub date: time::Date,
    /// Sum of `chat` entries (negative: credits spent).
    pub chat: i64,
    /// Sum of `image` entries (negative: credits spent).
    pub image: i64,
    /// Sum of `grant` entries (negative for take-backs).
    pub grant: i64,
    /// Sum of refunds of chat charges (positive).
    pub refund_chat: i64,
    /// Sum of refunds of image charges (positive).
    pub refund_image: i64,
    /// Sum of allowance top-ups (positive).
    pub allowance: i64,
}

impl LedgerDay {
    /// A day with nothing on it.
    pub fn empty(date: time::Date) -> LedgerDay {
        LedgerDay { date, chat: 0, image: 0, grant: 0, refund_chat: 0, refund_image: 0, allowance: 0 }
    }

    /// Adds one entry's amount to the sum of its kind.
    pub fn add(&mut self, service: ServiceType, refund_of: Option<ServiceType>, amount: i64) {
        match (service, refund_of) {
            (ServiceType::Chat, _) => self.chat += amount,
            (ServiceType::Image, _) => self.image += amount,
            (ServiceType::Grant, _) => self.grant += amount,
            (ServiceType::Allowance, _) => self.allowance += amount,
            (ServiceType::Refund, Some(ServiceType::Image)) => self.refund_image += amount,
            // Refunds are only ever of chat or image charges; one without a service counts as chat's.
            (ServiceType::Refund, _) => self.refund_chat += amount,
        }
    }
}

/// The UTC day of a moment.
pub fn utc_day(t: OffsetDateTime) -> time::Date {
    t.to_offset(time::UtcOffset::UTC).date()
}

/// Folds `(time, service, refund_of, amount)` entries into days, oldest first (for the stores that
/// sum in Rust).
pub fn fold_ledger_days(
    entries: impl IntoIterator<Item = (OffsetDateTime, ServiceType, Option<ServiceType>, i64)>,
) -> Vec<LedgerDay> {
    let mut days = std::collections::BTreeMap::<time::Date, LedgerDay>::new();
    for (at, service, refund_of, amount) in entries {
        let date = utc_day(at);
        days.entry(date).or_insert_with(|| LedgerDay::empty(date)).add(service, refund_of, amount);
    }
    days.into_values().collect()
}

/// A conversation with the assistant, owned by one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    /// Opaque id (a UUIDv7 string).
    pub id: String,
    /// Owner; nobody else may read it.
    pub user_id: String,
    /// Shown in the chat list.
    pub title: String,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Time of the last message, so the busiest chats list first.
    pub updated_at: OffsetDateTime,
}

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageRole {
    /// The human.
    User,
    /// The assistant's reply.
    Assistant,
}

impl MessageRole {
    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageRole::User => "user",
            MessageRole::Assistant => "assistant",
        }
    }

    /// Parses the stored spelling; `None` for anything else, which only corrupt data holds.
    pub fn parse(s: &str) -> Option<MessageRole> {
        match s {
            "user" => Some(MessageRole::User),
            "assistant" => Some(MessageRole::Assistant),
            _ => None,
        }
    }
}

/// Where an assistant message stands (a user's message is always `Complete`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Its reply is still being written.
    Streaming,
    /// Written to its end.
    Complete,
    /// Stopped by its user (`chat.stop`); charged for what was written.
    Stopped,
    /// The upstream failed; charged nothing.
    Failed,
    /// Its node stopped before it ended; charged nothing.
    Interrupted,
}

impl MessageStatus {
    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Streaming => "streaming",
            MessageStatus::Complete => "complete",
            MessageStatus::Stopped => "stopped",
            MessageStatus::Failed => "failed",
            MessageStatus::Interrupted => "interrupted",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<MessageStatus> {
        Some(match s {
            "streaming" => MessageStatus::Streaming,
            "complete" => MessageStatus::Complete,
            "stopped" => MessageStatus::Stopped,
            "failed" => MessageStatus::Failed,
            "interrupted" => MessageStatus::Interrupted,
            _ => return None,
        })
    }
}

/// How a stored assistant reply ended: what [`ChatStore::finish_message`](super::ChatStore::finish_message) writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEnd {
    /// The whole reply (or what was written before it stopped).
    pub content: String,
    /// How it ended.
    pub status: MessageStatus,
    /// Credits it was charged.
    pub charged: i64,
    /// The tokens it used.
    pub usage: Option<TokenUsage>,
}

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Opaque id (a UUIDv7 string): ids sort in creation order, which paging relies on.
    pub id: String,
    /// The chat it belongs to.
    pub chat_id: String,
    /// Owner of the chat.
    pub user_id: String,
    /// Who wrote it.
    pub role: MessageRole,
    /// The text.
    pub content: String,
    /// When it was written.
    pub created_at: OffsetDateTime,
    /// Where it stands (`Complete` for a user's message and for replies stored before metering).
    pub status: MessageStatus,
    /// An assistant reply's model.
    pub model: Option<String>,
    /// Credits an ended assistant reply was charged.
    pub charged: Option<i64>,
    /// The tokens an ended assistant reply used.
    pub usage: Option<TokenUsage>,
}

impl ChatMessage {
    /// A message of `role` in `chat`, complete, with no model or charge (a user's message).
    pub fn new(id: String, chat: &Chat, role: MessageRole, content: String) -> ChatMessage {
        ChatMessage {
            id,
            chat_id: chat.id.clone(),
            user_id: chat.user_id.clone(),
            role,
            content,
            created_at: crate::store::now(),
            status: MessageStatus::Complete,
            model: None,
            charged: None,
            usage: None,
        }
    }
}

/// A generated image's record. The PNG bytes are stored with it but read separately
/// ([`Store::image_png`](super::Store::image_png)), so listing images never loads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Opaque id (a UUIDv7 string): ids sort in creation order, which paging relies on.
    pub id: String,
    /// Who generated it.
    pub user_id: String,
    /// The prompt it was drawn from.
    pub prompt: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// When it was generated.
    pub created_at: OffsetDateTime,
    /// The image model that made it (`None` for images made before models).
    pub model: Option<String>,
    /// Credits it was charged (`None` for images made before metering).
    pub charged: Option<i64>,
}

/// What a paid request with an `idempotency_key` produces: its ids are chosen before the work
/// starts and kept with the key, so a retry finds the result once it is stored (also after a
/// crash of the node that ran it) and is answered with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotentOutcome {
    /// A chat turn: the chat and the assistant's stored reply.
    Chat {
        /// The chat.
        chat_id: String,
        /// The reply's message id.
        reply_id: String,
    },
    /// An image: the stored image's id.
    Image {
        /// The image.
        image_id: String,
    },
}

/// A claimed `idempotency_key` of a user (docs/API.md §5): who claimed it with which request, and
/// where its result will be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyRecord {
    /// Whose key.
    pub user_id: String,
    /// The client's key (1 to 64 characters).
    pub key: String,
    /// This claim's own id, so that only its claimer completes or releases it.
    pub claim_id: String,
    /// SHA-256 of the request's kind and fields: the same key with another body is refused.
    pub fingerprint: String,
    /// Where the result is stored once the work is done.
    pub outcome: IdempotentOutcome,
    /// When the key was claimed; after 24 hours it may be used afresh.
    pub created_at: OffsetDateTime,
    /// When the result was stored: from then on a missing result was deleted, not late.
    pub completed_at: Option<OffsetDateTime>,
}
