//! `Paging`: the one extractor of every list's `?limit=&before=` (unknown parameters and a bad
//! `limit` answer 422 naming the parameter).

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use serde::Deserialize;
use utoipa::IntoParams;

use super::query;
use crate::http::error::ApiError;
use crate::services::paging::PageLimit;

/// The longest cursor any list hands out (a chat cursor: milliseconds, a dot and a UUID).
const MAX_CURSOR_CHARS: usize = 100;

/// The query string of a list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Entries per page, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Where the page starts: the id of the previous page's last entry (messages, images); the
    /// ledgers and the chat list document their own cursors ([`LedgerPageQuery`], [`ChatPageQuery`]).
    #[param(max_length = 100)]
    pub before: Option<String>,
}

/// The query string of a ledger (`/api/me/usage`, `/api/admin/users/{id}/usage`), as documented:
/// the cursor is the `next_before` of the previous page, an entry's sequence number. Parsed as
/// [`PageQuery`]; the ledger checks the cursor's form ([`crate::services::credits`]).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LedgerPageQuery {
    /// Entries per page, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Where the page starts: the `next_before` of the previous page (a whole number from 1,
    /// at most 18 digits).
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    pub before: Option<String>,
}

/// The query string of `/api/chats`, as documented: the cursor is the `next_before` of the
/// previous page, the last chat's activity time (Unix milliseconds) and id. Parsed as
/// [`PageQuery`]; the chat list checks the cursor's form.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChatPageQuery {
    /// Chats per page, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Where the page starts: the `next_before` of the previous page (in the `Link` header).
    #[param(pattern = "^[0-9]{1,14}\\.[0-9a-f-]{1,64}$")]
    pub before: Option<String>,
}

/// A checked page request.
#[derive(Debug)]
pub struct Paging {
    /// How many entries.
    pub limit: PageLimit,
    /// Where the page starts.
    pub before: Option<String>,
}

impl FromRequest for Paging {
    type Error = ApiError;
    type Future = Ready<Result<Paging, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(query::parse::<PageQuery>(req.query_string()).and_then(|q| {
            let limit = PageLimit::new(q.limit).map_err(|problem| ApiError::field("limit", problem))?;
            if q.before.as_ref().is_some_and(|b| b.chars().count() > MAX_CURSOR_CHARS) {
                return Err(ApiError::field("before", "is not a valid cursor"));
            }
            Ok(Paging { limit, before: q.before })
        }))
    }
}
