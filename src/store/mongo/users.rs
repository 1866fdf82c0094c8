//! Users in MongoDB: accounts, their lookups, updates under the per-user write lock, search,
//! and the per-user counts of the profile.

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};
use mongodb::options::ReturnDocument;
use time::OffsetDateTime;

use super::*;

#[async_trait]
impl UserStore for MongoStore {
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

    async fn update_user_keeping_an_admin(
        &self,
        id: &str,
        update: &UserUpdate,
        now: OffsetDateTime,
    ) -> StoreResult<AdminKept> {
        // No multi-document condition and no atomic conditional update on FerretDB: removals of
        // admins take turns under a lease (a unique insert), so the count of the others and the
        // update are one step against every other removal on every process.
        let lease = self.take_lease(ADMIN_REMOVAL_LEASE).await?;
        let outcome = async {
            let others = doc! { "role": "admin", "active": true, "_id": { "$ne": id } };
            if self.count(USERS, others).await? == 0 {
                return Ok(AdminKept::LastAdmin);
            }
            let updated = self.update_user(id, update, now).await?;
            Ok(updated.map_or(AdminKept::NotFound, |user| AdminKept::Updated(Box::new(user))))
        }
        .await;
        self.give_back_lease(lease).await;
        outcome
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

    async fn user_stats(&self, user_id: &str) -> StoreResult<UserStats> {
        Ok(UserStats {
            total_chats: self.count(CHATS, doc! { "user_id": user_id }).await?,
            total_images: self.count(IMAGES, doc! { "user_id": user_id }).await?,
            credits_used: self.credits_used(user_id).await?,
        })
    }

    async fn signups_by_day(&self, since: OffsetDateTime) -> StoreResult<Vec<(time::Date, i64)>> {
        let filter = doc! { "created_at": { "$gte": bson_date(since) } };
        let projection = doc! { "created_at": 1 };
        let mut cursor = self.coll(USERS).find(filter).projection(projection).await.map_err(map_err)?;
        let mut days = std::collections::BTreeMap::<time::Date, i64>::new();
        while let Some(d) = cursor.try_next().await.map_err(map_err)? {
            *days.entry(utc_day(date_field(&d, "created_at")?)).or_default() += 1;
        }
        Ok(days.into_iter().collect())
    }
}

impl MongoStore {
    async fn find_user(&self, filter: Document) -> StoreResult<Option<User>> {
        let found = self.coll(USERS).find_one(filter).await.map_err(map_err)?;
        found.as_ref().map(doc_to_user).transpose()
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
