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
            Ok(()) => {
                store.cache_balance(&entry.user_id, entry.seq, entry.balance_after).await?;
                return Ok(entry);
            }
            Err(StoreError::Duplicate) => continue,
            Err(other) => return Err(other.into()),
        }
    }
    Err(StoreError::Unavailable("ledger contention: too many concurrent writers".into()).into())
}
