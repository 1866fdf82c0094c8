//! Reading client input at the REST edge, as extractors: the credential
//! ([`credentials::CurrentUser`], [`credentials::Admin`], with the CSRF check), JSON bodies
//! ([`json::ValidJson`]), query strings ([`query::Query`]) and list paging ([`paging::Paging`]),
//! each answering 400, 401, 403, 408, 413, 415 or 422 with `fields` naming what is wrong.

pub mod credentials;
pub mod json;
pub mod paging;
pub mod query;
