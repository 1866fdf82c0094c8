//! Login sessions and the single-use things that hang off them in the embedded store: refresh
//! tokens, reset tokens and once-only keys (ws tickets).

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;

use super::*;

const SESSION_COLUMNS: &str = "id, user_id, created_at, revoked_at, last_used_at, ip, user_agent";

#[async_trait]
impl SessionStore for SqliteStore {
    async fn insert_session(&self, session: &Session) -> StoreResult<()> {
        let s = session.clone();
        self.write(move |c| {
            c.prepare_cached(&format!(
                "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))?
            .execute(params![
                s.id,
                s.user_id,
                millis(s.created_at),
                s.revoked_at.map(millis),
                millis(s.last_used_at),
                s.ip,
                s.user_agent
            ])
            .map(drop)
        })
        .await
    }

    async fn session(&self, id: &str) -> StoreResult<Option<Session>> {
        let id = id.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"))?
                .query_row([id], session_from_row)
                .optional()
        })
        .await
    }

    async fn touch_session(&self, id: &str, now: OffsetDateTime) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |c| {
            c.prepare_cached("UPDATE sessions SET last_used_at = ?2 WHERE id = ?1")?
                .execute(params![id, millis(now)])
                .map(drop)
        })
        .await
    }

    async fn open_sessions(&self, user_id: &str, used_since: OffsetDateTime) -> StoreResult<Vec<Session>> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions
                 WHERE user_id = ?1 AND revoked_at IS NULL AND COALESCE(last_used_at, created_at) >= ?2
                 ORDER BY COALESCE(last_used_at, created_at) DESC, id DESC"
            ))?
            .query_map(params![user_id, millis(used_since)], session_from_row)?
            .collect()
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

    async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>> {
        let token_hash = token_hash.to_owned();
        self.read(move |c| select_refresh_token(c, &token_hash)).await
    }

    async fn use_refresh_token(&self, token_hash: &str, now: OffsetDateTime) -> StoreResult<RefreshUse> {
        let token_hash = token_hash.to_owned();
        self.write(move |c| {
            let token = select_refresh_token(c, &token_hash)?;
            let Some(token) = token else { return Ok(RefreshUse::Unknown) };
            let marked = c
                .prepare_cached(
                    "UPDATE refresh_tokens SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL",
                )?
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
}

fn session_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Session> {
    let created_at = from_millis(r.get(2)?);
    Ok(Session {
        id: r.get(0)?,
        user_id: r.get(1)?,
        created_at,
        revoked_at: r.get::<_, Option<i64>>(3)?.map(from_millis),
        last_used_at: r.get::<_, Option<i64>>(4)?.map_or(created_at, from_millis),
        ip: r.get(5)?,
        user_agent: r.get(6)?,
    })
}

fn select_refresh_token(
    c: &rusqlite::Connection,
    token_hash: &str,
) -> rusqlite::Result<Option<RefreshToken>> {
    c.prepare_cached("SELECT token_hash, session_id, user_id, expires_at, used_at FROM refresh_tokens WHERE token_hash = ?1")?
        .query_row([token_hash], |r| {
            Ok(RefreshToken {
                token_hash: r.get(0)?,
                session_id: r.get(1)?,
                user_id: r.get(2)?,
                expires_at: from_millis(r.get(3)?),
                used_at: r.get::<_, Option<i64>>(4)?.map(from_millis),
            })
        })
        .optional()
}
