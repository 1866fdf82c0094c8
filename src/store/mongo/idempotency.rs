//! Idempotency keys of paid requests in MongoDB: one document per `(user_id, key)` whose `_id`
//! joins the two, so the unique `_id` makes the insert the atomic claim (also on FerretDB).

use async_trait::async_trait;
use mongodb::bson::{Document, doc};

use super::*;

/// How often a claim retries when the holder it collided with vanished before it was read.
const CLAIM_ATTEMPTS: usize = 3;

#[async_trait]
impl IdempotencyStore for MongoStore {
    async fn claim_idempotency_key(
        &self,
        record: &IdempotencyRecord,
    ) -> StoreResult<Option<IdempotencyRecord>> {
        for _ in 0..CLAIM_ATTEMPTS {
            match self.insert(IDEMPOTENCY, record_to_doc(record)).await {
                Ok(()) => return Ok(None),
                Err(StoreError::Duplicate) => {}
                Err(other) => return Err(other),
            }
            if let Some(holder) = self.idempotency_record(&record.user_id, &record.key).await? {
                return Ok(Some(holder));
            }
        }
        Err(StoreError::Unavailable("an idempotency key kept changing hands".into()))
    }

    async fn idempotency_record(&self, user_id: &str, key: &str) -> StoreResult<Option<IdempotencyRecord>> {
        let found =
            self.coll(IDEMPOTENCY).find_one(doc! { "_id": doc_id(user_id, key) }).await.map_err(map_err)?;
        found.as_ref().map(doc_to_record).transpose()
    }

    async fn complete_idempotency_key(
        &self,
        user_id: &str,
        key: &str,
        claim_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let filter = doc! { "_id": doc_id(user_id, key), "claim_id": claim_id };
        let update = doc! { "$set": { "completed_at": bson_date(now) } };
        self.coll(IDEMPOTENCY).update_one(filter, update).await.map_err(map_err)?;
        Ok(())
    }

    async fn release_idempotency_key(&self, user_id: &str, key: &str, claim_id: &str) -> StoreResult<bool> {
        let filter = doc! { "_id": doc_id(user_id, key), "claim_id": claim_id };
        let deleted = self.coll(IDEMPOTENCY).delete_one(filter).await.map_err(map_err)?;
        Ok(deleted.deleted_count == 1)
    }
}

/// `<user id>:<key>`: user ids hold no colon, so no two pairs share an `_id`.
fn doc_id(user_id: &str, key: &str) -> String {
    format!("{user_id}:{key}")
}

fn record_to_doc(r: &IdempotencyRecord) -> Document {
    doc! {
        "_id": doc_id(&r.user_id, &r.key),
        "user_id": &r.user_id,
        "key": &r.key,
        "claim_id": &r.claim_id,
        "fingerprint": &r.fingerprint,
        "outcome": outcome_to_doc(&r.outcome),
        "created_at": bson_date(r.created_at),
        "completed_at": opt_date(r.completed_at),
    }
}

fn outcome_to_doc(outcome: &IdempotentOutcome) -> Document {
    match outcome {
        IdempotentOutcome::Chat { chat_id, reply_id } => {
            doc! { "kind": "chat", "chat_id": chat_id, "result_id": reply_id }
        }
        IdempotentOutcome::Image { image_id } => doc! { "kind": "image", "result_id": image_id },
    }
}

fn doc_to_record(d: &Document) -> StoreResult<IdempotencyRecord> {
    let o = d.get_document("outcome").map_err(|_| malformed("outcome"))?;
    let outcome = match o.get_str("kind").map_err(|_| malformed("outcome.kind"))? {
        "chat" => IdempotentOutcome::Chat {
            chat_id: str_field(o, "chat_id")?,
            reply_id: str_field(o, "result_id")?,
        },
        "image" => IdempotentOutcome::Image { image_id: str_field(o, "result_id")? },
        _ => return Err(malformed("outcome.kind")),
    };
    Ok(IdempotencyRecord {
        user_id: str_field(d, "user_id")?,
        key: str_field(d, "key")?,
        claim_id: str_field(d, "claim_id")?,
        fingerprint: str_field(d, "fingerprint")?,
        outcome,
        created_at: date_field(d, "created_at")?,
        completed_at: opt_date_field(d, "completed_at")?,
    })
}
