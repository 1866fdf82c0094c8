//! The admin's overview as REST shows it.

use serde::Serialize;
use utoipa::ToSchema;

use super::credits::{CreditsUsedView, iso_date};
use crate::services::overview::Overview;

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
    /// Generations (chat replies, images) running now.
    pub generations_running: usize,
    /// Credits they hold.
    pub credits_held: i64,
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
            generations_running: o.generations_running,
            credits_held: o.credits_held,
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
