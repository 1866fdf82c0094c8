//! Arbitrary credentials through every check the server can make without storage: the JWT
//! verification of access tokens and ws tickets (with a fixed test secret), the `Bearer`/
//! `X-API-Key` header parsing and the API-key test, the `sb_access`/`sb_csrf` cookie parsing
//! and the CSRF comparison, the `/ws` query string, and `X-Forwarded-For` resolution.
//!
//! The input is lines: a token, an `Authorization` value, an `X-API-Key` value, a `Cookie`
//! value, an `X-Forwarded-For` value, a `/ws` query string, and a claims object that the harness
//! signs with the test secret, so the fuzzer also reaches the claims checks behind the signature.

#![no_main]

use std::net::SocketAddr;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::test::TestRequest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use switchboard::input::credentials::bearer_credential;
use switchboard::auth::jwt::JwtKeys;
use switchboard::auth::tokens::{self, API_KEY_PREFIX};
use switchboard::auth::{ACCESS_COOKIE, CSRF_COOKIE};
use switchboard::security::client_ip::client_ip;
use switchboard::ws::upgrade::WsQuery;

const SECRET: &[u8] = b"fuzzing secret, long enough for HS256";

fuzz_target!(|data: &[u8]| {
    let keys = JwtKeys::new(SECRET);
    let mut lines = data.split(|b| *b == b'\n');
    let mut next = || lines.next().unwrap_or_default();
    let (token, authorization, api_key, cookie) = (next(), next(), next(), next());
    let (forwarded, query, claims) = (next(), next(), next());

    check_token(&keys, &String::from_utf8_lossy(token));
    let mut request = TestRequest::default().peer_addr(SocketAddr::from(([10, 0, 0, 1], 40000)));
    for (name, value) in [
        ("authorization", authorization),
        ("x-api-key", api_key),
        ("cookie", cookie),
        ("x-forwarded-for", forwarded),
    ] {
        // A value the HTTP parser would refuse never reaches the server.
        if let Ok(value) = HeaderValue::from_bytes(value) {
            request = request.insert_header((HeaderName::from_static(name), value));
        }
    }
    let req = request.to_http_request();

    // What `authenticate_bearer` and `AccountService::by_bearer` do before touching storage.
    if let Some(credential) = bearer_credential(&req) {
        check_token(&keys, &credential);
    }
    // The cookie credential and the double-submit CSRF comparison of `check_csrf`.
    if let Some(access) = req.cookie(ACCESS_COOKIE) {
        let sid = keys.verify_access(access.value()).map(|claims| claims.sid).unwrap_or_default();
        if let Some(csrf) = req.cookie(CSRF_COOKIE) {
            let _ = tokens::constant_time_eq(csrf.value(), &tokens::hmac_token(SECRET, &sid));
        }
    }
    let trusted = ["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
    let _ = client_ip(&req, &trusted);

    // `GET /ws?token=&ticket=`.
    if let Ok(query) = switchboard::input::query::parse::<WsQuery>(&String::from_utf8_lossy(query)) {
        query.token.iter().for_each(|token| check_token(&keys, token));
        query.ticket.iter().for_each(|ticket| check_token(&keys, ticket));
    }

    // Claims the fuzzer chose, correctly signed: only the claims checks stand in the way.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let unsigned = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
    let signed = format!("{unsigned}.{}", tokens::hmac_token(SECRET, &unsigned));
    check_token(&keys, &signed);
});

/// A credential as `by_bearer`, `by_access_token` and `by_ws_ticket` read it.
fn check_token(keys: &JwtKeys, token: &str) {
    if token.starts_with(API_KEY_PREFIX) {
        // Only its hash is looked up; the prefix is what is shown again.
        let _ = (tokens::sha256_hex(token), tokens::api_key_prefix(token));
        return;
    }
    let _ = keys.verify_access(token);
    if let Some(ticket) = keys.verify_ws_ticket(token)
        && let Some(key) = &ticket.key
    {
        // A ticket bought with an API key carries the key's fingerprint, compared this way.
        let _ = tokens::constant_time_eq(key, &tokens::api_key_fingerprint(&tokens::sha256_hex(token)));
    }
}
