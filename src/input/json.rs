//! `ValidJson<T>`: the only way a handler reads a JSON body. It enforces the content type,
//! the 64 KiB limit, well-formed JSON, known fields with the right types, and `validator`
//! rules, answering 415, 413, 400 and 422 in the `{error, code, fields}` shape.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::StreamExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

use crate::http::error::{ApiError, FieldErrors};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body deserialised into `T` (which should `deny_unknown_fields`) and validated.
#[derive(Debug)]
pub struct ValidJson<T>(pub T);

impl<T: DeserializeOwned + Validate + 'static> FromRequest for ValidJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_json::<T>(req, payload, true);
        Box::pin(async move {
            match body.await?.0 {
                Some(value) => Ok(ValidJson(value)),
                None => Err(ApiError::UnsupportedMediaType),
            }
        })
    }
}

/// Like [`ValidJson`], but an empty body is `None` (for routes that also accept a cookie
/// instead of a body).
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned + Validate + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        Box::pin(read_json(req, payload, false))
    }
}

/// Reads a JSON body; without `requires_body`, an empty body is `None` whatever its type.
fn read_json<T: DeserializeOwned + Validate + 'static>(
    req: &HttpRequest,
    payload: &mut Payload,
    requires_body: bool,
) -> impl Future<Output = Result<OptionalJson<T>, ApiError>> + 'static {
    let content_type =
        req.headers().get("content-type").map(|v| v.to_str().map(is_json_type).unwrap_or(false));
    let declared_too_large = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|len| len > MAX_BODY_BYTES);
    let mut payload = payload.take();
    async move {
        if declared_too_large {
            return Err(ApiError::PayloadTooLarge);
        }
        // The body's deadline is the connection guard's (`security::connections`), which fails
        // the stream once it passes, whatever the body's framing.
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| match e {
                PayloadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => ApiError::RequestTimeout,
                _ => ApiError::MalformedJson,
            })?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ApiError::PayloadTooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        match content_type {
            _ if body.iter().all(u8::is_ascii_whitespace) && !requires_body => Ok(OptionalJson(None)),
            Some(true) => parse(&body).map(|v| OptionalJson(Some(v))),
            Some(false) | None => Err(ApiError::UnsupportedMediaType),
        }
    }
}

fn is_json_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses and validates a body; public for the unit tests of request types.
pub fn parse<T: DeserializeOwned + Validate>(body: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| ApiError::MalformedJson)?;
    if !value.is_object() {
        return Err(ApiError::field("body", "must be a JSON object"));
    }
    let parsed: T = serde_path_to_error::deserialize(value).map_err(|e| {
        let (field, problem) = describe(&e);
        ApiError::field(&field, problem)
    })?;
    parsed.validate().map_err(|e| ApiError::Validation(flatten(&e)))?;
    Ok(parsed)
}

/// Names the field and the problem of a deserialisation error without echoing input values.
fn describe(e: &serde_path_to_error::Error<serde_json::Error>) -> (String, String) {
    let message = e.inner().to_string();
    let path = e.path().to_string();
    if let Some(name) = message.strip_prefix("unknown field `").and_then(|rest| rest.split('`').next()) {
        // serde_path_to_error already ends the path with the unknown key.
        let field = if path == "." || path == name || path.ends_with(&format!(".{name}")) {
            if path == "." { name.to_owned() } else { path }
        } else {
            format!("{path}.{name}")
        };
        return (field, "is not an accepted field".into());
    }
    if let Some(name) = message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()) {
        return (name.to_owned(), "is required".into());
    }
    let field = if path == "." { "body".to_owned() } else { path };
    let problem = match message.split_once(", expected ") {
        Some((_, expected)) => format!("must be {}", expected.split(" at line").next().unwrap_or(expected)),
        None => "has the wrong type".to_owned(),
    };
    (field, problem)
}

/// For optional fields (`#[serde(default, deserialize_with = "present")]`): a missing field is
/// `None`, and an explicit `null` is refused like any value of the wrong type.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A whole number, also when written with a fraction of zero (`5.0`), as JSON Schema's
/// `integer` allows; `5.5` and numbers beyond i64 are refused.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(n) = number.as_i64() {
        return Ok(n);
    }
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        _ => Err(serde::de::Error::custom("invalid type, expected a whole number")),
    }
}

fn flatten(errors: &ValidationErrors) -> FieldErrors {
    let mut out = FieldErrors::new();
    for (field, kind) in errors.errors() {
        if let ValidationErrorsKind::Field(list) = kind {
            let messages = list
                .iter()
                .map(|e| e.message.as_ref().map_or_else(|| e.code.to_string(), |m| m.to_string()))
                .collect();
            out.insert(field.to_string(), messages);
        }
    }
    out
}
