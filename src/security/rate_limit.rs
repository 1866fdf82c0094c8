//! The REST rate limit (docs/API.md §4): `RATE_LIMIT_PER_MINUTE` per user when the request carries a
//! valid credential, else per client IP, counted by the "rest" limiter seam. Every
//! `/api/*` answer carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`; the
//! request over the limit gets 429 with `Retry-After`. Probes, `/metrics`, pages and `/ws` are
//! not counted.
//!
//! The key must be unforgeable and belong to whoever holds the credential now. A credential is
//! checked in full — signature or key hash, login session not revoked, user active — and keyed
//! by its user, so a user's JWT, cookie and API key share one budget; the check is remembered for
//! the handler, which would make it anyway. Anything that does not check out (an invented, expired,
//! revoked or logged-out token) falls back to the IP: a dead token can neither buy fresh buckets
//! nor spend its former user's budget.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpRequest, HttpResponse, web};

use super::client_ip::client_ip;
use crate::http::error::ApiError;
use crate::input::credentials::verified_principal;
use crate::seams::limiter::{Decision, ceil_secs, ip_key};
use crate::state::AppState;

/// `RateLimit-Limit`: requests per window.
pub const LIMIT_HEADER: &str = "ratelimit-limit";
/// `RateLimit-Remaining`: requests left now.
pub const REMAINING_HEADER: &str = "ratelimit-remaining";
/// `RateLimit-Reset`: seconds until the budget is whole again.
pub const RESET_HEADER: &str = "ratelimit-reset";

/// Middleware (wrap with `actix_web::middleware::from_fn`) limiting `/api/*`.
pub async fn limit_api(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let Some(state) = state.filter(|_| super::is_api_path(req.path())) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let key = rate_key(&state, req.request()).await;
    let decision = state.rest_limit.check(&key).await;
    if !decision.allowed {
        crate::metrics::record_rate_limited("rest");
        let retry_after_secs = ceil_secs(decision.retry_after).max(1);
        let mut response = HttpResponse::from_error(ApiError::RateLimited { retry_after_secs });
        add_headers(response.headers_mut(), &decision);
        return Ok(req.into_response(response).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    add_headers(response.headers_mut(), &decision);
    Ok(response.map_into_left_body())
}

/// `user:<id>` for a credential that checks out in full, else `ip:<client ip>`.
async fn rate_key(state: &AppState, req: &HttpRequest) -> String {
    if let Some(principal) = verified_principal(state, req).await {
        return format!("user:{}", principal.user.id);
    }
    format!("ip:{}", ip_key(client_ip(req, &state.config.trusted_proxies).0))
}

fn add_headers(headers: &mut HeaderMap, decision: &Decision) {
    let values = [
        (LIMIT_HEADER, u64::from(decision.limit)),
        (REMAINING_HEADER, u64::from(decision.remaining)),
        (RESET_HEADER, ceil_secs(decision.reset_after)),
    ];
    for (name, value) in values {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
}
