//! The embedded store: SQLite (bundled) in WAL mode inside the data directory. One writer thread
//! commits writes in groups and a few reader threads serve reads, each on its own connection
//! ([`workers`]), so the async workers never wait on the disk. One file per aggregate implements
//! its trait.

mod chats;
mod idempotency;
mod images;
mod ledger;
mod sessions;
mod users;
mod workers;

use std::path::Path;

use async_trait::async_trait;
use rusqlite::Connection;
use time::OffsetDateTime;

use super::*;

/// Reader connections; WAL lets them read while the writer writes.
const READERS: usize = 4;

/// The schema, applied once per version (tracked in `PRAGMA user_version`).
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    role TEXT NOT NULL,
    api_key_hash TEXT NOT NULL UNIQUE,
    api_key_prefix TEXT NOT NULL,
    credits INTEGER NOT NULL,
    credits_seq INTEGER NOT NULL,
    initial_credits INTEGER NOT NULL,
    last_login INTEGER,
    active INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    -- Email and names lower-cased by Rust (full Unicode, unlike SQLite's lower()), for search.
    search_text TEXT NOT NULL
);
CREATE INDEX users_created ON users (created_at, id);
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
CREATE TABLE reset_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX reset_tokens_user ON reset_tokens (user_id);
CREATE TABLE once_keys (
    key TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE TABLE ledger (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    service_type TEXT NOT NULL,
    amount INTEGER NOT NULL,
    balance_after INTEGER NOT NULL,
    reference TEXT,
    actor_id TEXT,
    refund_of TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (user_id, seq)
);
CREATE TABLE chats (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    title TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX chats_user ON chats (user_id, created_at);
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    chat_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX messages_chat ON messages (chat_id, created_at);
CREATE TABLE images (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    prompt TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    png BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX images_user ON images (user_id, created_at);
"#,
    r#"
-- 2: what the sessions page shows, and the indexes of the per-day sums.
ALTER TABLE sessions ADD COLUMN last_used_at INTEGER;
ALTER TABLE sessions ADD COLUMN ip TEXT;
ALTER TABLE sessions ADD COLUMN user_agent TEXT;
UPDATE sessions SET last_used_at = created_at;
CREATE INDEX ledger_user_created ON ledger (user_id, created_at);
CREATE INDEX ledger_created ON ledger (created_at);
"#,
    r#"
-- 3: idempotency keys of paid requests.
CREATE TABLE idempotency_keys (
    user_id TEXT NOT NULL,
    key TEXT NOT NULL,
    claim_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    outcome_kind TEXT NOT NULL,
    chat_id TEXT,
    result_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
);
"#,
    r#"
-- 4: when an idempotency key's result was stored.
ALTER TABLE idempotency_keys ADD COLUMN completed_at INTEGER;
"#,
    r#"
-- 5: metered generations: what each ledger entry does, its model and usage, the credits held and
-- the day's spending after it.
ALTER TABLE ledger ADD COLUMN kind TEXT;
ALTER TABLE ledger ADD COLUMN model TEXT;
ALTER TABLE ledger ADD COLUMN usage_input INTEGER;
ALTER TABLE ledger ADD COLUMN usage_output INTEGER;
ALTER TABLE ledger ADD COLUMN usage_estimated INTEGER;
ALTER TABLE ledger ADD COLUMN held_after INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ledger ADD COLUMN day_spent_after INTEGER;
CREATE INDEX ledger_reference ON ledger (user_id, reference);
ALTER TABLE messages ADD COLUMN status TEXT NOT NULL DEFAULT 'complete';
ALTER TABLE messages ADD COLUMN model TEXT;
ALTER TABLE messages ADD COLUMN charged INTEGER;
ALTER TABLE messages ADD COLUMN usage_input INTEGER;
ALTER TABLE messages ADD COLUMN usage_output INTEGER;
ALTER TABLE messages ADD COLUMN usage_estimated INTEGER;
ALTER TABLE images ADD COLUMN model TEXT;
ALTER TABLE images ADD COLUMN charged INTEGER;
"#,
];

/// The embedded SQLite store.
pub struct SqliteStore {
    workers: workers::Workers,
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) `switchboard.db` in `dir`.
    pub fn open(dir: &Path) -> StoreResult<SqliteStore> {
        let path = dir.join("switchboard.db");
        let mut writer = Connection::open(&path).map_err(internal)?;
        configure(&writer)?;
        migrate(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| {
                let conn = Connection::open(&path).map_err(internal)?;
                configure(&conn)?;
                Ok(conn)
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let workers = workers::Workers::start(writer, readers)
            .map_err(|e| StoreError::Internal(format!("starting the storage threads: {e}")))?;
        Ok(SqliteStore { workers })
    }

    /// Runs `f` in the writer's next group commit.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.workers.write(f).await
    }

    /// Runs `f` on a reader's connection.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.workers.read(f).await
    }
}

fn configure(conn: &Connection) -> StoreResult<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(internal)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(internal)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(internal)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(internal)?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(internal)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(internal)?;
        tx.execute_batch(sql).map_err(internal)?;
        tx.pragma_update(None, "user_version", i as i64 + 1).map_err(internal)?;
        tx.commit().map_err(internal)?;
    }
    Ok(())
}

fn map_err(e: rusqlite::Error) -> StoreError {
    match &e {
        // Only unique and primary-key violations are duplicates; NOT NULL or CHECK failures are bugs.
        rusqlite::Error::SqliteFailure(err, _)
            if matches!(
                err.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ) =>
        {
            StoreError::Duplicate
        }
        // The disk, not a bug: busy or locked by another process, full, failing, read-only, or
        // gone. The caller answers `unavailable` and may retry.
        rusqlite::Error::SqliteFailure(err, _)
            if matches!(
                err.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::OutOfMemory
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

fn internal(e: rusqlite::Error) -> StoreError {
    StoreError::Internal(e.to_string())
}

fn millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Milliseconds in a day: `created_at / DAY_MILLIS` is the UTC day since the epoch.
const DAY_MILLIS: i64 = 86_400_000;

/// The UTC day `days` days after 1970-01-01.
fn epoch_day(days: i64) -> time::Date {
    crate::store::utc_day(from_millis(days * DAY_MILLIS))
}

fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A stored value this version does not know: corrupt data, reported instead of guessed.
fn unknown_value(column: usize, name: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        format!("unknown {name} {value:?}").into(),
    )
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }

    async fn close(&self) {
        // Folds the write-ahead log into the database file so a stopped server leaves one file.
        let checkpoint = self.write(|c| c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))).await;
        if let Err(e) = checkpoint {
            tracing::warn!(error = %e, "WAL checkpoint at shutdown failed");
        }
    }
}
