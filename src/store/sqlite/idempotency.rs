//! Idempotency keys of paid requests in the embedded store: one row per `(user_id, key)`, claimed
//! by one insert that a primary-key conflict refuses.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::*;

const COLUMNS: &str =
    "user_id, key, claim_id, fingerprint, outcome_kind, chat_id, result_id, created_at, completed_at";

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn claim_idempotency_key(
        &self,
        record: &IdempotencyRecord,
    ) -> StoreResult<Option<IdempotencyRecord>> {
        let r = record.clone();
        // The insert and the read of a holder happen in one write, so nothing comes between.
        self.write(move |c| {
            let (kind, chat_id, result_id) = outcome_columns(&r.outcome);
            let inserted = c
                .prepare_cached(&format!(
                    "INSERT INTO idempotency_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (user_id, key) DO NOTHING"
                ))?
                .execute(params![
                    r.user_id,
                    r.key,
                    r.claim_id,
                    r.fingerprint,
                    kind,
                    chat_id,
                    result_id,
                    millis(r.created_at),
                    r.completed_at.map(millis)
                ])?;
            if inserted == 1 { Ok(None) } else { select(c, &r.user_id, &r.key) }
        })
        .await
    }

    async fn idempotency_record(&self, user_id: &str, key: &str) -> StoreResult<Option<IdempotencyRecord>> {
        let (user_id, key) = (user_id.to_owned(), key.to_owned());
        self.read(move |c| select(c, &user_id, &key)).await
    }

    async fn complete_idempotency_key(
        &self,
        user_id: &str,
        key: &str,
        claim_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let (user_id, key, claim_id) = (user_id.to_owned(), key.to_owned(), claim_id.to_owned());
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE idempotency_keys SET completed_at = ?4 WHERE user_id = ?1 AND key = ?2 AND claim_id = ?3",
            )?
            .execute(params![user_id, key, claim_id, millis(now)])
            .map(drop)
        })
        .await
    }

    async fn release_idempotency_key(&self, user_id: &str, key: &str, claim_id: &str) -> StoreResult<bool> {
        let (user_id, key, claim_id) = (user_id.to_owned(), key.to_owned(), claim_id.to_owned());
        self.write(move |c| {
            c.prepare_cached(
                "DELETE FROM idempotency_keys WHERE user_id = ?1 AND key = ?2 AND claim_id = ?3",
            )?
            .execute(params![user_id, key, claim_id])
            .map(|n| n == 1)
        })
        .await
    }
}

fn select(c: &Connection, user_id: &str, key: &str) -> rusqlite::Result<Option<IdempotencyRecord>> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM idempotency_keys WHERE user_id = ?1 AND key = ?2"))?
        .query_row([user_id, key], record_from_row)
        .optional()
}

/// The kind, chat id and result id columns of an outcome.
fn outcome_columns(outcome: &IdempotentOutcome) -> (&'static str, Option<String>, String) {
    match outcome {
        IdempotentOutcome::Chat { chat_id, reply_id } => ("chat", Some(chat_id.clone()), reply_id.clone()),
        IdempotentOutcome::Image { image_id } => ("image", None, image_id.clone()),
    }
}

fn record_from_row(r: &Row<'_>) -> rusqlite::Result<IdempotencyRecord> {
    let kind: String = r.get(4)?;
    let outcome = match (kind.as_str(), r.get::<_, Option<String>>(5)?, r.get::<_, String>(6)?) {
        ("chat", Some(chat_id), reply_id) => IdempotentOutcome::Chat { chat_id, reply_id },
        ("image", _, image_id) => IdempotentOutcome::Image { image_id },
        (other, _, _) => return Err(unknown_value(4, "outcome_kind", other)),
    };
    Ok(IdempotencyRecord {
        user_id: r.get(0)?,
        key: r.get(1)?,
        claim_id: r.get(2)?,
        fingerprint: r.get(3)?,
        outcome,
        created_at: from_millis(r.get(7)?),
        completed_at: r.get::<_, Option<i64>>(8)?.map(from_millis),
    })
}
