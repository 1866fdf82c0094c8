//! What the REST API sends: views of domain records with exactly the contract's fields.

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::store::{LedgerEntry, Role, ServiceType, User};

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

impl From<&User> for UserView {
    fn from(u: &User) -> UserView {
        UserView {
            id: u.id.clone(),
            email: u.email.clone(),
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            role: u.role,
            credits: u.credits,
            api_key_prefix: u.api_key_prefix.clone(),
            active: u.active,
            last_login: u.last_login,
            created_at: u.created_at,
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
