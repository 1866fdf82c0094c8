//! What the REST API sends: views of domain records with exactly the contract's fields, each
//! built in one place (`From` impls here; chats, messages, images and presence share the
//! WebSocket's views in `ws/protocol.rs`).

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::services::credits::Stats;
use crate::services::paging::Page;
use crate::store::{LedgerEntry, Role, ServiceType, User};
pub use crate::ws::protocol::PresenceSnapshotView;

/// A user as clients see it (no hashes, no internal counters).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// Opaque id.
    pub id: String,
    /// Lower-cased email.
    pub email: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// `user` or `admin`.
    pub role: Role,
    /// Current balance.
    pub credits: i64,
    /// First 10 characters of the API key.
    pub api_key_prefix: String,
    /// False when deactivated.
    pub active: bool,
    /// Last successful login.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_login: Option<OffsetDateTime>,
    /// Registration time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl UserView {
    /// The view of `u` with its balance (from the credits service: the same everywhere).
    pub fn new(u: &User, credits: i64) -> UserView {
        UserView {
            id: u.id.clone(),
            email: u.email.clone(),
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            role: u.role,
            credits,
            api_key_prefix: u.api_key_prefix.clone(),
            active: u.active,
            last_login: u.last_login,
            created_at: u.created_at,
        }
    }
}

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
    /// `chat`, `image`, `grant` or `refund`.
    pub service_type: ServiceType,
    /// Negative for use.
    pub amount: i64,
    /// Balance after this entry.
    pub balance_after: i64,
    /// What the entry refers to.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<&LedgerEntry> for LedgerEntryView {
    fn from(e: &LedgerEntry) -> LedgerEntryView {
        LedgerEntryView {
            id: e.id.clone(),
            service_type: e.service_type,
            amount: e.amount,
            balance_after: e.balance_after,
            reference: e.reference.clone(),
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
