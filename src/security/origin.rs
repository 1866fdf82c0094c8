//! Where a browser request comes from: the `Origin` header checked against this server's own
//! origin, `SWITCHBOARD_PUBLIC_URL` and `SWITCHBOARD_ALLOWED_ORIGINS`, and the `Sec-Fetch-Site`
//! header browsers add. Used by the CSRF check of cookie-authenticated writes and by cookie
//! WebSockets.

use actix_web::HttpRequest;
use actix_web::http::header;

use crate::state::AppState;

/// Whether `origin` (an `Origin` header value) is this server's own origin or an allowed one.
///
/// The own origin is the `Host` header with the scheme the server is reached by: `https` when
/// served over TLS or with `SWITCHBOARD_SECURE_COOKIES`, else `http` (and `https` too, for a TLS
/// proxy that did not say so). `X-Forwarded-Host` is not consulted: behind a proxy that rewrites
/// `Host`, set `SWITCHBOARD_PUBLIC_URL`.
pub fn is_trusted_origin(req: &HttpRequest, state: &AppState, origin: &str) -> bool {
    let origin = origin.trim().trim_end_matches('/');
    if state.config.allowed_origins.iter().any(|allowed| allowed == origin) {
        return true;
    }
    if state.config.public_url.as_deref() == Some(origin) {
        return true;
    }
    let Some(host) = request_host(req) else { return false };
    let on_tls = req.app_config().secure() || state.config.secure_cookies;
    match origin.split_once("://") {
        Some(("https", rest)) => on_tls && rest == host,
        Some(("http", rest)) => !on_tls && rest == host,
        _ => false,
    }
}

/// The `Host` of the request (HTTP/1.1 header or the HTTP/2 authority).
fn request_host(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// Whether a cookie-authenticated unsafe request may proceed to the CSRF token check.
///
/// - `Origin` present: it must be trusted ([`is_trusted_origin`]), unless the browser itself says
///   the request is same-origin or same-site (`Sec-Fetch-Site`), which a page elsewhere cannot fake.
/// - No `Origin`: refused only when `Sec-Fetch-Site: cross-site`; otherwise the token decides.
pub fn cookie_write_allowed(req: &HttpRequest, state: &AppState) -> bool {
    let fetch_site = req.headers().get("sec-fetch-site").and_then(|v| v.to_str().ok());
    match req.headers().get(header::ORIGIN).map(|v| v.to_str().unwrap_or("")) {
        Some(origin) => {
            is_trusted_origin(req, state, origin) || matches!(fetch_site, Some("same-origin" | "same-site"))
        }
        None => fetch_site != Some("cross-site"),
    }
}
