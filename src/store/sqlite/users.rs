//! Users in the embedded store: accounts, their lookups by email and API key, updates, search,
//! and the per-user counts of the profile.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

use super::*;

const USER_COLUMNS: &str = "id, email, password_hash, first_name, last_name, role, api_key_hash, \
    api_key_prefix, credits, credits_seq, initial_credits, last_login, active, created_at, updated_at";

#[async_trait]
impl UserStore for SqliteStore {
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
        self.write(move |c| apply_update(c, &id, &u, now)).await
    }

    async fn update_user_keeping_an_admin(
        &self,
        id: &str,
        update: &UserUpdate,
        now: OffsetDateTime,
    ) -> StoreResult<AdminKept> {
        let (id, u) = (id.to_owned(), update.clone());
        // The count and the update are one write of the single writer, so no other change of a
        // role or an active flag comes between them.
        self.write(move |c| {
            let others: i64 = c
                .prepare_cached(
                    "SELECT COUNT(*) FROM users WHERE role = 'admin' AND active = 1 AND id != ?1",
                )?
                .query_row([&id], |r| r.get(0))?;
            if others == 0 {
                return Ok(AdminKept::LastAdmin);
            }
            Ok(apply_update(c, &id, &u, now)?
                .map_or(AdminKept::NotFound, |user| AdminKept::Updated(Box::new(user))))
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

    async fn signups_by_day(&self, since: OffsetDateTime) -> StoreResult<Vec<(time::Date, i64)>> {
        let since = millis(since);
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT created_at / {DAY_MILLIS} AS day, COUNT(*) FROM users WHERE created_at >= ?1
                 GROUP BY day ORDER BY day"
            ))?
            .query_map([since], |r| Ok((epoch_day(r.get(0)?), r.get(1)?)))?
            .collect()
        })
        .await
    }
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

/// Applies `u` to user `id` (fields left `None` stay) and answers the user as it is now.
fn apply_update(
    c: &Connection,
    id: &str,
    u: &UserUpdate,
    now: OffsetDateTime,
) -> rusqlite::Result<Option<User>> {
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
    let user = user_where(c, "id", id)?;
    if let Some(user) = &user
        && (u.first_name.is_some() || u.last_name.is_some())
    {
        c.prepare_cached("UPDATE users SET search_text = ?2 WHERE id = ?1")?
            .execute(params![id, search_text(user)])?;
    }
    Ok(user)
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
