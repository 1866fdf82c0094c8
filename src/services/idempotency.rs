//! Idempotent paid requests (docs/API.md §5). A request with an `idempotency_key` claims the key in
//! storage with one atomic insert that also names where its result will be stored (the reply's
//! or image's id, chosen before the work). A retry with the same key, from any session on any
//! node, finds the claim: once the result is stored it is answered with it; while the first
//! still runs it waits (woken at once on this node, by polling the store across nodes); when the
//! first failed (refused, or charged nothing) the claim was released and the retry runs afresh. The same
//! key with a different body is refused. Keys live 24 hours.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::store::{DynStore, IdempotencyRecord, IdempotentOutcome, MessageStatus, StoreError};

/// How long a key holds: a retry after this runs afresh.
const KEY_LIFETIME: time::Duration = time::Duration::hours(24);
/// A claim whose result is still missing after this is taken over by a retry: its node died
/// (or its work hangs far beyond any assistant's answer).
const ABANDONED_AFTER: time::Duration = time::Duration::minutes(5);
/// How long a retry waits for the first request before answering `unavailable`.
const WAIT_LIMIT: Duration = Duration::from_secs(120);
/// Longest pause between two looks at the store while waiting for another node.
const MAX_POLL: Duration = Duration::from_millis(500);
/// Longest accepted key, characters.
const MAX_KEY_CHARS: usize = 64;

/// Why a key could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The key is malformed, or was used with a different request.
    #[error("{0}")]
    Invalid(&'static str),
    /// The key's first request still runs after the longest wait.
    #[error("The first request with this idempotency_key is still running; try again")]
    StillRunning,
    /// The key's first request completed, and its result has been deleted since.
    #[error("The result of the request with this idempotency_key was deleted")]
    ResultDeleted,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a claim decided.
pub enum Claim {
    /// This request holds the key: do the work, then drop the guard (or release it on failure).
    Run(ClaimGuard),
    /// The key's first request stored this result: answer with it.
    Replay(IdempotentOutcome),
}

/// The keys and the requests of this node that hold one.
pub struct Idempotency {
    store: DynStore,
    running: Arc<Mutex<HashMap<String, watch::Receiver<()>>>>,
}

/// This node's hold on a claimed key. Dropping it wakes the retries waiting on this node.
pub struct ClaimGuard {
    record: IdempotencyRecord,
    running: Arc<Mutex<HashMap<String, watch::Receiver<()>>>>,
    /// The entry this guard put in `running`, if the key had none on this node.
    registered: Option<watch::Receiver<()>>,
    _done: watch::Sender<()>,
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        let Some(mine) = &self.registered else { return };
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let key = local_key(&self.record.user_id, &self.record.key);
        if running.get(&key).is_some_and(|entry| entry.same_channel(mine)) {
            running.remove(&key);
        }
    }
}

impl Idempotency {
    /// Keys kept in `store`.
    pub fn new(store: DynStore) -> Idempotency {
        Idempotency { store, running: Arc::default() }
    }

    /// Checks `key` and claims it for a request with this `fingerprint` whose result will be
    /// `outcome`; or finds the result of the key's first request, waiting for it while it runs.
    pub async fn claim(
        &self,
        user_id: &str,
        key: &str,
        fingerprint: String,
        outcome: IdempotentOutcome,
    ) -> Result<Claim, IdempotencyError> {
        if key.is_empty() || key.chars().count() > MAX_KEY_CHARS || key.chars().any(char::is_control) {
            return Err(IdempotencyError::Invalid(
                "idempotency_key must be 1 to 64 characters without control characters",
            ));
        }
        let deadline = Instant::now() + WAIT_LIMIT;
        let mut pause = Duration::from_millis(10);
        loop {
            let record = IdempotencyRecord {
                user_id: user_id.to_owned(),
                key: key.to_owned(),
                claim_id: uuid::Uuid::new_v4().to_string(),
                fingerprint: fingerprint.clone(),
                outcome: outcome.clone(),
                created_at: crate::store::now(),
                completed_at: None,
            };
            // A guard made before the insert, so a retry on this node can never miss its wake-up.
            let guard = self.guard(record.clone());
            let Some(holder) = self.store.claim_idempotency_key(&record).await? else {
                return Ok(Claim::Run(guard));
            };
            drop(guard);
            if holder.fingerprint != fingerprint {
                return Err(IdempotencyError::Invalid(
                    "idempotency_key was already used with a different request",
                ));
            }
            let age = crate::store::now() - holder.created_at;
            if age > KEY_LIFETIME {
                // Expired: the key is free again, whatever its first request left.
                self.store.release_idempotency_key(user_id, key, &holder.claim_id).await?;
                continue;
            }
            if self.result_stored(&holder.outcome).await? {
                return Ok(Claim::Replay(holder.outcome));
            }
            if holder.completed_at.is_some() {
                // Its result was stored and has been deleted since (the chat or the image).
                return Err(IdempotencyError::ResultDeleted);
            }
            if age > ABANDONED_AFTER {
                // Its node died before storing anything: the key is free again.
                self.store.release_idempotency_key(user_id, key, &holder.claim_id).await?;
                continue;
            }
            if Instant::now() >= deadline {
                return Err(IdempotencyError::StillRunning);
            }
            self.wait(user_id, key, pause).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// Marks a claim completed once its result is stored, so that a retry after the result was
    /// deleted is told so at once instead of waiting for a result that will never come.
    pub async fn complete(&self, guard: ClaimGuard) {
        let r = &guard.record;
        let now = crate::store::now();
        if let Err(e) = self.store.complete_idempotency_key(&r.user_id, &r.key, &r.claim_id, now).await {
            // Retries still find the stored result; only one after its deletion waits in vain.
            tracing::warn!(error = %e, "could not mark an idempotency key completed");
        }
    }

    /// Releases a claim whose request failed before its result was stored (refused, or charged
    /// and settled charging 0), so a retry runs afresh.
    pub async fn release(&self, guard: ClaimGuard) {
        let r = &guard.record;
        if let Err(e) = self.store.release_idempotency_key(&r.user_id, &r.key, &r.claim_id).await {
            // The claim then stands until it counts as abandoned; retries wait for it meanwhile.
            tracing::warn!(error = %e, "could not release an idempotency key");
        }
    }

    /// Whether the result a claim names is stored.
    async fn result_stored(&self, outcome: &IdempotentOutcome) -> Result<bool, StoreError> {
        Ok(match outcome {
            // A reply is stored from its start; it is a result once it has ended.
            IdempotentOutcome::Chat { reply_id, .. } => {
                self.store.message(reply_id).await?.is_some_and(|m| m.status != MessageStatus::Streaming)
            }
            IdempotentOutcome::Image { image_id } => self.store.image(image_id).await?.is_some(),
        })
    }

    /// Registers this node's request for `record`'s key, for its retries to wait on, unless
    /// another request of this node holds (or is claiming) it: retries then wait on that one.
    fn guard(&self, record: IdempotencyRecord) -> ClaimGuard {
        let (done, waiting) = watch::channel(());
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = running.entry(local_key(&record.user_id, &record.key));
        let registered = match entry {
            std::collections::hash_map::Entry::Vacant(vacant) => Some(vacant.insert(waiting).clone()),
            std::collections::hash_map::Entry::Occupied(_) => None,
        };
        drop(running);
        ClaimGuard { record, running: self.running.clone(), registered, _done: done }
    }

    /// Waits until this node's request holding the key ends, or `pause` at most (the holder
    /// may run on another node).
    async fn wait(&self, user_id: &str, key: &str, pause: Duration) {
        let waiting = {
            let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            running.get(&local_key(user_id, key)).cloned()
        };
        match waiting {
            Some(mut waiting) => {
                let _ = tokio::time::timeout(MAX_POLL, waiting.changed()).await;
            }
            None => tokio::time::sleep(pause).await,
        }
    }
}

fn local_key(user_id: &str, key: &str) -> String {
    format!("{user_id}:{key}")
}

/// The fingerprint of a request: SHA-256 of its kind and fields, each on its own line after its
/// length, so no two different requests share one.
pub fn fingerprint(kind: &str, fields: &[&str]) -> String {
    let mut text = kind.to_owned();
    for field in fields {
        text.push_str(&format!("\n{}:{field}", field.len()));
    }
    crate::auth::tokens::sha256_hex(&text)
}
