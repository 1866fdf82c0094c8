//! `AppState`: what the edges share — the services, the realtime seams, the REST limit and the
//! settings the edges read. A leaf of the module tree: it imports the layers it holds, and
//! nothing it holds imports it; the start-up module builds it.

use std::sync::Arc;

use crate::config::Config;
use crate::seams::Realtime;
use crate::seams::limiter::Limiter;
use crate::seams::redis::RedisLink;
use crate::security::ip_cap::IpCap;
use crate::services::accounts::AccountService;
use crate::services::conversation::ConversationService;
use crate::services::credits::CreditService;
use crate::services::overview::OverviewService;
use crate::store::{DynStore, StoreResult};

/// Everything handlers and WebSocket sessions share.
pub struct AppState {
    /// Settings the edges read (cookies, origins, proxies, the metrics token, WebSocket limits).
    pub config: Arc<Config>,
    /// This node's name (`SWITCHBOARD_NODE_ID`, or host name and process id), told in `hello`.
    pub node: Arc<str>,
    /// Key that binds CSRF tokens to sessions.
    pub csrf_key: Vec<u8>,
    /// Users, credentials, sessions.
    pub accounts: Arc<AccountService>,
    /// Balances and their changes.
    pub credits: Arc<CreditService>,
    /// Chats, chat turns and images.
    pub conversation: Arc<ConversationService>,
    /// The admin's overview.
    pub overview: Arc<OverviewService>,
    /// The bus, presence and the session cap.
    pub realtime: Realtime,
    /// The REST rate limit (per user, else per client IP).
    pub rest_limit: Arc<dyn Limiter>,
    /// Free WebSocket requests that touch storage, per user.
    pub ws_free_limit: Arc<dyn Limiter>,
    /// The link to Redis with several nodes (for `/readyz`: every other use is a seam's).
    pub(crate) redis: Option<Arc<RedisLink>>,
    /// WebSocket upgrades per client IP per minute (global with a shared limiter).
    pub ws_upgrade_limit: Arc<dyn Limiter>,
    /// Open WebSockets per client IP, on this node.
    pub ws_ip_cap: IpCap,
    /// Storage, for the readiness probe only: every other use goes through a service.
    pub(crate) store: DynStore,
}

impl AppState {
    /// Whether storage answers (for `/readyz`).
    pub async fn storage_ready(&self) -> StoreResult<()> {
        self.store.ping().await
    }

    /// With several nodes, whether this node reaches Redis now, and whether its subscription to
    /// the cluster's channels is up (for `/readyz`).
    pub fn redis_up(&self) -> Option<(bool, bool)> {
        self.redis.as_ref().map(|link| (link.is_up(), link.pubsub_up()))
    }
}
