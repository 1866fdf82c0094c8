//! The HTTP side of metrics: the middleware that records `http_requests_total` and
//! `http_request_duration_seconds` for every request, and the `/metrics` endpoint.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{Error, HttpRequest, HttpResponse, ResponseError, web};

use crate::auth::tokens::constant_time_eq;
use crate::http::error::ApiError;
use crate::metrics::{install, labels, names};
use crate::state::AppState;

/// The path the scrape endpoint is served on.
pub const METRICS_PATH: &str = labels::METRICS_ROUTE;

/// The exposition format Prometheus scrapes.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Middleware (wrap with `actix_web::middleware::from_fn`) recording `http_requests_total` and
/// `http_request_duration_seconds` for every request, errors included, labelled by route pattern.
pub async fn track_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req.match_pattern().unwrap_or_else(|| labels::UNMATCHED_ROUTE.to_owned());
    let result = next.call(req).await;
    let status = match &result {
        Ok(response) => response.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    ::metrics::histogram!(names::HTTP_REQUEST_DURATION_SECONDS, "method" => method, "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    ::metrics::counter!(
        names::HTTP_REQUESTS_TOTAL,
        "method" => method,
        "route" => route,
        "status" => status.as_str().to_owned()
    )
    .increment(1);
    result
}

/// The standard methods by name; anything else is one bucket, so made-up methods add no series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => labels::OTHER_METHOD,
    }
}

/// `GET /metrics`: the Prometheus text exposition. When `METRICS_TOKEN` is set it requires
/// `Authorization: Bearer <token>` and answers 401 otherwise.
#[utoipa::path(get, path = "/metrics", tag = "health", security((), ("bearer" = [])),
    responses((status = 200, content_type = "text/plain", description = "Prometheus text format"), (status = 401, description = "METRICS_TOKEN required")))]
pub async fn metrics_endpoint(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(expected) = &state.config.metrics_token {
        let presented = bearer_token(&req).unwrap_or_default();
        if !constant_time_eq(presented, expected) {
            let mut response = ApiError::Unauthorized.error_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
            return response;
        }
    }
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(install().render())
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
