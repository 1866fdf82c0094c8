//! `GET /ws`: checks the credential (docs/API.md §5), the origin of cookie connections and the
//! per-user session cap, then upgrades and starts a [`WsSession`] actor with its writer task.

use std::pin::Pin;

use actix::{Actor, AsyncContext};
use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use actix_web::{FromRequest, HttpRequest, HttpResponse, dev, web};
use futures_util::Stream;
use serde::Deserialize;

use super::frame_guard::FrameGuard;
use super::outbox::{Outbox, write_frames};
use super::protocol::MAX_MESSAGE_BYTES;
use super::session::{SessionCredential, SessionUser, WsSession};
use crate::auth::ACCESS_COOKIE;
use crate::http::error::{ApiError, ErrorBody};
use crate::input::credentials::{Credential, CurrentUser, authenticate_bearer};
use crate::input::query::Query;
use crate::seams::limiter::{ceil_secs, ip_key};
use crate::security::ip_cap::IpPlace;
use crate::state::AppState;

/// Credentials a browser can put in the URL.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    /// An access token.
    pub token: Option<String>,
    /// A single-use ticket from `POST /api/ws-ticket`.
    pub ticket: Option<String>,
}

/// Upgrades an authenticated request to a WebSocket session.
#[utoipa::path(get, path = "/ws", tag = "realtime",
    description = "Upgrades to the JSON WebSocket protocol of docs/API.md §5. `chat.send` and `image.generate` take an optional `idempotency_key` (1 to 64 characters): a request repeating a key the same user used in the last 24 hours, from any session or node, is not charged again and is answered with the first request's result (`chat.done` with the stored reply, `image.created` with the stored image), after waiting for it while it still runs; the same key with a different body is `invalid_message`.",
    params(("token" = Option<String>, Query, description = "access token"), ("ticket" = Option<String>, Query, description = "ws ticket")),
    responses((status = 101, description = "switching protocols"),
        (status = 400, body = ErrorBody, description = "not a WebSocket handshake"),
        (status = 401, body = ErrorBody, description = "no valid credential"),
        (status = 403, body = ErrorBody, description = "foreign origin of a cookie connection, or a disabled account"),
        (status = 422, body = ErrorBody, description = "an unknown or invalid query parameter"),
        (status = 429, body = ErrorBody, description = "the user's session cap, the open sockets per IP or the upgrades per IP per minute are reached"),
        (status = 503, body = ErrorBody, description = "storage is unreachable")))]
pub async fn upgrade(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    query: Query<WsQuery>,
) -> Result<HttpResponse, ApiError> {
    let answer = open(req, payload, state, query).await;
    crate::metrics::record_ws_connect(match &answer {
        Ok(_) => "accepted",
        Err(ApiError::Unauthorized) => "unauthorized",
        Err(ApiError::Forbidden | ApiError::AccountDisabled) => "forbidden",
        Err(ApiError::RateLimited { .. }) => "capped",
        Err(_) => "failed",
    });
    answer
}

/// The upgrade itself; [`upgrade`] counts its result.
async fn open(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    query: Query<WsQuery>,
) -> Result<HttpResponse, ApiError> {
    // Taken before the credential is read: a revocation handled after this moment covers the
    // socket, even if it lands while the socket is still opening.
    let verified_at = std::time::Instant::now();
    let ip_place = ip_limits(&req, &state).await?;
    let CurrentUser(principal) = credential(&req, &state, &query).await?;
    // Reserved before the upgrade, so parallel upgrades cannot pass the cap together; given
    // back when the session ends, or here by any early return.
    let Some(place) = state.realtime.session_cap.reserve(&principal.user.id).await else {
        crate::metrics::record_rate_limited("ws_sessions");
        return Err(ApiError::RateLimited { retry_after_secs: 5 });
    };
    let credits = state.credits.balance(&principal.user.id).await?;
    let generations = state.conversation.generations().of_user(&principal.user.id);
    // The frame guard ends the connection at the header of an oversized frame, before its bytes.
    let guarded: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(FrameGuard::new(payload.into_inner(), MAX_MESSAGE_BYTES as u64));
    let payload = web::Payload::from_request(&req, &mut dev::Payload::from(guarded))
        .into_inner()
        .map_err(|_| ApiError::Internal("payload".into()))?;
    let (response, session, stream) = actix_ws::handle(&req, payload)
        .map_err(|_| ApiError::BadRequest("GET /ws needs a WebSocket handshake"))?;
    let stream = stream
        .max_frame_size(MAX_MESSAGE_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_MESSAGE_BYTES);
    let (outbox, reader) = Outbox::new(state.config.ws_outbound_bytes as usize);
    actix_web::rt::spawn(write_frames(session, reader));
    // A credential without a login session is the API key, or a ticket that it bought.
    let api_key = principal
        .session_id
        .is_none()
        .then(|| crate::auth::tokens::api_key_fingerprint(&principal.user.api_key_hash));
    let credential = SessionCredential {
        user: SessionUser::from(&principal.user),
        auth_session: principal.session_id,
        api_key,
        verified_at,
        place,
        ip_place,
        credits,
        generations,
    };
    let state = state.clone();
    WsSession::create(move |ctx| {
        ctx.add_stream(stream);
        WsSession::new(credential, state, outbox)
    });
    Ok(response)
}

/// The per-IP limits, checked before any credential work: upgrades per minute (through the
/// limiter seam), then open sockets on this node; the place is held for the session's life.
async fn ip_limits(req: &HttpRequest, state: &AppState) -> Result<IpPlace, ApiError> {
    let ip = crate::security::client_ip::client_ip(req, &state.config.trusted_proxies);
    let key = ip_key(ip.0);
    let decision = state.ws_upgrade_limit.check(&key).await;
    if !decision.allowed {
        crate::metrics::record_rate_limited("ws_upgrades");
        return Err(ApiError::RateLimited { retry_after_secs: ceil_secs(decision.retry_after) });
    }
    state.ws_ip_cap.reserve(key).ok_or_else(|| {
        crate::metrics::record_rate_limited("ws_per_ip");
        ApiError::RateLimited { retry_after_secs: 5 }
    })
}

/// The user behind the upgrade request, by header, query token, ticket or cookie.
async fn credential(req: &HttpRequest, state: &AppState, query: &WsQuery) -> Result<CurrentUser, ApiError> {
    if req.headers().contains_key("authorization") || req.headers().contains_key("x-api-key") {
        return authenticate_bearer(state, req).await;
    }
    if let Some(token) = &query.token {
        return Ok(CurrentUser(state.accounts.by_access_token(token, Credential::AccessToken).await?));
    }
    if let Some(ticket) = &query.ticket {
        return Ok(CurrentUser(state.accounts.by_ws_ticket(ticket).await?));
    }
    if let Some(cookie) = req.cookie(ACCESS_COOKIE) {
        if !origin_allowed(req, state) {
            let ip = crate::security::client_ip::client_ip(req, &state.config.trusted_proxies);
            tracing::warn!(event = "ws_origin_refused", client_ip = %ip,
                "cookie WebSocket from a foreign origin refused");
            return Err(ApiError::Forbidden);
        }
        return Ok(CurrentUser(state.accounts.by_access_token(cookie.value(), Credential::Cookie).await?));
    }
    Err(ApiError::Unauthorized)
}

/// Cookie connections must come from this server's own origin or an allowed one; a browser
/// always sends `Origin` on a WebSocket handshake, so a missing one is refused too.
fn origin_allowed(req: &HttpRequest, state: &AppState) -> bool {
    req.headers()
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|origin| crate::security::origin::is_trusted_origin(req, state, origin))
}
