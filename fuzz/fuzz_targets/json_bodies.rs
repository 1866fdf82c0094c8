//! Arbitrary request bodies through `ValidJson` (and `OptionalJson`), the extractor every REST
//! handler reads its body with: content type, size limit, JSON, unknown fields, field types,
//! `validator` rules, and the error answer built from whatever went wrong. Query strings of the
//! list routes go through `input::query::parse` the same way.
//!
//! The input's first byte picks the request type (modulo 14, so the seeds can use the letters
//! `F` to `S` in the order of the `match` below); up to the first newline after it is the
//! `Content-Type` value (empty: no header), the rest is the body (or the query string).

#![no_main]

use std::sync::OnceLock;

use actix_web::http::header::HeaderValue;
use actix_web::test::TestRequest;
use actix_web::{FromRequest, ResponseError};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use switchboard::http::error::ApiError;
use switchboard::http::admin::{GrantCreditsRequest, ListUsersQuery, UpdateUserRequest};
use switchboard::http::auth::{ForgotRequest, LoginRequest, RefreshRequest, RegisterRequest, ResetRequest};
use switchboard::http::chats::RenameChatRequest;
use switchboard::http::profile::{ChangePasswordRequest, DailyQuery, UpdateProfileRequest};
use switchboard::input::json::{OptionalJson, ValidJson};
use switchboard::input::paging::PageQuery;
use switchboard::input::query;
use validator::Validate;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else { return };
    let (content_type, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(end) => (&rest[..end], &rest[end + 1..]),
        None => (rest, &[][..]),
    };
    match kind % 14 {
        0 => body_as::<RegisterRequest>(content_type, body),
        1 => body_as::<LoginRequest>(content_type, body),
        2 => body_as::<RefreshRequest>(content_type, body),
        3 => optional_body_as::<RefreshRequest>(content_type, body),
        4 => body_as::<ForgotRequest>(content_type, body),
        5 => body_as::<ResetRequest>(content_type, body),
        6 => body_as::<UpdateProfileRequest>(content_type, body),
        7 => body_as::<ChangePasswordRequest>(content_type, body),
        8 => body_as::<UpdateUserRequest>(content_type, body),
        9 => body_as::<GrantCreditsRequest>(content_type, body),
        10 => body_as::<RenameChatRequest>(content_type, body),
        11 => query_as::<ListUsersQuery>(body),
        12 => query_as::<DailyQuery>(body),
        _ => query_as::<PageQuery>(body),
    }
});

/// One thread's runtime for the extractor's future (which is not `Send`, like actix's own).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime"))
        .block_on(future)
}

fn request(content_type: &[u8], body: &[u8]) -> (actix_web::HttpRequest, actix_web::dev::Payload) {
    let mut request = TestRequest::post().uri("/api/fuzz");
    // A value the HTTP parser would refuse never reaches the server.
    if !content_type.is_empty()
        && let Ok(value) = HeaderValue::from_bytes(content_type)
    {
        request = request.insert_header(("content-type", value));
    }
    request.set_payload(body.to_vec()).to_http_parts()
}

fn body_as<T: DeserializeOwned + Validate + 'static>(content_type: &[u8], body: &[u8]) {
    let (req, mut payload) = request(content_type, body);
    if let Err(e) = block_on(ValidJson::<T>::from_request(&req, &mut payload)) {
        answer(&e);
    }
}

fn optional_body_as<T: DeserializeOwned + Validate + 'static>(content_type: &[u8], body: &[u8]) {
    let (req, mut payload) = request(content_type, body);
    if let Err(e) = block_on(OptionalJson::<T>::from_request(&req, &mut payload)) {
        answer(&e);
    }
}

fn query_as<T: DeserializeOwned>(query_string: &[u8]) {
    if let Err(e) = query::parse::<T>(&String::from_utf8_lossy(query_string)) {
        answer(&e);
    }
}

/// The 4xx answer the client would get: it must build, and never be a 500.
fn answer(e: &ApiError) {
    let status = e.status_code();
    assert!(status.is_client_error(), "input made a {status}: {e:?}");
    let _ = e.error_response();
}
