//! Credits: the only caller of the ledger. Every balance change — the hold before a generation,
//! its settle after, an admin's grant — goes through the user's credit actor, which serialises
//! that user's changes on this node; the ledger's unique `(user_id, seq)` index keeps them exact
//! across nodes. The balance every view shows, the credits held and the day's spending come from
//! here too.

use std::sync::Arc;
use std::time::Duration;

use switchboard_actors::credit::{CreditFailure, CreditRegistry, Ledger, LedgerFuture};

use super::paging::{Page, PageError, PageLimit};
use super::text::Reason;
use super::{Event, Notify};
pub mod ledger;

pub use self::ledger::CreditError;
use self::ledger::{CreditChange, Position};
use crate::store::{
    CreditsUsed, DynStore, EntryKind, LedgerDay, LedgerEntry, ServiceType, StoreError, TokenUsage,
};

/// Counts what a settled generation charged and, for a chat turn, its tokens, by model.
fn record_charge(hold: &Hold, charged: i64, usage: Option<TokenUsage>) {
    crate::metrics::record_credit_usage(hold.service.as_str(), charged.max(0) as u64);
    crate::metrics::record_generation_charge(&hold.model, charged.max(0) as u64);
    if let Some(usage) = usage {
        crate::metrics::record_tokens(&hold.model, usage.input_tokens, usage.output_tokens);
    }
}

/// Credit actors stop after this long without a change.
const CREDIT_ACTOR_IDLE: Duration = Duration::from_secs(120);

/// Pauses between the attempts of a settle: a settle is never refused for the balance (it gives
/// back), so every failure is transient.
const SETTLE_PAUSES_MS: [u64; 5] = [0, 100, 500, 2000, 5000];

/// Credits reserved for one generation: what its settle needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Whose.
    pub user_id: String,
    /// `chat` or `image`.
    pub service: ServiceType,
    /// The generation's model.
    pub model: String,
    /// The generation (its assistant message or image id), the `ref` of the hold and its settle.
    pub reference: String,
    /// Credits held (≥ 0; a free generation holds nothing and has no entries).
    pub amount: i64,
    /// The balance after the hold.
    pub balance_after: i64,
}

/// A request for a hold.
#[derive(Debug, Clone)]
pub struct HoldRequest<'a> {
    /// Whose credits.
    pub user_id: &'a str,
    /// `chat` or `image`.
    pub service: ServiceType,
    /// The generation's model.
    pub model: &'a str,
    /// The generation.
    pub reference: &'a str,
    /// Credits to hold.
    pub amount: i64,
    /// The most the user may spend today, holds counted (`None`: no limit).
    pub daily_limit: Option<i64>,
}

/// Where a user's credits stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// The balance.
    pub credits: i64,
    /// Credits held by running generations.
    pub held: i64,
    /// Spent today (UTC), holds counted.
    pub spent_today: i64,
}

/// A user's balance, counts and spending, as the stats views show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// The balance.
    pub credits: i64,
    /// Chats the user has.
    pub total_chats: i64,
    /// Images the user generated.
    pub total_images: i64,
    /// Credits spent per service, net of refunds.
    pub credits_used: CreditsUsed,
}

/// Days a per-day view covers when the client does not say.
pub const DEFAULT_DAYS: i64 = 30;
/// The most days a per-day view covers.
pub const MAX_DAYS: i64 = 90;

/// A checked number of days: today (UTC) and the days before it, 1 to 90.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayWindow(i64);

impl DayWindow {
    /// `days`, or 30; `Err` (what to tell the client) outside 1 to 90.
    pub fn new(days: Option<i64>) -> Result<DayWindow, &'static str> {
        match days.unwrap_or(DEFAULT_DAYS) {
            days @ 1..=MAX_DAYS => Ok(DayWindow(days)),
            _ => Err("must be 1 to 90"),
        }
    }

    /// The UTC days of the window, oldest first, ending with the day of `now`.
    pub fn dates(self, now: time::OffsetDateTime) -> Vec<time::Date> {
        let today = crate::store::utc_day(now);
        (0..self.0).rev().filter_map(|back| today.checked_sub(time::Duration::days(back))).collect()
    }
}

/// Credits of one UTC day as the usage chart shows them. `chat` and `image` are the credits spent
/// on each, net of that day's refunds of the same service; `refund` is the sum of those refunds
/// (already taken off `chat` and `image`); `grant` is signed. So the day changed the balance by
/// `grant − chat − image`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyUsage {
    /// The UTC day.
    pub date: time::Date,
    /// Spent on chat messages, net of refunds.
    pub chat: i64,
    /// Spent on images, net of refunds.
    pub image: i64,
    /// Granted by admins (negative for take-backs).
    pub grant: i64,
    /// Given back for failed work.
    pub refund: i64,
}

impl DailyUsage {
    fn from_ledger(day: &LedgerDay) -> DailyUsage {
        DailyUsage {
            date: day.date,
            chat: -day.chat - day.refund_chat,
            image: -day.image - day.refund_image,
            grant: day.grant,
            refund: day.refund_chat + day.refund_image,
        }
    }
}

/// The store's ledger as the credit actors see it. Every applied change that moves the balance is
/// told to the user's sessions inside the actor's turn, so `credits.updated` frames arrive in
/// ledger order (a settle that gives nothing back changes nothing to tell).
struct StoreLedger {
    store: DynStore,
    notify: Arc<dyn Notify>,
}

impl Ledger for StoreLedger {
    type Change = CreditChange;
    type Applied = LedgerEntry;
    type Error = CreditError;
    type Position = Position;

    fn apply(
        &self,
        _user_id: &str,
        known: Option<Position>,
        change: CreditChange,
    ) -> LedgerFuture<LedgerEntry, CreditError, Position> {
        let (store, notify) = (self.store.clone(), self.notify.clone());
        Box::pin(async move {
            let (outcome, position) = ledger::apply(&*store, known, &change).await;
            if let Some(entry) = outcome.as_ref().ok().filter(|entry| entry.amount != 0) {
                notify.notify(&entry.user_id, Event::CreditsUpdated { credits: entry.balance_after });
            }
            (outcome, position)
        })
    }
}

/// Balances and their changes.
pub struct CreditService {
    registry: Arc<CreditRegistry<StoreLedger>>,
    store: DynStore,
}

impl CreditService {
    /// A service over `store` whose changes are told to users through `notify`.
    pub fn new(store: DynStore, notify: Arc<dyn Notify>) -> CreditService {
        let ledger = Arc::new(StoreLedger { store: store.clone(), notify });
        CreditService { registry: CreditRegistry::new(ledger, CREDIT_ACTOR_IDLE), store }
    }

    /// The balance of `user_id`: the newest ledger entry's, or the starting credits. Read from
    /// the ledger, not from a credit actor's memory: another node may have changed it since.
    pub async fn balance(&self, user_id: &str) -> Result<i64, CreditError> {
        Ok(ledger::position(&*self.store, user_id).await?.balance)
    }

    /// The balance, the credits held and today's spending of `user_id`, from the ledger.
    pub async fn standing(&self, user_id: &str) -> Result<Standing, CreditError> {
        let at = ledger::position(&*self.store, user_id).await?;
        let today = crate::store::utc_day(crate::store::now());
        Ok(Standing { credits: at.balance, held: at.held, spent_today: at.spent_on(today) })
    }

    /// Holds credits for a generation before it starts (its worst case): one `hold` entry, refused
    /// when the balance cannot cover it (`Insufficient` names what was needed and the balance) or
    /// when it would pass the daily limit. A hold of 0 writes nothing.
    pub async fn hold(&self, request: HoldRequest<'_>) -> Result<Hold, CreditError> {
        let HoldRequest { user_id, service, model, reference, amount, daily_limit } = request;
        let balance_after = if amount == 0 {
            self.balance(user_id).await?
        } else {
            let mut change = CreditChange::new(user_id, service, EntryKind::Hold, -amount);
            change.reference = Some(reference.to_owned());
            change.model = Some(model.to_owned());
            change.daily_limit = daily_limit;
            match self.apply(change).await {
                Ok(entry) => entry.balance_after,
                Err(e @ CreditError::Insufficient { .. }) => {
                    crate::metrics::record_insufficient(service.as_str());
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        };
        Ok(Hold {
            user_id: user_id.to_owned(),
            service,
            model: model.to_owned(),
            reference: reference.to_owned(),
            amount,
            balance_after,
        })
    }

    /// Ends a generation's hold: one `settle` entry giving back what was held and not charged
    /// (`charged` is at most what was held), with the usage. Retried a few times (a lost answer is
    /// checked against the ledger, so a retry never settles twice); a settle that still fails is
    /// logged loudly and left to `check-ledger --repair`, and the ledger stays exact either way.
    /// Answers the entry, or `None` for a hold of nothing.
    pub async fn settle(&self, hold: &Hold, charged: i64, usage: Option<TokenUsage>) -> Option<LedgerEntry> {
        let charged = charged.clamp(0, hold.amount);
        record_charge(hold, charged, usage);
        if hold.amount == 0 {
            return None;
        }
        let mut change =
            CreditChange::new(&hold.user_id, hold.service, EntryKind::Settle, hold.amount - charged);
        change.reference = Some(hold.reference.clone());
        change.model = Some(hold.model.clone());
        change.usage = usage;
        change.releases = hold.amount;
        for (attempt, pause_ms) in SETTLE_PAUSES_MS.into_iter().enumerate() {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            match self.apply(change.clone()).await {
                Ok(entry) => return Some(entry),
                Err(e) => {
                    tracing::warn!(error = %e, user_id = %hold.user_id, reference = %hold.reference, attempt, "settle failed")
                }
            }
        }
        tracing::error!(user_id = %hold.user_id, reference = %hold.reference, "settle given up after retries: check-ledger --repair closes the hold");
        None
    }

    /// An admin's grant (`amount` > 0) or take-back (< 0), with `reason` as the entry's `ref`.
    pub async fn grant(
        &self,
        admin_id: &str,
        user_id: &str,
        amount: i64,
        reason: &Reason,
    ) -> Result<LedgerEntry, CreditError> {
        let mut change = CreditChange::new(user_id, ServiceType::Grant, EntryKind::Grant, amount);
        change.reference = Some(reason.to_string());
        change.actor_id = Some(admin_id.to_owned());
        self.apply(change).await
    }

    /// A page of the user's ledger, newest first; `before` is the `next_before` of the previous page.
    pub async fn usage(
        &self,
        user_id: &str,
        before: Option<&str>,
        limit: PageLimit,
    ) -> Result<Page<LedgerEntry>, PageError> {
        let before = before.map(ledger_cursor).transpose()?;
        let entries = self.store.ledger_page(user_id, before, limit.get()).await?;
        // Entry 1 is the first: nothing comes before it.
        Ok(Page::of(entries, limit, |last| (last.seq > 1).then(|| last.seq.to_string())))
    }

    /// Balance, counts and spending of `user_id`.
    pub async fn stats(&self, user_id: &str) -> Result<Stats, CreditError> {
        let balance = self.balance(user_id).await?;
        let stats = self.store.user_stats(user_id).await?;
        Ok(Stats {
            credits: balance,
            total_chats: stats.total_chats,
            total_images: stats.total_images,
            credits_used: stats.credits_used,
        })
    }

    /// Credits per UTC day over `window` (one user's, or everyone's with `None`), oldest first,
    /// every day present (zeros where nothing happened).
    pub async fn daily_usage(
        &self,
        user_id: Option<&str>,
        window: DayWindow,
    ) -> Result<Vec<DailyUsage>, CreditError> {
        let dates = window.dates(crate::store::now());
        let Some(first) = dates.first() else { return Ok(Vec::new()) };
        let since = first.midnight().assume_utc();
        let stored = self.store.ledger_days(user_id, since).await?;
        Ok(dates
            .iter()
            .map(|date| match stored.iter().find(|day| day.date == *date) {
                Some(day) => DailyUsage::from_ledger(day),
                None => DailyUsage::from_ledger(&LedgerDay::empty(*date)),
            })
            .collect())
    }

    async fn apply(&self, change: CreditChange) -> Result<LedgerEntry, CreditError> {
        let user_id = change.user_id.clone();
        match self.registry.apply(&user_id, change).await {
            Ok(entry) => Ok(entry),
            Err(CreditFailure::Ledger(e)) => Err(e),
            Err(CreditFailure::Unreachable) => {
                Err(StoreError::Unavailable("credit actor unreachable".into()).into())
            }
        }
    }
}

/// A ledger cursor: an entry's `seq` as `next_before` hands it out, 1 to 18 digits without sign
/// or leading zero (the form the API document gives), so that every cursor of that form
/// reads a page and nothing else passes for one.
fn ledger_cursor(cursor: &str) -> Result<i64, PageError> {
    let well_formed = (1..=18).contains(&cursor.len())
        && cursor.bytes().all(|b| b.is_ascii_digit())
        && !cursor.starts_with('0');
    if !well_formed {
        return Err(PageError::BadCursor);
    }
    cursor.parse().map_err(|_| PageError::BadCursor)
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;

    #[test]
    fn a_day_window_is_1_to_90_days_ending_today_oldest_first() {
        assert_eq!(DayWindow::new(None), Ok(DayWindow(30)));
        for bad in [0, 91, -1] {
            assert!(DayWindow::new(Some(bad)).is_err(), "{bad} days are refused");
        }
        let dates = DayWindow::new(Some(3)).unwrap().dates(datetime!(2026-03-01 00:30 UTC));
        assert_eq!(dates, [date!(2026 - 02 - 27), date!(2026 - 02 - 28), date!(2026 - 03 - 01)]);
    }

    #[test]
    fn a_days_usage_is_spending_net_of_refunds_and_grants_as_signed() {
        let mut day = LedgerDay::empty(date!(2026 - 03 - 01));
        for (service, refund_of, amount) in [
            (ServiceType::Chat, None, -1),
            (ServiceType::Chat, None, -1),
            (ServiceType::Refund, Some(ServiceType::Chat), 1),
            (ServiceType::Image, None, -10),
            (ServiceType::Grant, None, 50),
            (ServiceType::Grant, None, -5),
        ] {
            day.add(service, refund_of, amount);
        }
        let usage = DailyUsage::from_ledger(&day);
        assert_eq!((usage.chat, usage.image, usage.grant, usage.refund), (1, 10, 45, 1));
        assert_eq!(usage.grant - usage.chat - usage.image, 34, "the balance change of the day");
    }
}
