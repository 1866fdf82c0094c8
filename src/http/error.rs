//! `ApiError`: the only place that maps failures to HTTP status codes and the
//! `{"error", "code"}` body. Internal details are logged, never sent.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::seams::limiter::ceil_secs;
use crate::services::accounts::AccountError;
use crate::services::conversation::ConversationError;
use crate::services::credits::CreditError;
use crate::services::overview::OverviewError;
use crate::services::paging::PageError;
use crate::store::StoreError;

/// Problems per request field, as sent in `fields`.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// Every error a REST handler can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not valid JSON.
    #[error("The request body is not valid JSON")]
    MalformedJson,
    /// 400: a request this endpoint cannot take (e.g. `/ws` without a WebSocket handshake).
    #[error("{0}")]
    BadRequest(&'static str),
    /// 400: a token in the body (reset token) is invalid, used or expired.
    #[error("{0}")]
    InvalidToken(&'static str),
    /// 401: no credential or an invalid one.
    #[error("Authentication required")]
    Unauthorized,
    /// 401: wrong email or password (same answer for both).
    #[error("Invalid email or password")]
    InvalidCredentials,
    /// 403: the account is deactivated.
    #[error("This account is disabled")]
    AccountDisabled,
    /// 403: the credential is valid but the role is not enough.
    #[error("You are not allowed to do this")]
    Forbidden,
    /// 403: a cookie-authenticated unsafe request without a valid CSRF token.
    #[error("Missing or invalid CSRF token")]
    CsrfFailed,
    /// 404: no such route or resource (or not yours).
    #[error("Not found")]
    NotFound,
    /// 405: the route exists but not with this method.
    #[error("Method not allowed")]
    MethodNotAllowed,
    /// 409: the email is registered already.
    #[error("This email is already registered")]
    EmailTaken,
    /// 409: another conflict, described.
    #[error("{0}")]
    Conflict(&'static str),
    /// 413: body above 64 KiB.
    #[error("The request body is too large (limit 64 KiB)")]
    PayloadTooLarge,
    /// 408: the body did not arrive within [`crate::security::connections::BODY_DEADLINE`].
    #[error("The request body did not arrive in time")]
    RequestTimeout,
    /// 415: not `application/json`.
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// 422: validation failed; `fields` says where.
    #[error("The request is invalid")]
    Validation(FieldErrors),
    /// 429: too many requests.
    #[error("Too many requests")]
    RateLimited {
        /// Seconds until a retry may succeed.
        retry_after_secs: u64,
    },
    /// 503: storage did not answer.
    #[error("The service is temporarily unavailable")]
    Unavailable,
    /// 500: a bug; the cause is logged.
    #[error("Internal server error")]
    Internal(String),
}

impl ApiError {
    /// A 422 for one field.
    pub fn field(field: &str, problem: impl Into<String>) -> ApiError {
        ApiError::Validation(BTreeMap::from([(field.to_owned(), vec![problem.into()])]))
    }

    /// The machine-readable code of the body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson => "malformed_json",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidToken(_) => "invalid_token",
            ApiError::Unauthorized => "unauthorized",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::AccountDisabled => "account_disabled",
            ApiError::Forbidden => "forbidden",
            ApiError::CsrfFailed => "csrf_failed",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::EmailTaken => "email_taken",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Validation(_) => "validation_failed",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

/// The error body on the wire.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A sentence for people.
    pub error: String,
    /// A code for programs.
    pub code: &'static str,
    /// Validation problems per field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<FieldErrors>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson | ApiError::BadRequest(_) | ApiError::InvalidToken(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::AccountDisabled | ApiError::Forbidden | ApiError::CsrfFailed => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::EmailTaken | ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            tracing::error!(%cause, "internal error");
        }
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::RateLimited { retry_after_secs } = self {
            response.insert_header(("Retry-After", retry_after_secs.to_string()));
        }
        let fields = match self {
            ApiError::Validation(fields) => Some(fields.clone()),
            _ => None,
        };
        response.json(ErrorBody { error: self.to_string(), code: self.code(), fields })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "storage unavailable");
                ApiError::Unavailable
            }
            StoreError::Duplicate => ApiError::Internal("unexpected duplicate key".into()),
            StoreError::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<CreditError> for ApiError {
    fn from(e: CreditError) -> ApiError {
        match e {
            CreditError::Insufficient { .. } => ApiError::Conflict("The balance would drop below zero"),
            // Only holds are limited, and REST makes none.
            CreditError::DailyLimit { .. } => ApiError::Conflict("The daily limit is reached"),
            CreditError::UnknownUser => ApiError::NotFound,
            CreditError::Store(e) => e.into(),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> ApiError {
        match e {
            AccountError::Unauthorized => ApiError::Unauthorized,
            AccountError::InvalidCredentials => ApiError::InvalidCredentials,
            AccountError::AccountDisabled => ApiError::AccountDisabled,
            AccountError::EmailTaken => ApiError::EmailTaken,
            AccountError::InvalidResetToken => {
                ApiError::InvalidToken("The reset link is invalid, used or expired")
            }
            AccountError::NotFound => ApiError::NotFound,
            AccountError::Throttled { retry_after } => {
                ApiError::RateLimited { retry_after_secs: ceil_secs(retry_after).max(1) }
            }
            AccountError::Conflict(message) => ApiError::Conflict(message),
            AccountError::Invalid { field, problem } => ApiError::field(field, problem),
            AccountError::Store(e) => e.into(),
            AccountError::Hash(e) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<ConversationError> for ApiError {
    fn from(e: ConversationError) -> ApiError {
        match e {
            ConversationError::NotFound => ApiError::NotFound,
            ConversationError::Unavailable(_) => ApiError::Unavailable,
            ConversationError::Internal(cause) => ApiError::Internal(cause),
            // REST validates bodies before the service does; this is its second line.
            ConversationError::Invalid(problem) => ApiError::field("body", problem),
            // REST reads and deletes chats and images; it neither creates nor pays for any.
            other => ApiError::Internal(format!("unexpected in a REST request: {other}")),
        }
    }
}

impl From<OverviewError> for ApiError {
    fn from(e: OverviewError) -> ApiError {
        match e {
            OverviewError::Store(e) => e.into(),
            OverviewError::Presence(_) => ApiError::Unavailable,
        }
    }
}

impl From<PageError> for ApiError {
    fn from(e: PageError) -> ApiError {
        match e {
            PageError::BadCursor => ApiError::field("before", "is not a valid cursor"),
            PageError::Store(e) => e.into(),
        }
    }
}
