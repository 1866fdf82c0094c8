//! Balance changes without transactions: each change is one insert of the next ledger entry
//! under the unique `(user_id, seq)` index. A duplicate key means another writer (another
//! session or another server process) won the race, so the change is re-read and retried.

use super::{LedgerEntry, ServiceType, Store, StoreError};

/// How often a change is retried after losing a race before giving up as unavailable.
const MAX_ATTEMPTS: usize = 64;

/// A requested change of a user's balance.
#[derive(Debug, Clone)]
pub struct CreditChange {
    /// Whose balance.
    pub user_id: String,
    /// What for.
    pub service_type: ServiceType,
    /// Negative for use, positive for grants and refunds; never zero.
    pub amount: i64,
    /// What it refers to.
    pub reference: Option<String>,
    /// The admin making a grant.
    pub actor_id: Option<String>,
    /// For a refund, the service refunded.
    pub refund_of: Option<ServiceType>,
}

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum CreditError {
    /// The balance would drop below zero.
    #[error("insufficient credits: balance {balance}")]
    Insufficient {
        /// The balance that was too small.
        balance: i64,
    },
    /// No such user.
    #[error("no such user")]
    UnknownUser,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The current balance of a user: the last entry's `balance_after`, or the starting credits.
pub async fn balance(store: &dyn Store, user_id: &str) -> Result<(i64, i64), CreditError> {
    if let Some(last) = store.last_ledger_entry(user_id).await? {
        return Ok((last.seq, last.balance_after));
    }
    let user = store.user_by_id(user_id).await?.ok_or(CreditError::UnknownUser)?;
    Ok((0, user.initial_credits))
}

/// Whether `entry` is the user's newest ledger entry (it was stored).
async fn landed(store: &dyn Store, entry: &LedgerEntry) -> bool {
    matches!(store.last_ledger_entry(&entry.user_id).await, Ok(Some(last)) if last.id == entry.id)
}

/// Applies `change` atomically and returns the new ledger entry.
/// The balance never drops below zero, whatever number of writers race.
pub async fn apply(store: &dyn Store, change: &CreditChange) -> Result<LedgerEntry, CreditError> {
    for _ in 0..MAX_ATTEMPTS {
        let (seq, current) = balance(store, &change.user_id).await?;
        let balance_after = current + change.amount;
        if balance_after < 0 {
            return Err(CreditError::Insufficient { balance: current });
        }
        let entry = LedgerEntry {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: change.user_id.clone(),
            seq: seq + 1,
            service_type: change.service_type,
            amount: change.amount,
            balance_after,
            reference: change.reference.clone(),
            actor_id: change.actor_id.clone(),
            refund_of: change.refund_of,
            created_at: crate::store::now(),
        };
        match store.insert_ledger_entry(&entry).await {
            Ok(()) => {}
            // Another writer took this sequence number, unless it was this very entry, written
            // by a driver retry after a lost acknowledgement.
            Err(StoreError::Duplicate) if !landed(store, &entry).await => continue,
            Err(StoreError::Duplicate) => {}
            // The write may have been applied even though its answer was lost: look before
            // reporting a failure, or the caller would refund or retry a change that stands.
            Err(other) if landed(store, &entry).await => {
                tracing::warn!(error = %other, "ledger insert answered an error but was applied")
            }
            Err(other) => return Err(other.into()),
        }
        // The ledger entry is the truth and the balance on the user a cache: a failed cache
        // update is repaired by the next change and must not turn a stored change into an error.
        if let Err(e) = store.cache_balance(&entry.user_id, entry.seq, entry.balance_after).await {
            tracing::warn!(error = %e, user_id = %entry.user_id, "could not refresh the cached balance");
        }
        return Ok(entry);
    }
    Err(StoreError::Unavailable("ledger contention: too many concurrent writers".into()).into())
}
