//! The MongoDB implementation of [`Store`]: explicit BSON documents, no transactions, TTL
//! indexes, `$lookup` or change streams, so that it also runs on FerretDB. One file per
//! aggregate implements its trait; this one holds the connection, the shared helpers and the
//! per-user write lock.

mod batch;
mod chats;
mod idempotency;
mod images;
mod ledger;
mod sessions;
mod users;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, DateTime, Document, doc};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Cursor, Database, IndexModel};
use time::OffsetDateTime;

use super::*;

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
/// Claimed idempotency keys, `_id` = "<user id>:<key>" (the unique `_id` is the atomic claim).
const IDEMPOTENCY: &str = "idempotency_keys";
/// Single-use markers (`_id` = "refresh:<token _id>", "reset:<token _id>" or
/// "revoke:<session id>").
const CLAIMS: &str = "claims";

/// The lease under which an admin is demoted or deactivated.
const ADMIN_REMOVAL_LEASE: &str = "admin-removal";
/// A lease older than this is taken over: its holder died, as no holder needs this long.
const LEASE_LIFETIME: time::Duration = time::Duration::seconds(10);
/// How long a caller waits for a lease before answering unavailable.
const LEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A lease held in `claims` (see `MongoStore::take_lease`).
struct Lease {
    id: String,
    holder: String,
}

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
    // The per-day sums: one user's ledger by time, everyone's by time, sign-ups by time.
    (LEDGER, &["user_id", "created_at"], false),
    (LEDGER, &["created_at"], false),
    (USERS, &["created_at"], false),
];

/// A [`Store`] backed by a MongoDB-compatible server.
#[derive(Debug, Clone)]
pub struct MongoStore {
    db: Database,
    client: Client,
    /// Serialises this process's writes to each user document; see [`UserLocks`].
    user_locks: Arc<UserLocks>,
    /// Groups the hot inserts (ledger entries, messages) into `insert_many`s.
    inserts: batch::InsertBatcher,
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
        let db = client.database(db_name);
        let inserts = batch::InsertBatcher::start(db.clone());
        let store = MongoStore { db, client, user_locks: Arc::default(), inserts };
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

    /// Inserts `doc` into `collection`.
    async fn insert(&self, collection: &str, doc: Document) -> StoreResult<()> {
        self.coll(collection).insert_one(doc).await.map_err(map_err)?;
        Ok(())
    }

    /// Claims the token document `token` for its single use: true for the first caller only.
    ///
    /// FerretDB 1.x runs a filtered update as read, modify, then an unconditional write by
    /// `_id`, so concurrent `{used_at: null}` updates all "modify". A unique-key insert is the
    /// one atomic test-and-set it offers. The claim names the document's own `_id`, so a new
    /// token with a reused hash starts unclaimed. The claim keeps its time (`at`), which stands
    /// for the token's use time until the token document is marked.
    async fn claim(&self, kind: &str, token: &Document, now: OffsetDateTime) -> StoreResult<bool> {
        let id = claim_id(kind, token)?;
        inserted(self.insert(CLAIMS, doc! { "_id": id, "at": bson_date(now) }).await)
    }

    /// When the token document `token` was claimed: a claim made without its time (before the
    /// time was kept) counts as long ago.
    async fn claimed_at(&self, kind: &str, token: &Document) -> StoreResult<Option<OffsetDateTime>> {
        let found =
            self.coll(CLAIMS).find_one(doc! { "_id": claim_id(kind, token)? }).await.map_err(map_err)?;
        Ok(found
            .map(|claim| opt_date_field(&claim, "at").ok().flatten().unwrap_or(OffsetDateTime::UNIX_EPOCH)))
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

    /// Takes the lease `name` (a document in `claims` whose unique `_id` makes the insert the
    /// test-and-set), waiting while another holder has it; a lease older than [`LEASE_LIFETIME`]
    /// is taken over, so a holder that died cannot block the others for long.
    async fn take_lease(&self, name: &str) -> StoreResult<Lease> {
        let id = format!("lease:{name}");
        let deadline = std::time::Instant::now() + LEASE_WAIT;
        loop {
            let holder = uuid::Uuid::new_v4().to_string();
            let now = crate::store::now();
            let lease = doc! { "_id": &id, "holder": &holder, "at": bson_date(now) };
            if inserted(self.insert(CLAIMS, lease).await)? {
                return Ok(Lease { id, holder });
            }
            let current = self.coll(CLAIMS).find_one(doc! { "_id": &id }).await.map_err(map_err)?;
            if let Some(current) = current
                && opt_date_field(&current, "at")?.is_none_or(|at| now - at > LEASE_LIFETIME)
            {
                let stale =
                    doc! { "_id": &id, "holder": current.get("holder").cloned().unwrap_or(Bson::Null) };
                self.coll(CLAIMS).delete_one(stale).await.map_err(map_err)?;
                continue;
            }
            if std::time::Instant::now() >= deadline {
                return Err(StoreError::Unavailable(format!("the lease {name} stayed taken")));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Gives a lease back (only this holder's: a lease taken over is not removed).
    async fn give_back_lease(&self, lease: Lease) {
        let filter = doc! { "_id": &lease.id, "holder": &lease.holder };
        if let Err(e) = self.coll(CLAIMS).delete_one(filter).await {
            tracing::warn!(error = %e, lease = %lease.id, "could not give a lease back; it lapses by itself");
        }
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

/// A timestamp as a BSON date, truncated to milliseconds exactly as the SQLite store does.
fn bson_date(t: OffsetDateTime) -> DateTime {
    let millis = t.unix_timestamp_nanos() / 1_000_000;
    DateTime::from_millis(i64::try_from(millis).unwrap_or(i64::MAX))
}

/// The `_id` of the claim of token document `token`: its kind and the token's own `_id`.
fn claim_id(kind: &str, token: &Document) -> StoreResult<String> {
    match token.get("_id") {
        Some(Bson::ObjectId(oid)) => Ok(format!("{kind}:{}", oid.to_hex())),
        Some(Bson::String(s)) => Ok(format!("{kind}:{s}")),
        _ => Err(malformed("_id")),
    }
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

fn opt_int_field(d: &Document, key: &str) -> StoreResult<Option<i64>> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(_) => int_field(d, key).map(Some),
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

/// `{key: value}`, plus `_id < before` when given: one page of a collection keyed by UUIDv7 ids.
fn before_filter(key: &str, value: &str, before: Option<&str>) -> Document {
    let mut filter = doc! { key: value };
    if let Some(before) = before {
        filter.insert("_id", doc! { "$lt": before });
    }
    filter
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
