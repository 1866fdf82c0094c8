//! Security headers on every response — API, pages, assets, errors and 404s (docs/API.md §4) — and
//! `Cache-Control: no-store` on API answers that did not choose their own caching.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, web};

use crate::state::AppState;

/// The Content-Security-Policy: scripts and styles only from this origin (no inline code, no
/// `eval`), images also as `data:`/`blob:` (generated PNGs), WebSockets to any host the page
/// can reach (`ws:`/`wss:` because `'self'` does not cover them in every browser), no plugins,
/// no `<base>`, forms only to this origin, and never inside a frame.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// HSTS for a year, subdomains included, once the server is known to be reached over TLS.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000; includeSubDomains";

/// Headers every response carries, whatever produced it.
const ALWAYS: [(&str, &str); 7] = [
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=()"),
];

/// API paths whose answers may be cached: the public OpenAPI document.
const CACHEABLE_API_PATHS: [&str; 1] = ["/api/openapi.json"];

/// Middleware (wrap with `actix_web::middleware::from_fn`) adding the security headers. An error
/// that escaped the inner services is turned into its response here, so it gets them too.
pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let api = super::is_api_path(req.path());
    let cacheable_api = CACHEABLE_API_PATHS.contains(&req.path());
    let on_tls = req.app_config().secure()
        || req.app_data::<web::Data<AppState>>().is_some_and(|s| s.config.secure_cookies);
    let add = |headers: &mut HeaderMap| {
        for (name, value) in ALWAYS {
            headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        if on_tls {
            headers.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static(STRICT_TRANSPORT_SECURITY),
            );
        }
        // actix-web sends no Server header; make sure nothing added one with a version in it.
        headers.remove(header::SERVER);
        if api && !cacheable_api && !headers.contains_key(header::CACHE_CONTROL) && !is_image(headers) {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    };
    match next.call(req).await {
        Ok(mut response) => {
            add(response.headers_mut());
            Ok(response.map_into_boxed_body())
        }
        Err(e) => {
            let mut response = e.error_response();
            add(response.headers_mut());
            Err(InternalError::from_response(e.to_string(), response).into())
        }
    }
}

/// Image bodies (`/api/images/{id}/content`) choose their own caching.
fn is_image(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.starts_with("image/"))
}
