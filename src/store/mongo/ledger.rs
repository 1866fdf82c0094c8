//! The credit ledger in MongoDB: entries under the unique `(user_id, seq)` index and the cached
//! balance on the user, repaired against the ledger.

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};
use time::OffsetDateTime;

use super::*;

/// How often `cache_balance` re-checks the cached balance against the ledger.
const CACHE_ATTEMPTS: usize = 8;

#[async_trait]
impl LedgerStore for MongoStore {
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
        self.inserts.insert(LEDGER, ledger_to_doc(entry)).await
    }

    async fn cache_balance(&self, user_id: &str, seq: i64, balance: i64) -> StoreResult<()> {
        // Under the user's lock, so that no `update_user` of this process writes back an older
        // balance meanwhile (the repair loop still fixes one written by another process).
        self.user_locks.serialise(user_id, self.cache_balance_unlocked(user_id, seq, balance)).await
    }

    async fn repair_cached_balance(
        &self,
        user_id: &str,
        from: CachedBalance,
        to: CachedBalance,
    ) -> StoreResult<bool> {
        // Under the user's lock, as every write of a user document of this process is.
        let repair = async {
            let filter = doc! { "_id": user_id, "credits": from.credits, "credits_seq": from.seq };
            let update = doc! { "$set": { "credits": to.credits, "credits_seq": to.seq } };
            let result = self.coll(USERS).update_one(filter, update).await.map_err(map_err)?;
            Ok(result.matched_count == 1)
        };
        self.user_locks.serialise(user_id, repair).await
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

    async fn ledger_days(&self, user_id: Option<&str>, since: OffsetDateTime) -> StoreResult<Vec<LedgerDay>> {
        // A plain find summed in Rust: FerretDB 1.x runs aggregation pipelines slowly or not at
        // all, and the window (at most 90 days) bounds what is read.
        let mut filter = doc! { "created_at": { "$gte": bson_date(since) } };
        if let Some(user_id) = user_id {
            filter.insert("user_id", user_id);
        }
        let projection = doc! { "service_type": 1, "refund_of": 1, "amount": 1, "created_at": 1 };
        let mut cursor = self.coll(LEDGER).find(filter).projection(projection).await.map_err(map_err)?;
        let mut entries = Vec::new();
        while let Some(d) = cursor.try_next().await.map_err(map_err)? {
            let service = ServiceType::parse(&str_field(&d, "service_type")?)
                .ok_or_else(|| malformed("service_type"))?;
            let refund_of = opt_str_field(&d, "refund_of")?.and_then(|s| ServiceType::parse(&s));
            entries.push((date_field(&d, "created_at")?, service, refund_of, int_field(&d, "amount")?));
        }
        Ok(fold_ledger_days(entries))
    }
}

impl MongoStore {
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
        "kind": e.kind.as_str(),
        "model": e.model.as_deref(),
        "usage": e.usage.map(|u| doc! {
            "input_tokens": u.input_tokens as i64,
            "output_tokens": u.output_tokens as i64,
            "estimated": u.estimated,
        }),
        "held_after": e.held_after,
        "day_spent_after": e.day_spent_after,
    }
}

fn doc_to_ledger(d: &Document) -> StoreResult<LedgerEntry> {
    let refund_of = match opt_str_field(d, "refund_of")? {
        Some(s) => Some(ServiceType::parse(&s).ok_or_else(|| malformed("refund_of"))?),
        None => None,
    };
    let service_type =
        ServiceType::parse(&str_field(d, "service_type")?).ok_or_else(|| malformed("service_type"))?;
    let kind = match opt_str_field(d, "kind")? {
        Some(kind) => EntryKind::parse(&kind).ok_or_else(|| malformed("kind"))?,
        // Stored before kinds were.
        None => EntryKind::of_legacy(service_type),
    };
    let usage = match d.get_document("usage") {
        Ok(u) => Some(TokenUsage {
            input_tokens: int_field(u, "input_tokens")?.max(0) as u64,
            output_tokens: int_field(u, "output_tokens")?.max(0) as u64,
            estimated: u.get_bool("estimated").unwrap_or(false),
        }),
        Err(_) => None,
    };
    Ok(LedgerEntry {
        id: str_field(d, "_id")?,
        user_id: str_field(d, "user_id")?,
        seq: int_field(d, "seq")?,
        service_type,
        amount: int_field(d, "amount")?,
        balance_after: int_field(d, "balance_after")?,
        reference: opt_str_field(d, "reference")?,
        actor_id: opt_str_field(d, "actor_id")?,
        refund_of,
        created_at: date_field(d, "created_at")?,
        kind,
        model: opt_str_field(d, "model")?,
        usage,
        held_after: opt_int_field(d, "held_after")?.unwrap_or(0),
        day_spent_after: opt_int_field(d, "day_spent_after")?,
    })
}
