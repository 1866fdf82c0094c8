//! Balances, the ledger and spending per day as REST shows them.

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::conversation::UsageView;
use crate::services::credits::{DailyUsage, Stats};
use crate::services::paging::Page;
use crate::store::{EntryKind, LedgerEntry, ServiceType};

/// Balance, counts and credits spent per service (`GET /api/me/stats`, and `stats` of an admin's user view).
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsResponse {
    /// Current balance.
    pub credits: i64,
    /// Chats created.
    pub total_chats: i64,
    /// Images generated.
    pub total_images: i64,
    /// Credits spent per service, net of refunds.
    pub credits_used: CreditsUsedView,
}

/// Credits spent per service.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreditsUsedView {
    /// On chat messages.
    pub chat: i64,
    /// On images.
    pub image: i64,
}

impl From<Stats> for StatsResponse {
    fn from(s: Stats) -> StatsResponse {
        StatsResponse {
            credits: s.credits,
            total_chats: s.total_chats,
            total_images: s.total_images,
            credits_used: CreditsUsedView { chat: s.credits_used.chat, image: s.credits_used.image },
        }
    }
}

/// One ledger entry as clients see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerEntryView {
    /// Opaque id.
    pub id: String,
    /// Its place in the user's ledger: 1, 2, 3… without gaps.
    pub seq: i64,
    /// `chat`, `image`, `grant`, `refund` or `allowance`.
    pub service_type: ServiceType,
    /// `hold`, `settle`, `grant`, `refund`, `allowance`, or `charge` (a flat charge made before
    /// metering).
    pub kind: EntryKind,
    /// Negative for use (a hold), positive for what comes back (a settle, a grant).
    pub amount: i64,
    /// Balance after this entry.
    pub balance_after: i64,
    /// What the entry refers to: the generation (its reply or image id) of a hold and its
    /// settle, a grant's reason.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// A hold's or settle's model.
    pub model: Option<String>,
    /// A chat settle's tokens.
    pub usage: Option<UsageView>,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<&LedgerEntry> for LedgerEntryView {
    fn from(e: &LedgerEntry) -> LedgerEntryView {
        LedgerEntryView {
            id: e.id.clone(),
            seq: e.seq,
            service_type: e.service_type,
            kind: e.kind,
            amount: e.amount,
            balance_after: e.balance_after,
            reference: e.reference.clone(),
            model: e.model.clone(),
            usage: e.usage.map(UsageView::from),
            created_at: e.created_at,
        }
    }
}

/// A page of the ledger, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsagePage {
    /// Entries, newest first.
    pub entries: Vec<LedgerEntryView>,
    /// Pass as `before` for the next page; null on the last page.
    pub next_before: Option<String>,
}

impl From<Page<LedgerEntry>> for UsagePage {
    fn from(page: Page<LedgerEntry>) -> UsagePage {
        UsagePage {
            entries: page.items.iter().map(LedgerEntryView::from).collect(),
            next_before: page.next_before,
        }
    }
}

/// Credits of one UTC day. `chat` and `image` are spent credits net of that day's refunds of the
/// same service; `refund` is those refunds; `grant` is signed (negative for take-backs). The day
/// changed the balance by `grant − chat − image`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DayUsageView {
    /// The UTC day, `YYYY-MM-DD`.
    #[schema(format = Date, example = "2026-03-01")]
    pub date: String,
    /// Spent on chat messages, net of refunds.
    pub chat: i64,
    /// Spent on images, net of refunds.
    pub image: i64,
    /// Granted by admins (negative for take-backs).
    pub grant: i64,
    /// Given back for failed work.
    pub refund: i64,
}

/// Answer of `GET /api/me/usage/daily`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DailyUsageView {
    /// One entry per UTC day, oldest first, today last; days without entries are zeros.
    pub days: Vec<DayUsageView>,
}

impl From<&[DailyUsage]> for DailyUsageView {
    fn from(days: &[DailyUsage]) -> DailyUsageView {
        let days = days
            .iter()
            .map(|d| DayUsageView {
                date: iso_date(d.date),
                chat: d.chat,
                image: d.image,
                grant: d.grant,
                refund: d.refund,
            })
            .collect();
        DailyUsageView { days }
    }
}

/// A UTC day as `YYYY-MM-DD`.
pub(super) fn iso_date(date: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}
