//! `RequestError`: why a WebSocket request was refused or failed, as its error frame tells it. The
//! WebSocket edge's counterpart of REST's `ApiError`: each service error converts into it (`From`),
//! and [`RequestError::frame`] is the one place that turns it into `{"type":"error"}` with its
//! code (the list is `protocol::ErrorCode`), its sentence and the fields a client acts on. An
//! internal error's cause is logged, never sent.

use std::time::Duration;

use super::protocol::{ErrorCode, ServerMessage};
use crate::services::conversation::ConversationError;
use crate::services::credits::CreditError;
use crate::services::paging::PageError;
use crate::store::StoreError;

/// Why a request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A field is missing or wrong (also bad JSON, an unknown type, a binary frame).
    #[error("{0}")]
    Invalid(String),
    /// No such thing, or not the user's.
    #[error("Not found")]
    NotFound,
    /// Not allowed for this user's role.
    #[error("{0}")]
    Forbidden(String),
    /// A per-user cap on stored things is reached.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The day's spending would pass the user's daily limit.
    #[error("The daily limit of {limit} credits is reached ({spent} spent today); it resets at {}", resets_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default())]
    DailyLimit {
        /// The limit.
        limit: i64,
        /// Spent today, holds counted.
        spent: i64,
        /// When the day ends (midnight UTC).
        resets_at: time::OffsetDateTime,
    },
    /// Too many paid requests (`chat.send`, `image.generate`) this minute.
    #[error("Too many paid requests; retry in {} ms", millis(*.retry_after))]
    PaidLimit {
        /// When a retry may succeed.
        retry_after: Duration,
    },
    /// Too many free requests that touch storage this minute (`chat.list`, `chat.history`, …,
    /// and replays of an `idempotency_key`).
    #[error("Too many requests; retry in {} ms", millis(*.retry_after))]
    FreeLimit {
        /// When a retry may succeed.
        retry_after: Duration,
    },
    /// Too many of this connection's requests wait for an answer already.
    #[error("At most {0} requests may wait for an answer at once")]
    TooManyWaiting(usize),
    /// The balance is below what the request needs.
    #[error("Not enough credits: this needs {needed} and the balance is {balance}")]
    InsufficientCredits {
        /// What the request needs.
        needed: i64,
        /// The balance.
        balance: i64,
    },
    /// Storage or an upstream service failed; any charge was given back.
    #[error("{0}")]
    Unavailable(&'static str),
    /// A bug; its cause is logged, the client is told nothing more.
    #[error("Internal error")]
    Internal(String),
}

/// A duration as whole milliseconds, at least 1 (a client told 0 would retry at once).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RequestError {
    /// The machine code of the error frame.
    pub fn code(&self) -> ErrorCode {
        match self {
            RequestError::Invalid(_) => ErrorCode::InvalidMessage,
            RequestError::NotFound => ErrorCode::NotFound,
            RequestError::Forbidden(_) => ErrorCode::Forbidden,
            RequestError::QuotaExceeded(_) | RequestError::DailyLimit { .. } => ErrorCode::QuotaExceeded,
            RequestError::PaidLimit { .. }
            | RequestError::FreeLimit { .. }
            | RequestError::TooManyWaiting(_) => ErrorCode::RateLimited,
            RequestError::InsufficientCredits { .. } => ErrorCode::InsufficientCredits,
            RequestError::Unavailable(_) => ErrorCode::Unavailable,
            RequestError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The error frame (an internal error's cause goes to the log).
    pub fn frame(&self) -> ServerMessage {
        if let RequestError::Internal(cause) = self {
            tracing::error!(%cause, "internal error in a WebSocket request");
        }
        let retry_after_ms = match self {
            RequestError::PaidLimit { retry_after } | RequestError::FreeLimit { retry_after } => {
                Some(millis(*retry_after))
            }
            // Another request of the connection is about to be answered.
            RequestError::TooManyWaiting(_) => Some(100),
            _ => None,
        };
        let (needed, balance) = match self {
            RequestError::InsufficientCredits { needed, balance } => (Some(*needed), Some(*balance)),
            _ => (None, None),
        };
        let resets_at = match self {
            RequestError::DailyLimit { resets_at, .. } => Some(*resets_at),
            _ => None,
        };
        ServerMessage::Error {
            code: self.code(),
            message: self.to_string(),
            retry_after_ms,
            needed,
            balance,
            resets_at,
        }
    }
}

impl From<ConversationError> for RequestError {
    fn from(e: ConversationError) -> RequestError {
        match e {
            ConversationError::Invalid(problem) => RequestError::Invalid(problem),
            ConversationError::NotFound => RequestError::NotFound,
            ConversationError::QuotaExceeded(message) => RequestError::QuotaExceeded(message),
            ConversationError::RateLimited { retry_after } => RequestError::PaidLimit { retry_after },
            ConversationError::InsufficientCredits { needed, balance } => {
                RequestError::InsufficientCredits { needed, balance }
            }
            ConversationError::Forbidden(why) => RequestError::Forbidden(why),
            ConversationError::DailyLimit { limit, spent, resets_at } => {
                RequestError::DailyLimit { limit, spent, resets_at }
            }
            ConversationError::Unavailable(message) => RequestError::Unavailable(message),
            ConversationError::Internal(cause) => RequestError::Internal(cause),
        }
    }
}

impl From<StoreError> for RequestError {
    fn from(e: StoreError) -> RequestError {
        ConversationError::from(e).into()
    }
}

impl From<CreditError> for RequestError {
    fn from(e: CreditError) -> RequestError {
        ConversationError::from(e).into()
    }
}

impl From<PageError> for RequestError {
    fn from(e: PageError) -> RequestError {
        match e {
            PageError::BadCursor => RequestError::Invalid("before is not a valid cursor".into()),
            PageError::Store(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_says_which_budget_it_is_and_when_to_retry() {
        let retry_after = Duration::from_millis(1500);
        let free = RequestError::FreeLimit { retry_after }.frame().encode(None);
        assert_eq!(
            free,
            r#"{"type":"error","code":"rate_limited","message":"Too many requests; retry in 1500 ms","retry_after_ms":1500}"#
        );
        let paid = RequestError::PaidLimit { retry_after: Duration::ZERO }.frame().encode(None);
        assert!(paid.contains("Too many paid requests") && paid.contains(r#""retry_after_ms":1"#), "{paid}");
    }

    #[test]
    fn insufficient_credits_names_what_is_needed_and_the_balance() {
        let frame = RequestError::InsufficientCredits { needed: 10, balance: 3 }.frame().encode(Some("r"));
        assert_eq!(
            frame,
            r#"{"type":"error","code":"insufficient_credits","message":"Not enough credits: this needs 10 and the balance is 3","needed":10,"balance":3,"reply_to":"r"}"#
        );
    }
}
