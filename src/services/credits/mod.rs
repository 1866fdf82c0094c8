//! Credits: the only caller of the ledger. Every balance change — a charge before paid work, a
//! refund after failed work, an admin's grant — goes through the user's credit actor, which
//! serialises that user's changes on this node; the ledger's unique `(user_id, seq)` index keeps
//! them exact across nodes. The balance every view shows comes from here too.

use std::sync::Arc;
use std::time::Duration;

use switchboard_actors::credit::{CreditFailure, CreditRegistry, Ledger, LedgerFuture};

use super::paging::{Page, PageError, PageLimit};
use super::text::Reason;
use super::{Event, Notify};
pub mod ledger;

pub use self::ledger::CreditError;
use self::ledger::{CreditChange, Position};
use crate::store::{CreditsUsed, DynStore, LedgerDay, LedgerEntry, ServiceType, StoreError};

/// Credit actors stop after this long without a change.
const CREDIT_ACTOR_IDLE: Duration = Duration::from_secs(120);

/// Pauses between the attempts of a refund: a refund is never refused for the balance, so
/// every failure is transient.
const REFUND_PAUSES_MS: [u64; 4] = [0, 100, 500, 2000];

/// What paid work costs.
#[derive(Debug, Clone, Copy)]
pub struct Prices {
    /// One chat message.
    pub chat: i64,
    /// One image.
    pub image: i64,
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

/// The store's ledger as the credit actors see it. Every applied change is told to the user's
/// sessions inside the actor's turn, so `credits.updated` frames arrive in ledger order.
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
            if let Ok(entry) = &outcome {
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
    prices: Prices,
}

impl CreditService {
    /// A service over `store` whose changes are told to users through `notify`.
    pub fn new(store: DynStore, notify: Arc<dyn Notify>, prices: Prices) -> CreditService {
        let ledger = Arc::new(StoreLedger { store: store.clone(), notify });
        CreditService { registry: CreditRegistry::new(ledger, CREDIT_ACTOR_IDLE), store, prices }
    }

    /// The price of one piece of paid work.
    pub fn price(&self, service: ServiceType) -> i64 {
        match service {
            ServiceType::Chat => self.prices.chat,
            ServiceType::Image => self.prices.image,
            ServiceType::Grant | ServiceType::Refund => 0,
        }
    }

    /// The balance of `user_id`: the newest ledger entry's, or the starting credits. Read from
    /// the ledger, not from a credit actor's memory: another node may have changed it since.
    pub async fn balance(&self, user_id: &str) -> Result<i64, CreditError> {
        Ok(ledger::position(&*self.store, user_id).await?.balance)
    }

    /// Charges `user_id` the price of `service` for the work `reference` names, before the work
    /// is done; answers the balance after the charge. Nothing is charged when refused.
    pub async fn charge(
        &self,
        user_id: &str,
        service: ServiceType,
        reference: &str,
    ) -> Result<i64, CreditError> {
        let price = self.price(service);
        if price == 0 {
            return self.balance(user_id).await;
        }
        let change = CreditChange {
            user_id: user_id.to_owned(),
            service_type: service,
            amount: -price,
            reference: Some(reference.to_owned()),
            actor_id: None,
            refund_of: None,
        };
        match self.apply(change).await {
            Ok(entry) => {
                crate::metrics::record_credit_usage(service.as_str(), price as u64);
                Ok(entry.balance_after)
            }
            Err(e @ CreditError::Insufficient { .. }) => {
                crate::metrics::record_insufficient(service.as_str());
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Gives back the charge for `reference` after its work failed. Retried a few times (a lost
    /// answer is checked against the ledger, so a retry never refunds twice); a refund that still
    /// fails is logged loudly, and the ledger stays exact either way.
    pub async fn refund(&self, user_id: &str, service: ServiceType, reference: &str) {
        let price = self.price(service);
        if price == 0 {
            return;
        }
        let change = CreditChange {
            user_id: user_id.to_owned(),
            service_type: ServiceType::Refund,
            amount: price,
            reference: Some(reference.to_owned()),
            actor_id: None,
            refund_of: Some(service),
        };
        for (attempt, pause_ms) in REFUND_PAUSES_MS.into_iter().enumerate() {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            match self.apply(change.clone()).await {
                Ok(_) => return,
                Err(e) => tracing::warn!(error = %e, user_id, reference, attempt, "refund failed"),
            }
        }
        tracing::error!(user_id, reference, "refund given up after retries");
    }

    /// An admin's grant (`amount` > 0) or take-back (< 0), with `reason` as the entry's `ref`.
    pub async fn grant(
        &self,
        admin_id: &str,
        user_id: &str,
        amount: i64,
        reason: &Reason,
    ) -> Result<LedgerEntry, CreditError> {
        self.apply(CreditChange {
            user_id: user_id.to_owned(),
            service_type: ServiceType::Grant,
            amount,
            reference: Some(reason.to_string()),
            actor_id: Some(admin_id.to_owned()),
            refund_of: None,
        })
        .await
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
