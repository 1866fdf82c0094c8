//! Liveness and readiness probes.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::http::error::ApiError;
use crate::state::AppState;

/// Readiness waits this long for storage before answering 503.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()), responses((status = 200, description = "alive")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The process can serve: storage answers. With several nodes the answer also says whether this
/// node reaches Redis (`"redis": "up"` or `"down"`) and whether its subscription to the cluster's
/// channels is up (`"pubsub"`: while it is down, revocations for this node's sockets are missed,
/// and checked against storage when it is back); without Redis the node still serves its own
/// sessions, so neither makes it unready.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()), responses((status = 200, description = "ready (with Redis: `redis` and `pubsub` are `up` or `down`)"), (status = 503, description = "storage unreachable")))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, state.storage_ready()).await {
        Ok(Ok(())) => {
            let mut body = json!({"status": "ready"});
            if let Some((commands, pubsub)) = state.redis_up() {
                let word = |up: bool| if up { "up" } else { "down" };
                body["redis"] = json!(word(commands));
                body["pubsub"] = json!(word(pubsub));
            }
            Ok(HttpResponse::Ok().json(body))
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::Unavailable)
        }
        Err(_) => Err(ApiError::Unavailable),
    }
}
