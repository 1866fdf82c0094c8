//! Views: the JSON shapes clients see, each built from a domain record in one place (the `From`
//! impls and constructors here), and shared by both edges: REST answers and WebSocket frames
//! carry the same chat, message, image and presence views. Views know serde and the OpenAPI
//! schema, no HTTP or WebSocket type.
//!
//! - [`accounts`]: `UserView`, `SessionsView`.
//! - [`credits`]: `StatsResponse`, `UsagePage`, `DailyUsageView`.
//! - [`conversation`]: `ChatView`, `MessageView`, `ImageView`.
//! - [`models`]: `ModelsView`, the catalogue as a role sees it.
//! - [`presence`]: `PresenceSnapshotView`, `PresenceUserView`.
//! - [`overview`]: `OverviewView`, the admin's figures.

pub mod accounts;
pub mod conversation;
pub mod credits;
pub mod models;
pub mod overview;
pub mod presence;

pub use accounts::{SessionView, SessionsView, UserView};
pub use conversation::{ChatView, ImageView, MessageView, UsageView};
pub use credits::{CreditsUsedView, DailyUsageView, DayUsageView, LedgerEntryView, StatsResponse, UsagePage};
pub use models::ModelsView;
pub use overview::{OverviewDayView, OverviewView};
pub use presence::{PresenceSnapshotView, PresenceUserView};
