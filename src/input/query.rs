//! `Query<T>`: query strings parsed like JSON bodies — unknown parameters and bad values answer
//! 422 with `fields` naming the parameter.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use serde::de::DeserializeOwned;

use crate::http::error::ApiError;

/// The query string deserialised into `T` (which should `deny_unknown_fields`).
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T> std::ops::Deref for Query<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse(req.query_string()).map(Query))
    }
}

/// Parses a query string, naming the parameter of the first problem.
pub fn parse<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let message = e.inner().to_string();
        let path = e.path().to_string();
        if let Some(name) = message.strip_prefix("unknown field `").and_then(|rest| rest.split('`').next()) {
            return ApiError::field(name, "is not an accepted parameter");
        }
        let field = if path == "." { "query".to_owned() } else { path };
        ApiError::field(&field, "has an invalid value")
    })
}
