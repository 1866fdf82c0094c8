//! The embedded store: SQLite (bundled) in WAL mode inside the data directory. One writer
//! connection and a few reader connections; every call runs on tokio's blocking pool so the
//! async workers never wait on the disk.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

use super::*;

/// Reader connections; WAL lets them read while the writer writes.
const READERS: usize = 4;

/// The schema, applied once per version (tracked in `PRAGMA user_version`).
const MIGRATIONS: &[&str] = &[r#"
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
"#];

const USER_COLUMNS: &str = "id, email, password_hash, first_name, last_name, role, api_key_hash, \
    api_key_prefix, credits, credits_seq, initial_credits, last_login, active, created_at, updated_at";

const LEDGER_COLUMNS: &str =
    "id, user_id, seq, service_type, amount, balance_after, reference, actor_id, refund_of, created_at";

/// The embedded SQLite store.
pub struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    readers: Vec<Arc<Mutex<Connection>>>,
    next_reader: AtomicUsize,
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
                Ok(Arc::new(Mutex::new(conn)))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(SqliteStore { writer: Arc::new(Mutex::new(writer)), readers, next_reader: AtomicUsize::new(0) })
    }

    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        run(self.writer.clone(), f).await
    }

    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        run(self.readers[i].clone(), f).await
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

async fn run<T, F>(conn: Arc<Mutex<Connection>>, f: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        // A poisoned lock only means another call panicked mid-statement; SQLite rolled it back.
        let conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&conn).map_err(map_err)
    })
    .await
    .map_err(|e| StoreError::Internal(format!("blocking task failed: {e}")))?
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
        rusqlite::Error::SqliteFailure(err, _)
            if matches!(
                err.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
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

fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn user_from_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        email: r.get(1)?,
        password_hash: r.get(2)?,
        first_name: r.get(3)?,
        last_name: r.get(4)?,
        role: Role::parse(&r.get::<_, String>(5)?),
        api_key_hash: r.get(6)?,
        api_key_prefix: r.get(7)?,
        credits: r.get(8)?,
        credits_seq: r.get(9)?,
        initial_credits: r.get(10)?,
        last_login: r.get::<_, Option<i64>>(11)?.map(from_millis),
        active: r.get(12)?,
        created_at: from_millis(r.get(13)?),
        updated_at: from_millis(r.get(14)?),
    })
}

fn ledger_from_row(r: &Row<'_>) -> rusqlite::Result<LedgerEntry> {
    let service: String = r.get(3)?;
    Ok(LedgerEntry {
        id: r.get(0)?,
        user_id: r.get(1)?,
        seq: r.get(2)?,
        service_type: ServiceType::parse(&service)
            .ok_or_else(|| unknown_value(3, "service_type", &service))?,
        amount: r.get(4)?,
        balance_after: r.get(5)?,
        reference: r.get(6)?,
        actor_id: r.get(7)?,
        refund_of: match r.get::<_, Option<String>>(8)? {
            Some(service) => {
                Some(ServiceType::parse(&service).ok_or_else(|| unknown_value(8, "refund_of", &service))?)
            }
            None => None,
        },
        created_at: from_millis(r.get(9)?),
    })
}

/// A stored value this version does not know: corrupt data, reported instead of guessed.
fn unknown_value(column: usize, name: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        format!("unknown {name} {value:?}").into(),
    )
}

fn user_where(conn: &Connection, column: &str, value: &str) -> rusqlite::Result<Option<User>> {
    conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE {column} = ?1"))?
        .query_row([value], user_from_row)
        .optional()
}

/// What user search matches against: email and names, lower-cased.
fn search_text(user: &User) -> String {
    format!("{}\n{}\n{}", user.email, user.first_name, user.last_name).to_lowercase()
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

    async fn insert_user(&self, user: &User) -> StoreResult<()> {
        let u = user.clone();
        self.write(move |c| {
            c.prepare_cached(&format!(
                "INSERT INTO users ({USER_COLUMNS}, search_text) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
            ))?
            .execute(params![
                u.id,
                u.email,
                u.password_hash,
                u.first_name,
                u.last_name,
                u.role.as_str(),
                u.api_key_hash,
                u.api_key_prefix,
                u.credits,
                u.credits_seq,
                u.initial_credits,
                u.last_login.map(millis),
                u.active,
                millis(u.created_at),
                millis(u.updated_at),
                search_text(&u),
            ])
            .map(drop)
        })
        .await
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        let id = id.to_owned();
        self.read(move |c| user_where(c, "id", &id)).await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let email = email.to_owned();
        self.read(move |c| user_where(c, "email", &email)).await
    }

    async fn user_by_api_key_hash(&self, key_hash: &str) -> StoreResult<Option<User>> {
        let key_hash = key_hash.to_owned();
        self.read(move |c| user_where(c, "api_key_hash", &key_hash)).await
    }

    async fn update_user(
        &self,
        id: &str,
        update: &UserUpdate,
        now: OffsetDateTime,
    ) -> StoreResult<Option<User>> {
        let (id, u) = (id.to_owned(), update.clone());
        self.write(move |c| {
            let (key_hash, key_prefix) = u.api_key.clone().unzip();
            let changed = c
                .prepare_cached(
                    "UPDATE users SET
                        first_name = COALESCE(?2, first_name),
                        last_name = COALESCE(?3, last_name),
                        password_hash = COALESCE(?4, password_hash),
                        api_key_hash = COALESCE(?5, api_key_hash),
                        api_key_prefix = COALESCE(?6, api_key_prefix),
                        role = COALESCE(?7, role),
                        active = COALESCE(?8, active),
                        last_login = COALESCE(?9, last_login),
                        updated_at = ?10
                     WHERE id = ?1",
                )?
                .execute(params![
                    id,
                    u.first_name,
                    u.last_name,
                    u.password_hash,
                    key_hash,
                    key_prefix,
                    u.role.map(Role::as_str),
                    u.active,
                    u.last_login.map(millis),
                    millis(now),
                ])?;
            if changed == 0 {
                return Ok(None);
            }
            let user = user_where(c, "id", &id)?;
            if let Some(user) = &user
                && (u.first_name.is_some() || u.last_name.is_some())
            {
                c.prepare_cached("UPDATE users SET search_text = ?2 WHERE id = ?1")?
                    .execute(params![id, search_text(user)])?;
            }
            Ok(user)
        })
        .await
    }

    async fn list_users(
        &self,
        query: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<(Vec<User>, i64)> {
        let needle = query.map(str::to_lowercase).unwrap_or_default();
        self.read(move |c| {
            // instr() matches the needle literally: no LIKE wildcards to escape.
            let filter = "instr(search_text, ?1) > 0";
            let total = c.query_row(&format!("SELECT COUNT(*) FROM users WHERE {filter}"), [&needle], |r| r.get(0))?;
            let users = c
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE {filter} ORDER BY created_at, id LIMIT ?2 OFFSET ?3"
                ))?
                .query_map(params![needle, limit, offset], user_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((users, total))
        })
        .await
    }

    async fn insert_session(&self, session: &Session) -> StoreResult<()> {
        let s = session.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO sessions (id, user_id, created_at, revoked_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![s.id, s.user_id, millis(s.created_at), s.revoked_at.map(millis)])
            .map(drop)
        })
        .await
    }

    async fn session(&self, id: &str) -> StoreResult<Option<Session>> {
        let id = id.to_owned();
        self.read(move |c| {
            c.prepare_cached("SELECT id, user_id, created_at, revoked_at FROM sessions WHERE id = ?1")?
                .query_row([id], |r| {
                    Ok(Session {
                        id: r.get(0)?,
                        user_id: r.get(1)?,
                        created_at: from_millis(r.get(2)?),
                        revoked_at: r.get::<_, Option<i64>>(3)?.map(from_millis),
                    })
                })
                .optional()
        })
        .await
    }

    async fn revoke_session(&self, id: &str, now: OffsetDateTime) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write(move |c| {
            c.prepare_cached("UPDATE sessions SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")?
                .execute(params![id, millis(now)])
                .map(|n| n == 1)
        })
        .await
    }

    async fn revoke_user_sessions(&self, user_id: &str, now: OffsetDateTime) -> StoreResult<Vec<String>> {
        let user_id = user_id.to_owned();
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE sessions SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL RETURNING id",
            )?
            .query_map(params![user_id, millis(now)], |r| r.get(0))?
            .collect()
        })
        .await
    }

    async fn insert_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        let t = token.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO refresh_tokens (token_hash, session_id, user_id, expires_at, used_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                t.token_hash,
                t.session_id,
                t.user_id,
                millis(t.expires_at),
                t.used_at.map(millis)
            ])
            .map(drop)
        })
        .await
    }

    async fn use_refresh_token(&self, token_hash: &str, now: OffsetDateTime) -> StoreResult<RefreshUse> {
        let token_hash = token_hash.to_owned();
        self.write(move |c| {
            let token = c
                .prepare_cached(
                    "SELECT token_hash, session_id, user_id, expires_at, used_at FROM refresh_tokens WHERE token_hash = ?1",
                )?
                .query_row([&token_hash], |r| {
                    Ok(RefreshToken {
                        token_hash: r.get(0)?,
                        session_id: r.get(1)?,
                        user_id: r.get(2)?,
                        expires_at: from_millis(r.get(3)?),
                        used_at: r.get::<_, Option<i64>>(4)?.map(from_millis),
                    })
                })
                .optional()?;
            let Some(token) = token else { return Ok(RefreshUse::Unknown) };
            let marked = c
                .prepare_cached("UPDATE refresh_tokens SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL")?
                .execute(params![token_hash, millis(now)])?;
            Ok(if marked == 1 { RefreshUse::Fresh(token) } else { RefreshUse::Reused(token) })
        })
        .await
    }

    async fn replace_reset_token(&self, token: &ResetToken) -> StoreResult<()> {
        let t = token.clone();
        self.write(move |c| {
            c.prepare_cached("DELETE FROM reset_tokens WHERE user_id = ?1")?.execute([&t.user_id])?;
            c.prepare_cached(
                "INSERT INTO reset_tokens (token_hash, user_id, expires_at, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![t.token_hash, t.user_id, millis(t.expires_at), millis(t.created_at)])
            .map(drop)
        })
        .await
    }

    async fn void_reset_tokens(&self, user_id: &str) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        self.write(move |c| {
            c.prepare_cached("DELETE FROM reset_tokens WHERE user_id = ?1")?.execute([user_id]).map(drop)
        })
        .await
    }

    async fn consume_reset_token(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Option<String>> {
        let token_hash = token_hash.to_owned();
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE reset_tokens SET used_at = ?2
                 WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2 RETURNING user_id",
            )?
            .query_row(params![token_hash, millis(now)], |r| r.get(0))
            .optional()
        })
        .await
    }

    async fn consume_once(&self, key: &str, expires_at: OffsetDateTime) -> StoreResult<bool> {
        let key = key.to_owned();
        let now = millis(crate::store::now());
        let result = self
            .write(move |c| {
                c.prepare_cached("DELETE FROM once_keys WHERE expires_at < ?1")?.execute([now])?;
                c.prepare_cached("INSERT INTO once_keys (key, expires_at) VALUES (?1, ?2)")?
                    .execute(params![key, millis(expires_at)])
                    .map(drop)
            })
            .await;
        match result {
            Ok(()) => Ok(true),
            Err(StoreError::Duplicate) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn last_ledger_entry(&self, user_id: &str) -> StoreResult<Option<LedgerEntry>> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {LEDGER_COLUMNS} FROM ledger WHERE user_id = ?1 ORDER BY seq DESC LIMIT 1"
            ))?
            .query_row([user_id], ledger_from_row)
            .optional()
        })
        .await
    }

    async fn insert_ledger_entry(&self, entry: &LedgerEntry) -> StoreResult<()> {
        let e = entry.clone();
        self.write(move |c| {
            c.prepare_cached(&format!(
                "INSERT INTO ledger ({LEDGER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))?
            .execute(params![
                e.id,
                e.user_id,
                e.seq,
                e.service_type.as_str(),
                e.amount,
                e.balance_after,
                e.reference,
                e.actor_id,
                e.refund_of.map(ServiceType::as_str),
                millis(e.created_at),
            ])
            .map(drop)
        })
        .await
    }

    async fn cache_balance(&self, user_id: &str, seq: i64, balance: i64) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE users SET credits = ?3, credits_seq = ?2 WHERE id = ?1 AND credits_seq < ?2",
            )?
            .execute(params![user_id, seq, balance])
            .map(drop)
        })
        .await
    }

    async fn ledger_page(
        &self,
        user_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<LedgerEntry>> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {LEDGER_COLUMNS} FROM ledger WHERE user_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
            ))?
            .query_map(params![user_id, before.unwrap_or(i64::MAX), limit], ledger_from_row)?
            .collect()
        })
        .await
    }

    async fn user_stats(&self, user_id: &str) -> StoreResult<UserStats> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            let count = |table: &str| -> rusqlite::Result<i64> {
                c.prepare_cached(&format!("SELECT COUNT(*) FROM {table} WHERE user_id = ?1"))?
                    .query_row([&user_id], |r| r.get(0))
            };
            let used = |service: &str| -> rusqlite::Result<i64> {
                c.prepare_cached(
                    "SELECT COALESCE(-SUM(amount), 0) FROM ledger
                     WHERE user_id = ?1 AND (service_type = ?2 OR (service_type = 'refund' AND refund_of = ?2))",
                )?
                .query_row([&user_id, service], |r| r.get(0))
            };
            Ok(UserStats {
                total_chats: count("chats")?,
                total_images: count("images")?,
                credits_used: CreditsUsed { chat: used("chat")?, image: used("image")? },
            })
        })
        .await
    }

    async fn insert_chat(&self, chat: &Chat) -> StoreResult<()> {
        let ch = chat.clone();
        self.write(move |c| {
            c.prepare_cached(&format!("INSERT INTO chats ({CHAT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"))?
                .execute(params![ch.id, ch.user_id, ch.title, millis(ch.created_at), millis(ch.updated_at)])
                .map(drop)
        })
        .await
    }

    async fn chat(&self, id: &str) -> StoreResult<Option<Chat>> {
        let id = id.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {CHAT_COLUMNS} FROM chats WHERE id = ?1"))?
                .query_row([id], chat_from_row)
                .optional()
        })
        .await
    }

    async fn chat_count(&self, user_id: &str) -> StoreResult<i64> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            c.prepare_cached("SELECT COUNT(*) FROM chats WHERE user_id = ?1")?
                .query_row([user_id], |r| r.get(0))
        })
        .await
    }

    async fn chats_page(
        &self,
        user_id: &str,
        before: Option<(OffsetDateTime, &str)>,
        limit: i64,
    ) -> StoreResult<Vec<Chat>> {
        let user_id = user_id.to_owned();
        let before = before.map(|(at, id)| (millis(at), id.to_owned()));
        self.read(move |c| match before {
            None => c
                .prepare_cached(&format!(
                    "SELECT {CHAT_COLUMNS} FROM chats WHERE user_id = ?1
                     ORDER BY updated_at DESC, id DESC LIMIT ?2"
                ))?
                .query_map(params![user_id, limit], chat_from_row)?
                .collect(),
            Some((at, id)) => c
                .prepare_cached(&format!(
                    "SELECT {CHAT_COLUMNS} FROM chats WHERE user_id = ?1
                       AND (updated_at < ?2 OR (updated_at = ?2 AND id < ?3))
                     ORDER BY updated_at DESC, id DESC LIMIT ?4"
                ))?
                .query_map(params![user_id, at, id, limit], chat_from_row)?
                .collect(),
        })
        .await
    }

    async fn touch_chat(&self, id: &str, now: OffsetDateTime) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |c| {
            c.prepare_cached("UPDATE chats SET updated_at = ?2 WHERE id = ?1")?
                .execute(params![id, millis(now)])
                .map(drop)
        })
        .await
    }

    async fn insert_message(&self, message: &ChatMessage) -> StoreResult<()> {
        let m = message.clone();
        self.write(move |c| {
            c.prepare_cached(&format!(
                "INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))?
            .execute(params![m.id, m.chat_id, m.user_id, m.role.as_str(), m.content, millis(m.created_at)])
            .map(drop)
        })
        .await
    }

    async fn messages_page(
        &self,
        chat_id: &str,
        before: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<ChatMessage>> {
        let (chat_id, before) = (chat_id.to_owned(), before.map(str::to_owned));
        self.read(move |c| {
            let mut newest_first = c
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE chat_id = ?1 AND (?2 IS NULL OR id < ?2)
                     ORDER BY id DESC LIMIT ?3"
                ))?
                .query_map(params![chat_id, before, limit], message_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            newest_first.reverse();
            Ok(newest_first)
        })
        .await
    }

    async fn insert_image(&self, image: &Image, png: &[u8]) -> StoreResult<()> {
        let (i, png) = (image.clone(), png.to_vec());
        self.write(move |c| {
            c.prepare_cached(&format!(
                "INSERT INTO images ({IMAGE_COLUMNS}, png) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))?
            .execute(params![i.id, i.user_id, i.prompt, i.width, i.height, millis(i.created_at), png])
            .map(drop)
        })
        .await
    }

    async fn image(&self, id: &str) -> StoreResult<Option<Image>> {
        let id = id.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?1"))?
                .query_row([id], image_from_row)
                .optional()
        })
        .await
    }

    async fn image_png(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        let id = id.to_owned();
        self.read(move |c| {
            c.prepare_cached("SELECT png FROM images WHERE id = ?1")?.query_row([id], |r| r.get(0)).optional()
        })
        .await
    }

    async fn images_of(&self, user_id: &str, before: Option<&str>, limit: i64) -> StoreResult<Vec<Image>> {
        let (user_id, before) = (user_id.to_owned(), before.map(str::to_owned));
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {IMAGE_COLUMNS} FROM images WHERE user_id = ?1 AND (?2 IS NULL OR id < ?2)
                 ORDER BY id DESC LIMIT ?3"
            ))?
            .query_map(params![user_id, before, limit], image_from_row)?
            .collect()
        })
        .await
    }
}

const CHAT_COLUMNS: &str = "id, user_id, title, created_at, updated_at";

const MESSAGE_COLUMNS: &str = "id, chat_id, user_id, role, content, created_at";

/// Every column but `png`, which only `image_png` reads.
const IMAGE_COLUMNS: &str = "id, user_id, prompt, width, height, created_at";

fn chat_from_row(r: &Row<'_>) -> rusqlite::Result<Chat> {
    Ok(Chat {
        id: r.get(0)?,
        user_id: r.get(1)?,
        title: r.get(2)?,
        created_at: from_millis(r.get(3)?),
        updated_at: from_millis(r.get(4)?),
    })
}

fn message_from_row(r: &Row<'_>) -> rusqlite::Result<ChatMessage> {
    let role: String = r.get(3)?;
    let role = MessageRole::parse(&role).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            3,
            rusqlite::types::Type::Text,
            format!("unknown role {role:?}").into(),
        )
    })?;
    Ok(ChatMessage {
        id: r.get(0)?,
        chat_id: r.get(1)?,
        user_id: r.get(2)?,
        role,
        content: r.get(4)?,
        created_at: from_millis(r.get(5)?),
    })
}

fn image_from_row(r: &Row<'_>) -> rusqlite::Result<Image> {
    Ok(Image {
        id: r.get(0)?,
        user_id: r.get(1)?,
        prompt: r.get(2)?,
        width: r.get(3)?,
        height: r.get(4)?,
        created_at: from_millis(r.get(5)?),
    })
}
