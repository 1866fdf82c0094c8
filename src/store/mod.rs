//! The storage interface. Everything above this module sees only the [`Store`] trait (one trait
//! per aggregate) and the domain types of [`model`]; only [`sqlite`] knows SQL and only [`mongo`]
//! knows BSON, each with one file per aggregate. [`ledger`] applies balance changes as inserts of
//! the next ledger entry, without transactions, the same way on both.

pub mod model;
pub mod mongo;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

pub use model::*;

/// Errors of the storage layer. Driver errors are kept for the log, never shown to clients.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A unique index refused the write (MongoDB code 11000, SQLite `UNIQUE` constraint).
    #[error("duplicate key")]
    Duplicate,
    /// The database could not be reached or did not answer in time.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Anything else the driver reported: a bug or corrupt data.
    #[error("storage error: {0}")]
    Internal(String),
}

/// Shorthand for storage results.
pub type StoreResult<T> = Result<T, StoreError>;

/// The shared handle the application holds.
pub type DynStore = Arc<dyn Store>;

/// Everything the server keeps: one trait per aggregate, implemented by both stores and held
/// to one contract suite (`tests/api/store_contract/`), so callers never care which one runs.
#[async_trait]
pub trait Store:
    UserStore + SessionStore + LedgerStore + ChatStore + ImageStore + IdempotencyStore + 'static
{
    /// Cheap round trip used by `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    /// Flushes and closes connections at shutdown.
    async fn close(&self) {}
}

/// Accounts.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Inserts a new user; [`StoreError::Duplicate`] when the email (or key hash) exists.
    async fn insert_user(&self, user: &User) -> StoreResult<()>;
    /// The user with this id.
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>>;
    /// The user with this (already normalised) email.
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    /// The user whose API key hashes to `key_hash`.
    async fn user_by_api_key_hash(&self, key_hash: &str) -> StoreResult<Option<User>>;
    /// Applies `update` (and sets `updated_at`); `None` when there is no such user.
    async fn update_user(
        &self,
        id: &str,
        update: &UserUpdate,
        now: OffsetDateTime,
    ) -> StoreResult<Option<User>>;
    /// Applies `update` (which demotes or deactivates the user) unless the user is the last active
    /// admin, as one step against concurrent removals: two admins removing each other at once
    /// cannot both succeed.
    async fn update_user_keeping_an_admin(
        &self,
        id: &str,
        update: &UserUpdate,
        now: OffsetDateTime,
    ) -> StoreResult<AdminKept>;
    /// Users whose email or names contain `query` (case-insensitive), by creation time,
    /// with the total number of matches.
    async fn list_users(&self, query: Option<&str>, limit: i64, offset: i64)
    -> StoreResult<(Vec<User>, i64)>;
    /// Chats, images and credits spent by a user.
    async fn user_stats(&self, user_id: &str) -> StoreResult<UserStats>;
    /// Accounts created per UTC day since `since`, oldest day first; days without any are left out.
    async fn signups_by_day(&self, since: OffsetDateTime) -> StoreResult<Vec<(time::Date, i64)>>;
}

/// Login sessions and the single-use things that hang off them.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Records a new login session.
    async fn insert_session(&self, session: &Session) -> StoreResult<()>;
    /// The session with this id.
    async fn session(&self, id: &str) -> StoreResult<Option<Session>>;
    /// Revokes one session; false when it did not exist or was already revoked.
    async fn revoke_session(&self, id: &str, now: OffsetDateTime) -> StoreResult<bool>;
    /// Revokes every open session of a user and returns their ids.
    async fn revoke_user_sessions(&self, user_id: &str, now: OffsetDateTime) -> StoreResult<Vec<String>>;
    /// Records a use of a session (a refresh); nothing happens for an unknown id.
    async fn touch_session(&self, id: &str, now: OffsetDateTime) -> StoreResult<()>;
    /// A user's sessions that are not revoked and were last used at or after `used_since`, most
    /// recently used first.
    async fn open_sessions(&self, user_id: &str, used_since: OffsetDateTime) -> StoreResult<Vec<Session>>;

    /// Stores a refresh token.
    async fn insert_refresh_token(&self, token: &RefreshToken) -> StoreResult<()>;
    /// The refresh token with this hash, used or not.
    async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>>;
    /// Marks the token used, atomically, and says whether this was its first use.
    async fn use_refresh_token(&self, token_hash: &str, now: OffsetDateTime) -> StoreResult<RefreshUse>;

    /// Stores a reset token and voids every older one of the same user.
    async fn replace_reset_token(&self, token: &ResetToken) -> StoreResult<()>;
    /// Voids every reset token of a user (after a password change, a reset or a deactivation).
    async fn void_reset_tokens(&self, user_id: &str) -> StoreResult<()>;
    /// Uses a reset token once: the owner's id when it existed, was unused and unexpired.
    async fn consume_reset_token(&self, token_hash: &str, now: OffsetDateTime)
    -> StoreResult<Option<String>>;

    /// Records a single-use credential id (a ws ticket's `jti`); false when it was seen before.
    async fn consume_once(&self, key: &str, expires_at: OffsetDateTime) -> StoreResult<bool>;
}

/// The credit ledger.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// The newest ledger entry of a user.
    async fn last_ledger_entry(&self, user_id: &str) -> StoreResult<Option<LedgerEntry>>;
    /// Inserts an entry; [`StoreError::Duplicate`] when `(user_id, seq)` is taken, which
    /// means another writer changed the balance first.
    async fn insert_ledger_entry(&self, entry: &LedgerEntry) -> StoreResult<()>;
    /// Refreshes the cached balance on the user unless a newer entry already did.
    async fn cache_balance(&self, user_id: &str, seq: i64, balance: i64) -> StoreResult<()>;
    /// Inserts an entry (as [`LedgerStore::insert_ledger_entry`]) and refreshes the cached balance.
    /// The ledger entry is the truth and the cached balance a copy: a failed refresh is repaired
    /// by the next change and never turns a stored entry into an error. A store that can do both
    /// in one write does (the embedded store's group commit).
    async fn append_ledger_entry(&self, entry: &LedgerEntry) -> StoreResult<()> {
        self.insert_ledger_entry(entry).await?;
        if let Err(e) = self.cache_balance(&entry.user_id, entry.seq, entry.balance_after).await {
            tracing::warn!(error = %e, user_id = %entry.user_id, "could not refresh the cached balance");
        }
        Ok(())
    }
    /// Sets the cached balance on the user to `to` if it still is `from` (a compare-and-set, so
    /// a repair never overwrites a change a running server made meanwhile); false when it was
    /// not (any more) `from`, or there is no such user. For `check-ledger --repair`.
    async fn repair_cached_balance(
        &self,
        user_id: &str,
        from: CachedBalance,
        to: CachedBalance,
    ) -> StoreResult<bool>;
    /// A user's entries, newest first, with `seq < before` when given.
    async fn ledger_page(
        &self,
        user_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<LedgerEntry>>;
    /// Credits moved per UTC day since `since` (one user's, or everyone's with `None`), oldest day
    /// first; days without entries are left out.
    async fn ledger_days(&self, user_id: Option<&str>, since: OffsetDateTime) -> StoreResult<Vec<LedgerDay>>;
}

/// Chats and their messages.
#[async_trait]
pub trait ChatStore: Send + Sync {
    /// Stores a new chat; [`StoreError::Duplicate`] when the id exists.
    async fn insert_chat(&self, chat: &Chat) -> StoreResult<()>;
    /// The chat with this id, whoever owns it (callers check the owner).
    async fn chat(&self, id: &str) -> StoreResult<Option<Chat>>;
    /// How many chats a user has.
    async fn chat_count(&self, user_id: &str) -> StoreResult<i64>;
    /// A user's chats, newest `updated_at` first (ties: id descending), `limit` of them, starting
    /// after `before` (the `updated_at` and id of the previous page's last chat) when given.
    async fn chats_page(
        &self,
        user_id: &str,
        before: Option<(OffsetDateTime, &str)>,
        limit: i64,
    ) -> StoreResult<Vec<Chat>>;
    /// Sets a chat's `updated_at` (a new message arrived); false (and nothing changed) when there
    /// is no such chat, which tells a chat turn that its chat was deleted meanwhile.
    async fn touch_chat(&self, id: &str, now: OffsetDateTime) -> StoreResult<bool>;
    /// Sets a chat's title (its place in the list stays); the chat as it is now, `None` if unknown.
    async fn rename_chat(&self, id: &str, title: &str) -> StoreResult<Option<Chat>>;
    /// Deletes a chat and its messages; false when there was no such chat.
    async fn delete_chat(&self, id: &str) -> StoreResult<bool>;

    /// Stores a new message; [`StoreError::Duplicate`] when the id exists.
    async fn insert_message(&self, message: &ChatMessage) -> StoreResult<()>;
    /// Writes how an assistant reply ended (its content, status, charge and usage); false when
    /// there is no such message (its chat was deleted meanwhile).
    async fn finish_message(&self, id: &str, end: &MessageEnd) -> StoreResult<bool>;
    /// Deletes one message (of a chat turn whose chat was deleted meanwhile); false when there was
    /// no such message.
    async fn delete_message(&self, id: &str) -> StoreResult<bool>;
    /// The message with this id, whoever owns it (callers check the owner).
    async fn message(&self, id: &str) -> StoreResult<Option<ChatMessage>>;
    /// The `limit` newest messages of a chat with `id < before` when given, returned oldest first
    /// (the order a history is shown in). Ids are UUIDv7 strings, so id order is creation order.
    async fn messages_page(
        &self,
        chat_id: &str,
        before: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<ChatMessage>>;
}

/// Generated images.
#[async_trait]
pub trait ImageStore: Send + Sync {
    /// Stores a new image with its PNG bytes; [`StoreError::Duplicate`] when the id exists.
    async fn insert_image(&self, image: &Image, png: &[u8]) -> StoreResult<()>;
    /// The image record with this id, without its bytes.
    async fn image(&self, id: &str) -> StoreResult<Option<Image>>;
    /// The PNG bytes of the image with this id.
    async fn image_png(&self, id: &str) -> StoreResult<Option<Vec<u8>>>;
    /// A user's images (records only), newest first (id descending), with `id < before` when given.
    async fn images_of(&self, user_id: &str, before: Option<&str>, limit: i64) -> StoreResult<Vec<Image>>;
    /// Deletes an image record and its PNG bytes; false when there was no such image.
    async fn delete_image(&self, id: &str) -> StoreResult<bool>;
}

/// The `idempotency_key`s of paid requests, so a retry from any session or node is charged once.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Stores `record` unless its user already has a record with its key, atomically: `None`
    /// when this call claimed the key, else the record that holds it.
    async fn claim_idempotency_key(
        &self,
        record: &IdempotencyRecord,
    ) -> StoreResult<Option<IdempotencyRecord>>;
    /// The record of a user's key.
    async fn idempotency_record(&self, user_id: &str, key: &str) -> StoreResult<Option<IdempotencyRecord>>;
    /// Marks the claim `claim_id` of a user's key completed at `now`: its result is stored.
    async fn complete_idempotency_key(
        &self,
        user_id: &str,
        key: &str,
        claim_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Deletes the claim `claim_id` of a user's key (its request failed and was not charged or
    /// was refunded, or the claim expired), so the key may be used afresh; false when that claim was
    /// not there.
    async fn release_idempotency_key(&self, user_id: &str, key: &str, claim_id: &str) -> StoreResult<bool>;
}

/// The current time at the millisecond precision both stores keep, so a record reads back
/// exactly as it was written.
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000).unwrap_or(t)
}
