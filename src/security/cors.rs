//! CORS for `/api/*`, only for the origins in `SWITCHBOARD_ALLOWED_ORIGINS`: they get their own
//! origin echoed with credentials allowed (never `*`), and preflights are answered here. Any other
//! origin gets no CORS header at all, so the browser keeps the answer from its script.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse, web};

use crate::state::AppState;

/// Methods a cross-origin script may use.
pub const ALLOWED_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
/// Request headers a cross-origin script may send.
pub const ALLOWED_HEADERS: &str = "authorization, content-type, x-api-key, x-csrf-token";
/// Response headers a cross-origin script may read.
pub const EXPOSED_HEADERS: &str = "ratelimit-limit, ratelimit-remaining, ratelimit-reset, retry-after";
/// How long a browser may cache a preflight answer, seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// Middleware (wrap with `actix_web::middleware::from_fn`) implementing the rules above.
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let allowed = allowed_origin(&req);
    let Some(origin) = allowed else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut response = HttpResponse::build(StatusCode::NO_CONTENT);
        response
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE));
        let mut response = response.finish();
        allow(response.headers_mut(), origin);
        return Ok(req.into_response(response).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    allow(response.headers_mut(), origin);
    response
        .headers_mut()
        .insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED_HEADERS));
    Ok(response.map_into_left_body())
}

/// The request's `Origin` when it is an `/api/*` request from an allowed origin.
fn allowed_origin(req: &ServiceRequest) -> Option<HeaderValue> {
    if !super::is_api_path(req.path()) {
        return None;
    }
    let origin = req.headers().get(header::ORIGIN)?;
    let state = req.app_data::<web::Data<AppState>>()?;
    let text = origin.to_str().ok()?.trim_end_matches('/');
    state.config.allowed_origins.iter().any(|allowed| allowed == text).then(|| origin.clone())
}

fn allow(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}
