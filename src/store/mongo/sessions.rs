//! Login sessions, refresh and reset tokens and once-only keys in MongoDB, each single use
//! claimed by a unique-key insert (FerretDB-safe).

use async_trait::async_trait;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ReturnDocument;
use time::OffsetDateTime;

use super::*;

#[async_trait]
impl SessionStore for MongoStore {
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
        if !self.claim("revoke", &found, now).await? {
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

    async fn touch_session(&self, id: &str, now: OffsetDateTime) -> StoreResult<()> {
        // Filtered by `_id` alone, so FerretDB's read-modify-write cannot lose a condition.
        self.coll(SESSIONS)
            .update_one(doc! { "_id": id }, doc! { "$set": { "last_used_at": bson_date(now) } })
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn open_sessions(&self, user_id: &str, used_since: OffsetDateTime) -> StoreResult<Vec<Session>> {
        // A plain find; sessions stored before `last_used_at` existed lack it, so the time
        // filter and the order are applied here, in Rust.
        let cursor = self
            .coll(SESSIONS)
            .find(doc! { "user_id": user_id, "revoked_at": Bson::Null })
            .await
            .map_err(map_err)?;
        let mut sessions = collect(cursor)
            .await?
            .iter()
            .map(doc_to_session)
            .filter(|s| s.as_ref().map_or(true, |s| s.last_used_at >= used_since))
            .collect::<StoreResult<Vec<_>>>()?;
        sessions.sort_by(|a, b| b.last_used_at.cmp(&a.last_used_at).then_with(|| b.id.cmp(&a.id)));
        Ok(sessions)
    }

    async fn insert_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        self.insert(REFRESH_TOKENS, refresh_to_doc(token)).await
    }

    async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>> {
        let found =
            self.coll(REFRESH_TOKENS).find_one(doc! { "token_hash": token_hash }).await.map_err(map_err)?;
        found.as_ref().map(doc_to_refresh).transpose()
    }

    async fn use_refresh_token(&self, token_hash: &str, now: OffsetDateTime) -> StoreResult<RefreshUse> {
        let tokens = self.coll(REFRESH_TOKENS);
        let found = tokens.find_one(doc! { "token_hash": token_hash }).await.map_err(map_err)?;
        let Some(found) = found else {
            return Ok(RefreshUse::Unknown);
        };
        let mut token = doc_to_refresh(&found)?;
        if token.used_at.is_some() {
            return Ok(RefreshUse::Reused(token));
        }
        if !self.claim("refresh", &found, now).await? {
            // Claimed by another exchange that has not marked it (or never will: it failed or
            // its process died between the two writes): the claim's time is the use time, so
            // the grace window ends for it as for a marked token.
            token.used_at = Some(self.claimed_at("refresh", &found).await?.unwrap_or(now));
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
        if !self.claim("reset", &found, now).await? {
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
}

fn session_to_doc(s: &Session) -> Document {
    doc! {
        "_id": &s.id,
        "user_id": &s.user_id,
        "created_at": bson_date(s.created_at),
        "revoked_at": opt_date(s.revoked_at),
        "last_used_at": bson_date(s.last_used_at),
        "ip": s.ip.as_deref(),
        "user_agent": s.user_agent.as_deref(),
    }
}

fn doc_to_session(d: &Document) -> StoreResult<Session> {
    let created_at = date_field(d, "created_at")?;
    Ok(Session {
        id: str_field(d, "_id")?,
        user_id: str_field(d, "user_id")?,
        created_at,
        revoked_at: opt_date_field(d, "revoked_at")?,
        // Optional: sessions stored before these fields existed lack them.
        last_used_at: opt_date_field(d, "last_used_at")?.unwrap_or(created_at),
        ip: opt_str_field(d, "ip")?,
        user_agent: opt_str_field(d, "user_agent")?,
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
