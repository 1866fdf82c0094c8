//! Reading client input at the edges: JSON bodies ([`json::ValidJson`]), query strings
//! ([`query::Query`]) and list paging ([`paging::Paging`]), each answering 400, 413, 415 or 422
//! with `fields` naming what is wrong.

pub mod json;
pub mod paging;
pub mod query;
