//! Balance changes without transactions: each change is one insert of the next ledger entry
//! under the unique `(user_id, seq)` index. A duplicate key means another writer (another
//! session or another server process) won the race, so the change is re-read and retried.
//!
//! Each entry carries, beside `balance_after`, what the chain needs to answer in one read: the
//! credits held by running generations (`held_after`) and what was spent on the entry's UTC day
//! (`day_spent_after`, holds counted). A hold is refused when the balance cannot cover it or when
//! it would take the day's spending past the user's daily limit; both checks use the position the
//! insert extends, so however many holds race, on however many nodes, neither can be passed.

use time::{Date, OffsetDateTime};

use crate::store::{EntryKind, LedgerEntry, ServiceType, Store, StoreError, TokenUsage, spend_of, utc_day};

/// How often a change is retried after losing a race before giving up as unavailable.
const MAX_ATTEMPTS: usize = 64;

/// A requested change of a user's balance.
#[derive(Debug, Clone)]
pub struct CreditChange {
    /// Whose balance.
    pub user_id: String,
    /// What for.
    pub service_type: ServiceType,
    /// What the entry does.
    pub kind: EntryKind,
    /// Negative for use, positive for grants, settles and refunds; never zero but for a settle
    /// that gives nothing back.
    pub amount: i64,
    /// What it refers to (a generation's message or image id, a grant's reason).
    pub reference: Option<String>,
    /// The admin making a grant.
    pub actor_id: Option<String>,
    /// For a refund, the service refunded.
    pub refund_of: Option<ServiceType>,
    /// For a hold or settle, the generation's model.
    pub model: Option<String>,
    /// For a settle, the tokens used.
    pub usage: Option<TokenUsage>,
    /// For a settle, the credits its hold reserved (no longer held after it).
    pub releases: i64,
    /// For a hold, the most the user may spend on the day (`None`: no limit).
    pub daily_limit: Option<i64>,
}

impl CreditChange {
    /// A change of `amount` of `kind` for `service`, with nothing else said.
    pub fn new(user_id: &str, service_type: ServiceType, kind: EntryKind, amount: i64) -> CreditChange {
        CreditChange {
            user_id: user_id.to_owned(),
            service_type,
            kind,
            amount,
            reference: None,
            actor_id: None,
            refund_of: None,
            model: None,
            usage: None,
            releases: 0,
            daily_limit: None,
        }
    }
}

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum CreditError {
    /// The balance would drop below zero.
    #[error("insufficient credits: {needed} needed, balance {balance}")]
    Insufficient {
        /// The balance that was too small.
        balance: i64,
        /// What the change needed.
        needed: i64,
    },
    /// The hold would take the day's spending past the daily limit.
    #[error("daily limit {limit} reached: {spent} spent today")]
    DailyLimit {
        /// The limit.
        limit: i64,
        /// Spent today before this hold, holds counted.
        spent: i64,
    },
    /// No such user.
    #[error("no such user")]
    UnknownUser,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a user's ledger stands: the newest entry's sequence number (0 before any), the balance,
/// the credits held and the day's spending after it. The credit actor remembers it between changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The newest entry's `seq`.
    pub seq: i64,
    /// The balance after it (the starting credits before any entry).
    pub balance: i64,
    /// Credits held by running generations after it.
    pub held: i64,
    /// The UTC day of the newest entry, and what was spent on it up to and with that entry.
    pub day: Option<(Date, i64)>,
}

impl Position {
    /// What was spent on `today` so far, holds counted.
    pub fn spent_on(&self, today: Date) -> i64 {
        match self.day {
            Some((day, spent)) if day == today => spent,
            _ => 0,
        }
    }
}

/// The current position of a user's ledger: the last entry's, or the starting credits.
pub async fn position(store: &dyn Store, user_id: &str) -> Result<Position, CreditError> {
    if let Some(last) = store.last_ledger_entry(user_id).await? {
        let day = utc_day(last.created_at);
        let spent = match last.day_spent_after {
            Some(spent) => spent,
            // Stored before the day's spending was kept: sum that day from the ledger.
            None => legacy_day_spent(store, user_id, day).await?,
        };
        return Ok(Position {
            seq: last.seq,
            balance: last.balance_after,
            held: last.held_after,
            day: Some((day, spent)),
        });
    }
    let user = store.user_by_id(user_id).await?.ok_or(CreditError::UnknownUser)?;
    Ok(Position { seq: 0, balance: user.initial_credits, held: 0, day: None })
}

/// What was spent on `day` by entries stored before `day_spent_after` was kept.
async fn legacy_day_spent(store: &dyn Store, user_id: &str, day: Date) -> Result<i64, CreditError> {
    let since = day.midnight().assume_utc();
    let days = store.ledger_days(Some(user_id), since).await?;
    Ok(days
        .iter()
        .find(|d| d.date == day)
        .map_or(0, |d| -(d.chat + d.image) - (d.refund_chat + d.refund_image)))
}

/// Whether `entry` is the user's newest ledger entry (it was stored).
async fn landed(store: &dyn Store, entry: &LedgerEntry) -> bool {
    matches!(store.last_ledger_entry(&entry.user_id).await, Ok(Some(last)) if last.id == entry.id)
}

/// Applies `change` atomically and returns the new ledger entry, with the position after it.
/// `known` is where the ledger stood after the caller's previous change (skipping the read); a
/// change that loses a race (another node wrote that `seq` first) reads the position afresh and
/// tries again, and a change the remembered position refuses is checked against a fresh read
/// before it is refused. The balance never drops below zero and a hold never passes the daily
/// limit, whatever number of writers race.
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
        let now = crate::store::now();
        let entry = match next_entry(&at, change, now) {
            Ok(entry) => entry,
            // A remembered position may be behind a grant (or a day) another node made: refuse
            // only on what storage says now.
            Err(_) if remembered => continue,
            Err(refused) => return (Err(refused), Some(at)),
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
        let after = Position {
            seq: entry.seq,
            balance: entry.balance_after,
            held: entry.held_after,
            day: entry.day_spent_after.map(|spent| (utc_day(entry.created_at), spent)),
        };
        return (Ok(entry), Some(after));
    }
    let contended = StoreError::Unavailable("ledger contention: too many concurrent writers".into());
    (Err(contended.into()), None)
}

/// The entry that applies `change` after position `at`, or why it is refused.
fn next_entry(at: &Position, change: &CreditChange, now: OffsetDateTime) -> Result<LedgerEntry, CreditError> {
    let balance_after = at.balance + change.amount;
    if balance_after < 0 {
        return Err(CreditError::Insufficient { balance: at.balance, needed: -change.amount });
    }
    let today = utc_day(now);
    let spent = at.spent_on(today);
    let day_spent_after = spent + spend_of(change.service_type, change.amount);
    if let Some(limit) = change.daily_limit
        && change.kind == EntryKind::Hold
        && day_spent_after > limit
    {
        return Err(CreditError::DailyLimit { limit, spent });
    }
    let held_after = match change.kind {
        EntryKind::Hold => at.held - change.amount,
        EntryKind::Settle => (at.held - change.releases).max(0),
        _ => at.held,
    };
    Ok(LedgerEntry {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: change.user_id.clone(),
        seq: at.seq + 1,
        service_type: change.service_type,
        amount: change.amount,
        balance_after,
        reference: change.reference.clone(),
        actor_id: change.actor_id.clone(),
        refund_of: change.refund_of,
        created_at: now,
        kind: change.kind,
        model: change.model.clone(),
        usage: change.usage,
        held_after,
        day_spent_after: Some(day_spent_after),
    })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn at(balance: i64, held: i64, day: Option<(Date, i64)>) -> Position {
        Position { seq: 7, balance, held, day }
    }

    #[test]
    fn a_hold_adds_to_what_is_held_and_to_the_days_spending_and_its_settle_takes_both_back() {
        let now = datetime!(2026-03-01 12:00 UTC);
        let today = now.date();
        let mut hold = CreditChange::new("u", ServiceType::Chat, EntryKind::Hold, -30);
        hold.daily_limit = Some(100);
        let entry = next_entry(&at(50, 5, Some((today, 60))), &hold, now).unwrap();
        assert_eq!(
            (entry.seq, entry.balance_after, entry.held_after, entry.day_spent_after),
            (8, 20, 35, Some(90))
        );
        let mut settle = CreditChange::new("u", ServiceType::Chat, EntryKind::Settle, 25);
        settle.releases = 30;
        let after = at(20, 35, Some((today, 90)));
        let entry = next_entry(&after, &settle, now).unwrap();
        assert_eq!(
            (entry.balance_after, entry.held_after, entry.day_spent_after),
            (45, 5, Some(65)),
            "charged 5"
        );
    }

    #[test]
    fn a_hold_is_refused_past_the_balance_or_the_daily_limit_and_a_new_day_starts_at_zero() {
        let now = datetime!(2026-03-02 00:00:01 UTC);
        let mut hold = CreditChange::new("u", ServiceType::Image, EntryKind::Hold, -10);
        assert!(matches!(
            next_entry(&at(9, 0, None), &hold, now),
            Err(CreditError::Insufficient { balance: 9, needed: 10 })
        ));
        hold.daily_limit = Some(15);
        let yesterday = now.date().previous_day().unwrap();
        let today = now.date();
        assert!(
            next_entry(&at(100, 0, Some((yesterday, 15))), &hold, now).is_ok(),
            "yesterday's spending is not today's"
        );
        assert!(matches!(
            next_entry(&at(100, 0, Some((today, 6))), &hold, now),
            Err(CreditError::DailyLimit { limit: 15, spent: 6 })
        ));
        let grant = CreditChange {
            daily_limit: Some(0),
            ..CreditChange::new("u", ServiceType::Grant, EntryKind::Grant, 5)
        };
        assert!(next_entry(&at(0, 0, Some((today, 99))), &grant, now).is_ok(), "only holds are limited");
    }
}
