//! The MongoDB implementation of [`Store`]: explicit BSON documents, no transactions, TTL
//! indexes, `$lookup` or change streams, so that it also runs on FerretDB.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, DateTime, Document, doc};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, Cursor, Database, IndexModel};
use time::OffsetDateTime;

use super::{
    Chat, ChatMessage, CreditsUsed, Image, LedgerEntry, MessageRole, RefreshToken, RefreshUse, ResetToken,
    Role, ServiceType, Session, Store, StoreError, StoreResult, User, UserStats, UserUpdate,
};

/// How long to wait for a server (selection and TCP connect) before reporting it unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The server's duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;

/// Server error codes that mean "not reachable right now" rather than a bug: host
/// unreachable/not found, time limit exceeded, network timeout, shutdown in progress,
/// primary stepped down, not writable primary, interrupted at shutdown or by a state change,
/// not primary (no secondary ok), node is recovering.
const UNAVAILABLE_CODES: [i32; 12] = [6, 7, 50, 89, 91, 189, 9001, 10107, 11600, 11602, 13435, 13436];

const USERS: &str = "users";
const SESSIONS: &str = "sessions";
const REFRESH_TOKENS: &str = "refresh_tokens";
const RESET_TOKENS: &str = "reset_tokens";
/// The one usable reset token of each user, `{_id: <user id>, token_hash}`; see
/// `replace_reset_token`.
const RESET_CURRENT: &str = "reset_current";
const ONCE_KEYS: &str = "once_keys";
const LEDGER: &str = "ledger";
const CHATS: &str = "chats";
const MESSAGES: &str = "messages";
const IMAGES: &str = "images";
/// Single-use markers (`_id` = "refresh:<token _id>", "reset:<token _id>" or
/// "revoke:<session id>").
const CLAIMS: &str = "claims";

/// How often `cache_balance` re-checks the cached balance against the ledger.
const CACHE_ATTEMPTS: usize = 8;

/// The indexes created at start: collection, key fields (all ascending), unique.
const INDEXES: &[(&str, &[&str], bool)] = &[
    (USERS, &["email"], true),
    (USERS, &["api_key_hash"], true),
    (REFRESH_TOKENS, &["token_hash"], true),
    (REFRESH_TOKENS, &["session_id"], false),
    (SESSIONS, &["user_id"], false),
    (RESET_TOKENS, &["token_hash"], true),
    (RESET_TOKENS, &["user_id"], false),
    (ONCE_KEYS, &["key"], true),
    (LEDGER, &["user_id", "seq"], true),
    // The paging queries: `chats_page`, `messages_page` and `images_of` (and `user_stats`'s
    // counts, by their first field).
    (CHATS, &["user_id", "updated_at", "_id"], false),
    (MESSAGES, &["chat_id", "_id"], false),
    (IMAGES, &["user_id", "_id"], false),
];

/// A [`Store`] backed by a MongoDB-compatible server.
#[derive(Debug, Clone)]
pub struct MongoStore {
    db: Database,
    client: Client,
    /// Serialises this process's writes to each user document; see [`UserLocks`].
    user_locks: Arc<UserLocks>,
}

/// One async lock per user id with a write in flight, so that this process never runs two
/// writes to the same user document at once.
///
/// FerretDB 1.x applies an update by reading the whole document, changing it and writing the
/// whole document back, so two concurrent `$set`s of different fields of one user (a password
/// change and a login's `last_login`, or `cache_balance`) can undo each other. Every write to
/// a user document (`update_user`, `cache_balance` with its repair loop) runs under this lock.
///
/// Across several server processes on FerretDB the race remains: the lock is per process, and
/// FerretDB offers no atomic partial update to build on. That is accepted; real MongoDB applies
/// `$set` atomically per document, so there it cannot happen at all.
///
/// Entries exist only while a write of that user is running or waiting: the last one out
/// removes it, so the map does not grow with the number of users.
#[derive(Debug, Default)]
struct UserLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl UserLocks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        // The map is consistent after every statement, so a panic elsewhere cannot corrupt it.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `write` while holding the lock of `user_id`.
    async fn serialise<T>(&self, user_id: &str, write: impl Future<Output = T>) -> T {
        let entry = UserLockEntry::new(self, user_id);
        let _held = entry.mutex.lock().await;
        write.await
    }
}

/// A caller's share of a user's lock: holding or waiting for it. Dropping it (also when the
/// caller is cancelled) removes the map entry if no other caller shares it.
struct UserLockEntry<'a> {
    locks: &'a UserLocks,
    user_id: &'a str,
    mutex: Arc<tokio::sync::Mutex<()>>,
}

impl<'a> UserLockEntry<'a> {
    fn new(locks: &'a UserLocks, user_id: &'a str) -> Self {
        let mutex = locks.map().entry(user_id.to_owned()).or_default().clone();
        UserLockEntry { locks, user_id, mutex }
    }
}

impl Drop for UserLockEntry<'_> {
    fn drop(&mut self) {
        let mut map = self.locks.map();
        // Shares are only handed out under the map's lock, so with just the map's and ours
        // left nobody holds or awaits this mutex, and nobody can pick it up meanwhile.
        if Arc::strong_count(&self.mutex) == 2
            && map.get(self.user_id).is_some_and(|m| Arc::ptr_eq(m, &self.mutex))
        {
            map.remove(self.user_id);
        }
    }
}

impl MongoStore {
    /// Connects to `uri`, uses database `db_name` and creates the indexes (idempotent).
    /// An unreachable server fails within a few seconds with [`StoreError::Unavailable`].
    pub async fn connect(uri: &str, db_name: &str) -> StoreResult<MongoStore> {
        let mut options = ClientOptions::parse(uri).await.map_err(map_err)?;
        options.server_selection_timeout = Some(CONNECT_TIMEOUT);
        options.connect_timeout = Some(CONNECT_TIMEOUT);
        let client = Client::with_options(options).map_err(map_err)?;
        let store = MongoStore { db: client.database(db_name), client, user_locks: Arc::default() };
        store.create_indexes().await?;
        Ok(store)
    }

    async fn create_indexes(&self) -> StoreResult<()> {
        for (collection, fields, unique) in INDEXES {
            let keys: Document = fields.iter().map(|f| ((*f).to_owned(), Bson::Int32(1))).collect();
            let model = IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().unique(*unique).build())
                .build();
            self.coll(collection).create_index(model).await.map_err(map_err)?;
        }
        Ok(())
    }

    fn coll(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    async fn find_user(&self, filter: Document) -> StoreResult<Option<User>> {
        let found = self.coll(USERS).find_one(filter).await.map_err(map_err)?;
        found.as_ref().map(doc_to_user).transpose()
    }

    /// Inserts `doc` into `collection`.
    async fn insert(&self, collection: &str, doc: Document) -> StoreResult<()> {
        self.coll(collection).insert_one(doc).await.map_err(map_err)?;
        Ok(())
    }

    /// Sums the credits a user spent per service, net of refunds.
    async fn credits_used(&self, user_id: &str) -> StoreResult<CreditsUsed> {
        let filter = doc! {
            "user_id": user_id,
            "service_type": { "$in": ["chat", "image", "refund"] },
        };
        let projection = doc! { "service_type": 1, "amount": 1, "refund_of": 1 };
        let mut cursor = self.coll(LEDGER).find(filter).projection(projection).await.map_err(map_err)?;
        let mut used = CreditsUsed::default();
        while let Some(entry) = cursor.try_next().await.map_err(map_err)? {
            let amount = int_field(&entry, "amount")?;
            let service = match entry.get_str("service_type") {
                Ok("refund") => entry.get_str("refund_of").ok(),
                other => other.ok(),
            };
            match service {
                Some("chat") => used.chat -= amount,
                Some("image") => used.image -= amount,
                _ => {}
            }
        }
        Ok(used)
    }

    /// Whether a user other than `id` holds `key_hash`. FerretDB 1.x reports a unique-index
    /// violation by an *update* as InternalError (code 1) instead of 11000, so `update_user`
    /// checks up front; the unique index still guards the (astronomically rare) race.
    async fn api_key_taken(&self, id: &str, key_hash: &str) -> StoreResult<bool> {
        let filter = doc! { "api_key_hash": key_hash, "_id": { "$ne": id } };
        Ok(self.count(USERS, filter).await? > 0)
    }

    /// Claims the token document `token` for its single use: true for the first caller only.
    ///
    /// FerretDB 1.x runs a filtered update as read, modify, then an unconditional write by
    /// `_id`, so concurrent `{used_at: null}` updates all "modify". A unique-key insert is the
    /// one atomic test-and-set it offers. The claim names the document's own `_id`, so a new
    /// token with a reused hash starts unclaimed.
    async fn claim(&self, kind: &str, token: &Document) -> StoreResult<bool> {
        let id = match token.get("_id") {
            Some(Bson::ObjectId(oid)) => oid.to_hex(),
            Some(Bson::String(s)) => s.clone(),
            _ => return Err(malformed("_id")),
        };
        inserted(self.insert(CLAIMS, doc! { "_id": format!("{kind}:{id}") }).await)
    }

    /// Records the use time of an already claimed token document.
    async fn mark_used(&self, collection: &str, token: &Document, now: OffsetDateTime) -> StoreResult<()> {
        let id = token.get("_id").cloned().ok_or_else(|| malformed("_id"))?;
        self.coll(collection)
            .update_one(doc! { "_id": id }, doc! { "$set": { "used_at": bson_date(now) } })
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// `update_user` without the user's write lock.
    async fn update_user_unlocked(
        &self,
        id: &str,
        update: &UserUpdate,
        now: OffsetDateTime,
    ) -> StoreResult<Option<User>> {
        if let Some((key_hash, _)) = &update.api_key
            && self.api_key_taken(id, key_hash).await?
        {
            // Like SQL: updating a missing row violates nothing.
            let exists = self.count(USERS, doc! { "_id": id }).await? > 0;
            return if exists { Err(StoreError::Duplicate) } else { Ok(None) };
        }
        let updated = self
            .coll(USERS)
            .find_one_and_update(doc! { "_id": id }, doc! { "$set": update_to_set(update, now) })
            .return_document(ReturnDocument::After)
            .await
            .map_err(map_err)?;
        updated.as_ref().map(doc_to_user).transpose()
    }

    /// `cache_balance` without the user's write lock.
    async fn cache_balance_unlocked(&self, user_id: &str, seq: i64, balance: i64) -> StoreResult<()> {
        let (mut seq, mut balance) = (seq, balance);
        for _ in 0..CACHE_ATTEMPTS {
            self.set_balance_if_newer(user_id, seq, balance).await?;
            match self.stale_cache(user_id).await? {
                Some(last) => (seq, balance) = (last.seq, last.balance_after),
                None => return Ok(()),
            }
        }
        Ok(())
    }

    async fn set_balance_if_newer(&self, user_id: &str, seq: i64, balance: i64) -> StoreResult<()> {
        self.coll(USERS)
            .update_one(
                doc! { "_id": user_id, "credits_seq": { "$lt": seq } },
                doc! { "$set": { "credits": balance, "credits_seq": seq } },
            )
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// The newest ledger entry when the cached balance lags behind it. FerretDB 1.x rewrites
    /// whole documents, so a racing writer holding an older copy can undo a newer cache.
    async fn stale_cache(&self, user_id: &str) -> StoreResult<Option<LedgerEntry>> {
        let user = self
            .coll(USERS)
            .find_one(doc! { "_id": user_id })
            .projection(doc! { "credits_seq": 1 })
            .await
            .map_err(map_err)?;
        let Some(user) = user else {
            return Ok(None);
        };
        let cached = int_field(&user, "credits_seq")?;
        let last = self.last_ledger_entry(user_id).await?;
        Ok(last.filter(|last| last.seq > cached))
    }

    async fn count(&self, collection: &str, filter: Document) -> StoreResult<i64> {
        let n = self.coll(collection).count_documents(filter).await.map_err(map_err)?;
        i64::try_from(n).map_err(|_| StoreError::Internal("count overflows i64".into()))
    }
}

#[async_trait]
impl Store for MongoStore {
    async fn ping(&self) -> StoreResult<()> {
        self.db.run_command(doc! { "ping": 1 }).await.map_err(map_err)?;
        Ok(())
    }

    async fn close(&self) {
        // Ends server sessions and closes pooled connections.
        self.client.clone().shutdown().await;
    }

    async fn insert_user(&self, user: &User) -> StoreResult<()> {
        self.insert(USERS, user_to_doc(user)).await
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        self.find_user(doc! { "_id": id }).await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        self.find_user(doc! { "email": email }).await
    }

    async fn user_by_api_key_hash(&self, key_hash: &str) -> StoreResult<Option<User>> {
        self.find_user(doc! { "api_key_hash": key_hash }).await
    }

    async fn update_user(
        &self,
        id: &str,
        update: &UserUpdate,
        now: OffsetDateTime,
    ) -> StoreResult<Option<User>> {
        self.user_locks.serialise(id, self.update_user_unlocked(id, update, now)).await
    }

    async fn list_users(
        &self,
        query: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<(Vec<User>, i64)> {
        let filter = user_filter(query);
        let total = self.count(USERS, filter.clone()).await?;
        if limit == 0 {
            return Ok((Vec::new(), total));
        }
        let cursor = self
            .coll(USERS)
            .find(filter)
            .sort(doc! { "created_at": 1, "_id": 1 })
            .skip(u64::try_from(offset).unwrap_or(0))
            .limit(mongo_limit(limit))
            .await
            .map_err(map_err)?;
        let users = collect(cursor).await?.iter().map(doc_to_user).collect::<StoreResult<_>>()?;
        Ok((users, total))
    }

    async fn insert_session(&self, session: &Session) -> StoreResult<()> {
        self.insert(SESSIONS, session_to_doc(session)).await
    }

    async fn session(&self, id: &str) -> StoreResult<Option<Session>> {
        let found = self.coll(SESSIONS).find_one(doc! { "_id": id }).await.map_err(map_err)?;
        found.as_ref().map(doc_to_session).transpose()
    }

    async fn revoke_session(&self, id: &str, now: OffsetDateTime) -> StoreResult<bool> {
        // A filtered `{revoked_at: null}` update is no test-and-set on FerretDB 1.x (see
        // `claim`), so the "revoke:<id>" claim picks the one caller that revokes.
        let sessions = self.coll(SESSIONS);
        let found = sessions
            .find_one(doc! { "_id": id, "revoked_at": Bson::Null })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(map_err)?;
        let Some(found) = found else {
            return Ok(false);
        };
        if !self.claim("revoke", &found).await? {
            return Ok(false);
        }
        let set = sessions
            .update_one(doc! { "_id": id }, doc! { "$set": { "revoked_at": bson_date(now) } })
            .await
            .map_err(map_err);
        if let Err(e) = set {
            // Give the claim back, so a retry can still revoke the session. If even that fails
            // the session stays open to `revoke_session` (not to `revoke_user_sessions`).
            let _ = self.coll(CLAIMS).delete_one(doc! { "_id": format!("revoke:{id}") }).await;
            return Err(e);
        }
        Ok(true)
    }

    async fn revoke_user_sessions(&self, user_id: &str, now: OffsetDateTime) -> StoreResult<Vec<String>> {
        let cursor = self
            .coll(SESSIONS)
            .find(doc! { "user_id": user_id, "revoked_at": Bson::Null })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(map_err)?;
        let ids =
            collect(cursor).await?.iter().map(|d| str_field(d, "_id")).collect::<StoreResult<Vec<_>>>()?;
        if ids.is_empty() {
            return Ok(ids);
        }
        self.coll(SESSIONS)
            .update_many(
                doc! { "_id": { "$in": &ids }, "revoked_at": Bson::Null },
                doc! { "$set": { "revoked_at": bson_date(now) } },
            )
            .await
            .map_err(map_err)?;
        Ok(ids)
    }

    async fn insert_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        self.insert(REFRESH_TOKENS, refresh_to_doc(token)).await
    }

    async fn use_refresh_token(&self, token_hash: &str, now: OffsetDateTime) -> StoreResult<RefreshUse> {
        let tokens = self.coll(REFRESH_TOKENS);
        let found = tokens.find_one(doc! { "token_hash": token_hash }).await.map_err(map_err)?;
        let Some(found) = found else {
            return Ok(RefreshUse::Unknown);
        };
        let token = doc_to_refresh(&found)?;
        if token.used_at.is_some() || !self.claim("refresh", &found).await? {
            return Ok(RefreshUse::Reused(token));
        }
        self.mark_used(REFRESH_TOKENS, &found, now).await?;
        Ok(RefreshUse::Fresh(token))
    }

    async fn replace_reset_token(&self, token: &ResetToken) -> StoreResult<()> {
        // Deleting the older tokens and inserting the new one are two writes, so concurrent
        // replacements could all leave their token behind. Instead the user's `reset_current`
        // document names the one usable token: written after the token exists, by a plain
        // replacement, so the last writer wins on MongoDB and FerretDB alike, and
        // `consume_reset_token` accepts no other token.
        self.insert(RESET_TOKENS, reset_to_doc(token)).await?;
        let current = self.coll(RESET_CURRENT);
        let pointer = doc! { "_id": &token.user_id, "token_hash": &token.token_hash };
        // Create the pointer first if missing, so that the replacement needs no upsert (whose
        // concurrent inserts may fail with a duplicate key, reported as code 1 by FerretDB).
        inserted(self.insert(RESET_CURRENT, doc! { "_id": &token.user_id, "token_hash": Bson::Null }).await)?;
        let previous = current
            .find_one_and_replace(doc! { "_id": &token.user_id }, pointer)
            .return_document(ReturnDocument::Before)
            .await
            .map_err(map_err)?;
        // Clean-up only: the token this one displaced is void for good (each token is made
        // current once), as are expired ones. Other tokens may still be about to become current,
        // so they stay; a racing replacement on FerretDB may thus leave a void token behind
        // until it expires.
        let mut stale = vec![doc! { "expires_at": { "$lte": bson_date(crate::store::now()) } }];
        if let Some(Ok(hash)) = previous.as_ref().map(|p| p.get_str("token_hash")) {
            stale.push(doc! { "token_hash": hash });
        }
        let filter = doc! {
            "user_id": &token.user_id,
            "token_hash": { "$ne": &token.token_hash },
            "$or": stale,
        };
        self.coll(RESET_TOKENS).delete_many(filter).await.map_err(map_err)?;
        Ok(())
    }

    async fn void_reset_tokens(&self, user_id: &str) -> StoreResult<()> {
        // Pointing the user's `reset_current` at no token voids them all at once (only the
        // current token is usable); deleting them afterwards is clean-up.
        self.coll(RESET_CURRENT)
            .replace_one(doc! { "_id": user_id }, doc! { "_id": user_id, "token_hash": Bson::Null })
            .await
            .map_err(map_err)?;
        self.coll(RESET_TOKENS).delete_many(doc! { "user_id": user_id }).await.map_err(map_err)?;
        Ok(())
    }

    async fn consume_reset_token(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Option<String>> {
        let filter = doc! {
            "token_hash": token_hash,
            "used_at": Bson::Null,
            "expires_at": { "$gt": bson_date(now) },
        };
        let found = self.coll(RESET_TOKENS).find_one(filter).await.map_err(map_err)?;
        let Some(found) = found else {
            return Ok(None);
        };
        let user_id = str_field(&found, "user_id")?;
        // Only the user's current token is usable (see `replace_reset_token`).
        let current = doc! { "_id": &user_id, "token_hash": token_hash };
        if self.count(RESET_CURRENT, current).await? == 0 {
            return Ok(None);
        }
        if !self.claim("reset", &found).await? {
            return Ok(None);
        }
        // Voided (`void_reset_tokens`) between the check above and the claim: not usable.
        let current = doc! { "_id": &user_id, "token_hash": token_hash };
        if self.count(RESET_CURRENT, current).await? == 0 {
            return Ok(None);
        }
        self.mark_used(RESET_TOKENS, &found, now).await?;
        Ok(Some(user_id))
    }

    async fn consume_once(&self, key: &str, expires_at: OffsetDateTime) -> StoreResult<bool> {
        let keys = self.coll(ONCE_KEYS);
        let now = bson_date(crate::store::now());
        keys.delete_many(doc! { "expires_at": { "$lt": now } }).await.map_err(map_err)?;
        inserted(self.insert(ONCE_KEYS, doc! { "key": key, "expires_at": bson_date(expires_at) }).await)
    }

    async fn last_ledger_entry(&self, user_id: &str) -> StoreResult<Option<LedgerEntry>> {
        let found = self
            .coll(LEDGER)
            .find_one(doc! { "user_id": user_id })
            .sort(doc! { "seq": -1 })
            .await
            .map_err(map_err)?;
        found.as_ref().map(doc_to_ledger).transpose()
    }

    async fn insert_ledger_entry(&self, entry: &LedgerEntry) -> StoreResult<()> {
        self.insert(LEDGER, ledger_to_doc(entry)).await
    }

    async fn cache_balance(&self, user_id: &str, seq: i64, balance: i64) -> StoreResult<()> {
        // Under the user's lock, so that no `update_user` of this process writes back an older
        // balance meanwhile (the repair loop still fixes one written by another process).
        self.user_locks.serialise(user_id, self.cache_balance_unlocked(user_id, seq, balance)).await
    }

    async fn ledger_page(
        &self,
        user_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<LedgerEntry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut filter = doc! { "user_id": user_id };
        if let Some(before) = before {
            filter.insert("seq", doc! { "$lt": before });
        }
        let cursor = self
            .coll(LEDGER)
            .find(filter)
            .sort(doc! { "seq": -1 })
            .limit(mongo_limit(limit))
            .await
            .map_err(map_err)?;
        collect(cursor).await?.iter().map(doc_to_ledger).collect()
    }

    async fn user_stats(&self, user_id: &str) -> StoreResult<UserStats> {
        Ok(UserStats {
            total_chats: self.count(CHATS, doc! { "user_id": user_id }).await?,
            total_images: self.count(IMAGES, doc! { "user_id": user_id }).await?,
            credits_used: self.credits_used(user_id).await?,
        })
    }

    async fn insert_chat(&self, chat: &Chat) -> StoreResult<()> {
        self.insert(CHATS, chat_to_doc(chat)).await
    }

    async fn chat_count(&self, user_id: &str) -> StoreResult<i64> {
        self.count(CHATS, doc! { "user_id": user_id }).await
    }

    async fn chat(&self, id: &str) -> StoreResult<Option<Chat>> {
        let found = self.coll(CHATS).find_one(doc! { "_id": id }).await.map_err(map_err)?;
        found.as_ref().map(doc_to_chat).transpose()
    }

    async fn chats_page(
        &self,
        user_id: &str,
        before: Option<(OffsetDateTime, &str)>,
        limit: i64,
    ) -> StoreResult<Vec<Chat>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut filter = doc! { "user_id": user_id };
        if let Some((at, id)) = before {
            let at = bson_date(at);
            filter.insert(
                "$or",
                vec![doc! { "updated_at": { "$lt": at } }, doc! { "updated_at": at, "_id": { "$lt": id } }],
            );
        }
        let cursor = self
            .coll(CHATS)
            .find(filter)
            .sort(doc! { "updated_at": -1, "_id": -1 })
            .limit(mongo_limit(limit))
            .await
            .map_err(map_err)?;
        collect(cursor).await?.iter().map(doc_to_chat).collect()
    }

    async fn touch_chat(&self, id: &str, now: OffsetDateTime) -> StoreResult<()> {
        // Filtered by `_id` alone, so FerretDB's read-modify-write cannot lose a condition;
        // two racing touches leave the later write, as SQLite does.
        self.coll(CHATS)
            .update_one(doc! { "_id": id }, doc! { "$set": { "updated_at": bson_date(now) } })
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn insert_message(&self, message: &ChatMessage) -> StoreResult<()> {
        self.insert(MESSAGES, message_to_doc(message)).await
    }

    async fn messages_page(
        &self,
        chat_id: &str,
        before: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<ChatMessage>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let cursor = self
            .coll(MESSAGES)
            .find(before_filter("chat_id", chat_id, before))
            .sort(doc! { "_id": -1 })
            .limit(mongo_limit(limit))
            .await
            .map_err(map_err)?;
        let mut newest_first =
            collect(cursor).await?.iter().map(doc_to_message).collect::<StoreResult<Vec<_>>>()?;
        newest_first.reverse();
        Ok(newest_first)
    }

    async fn insert_image(&self, image: &Image, png: &[u8]) -> StoreResult<()> {
        // Bytes first: a record is never visible without its bytes. Without transactions a failed
        // record insert can leave bytes behind; they are unreachable, so they are only removed
        // best-effort here.
        let bytes = Binary { subtype: BinarySubtype::Generic, bytes: png.to_vec() };
        let bytes = doc! { "_id": &image.id, PNG: bytes };
        self.insert(IMAGE_BYTES, bytes).await?;
        let result = self.insert(IMAGES, image_to_doc(image)).await;
        if result.is_err() {
            let _ = self.coll(IMAGE_BYTES).delete_one(doc! { "_id": &image.id }).await;
        }
        result
    }

    async fn image(&self, id: &str) -> StoreResult<Option<Image>> {
        let found = self.coll(IMAGES).find_one(doc! { "_id": id }).await.map_err(map_err)?;
        found.as_ref().map(doc_to_image).transpose()
    }

    async fn image_png(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        let found = self.coll(IMAGE_BYTES).find_one(doc! { "_id": id }).await.map_err(map_err)?;
        let Some(mut found) = found else {
            return Ok(None);
        };
        match found.remove(PNG) {
            Some(Bson::Binary(b)) => Ok(Some(b.bytes)),
            _ => Err(malformed(PNG)),
        }
    }

    async fn images_of(&self, user_id: &str, before: Option<&str>, limit: i64) -> StoreResult<Vec<Image>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let cursor = self
            .coll(IMAGES)
            .find(before_filter("user_id", user_id, before))
            .sort(doc! { "_id": -1 })
            .limit(mongo_limit(limit))
            .await
            .map_err(map_err)?;
        collect(cursor).await?.iter().map(doc_to_image).collect()
    }
}

/// Translates a driver error: duplicate keys by code 11000 only, unreachable servers as
/// unavailable, everything else as internal.
fn map_err(e: MongoError) -> StoreError {
    match error_code(&e.kind) {
        Some(DUPLICATE_KEY) => return StoreError::Duplicate,
        Some(code) if UNAVAILABLE_CODES.contains(&code) => {
            return StoreError::Unavailable(e.to_string());
        }
        _ => {}
    }
    match *e.kind {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Internal(e.to_string()),
    }
}

/// The server error code carried by `kind`; for a batch, 11000 if any write hit it.
fn error_code(kind: &ErrorKind) -> Option<i32> {
    match kind {
        ErrorKind::Write(WriteFailure::WriteError(e)) => Some(e.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(e)) => Some(e.code),
        ErrorKind::Command(e) => Some(e.code),
        ErrorKind::InsertMany(e) => {
            let codes: Vec<i32> = e.write_errors.iter().flatten().map(|w| w.code).collect();
            codes.iter().copied().find(|&c| c == DUPLICATE_KEY).or(codes.first().copied())
        }
        _ => None,
    }
}

/// `Ok(true)` for a successful insert, `Ok(false)` for a duplicate key.
fn inserted(result: StoreResult<()>) -> StoreResult<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(StoreError::Duplicate) => Ok(false),
        Err(other) => Err(other),
    }
}

/// Mongo's `limit`: 0 means unlimited, as a negative SQLite `LIMIT` does (callers handle 0).
fn mongo_limit(limit: i64) -> i64 {
    limit.max(0)
}

async fn collect(cursor: Cursor<Document>) -> StoreResult<Vec<Document>> {
    cursor.try_collect().await.map_err(map_err)
}

/// Case-insensitive substring match on email and names; everything when `query` is `None`.
fn user_filter(query: Option<&str>) -> Document {
    let Some(query) = query else {
        return Document::new();
    };
    let re = doc! { "$regex": escape_regex(query), "$options": "i" };
    doc! {
        "$or": [
            { "email": re.clone() },
            { "first_name": re.clone() },
            { "last_name": re },
        ]
    }
}

/// Escapes every ASCII punctuation character, which both PCRE and Go's RE2 read literally.
fn escape_regex(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The `$set` document of a user update; `updated_at` is always set.
fn update_to_set(update: &UserUpdate, now: OffsetDateTime) -> Document {
    let mut set = doc! { "updated_at": bson_date(now) };
    if let Some(v) = &update.first_name {
        set.insert("first_name", v.as_str());
    }
    if let Some(v) = &update.last_name {
        set.insert("last_name", v.as_str());
    }
    if let Some(v) = &update.password_hash {
        set.insert("password_hash", v.as_str());
    }
    if let Some((hash, prefix)) = &update.api_key {
        set.insert("api_key_hash", hash.as_str());
        set.insert("api_key_prefix", prefix.as_str());
    }
    if let Some(role) = update.role {
        set.insert("role", role.as_str());
    }
    if let Some(active) = update.active {
        set.insert("active", active);
    }
    if let Some(at) = update.last_login {
        set.insert("last_login", bson_date(at));
    }
    set
}

fn user_to_doc(u: &User) -> Document {
    doc! {
        "_id": &u.id,
        "email": &u.email,
        "password_hash": &u.password_hash,
        "first_name": &u.first_name,
        "last_name": &u.last_name,
        "role": u.role.as_str(),
        "api_key_hash": &u.api_key_hash,
        "api_key_prefix": &u.api_key_prefix,
        "credits": u.credits,
        "credits_seq": u.credits_seq,
        "initial_credits": u.initial_credits,
        "last_login": opt_date(u.last_login),
        "active": u.active,
        "created_at": bson_date(u.created_at),
        "updated_at": bson_date(u.updated_at),
    }
}

fn doc_to_user(d: &Document) -> StoreResult<User> {
    Ok(User {
        id: str_field(d, "_id")?,
        email: str_field(d, "email")?,
        password_hash: str_field(d, "password_hash")?,
        first_name: str_field(d, "first_name")?,
        last_name: str_field(d, "last_name")?,
        role: Role::parse(&str_field(d, "role")?),
        api_key_hash: str_field(d, "api_key_hash")?,
        api_key_prefix: str_field(d, "api_key_prefix")?,
        credits: int_field(d, "credits")?,
        credits_seq: int_field(d, "credits_seq")?,
        initial_credits: int_field(d, "initial_credits")?,
        last_login: opt_date_field(d, "last_login")?,
        active: d.get_bool("active").map_err(|_| malformed("active"))?,
        created_at: date_field(d, "created_at")?,
        updated_at: date_field(d, "updated_at")?,
    })
}

fn session_to_doc(s: &Session) -> Document {
    doc! {
        "_id": &s.id,
        "user_id": &s.user_id,
        "created_at": bson_date(s.created_at),
        "revoked_at": opt_date(s.revoked_at),
    }
}

fn doc_to_session(d: &Document) -> StoreResult<Session> {
    Ok(Session {
        id: str_field(d, "_id")?,
        user_id: str_field(d, "user_id")?,
        created_at: date_field(d, "created_at")?,
        revoked_at: opt_date_field(d, "revoked_at")?,
    })
}

fn refresh_to_doc(t: &RefreshToken) -> Document {
    doc! {
        "token_hash": &t.token_hash,
        "session_id": &t.session_id,
        "user_id": &t.user_id,
        "expires_at": bson_date(t.expires_at),
        "used_at": opt_date(t.used_at),
    }
}

fn doc_to_refresh(d: &Document) -> StoreResult<RefreshToken> {
    Ok(RefreshToken {
        token_hash: str_field(d, "token_hash")?,
        session_id: str_field(d, "session_id")?,
        user_id: str_field(d, "user_id")?,
        expires_at: date_field(d, "expires_at")?,
        used_at: opt_date_field(d, "used_at")?,
    })
}

fn reset_to_doc(t: &ResetToken) -> Document {
    doc! {
        "token_hash": &t.token_hash,
        "user_id": &t.user_id,
        "expires_at": bson_date(t.expires_at),
        "created_at": bson_date(t.created_at),
        "used_at": Bson::Null,
    }
}

fn ledger_to_doc(e: &LedgerEntry) -> Document {
    doc! {
        "_id": &e.id,
        "user_id": &e.user_id,
        "seq": e.seq,
        "service_type": e.service_type.as_str(),
        "amount": e.amount,
        "balance_after": e.balance_after,
        "reference": e.reference.as_deref(),
        "actor_id": e.actor_id.as_deref(),
        "refund_of": e.refund_of.map(ServiceType::as_str),
        "created_at": bson_date(e.created_at),
    }
}

fn doc_to_ledger(d: &Document) -> StoreResult<LedgerEntry> {
    let refund_of = match opt_str_field(d, "refund_of")? {
        Some(s) => Some(ServiceType::parse(&s).ok_or_else(|| malformed("refund_of"))?),
        None => None,
    };
    Ok(LedgerEntry {
        id: str_field(d, "_id")?,
        user_id: str_field(d, "user_id")?,
        seq: int_field(d, "seq")?,
        service_type: ServiceType::parse(&str_field(d, "service_type")?)
            .ok_or_else(|| malformed("service_type"))?,
        amount: int_field(d, "amount")?,
        balance_after: int_field(d, "balance_after")?,
        reference: opt_str_field(d, "reference")?,
        actor_id: opt_str_field(d, "actor_id")?,
        refund_of,
        created_at: date_field(d, "created_at")?,
    })
}

/// A timestamp as a BSON date, truncated to milliseconds exactly as the SQLite store does.
fn bson_date(t: OffsetDateTime) -> DateTime {
    let millis = t.unix_timestamp_nanos() / 1_000_000;
    DateTime::from_millis(i64::try_from(millis).unwrap_or(i64::MAX))
}

fn opt_date(t: Option<OffsetDateTime>) -> Bson {
    t.map_or(Bson::Null, |t| Bson::DateTime(bson_date(t)))
}

fn from_bson_date(d: DateTime, key: &str) -> StoreResult<OffsetDateTime> {
    let nanos = i128::from(d.timestamp_millis()) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| malformed(key))
}

fn malformed(key: &str) -> StoreError {
    StoreError::Internal(format!("malformed stored field `{key}`"))
}

fn str_field(d: &Document, key: &str) -> StoreResult<String> {
    d.get_str(key).map(str::to_owned).map_err(|_| malformed(key))
}

fn opt_str_field(d: &Document, key: &str) -> StoreResult<Option<String>> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(malformed(key)),
    }
}

fn int_field(d: &Document, key: &str) -> StoreResult<i64> {
    match d.get(key) {
        Some(Bson::Int64(n)) => Ok(*n),
        Some(Bson::Int32(n)) => Ok(i64::from(*n)),
        _ => Err(malformed(key)),
    }
}

fn date_field(d: &Document, key: &str) -> StoreResult<OffsetDateTime> {
    match d.get(key) {
        Some(Bson::DateTime(dt)) => from_bson_date(*dt, key),
        _ => Err(malformed(key)),
    }
}

fn opt_date_field(d: &Document, key: &str) -> StoreResult<Option<OffsetDateTime>> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::DateTime(dt)) => from_bson_date(*dt, key).map(Some),
        Some(_) => Err(malformed(key)),
    }
}

/// PNG bytes of images, `{_id: <image id>, png: <binary>}`, apart from the records: FerretDB
/// 1.x decodes every document of a collection to filter or count it, so megabytes of PNG in
/// `images` would make every listing and `user_stats` read all images of all users.
const IMAGE_BYTES: &str = "image_png";

/// The field of an `image_png` document holding the bytes.
const PNG: &str = "png";

/// `{key: value}`, plus `_id < before` when given: one page of a collection keyed by UUIDv7 ids.
fn before_filter(key: &str, value: &str, before: Option<&str>) -> Document {
    let mut filter = doc! { key: value };
    if let Some(before) = before {
        filter.insert("_id", doc! { "$lt": before });
    }
    filter
}

fn chat_to_doc(c: &Chat) -> Document {
    doc! {
        "_id": &c.id,
        "user_id": &c.user_id,
        "title": &c.title,
        "created_at": bson_date(c.created_at),
        "updated_at": bson_date(c.updated_at),
    }
}

fn doc_to_chat(d: &Document) -> StoreResult<Chat> {
    Ok(Chat {
        id: str_field(d, "_id")?,
        user_id: str_field(d, "user_id")?,
        title: str_field(d, "title")?,
        created_at: date_field(d, "created_at")?,
        updated_at: date_field(d, "updated_at")?,
    })
}

fn message_to_doc(m: &ChatMessage) -> Document {
    doc! {
        "_id": &m.id,
        "chat_id": &m.chat_id,
        "user_id": &m.user_id,
        "role": m.role.as_str(),
        "content": &m.content,
        "created_at": bson_date(m.created_at),
    }
}

fn doc_to_message(d: &Document) -> StoreResult<ChatMessage> {
    Ok(ChatMessage {
        id: str_field(d, "_id")?,
        chat_id: str_field(d, "chat_id")?,
        user_id: str_field(d, "user_id")?,
        role: MessageRole::parse(&str_field(d, "role")?).ok_or_else(|| malformed("role"))?,
        content: str_field(d, "content")?,
        created_at: date_field(d, "created_at")?,
    })
}

fn image_to_doc(i: &Image) -> Document {
    doc! {
        "_id": &i.id,
        "user_id": &i.user_id,
        "prompt": &i.prompt,
        "width": i64::from(i.width),
        "height": i64::from(i.height),
        "created_at": bson_date(i.created_at),
    }
}

fn doc_to_image(d: &Document) -> StoreResult<Image> {
    let pixels = |key: &str| u32::try_from(int_field(d, key)?).map_err(|_| malformed(key));
    Ok(Image {
        id: str_field(d, "_id")?,
        user_id: str_field(d, "user_id")?,
        prompt: str_field(d, "prompt")?,
        width: pixels("width")?,
        height: pixels("height")?,
        created_at: date_field(d, "created_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn user_locks_serialise_writes_and_leave_no_entries_behind() {
        let locks = Arc::new(UserLocks::default());
        let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let (locks, inside) = (locks.clone(), inside.clone());
                tokio::spawn(async move {
                    let user = if i % 2 == 0 { "a" } else { "b" };
                    locks
                        .serialise(user, async {
                            let n = inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            assert!(n < 2, "at most one writer per user (two users)");
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        })
                        .await;
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert!(locks.map().is_empty(), "idle users keep no lock entry");

        // A caller cancelled while waiting for the lock leaves nothing behind either.
        let (entered_tx, entered_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let holder = {
            let locks = locks.clone();
            tokio::spawn(async move {
                locks
                    .serialise("a", async {
                        entered_tx.send(()).unwrap();
                        release_rx.await.unwrap();
                    })
                    .await;
            })
        };
        entered_rx.await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(20), locks.serialise("a", async {})).await;
        assert!(waiting.is_err(), "the second caller waits");
        release_tx.send(()).unwrap();
        holder.await.unwrap();
        assert!(locks.map().is_empty(), "a cancelled waiter keeps no lock entry");
    }
}
