//! Balance changes without transactions: each change is one insert of the next ledger entry
//! under the unique `(user_id, seq)` index. A duplicate key means another writer (another
//! session or another server process) won the race, so the change is re-read and retried.

use crate::store::{LedgerEntry, ServiceType, Store, StoreError};

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

/// Where a user's ledger stands: the newest entry's sequence number (0 before any) and the
/// balance after it. The credit actor remembers it between changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The newest entry's `seq`.
    pub seq: i64,
    /// The balance after it (the starting credits before any entry).
    pub balance: i64,
}

/// The current position of a user's ledger: the last entry's, or the starting credits.
pub async fn position(store: &dyn Store, user_id: &str) -> Result<Position, CreditError> {
    if let Some(last) = store.last_ledger_entry(user_id).await? {
        return Ok(Position { seq: last.seq, balance: last.balance_after });
    }
    let user = store.user_by_id(user_id).await?.ok_or(CreditError::UnknownUser)?;
    Ok(Position { seq: 0, balance: user.initial_credits })
}

/// Whether `entry` is the user's newest ledger entry (it was stored).
async fn landed(store: &dyn Store, entry: &LedgerEntry) -> bool {
    matches!(store.last_ledger_entry(&entry.user_id).await, Ok(Some(last)) if last.id == entry.id)
}

/// Applies `change` atomically and returns the new ledger entry, with the position after it.
/// `known` is where the ledger stood after the caller's previous change (skipping the read); a
/// change that loses a race (another node wrote that `seq` first) reads the position afresh and
/// tries again, and a change the remembered position cannot afford is checked against a fresh
/// read before it is refused. The balance never drops below zero, whatever number of writers race.
pub async fn apply(
    store: &dyn Store,
    known: Option<Position>,
    change: &CreditChange,
) -> (Result<LedgerEntry, CreditError>, Option<Position>) {
    let mut known = known;
    for _ in 0..MAX_ATTEMPTS {
        let (at, remembered) = match known.take() {
            Some(at) => (at, true),
            None => match position(store, &change.user_id).await {
                Ok(at) => (at, false),
                Err(e) => return (Err(e), None),
            },
        };
        let balance_after = at.balance + change.amount;
        if balance_after < 0 {
            // A remembered position may be behind a grant another node made: refuse only on
            // what storage says now.
            if remembered {
                continue;
            }
            return (Err(CreditError::Insufficient { balance: at.balance }), Some(at));
        }
        let entry = LedgerEntry {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: change.user_id.clone(),
            seq: at.seq + 1,
            service_type: change.service_type,
            amount: change.amount,
            balance_after,
            reference: change.reference.clone(),
            actor_id: change.actor_id.clone(),
            refund_of: change.refund_of,
            created_at: crate::store::now(),
        };
        match store.append_ledger_entry(&entry).await {
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
            Err(other) => return (Err(other.into()), None),
        }
        let after = Position { seq: entry.seq, balance: entry.balance_after };
        return (Ok(entry), Some(after));
    }
    let contended = StoreError::Unavailable("ledger contention: too many concurrent writers".into());
    (Err(contended.into()), None)
}

/// The current balance of a user: the last entry's `balance_after`, or the starting credits.
pub async fn balance(store: &dyn Store, user_id: &str) -> Result<(i64, i64), CreditError> {
    let at = position(store, user_id).await?;
    Ok((at.seq, at.balance))
}
