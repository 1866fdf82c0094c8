//! Liveness and readiness probes.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// Readiness waits this long for storage before answering 503.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()), responses((status = 200, description = "alive")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The process can serve: storage answers. With several nodes the answer also says whether this
/// node reaches Redis (`"redis": "up"` or `"down"`); without Redis the node still serves its own
/// sessions, so that alone does not make it unready.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()), responses((status = 200, description = "ready (with Redis: `redis` is `up` or `down`)"), (status = 503, description = "storage unreachable")))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, state.storage_ready()).await {
        Ok(Ok(())) => {
            let mut body = json!({"status": "ready"});
            if let Some(up) = state.redis_up() {
                body["redis"] = json!(if up { "up" } else { "down" });
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
