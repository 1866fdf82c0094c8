//! What the REST API sends: views of domain records with exactly the contract's fields, each
//! built in one place (`From` impls here; chats, messages, images and presence share the
//! WebSocket's views in `ws/protocol.rs`).

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::services::accounts::sessions::{LiveSessions, LoginSession};
use crate::services::credits::{DailyUsage, Stats};
use crate::services::overview::Overview;
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
    /// First 10 characters of the API key; null when there is none (a password change, a reset
    /// or signing out everywhere else voids it until a new one is made).
    pub api_key_prefix: Option<String>,
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
            api_key_prefix: Some(u.api_key_prefix.clone()).filter(|prefix| !prefix.is_empty()),
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

/// A UTC day as `YYYY-MM-DD`.
fn iso_date(date: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

/// One live login session (`GET /api/me/sessions`, and an admin's view of a user's).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// Opaque id; `DELETE /api/me/sessions/{id}` ends it.
    pub id: String,
    /// The login.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The login or the latest token refresh (not every request).
    #[serde(with = "time::serde::rfc3339")]
    pub last_used_at: OffsetDateTime,
    /// The client IP at login.
    pub ip: Option<String>,
    /// The `User-Agent` at login (at most 512 characters).
    pub user_agent: Option<String>,
    /// WebSockets open now with a credential of this session.
    pub sockets: usize,
    /// Whether this request came with this session's credential (always false for an admin's view).
    pub current: bool,
}

impl From<&LoginSession> for SessionView {
    fn from(s: &LoginSession) -> SessionView {
        SessionView {
            id: s.id.clone(),
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            ip: s.ip.clone(),
            user_agent: s.user_agent.clone(),
            sockets: s.sockets,
            current: s.current,
        }
    }
}

/// Answer of `GET /api/me/sessions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionsView {
    /// Live sessions (not ended, newest refresh token unexpired), most recently used first.
    pub sessions: Vec<SessionView>,
    /// WebSockets open with the API key (or a ws ticket it bought), which belong to no session.
    pub api_key_sockets: usize,
}

impl From<&LiveSessions> for SessionsView {
    fn from(live: &LiveSessions) -> SessionsView {
        SessionsView {
            sessions: live.sessions.iter().map(SessionView::from).collect(),
            api_key_sockets: live.api_key_sockets,
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

/// One UTC day of the admin overview's chart.
#[derive(Debug, Serialize, ToSchema)]
pub struct OverviewDayView {
    /// The UTC day, `YYYY-MM-DD`.
    #[schema(format = Date, example = "2026-03-01")]
    pub date: String,
    /// Credits spent on chat messages by everyone, net of refunds.
    pub chat: i64,
    /// Credits spent on images by everyone, net of refunds.
    pub image: i64,
    /// Accounts created.
    pub signups: i64,
}

/// Answer of `GET /api/admin/overview`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OverviewView {
    /// Accounts.
    pub users: i64,
    /// Distinct users with an open WebSocket now.
    pub active_users: usize,
    /// Open WebSockets now.
    pub ws_sessions: usize,
    /// Server nodes sharing presence (1 without Redis).
    pub nodes: usize,
    /// Credits spent today (UTC) by everyone, net of refunds.
    pub credits_used_today: CreditsUsedView,
    /// Accounts created today (UTC).
    pub signups_today: i64,
    /// The last 30 UTC days, oldest first, today last (for the chart).
    pub days: Vec<OverviewDayView>,
}

impl From<&Overview> for OverviewView {
    fn from(o: &Overview) -> OverviewView {
        OverviewView {
            users: o.users,
            active_users: o.active_users,
            ws_sessions: o.ws_sessions,
            nodes: o.nodes,
            credits_used_today: CreditsUsedView {
                chat: o.credits_used_today.chat,
                image: o.credits_used_today.image,
            },
            signups_today: o.signups_today,
            days: o
                .days
                .iter()
                .map(|d| OverviewDayView {
                    date: iso_date(d.date),
                    chat: d.chat,
                    image: d.image,
                    signups: d.signups,
                })
                .collect(),
        }
    }
}
