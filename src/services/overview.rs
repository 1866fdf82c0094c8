//! The admin's overview: how many users there are and how many are online now, the nodes, the
//! credits used and the sign-ups of today, and the same per day for the last 30 days (the chart).
//! It reads; it changes nothing.

use std::sync::Arc;

use super::credits::{CreditError, CreditService, DayWindow};
use crate::seams::presence::{PresenceRegistry, PresenceUnavailable};
use crate::services::conversation::Generations;
use crate::store::{CreditsUsed, DynStore, StoreError};

/// Days the overview's chart covers.
pub const OVERVIEW_DAYS: i64 = 30;

/// One UTC day of the overview's chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverviewDay {
    /// The UTC day.
    pub date: time::Date,
    /// Credits spent on chat messages, net of refunds.
    pub chat: i64,
    /// Credits spent on images, net of refunds.
    pub image: i64,
    /// Accounts created.
    pub signups: i64,
}

/// The figures of the overview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overview {
    /// Accounts.
    pub users: i64,
    /// Distinct users with an open WebSocket.
    pub active_users: usize,
    /// Open WebSockets.
    pub ws_sessions: usize,
    /// Server nodes sharing presence.
    pub nodes: usize,
    /// Credits spent today (UTC), net of refunds.
    pub credits_used_today: CreditsUsed,
    /// Accounts created today (UTC).
    pub signups_today: i64,
    /// The last 30 UTC days, oldest first, today last.
    pub days: Vec<OverviewDay>,
    /// Generations running now.
    pub generations_running: usize,
    /// Credits they hold.
    pub credits_held: i64,
}

/// Why the overview could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OverviewError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Presence could not answer.
    #[error(transparent)]
    Presence(#[from] PresenceUnavailable),
}

impl From<CreditError> for OverviewError {
    fn from(e: CreditError) -> OverviewError {
        match e {
            CreditError::Store(e) => OverviewError::Store(e),
            other => OverviewError::Store(StoreError::Internal(other.to_string())),
        }
    }
}

/// Reads the overview.
pub struct OverviewService {
    store: DynStore,
    credits: Arc<CreditService>,
    presence: Arc<dyn PresenceRegistry>,
    generations: Generations,
}

impl OverviewService {
    /// The service over the store, the credits service (daily sums), presence and the running
    /// generations.
    pub fn new(
        store: DynStore,
        credits: Arc<CreditService>,
        presence: Arc<dyn PresenceRegistry>,
        generations: Generations,
    ) -> Self {
        OverviewService { store, credits, presence, generations }
    }

    /// The overview now.
    pub async fn overview(&self) -> Result<Overview, OverviewError> {
        let window = DayWindow::new(Some(OVERVIEW_DAYS)).expect("30 days is a valid window");
        let usage = self.credits.daily_usage(None, window).await?;
        let since = usage.first().map(|d| d.date.midnight().assume_utc()).unwrap_or_else(crate::store::now);
        let signups = self.store.signups_by_day(since).await?;
        let (_, users) = self.store.list_users(None, 0, 0).await?;
        let snapshot = self.presence.snapshot().await?;
        let days: Vec<OverviewDay> = usage
            .iter()
            .map(|d| OverviewDay {
                date: d.date,
                chat: d.chat,
                image: d.image,
                signups: signups.iter().find(|(date, _)| *date == d.date).map_or(0, |(_, n)| *n),
            })
            .collect();
        let today = days.last().copied();
        let (generations_running, credits_held) = self.generations.totals();
        Ok(Overview {
            generations_running,
            credits_held,
            users,
            active_users: snapshot.active_users,
            ws_sessions: snapshot.sessions,
            nodes: self.presence.nodes(),
            credits_used_today: CreditsUsed {
                chat: today.map_or(0, |d| d.chat),
                image: today.map_or(0, |d| d.image),
            },
            signups_today: today.map_or(0, |d| d.signups),
            days,
        })
    }
}
