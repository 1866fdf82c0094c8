//! The MongoDB implementation of [`Store`]: explicit BSON documents, no transactions, TTL
//! indexes, `$lookup` or change streams, so that it also runs on FerretDB.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, Cursor, Database, IndexModel};
use time::OffsetDateTime;

use super::{
    CreditsUsed, LedgerEntry, RefreshToken, RefreshUse, ResetToken, Role, ServiceType, Session, Store,
    StoreError, StoreResult, User, UserStats, UserUpdate,
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
const ONCE_KEYS: &str = "once_keys";
const LEDGER: &str = "ledger";
const CHATS: &str = "chats";
const MESSAGES: &str = "messages";
const IMAGES: &str = "images";
/// Single-use markers (`_id` = "refresh:<token _id>" or "reset:<token _id>").
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
    (CHATS, &["user_id", "created_at"], false),
    (MESSAGES, &["chat_id", "created_at"], false),
    (IMAGES, &["user_id", "created_at"], false),
];

/// A [`Store`] backed by a MongoDB-compatible server.
#[derive(Debug, Clone)]
pub struct MongoStore {
    db: Database,
    client: Client,
}

impl MongoStore {
    /// Connects to `uri`, uses database `db_name` and creates the indexes (idempotent).
    /// An unreachable server fails within a few seconds with [`StoreError::Unavailable`].
    pub async fn connect(uri: &str, db_name: &str) -> StoreResult<MongoStore> {
        let mut options = ClientOptions::parse(uri).await.map_err(map_err)?;
        options.server_selection_timeout = Some(CONNECT_TIMEOUT);
        options.connect_timeout = Some(CONNECT_TIMEOUT);
        let client = Client::with_options(options).map_err(map_err)?;
        let store = MongoStore { db: client.database(db_name), client };
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
        let result = self
            .coll(SESSIONS)
            .update_one(
                doc! { "_id": id, "revoked_at": Bson::Null },
                doc! { "$set": { "revoked_at": bson_date(now) } },
            )
            .await
            .map_err(map_err)?;
        Ok(result.modified_count == 1)
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
        self.coll(RESET_TOKENS).delete_many(doc! { "user_id": &token.user_id }).await.map_err(map_err)?;
        self.insert(RESET_TOKENS, reset_to_doc(token)).await
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
        if !self.claim("reset", &found).await? {
            return Ok(None);
        }
        self.mark_used(RESET_TOKENS, &found, now).await?;
        str_field(&found, "user_id").map(Some)
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
