//! Black-box tests of the WebSocket gateway's protocol (docs/API.md §5): every credential on the
//! upgrade and every refusal (401, 403, 429), the `hello` frame, the request/answer envelope and
//! its `reply_to`, every kind of bad frame (answered with `invalid_message`, never closing the
//! connection), the 64 KiB limit (close 1009), the heartbeat (server pings, close 4003 after three
//! silent intervals), slow consumers (the one counter read here comes from a server process of the
//! test's own: `support/metrics.rs`), revocation (close 4001 after logout or a password change)
//! and shutdown of the real binary by SIGTERM (close 1001, exit 0).
//!
//! Chat, image, credit and presence semantics are in `ws_realtime.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Parser as _;
use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard::config::Config;
use tempfile::TempDir;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::support::app::{PASSWORD, TestApp, spawn_app, spawn_app_process, spawn_app_with, unique_email};
use crate::support::free_port;
use crate::support::metrics::scrape;
use crate::support::process::{ServerProcess, server_command};
use crate::support::store::{TestStore, fresh_database_name, test_store};
use crate::support::ws::{Refused, WsClient};

/// Largest frame the server accepts (docs/API.md §5).
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A JWT secret the tests know, so they can sign tokens the server must still refuse.
const KNOWN_SECRET: &str = "ws-protocol-test-secret-0123456789abcdefghijklmnop";

/// Request headers of an upgrade.
type Headers<'a> = &'a [(&'a str, &'a str)];
/// (case, query string, headers) of an upgrade.
type UpgradeCase<'a> = (&'a str, &'a str, Headers<'a>);
/// (case, headers, accepted) of a cookie upgrade.
type OriginCase<'a> = (&'a str, Headers<'a>, bool);

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Connects with `query` and `headers`, or fails naming the case and the refusal.
async fn connect(app: &TestApp, query: &str, headers: &[(&str, &str)], case: &str) -> WsClient {
    match app.try_connect_ws(query, headers).await {
        Ok(client) => client,
        Err(Refused { status, body }) => panic!("{case}: upgrade refused with {status}: {body}"),
    }
}

/// The refusal of an upgrade that must not succeed.
async fn refusal(app: &TestApp, query: &str, headers: &[(&str, &str)], case: &str) -> Refused {
    match app.try_connect_ws(query, headers).await {
        Ok(client) => panic!("{case}: upgrade accepted (hello {})", client.hello),
        Err(refused) => refused,
    }
}

/// Asserts an HTTP refusal with `status` and the `{error, code}` body.
fn assert_refused(refused: &Refused, status: u16, code: &str, case: &str) {
    assert_eq!(refused.status, status, "{case}: status (body {})", refused.body);
    let body: Value = serde_json::from_str(&refused.body)
        .unwrap_or_else(|e| panic!("{case}: JSON error body ({e}): {:?}", refused.body));
    assert_eq!(body["code"], code, "{case}: code in {body}");
    assert!(body["error"].as_str().is_some_and(|s| !s.is_empty()), "{case}: error sentence in {body}");
}

/// Proves the connection is open and serving: a `ping` with an id gets its `pong` within 5 s.
async fn assert_serving(client: &mut WsClient, case: &str) {
    let id = format!("alive-{}", uuid::Uuid::new_v4().simple());
    let answer = tokio::time::timeout(Duration::from_secs(5), client.request(&id, json!({"type": "ping"})))
        .await
        .unwrap_or_else(|_| panic!("{case}: no pong within 5 s; the connection is not serving"));
    assert_eq!(answer["type"], "pong", "{case}: answer to ping: {answer}");
}

/// How a connection's frames ended.
#[derive(Debug, PartialEq)]
enum Ending {
    /// A close frame with this code (None: a close frame without a code).
    Close(Option<u16>),
    /// The TCP connection ended without a close frame (or with an error).
    Dropped,
    /// Nothing ended before the deadline.
    StillOpen,
}

/// Reads every frame until the connection ends or `limit` passes.
async fn read_to_end(client: &mut WsClient, limit: Duration) -> (Vec<Message>, Ending) {
    let deadline = Instant::now() + limit;
    let mut frames = Vec::new();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, client.stream.next()).await {
            Err(_) => return (frames, Ending::StillOpen),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return (frames, Ending::Close(frame.map(|f| u16::from(f.code))));
            }
            Ok(Some(Ok(message))) => frames.push(message),
            Ok(Some(Err(_))) | Ok(None) => return (frames, Ending::Dropped),
        }
    }
}

/// The text frames among `frames`, as JSON.
fn texts(frames: &[Message]) -> Vec<Value> {
    frames
        .iter()
        .filter_map(|m| match m {
            Message::Text(text) => Some(serde_json::from_str(text).expect("JSON frame")),
            _ => None,
        })
        .collect()
}

/// The claims of a JWT, decoded without checking anything.
fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url claims")).expect("JSON claims")
}

fn sign(claims: &Value, secret: &str, algorithm: jsonwebtoken::Algorithm) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(algorithm),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("signing")
}

/// POST with a bearer token and no body; the status.
async fn post_empty(app: &TestApp, path: &str, token: &str) -> StatusCode {
    app.request(Method::POST, path).bearer_auth(token).send().await.expect("request").status()
}

/// A fresh single-use ticket from `POST /api/ws-ticket`.
async fn ws_ticket(app: &TestApp, token: &str) -> String {
    let response =
        app.request(Method::POST, "/api/ws-ticket").bearer_auth(token).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::OK, "POST /api/ws-ticket");
    let body: Value = response.json().await.unwrap();
    assert!(
        body["expires_in"].as_i64().is_some_and(|s| s > 0 && s <= 60),
        "ticket expiry in seconds: {body}"
    );
    body["ticket"].as_str().expect("ticket").to_owned()
}

// ---------------------------------------------------------------------------------------------
// Credentials on upgrade
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn every_credential_opens_a_socket_whose_hello_describes_the_user() {
    let app = spawn_app().await;
    let (user, token) = app.user_with_token().await;
    let own_origin = app.address.clone();
    let cookie = format!("sb_access={token}");
    let ticket = ws_ticket(&app, &token).await;
    let token_query = format!("?token={token}");
    let ticket_query = format!("?ticket={ticket}");
    let (jwt_bearer, key_bearer) = (bearer(&token), bearer(&user.api_key));
    // (case, query, headers)
    let cases: &[UpgradeCase] = &[
        ("Authorization: Bearer <access token>", "", &[("authorization", &jwt_bearer)]),
        ("Authorization: Bearer <API key>", "", &[("authorization", &key_bearer)]),
        ("X-API-Key: <API key>", "", &[("x-api-key", &user.api_key)]),
        ("?token=<access token>", &token_query, &[]),
        ("?ticket=<ws ticket>", &ticket_query, &[]),
        (
            "sb_access cookie from the server's own origin",
            "",
            &[("cookie", &cookie), ("origin", &own_origin)],
        ),
    ];
    let mut session_ids = Vec::new();
    for (case, query, headers) in cases {
        let mut client = connect(&app, query, headers, case).await;
        let hello = &client.hello;
        assert_eq!(hello["type"], "hello", "{case}: {hello}");
        let session_id =
            hello["session_id"].as_str().unwrap_or_else(|| panic!("{case}: session_id in {hello}"));
        assert!(!session_id.is_empty(), "{case}: a non-empty session_id");
        session_ids.push(session_id.to_owned());
        assert_eq!(
            hello["user"],
            json!({"id": user.id, "email": user.email, "role": "user"}),
            "{case}: hello.user"
        );
        assert_eq!(hello["credits"], 100, "{case}: hello.credits (the starting credits)");
        let node = hello["node"].as_str().unwrap_or_default();
        assert!(
            node.contains(&std::process::id().to_string()),
            "{case}: hello.node names this process: {hello}"
        );
        assert_eq!(hello["heartbeat_ms"], 20_000, "{case}: hello.heartbeat_ms (the default)");
        assert_eq!(hello["max_message_bytes"], MAX_MESSAGE_BYTES, "{case}: hello.max_message_bytes");
        assert_serving(&mut client, case).await;
    }
    let mut unique = session_ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), session_ids.len(), "every connection has its own session_id: {session_ids:?}");
}

#[actix_web::test]
async fn hello_names_the_node_the_socket_reached() {
    let app = spawn_app_with(&["--node-id", "node-7"]).await;
    let (_, token) = app.user_with_token().await;
    let client = app.connect_ws(&token).await;
    assert_eq!(client.hello["node"], "node-7", "{}", client.hello);
}

#[actix_web::test]
async fn a_ws_ticket_that_names_neither_a_session_nor_a_key_is_refused() {
    let app = spawn_app().await;
    let (user, _) = app.user_with_token().await;
    let secret = std::fs::read_to_string(app.data_dir.path().join("jwt_secret")).unwrap();
    // Correctly signed, unused and unexpired: only the credential behind it is missing.
    let ticket =
        switchboard::auth::jwt::JwtKeys::new(secret.trim().as_bytes()).issue_ws_ticket(&user.id, "", None);
    let refused = app.try_connect_ws(&format!("?ticket={ticket}"), &[]).await;
    let refused = refused.err().expect("a ticket with nothing behind it opens nothing");
    assert_eq!(refused.status, 401, "{}", refused.body);
}

#[actix_web::test]
async fn a_ws_ticket_opens_one_socket_and_its_second_use_is_refused_with_401() {
    let app = spawn_app().await;
    let (user, token) = app.user_with_token().await;
    let ticket = ws_ticket(&app, &token).await;
    let query = format!("?ticket={ticket}");

    let mut first = connect(&app, &query, &[], "first use of the ticket").await;
    assert_eq!(first.hello["user"]["id"], user.id.as_str(), "the ticket names its user: {}", first.hello);
    let second = refusal(&app, &query, &[], "second use of the ticket").await;
    assert_refused(&second, 401, "unauthorized", "second use of the ticket");
    assert_serving(&mut first, "the socket opened with the ticket, after its reuse was refused").await;

    let other = ws_ticket(&app, &token).await;
    assert_ne!(other, ticket, "every ticket is new");
    connect(&app, &format!("?ticket={other}"), &[], "a second ticket of the same login").await;
}

#[actix_web::test]
async fn upgrades_without_a_valid_credential_are_refused_with_401_and_a_json_error() {
    let app = spawn_app_with(&["--jwt-secret", KNOWN_SECRET]).await;
    let (user, token) = app.user_with_token().await;
    let ticket = ws_ticket(&app, &token).await;
    let claims = claims_of(&token);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();

    let mut expired_claims = claims.clone();
    expired_claims["iat"] = json!(now - 3_600);
    expired_claims["exp"] = json!(now - 60);
    let expired = sign(&expired_claims, KNOWN_SECRET, jsonwebtoken::Algorithm::HS256);
    let wrong_secret =
        sign(&claims, "another-secret-of-at-least-32-bytes-0123456789", jsonwebtoken::Algorithm::HS256);
    let hs512 = sign(&claims, KNOWN_SECRET, jsonwebtoken::Algorithm::HS512);
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{}.", token.split('.').nth(1).unwrap());
    let mut ticket_audience = claims.clone();
    ticket_audience["aud"] = json!("switchboard:ws-ticket");
    let access_with_ticket_audience = sign(&ticket_audience, KNOWN_SECRET, jsonwebtoken::Algorithm::HS256);
    let mut other_user = claims.clone();
    other_user["sub"] = json!(uuid::Uuid::new_v4().to_string());
    let unknown_user = sign(&other_user, KNOWN_SECRET, jsonwebtoken::Algorithm::HS256);
    let tampered = {
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut admin = claims.clone();
        admin["role"] = json!("admin");
        parts[1] = URL_SAFE_NO_PAD.encode(admin.to_string());
        parts.join(".")
    };
    assert_eq!(app.get_with("/api/me", &token).await.status(), StatusCode::OK, "the genuine token works");

    let own_origin = app.address.clone();
    let wrong_key = format!("sk_{}", "A".repeat(43));
    let (
        h_garbage,
        h_expired,
        h_wrong_secret,
        h_hs512,
        h_none,
        h_tampered,
        h_unknown_user,
        h_wrong_key,
        h_ticket,
    ) = (
        bearer("not-a-token"),
        bearer(&expired),
        bearer(&wrong_secret),
        bearer(&hs512),
        bearer(&alg_none),
        bearer(&tampered),
        bearer(&unknown_user),
        bearer(&wrong_key),
        bearer(&ticket),
    );
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{PASSWORD}", user.email))
    );
    let garbage_cookie = "sb_access=not-a-token".to_owned();
    let expired_cookie = format!("sb_access={expired}");
    let (q_expired, q_ticket_as_token, q_token_as_ticket, q_ticket_aud) = (
        format!("?token={expired}"),
        format!("?token={ticket}"),
        format!("?ticket={token}"),
        format!("?token={access_with_ticket_audience}"),
    );
    // (case, query, headers)
    let cases: &[UpgradeCase] = &[
        ("no credential at all", "", &[]),
        ("Bearer garbage", "", &[("authorization", &h_garbage)]),
        ("Bearer with an empty token", "", &[("authorization", "Bearer ")]),
        ("Basic credentials", "", &[("authorization", &basic)]),
        ("an expired access token (right key, right claims)", "", &[("authorization", &h_expired)]),
        ("an access token signed with another secret", "", &[("authorization", &h_wrong_secret)]),
        ("an access token signed with HS512", "", &[("authorization", &h_hs512)]),
        ("an access token with alg none", "", &[("authorization", &h_none)]),
        ("an access token whose claims were edited", "", &[("authorization", &h_tampered)]),
        (
            "a well-signed access token of a user that does not exist",
            "",
            &[("authorization", &h_unknown_user)],
        ),
        ("a ticket as a Bearer token", "", &[("authorization", &h_ticket)]),
        ("Bearer with a made-up API key", "", &[("authorization", &h_wrong_key)]),
        ("X-API-Key with a made-up API key", "", &[("x-api-key", &wrong_key)]),
        ("?token=garbage", "?token=garbage", &[]),
        ("?token=<expired access token>", &q_expired, &[]),
        ("?token=<a ws ticket>", &q_ticket_as_token, &[]),
        ("?token=<an access token with the ticket audience>", &q_ticket_aud, &[]),
        ("?ticket=garbage", "?ticket=garbage", &[]),
        ("?ticket=<an access token>", &q_token_as_ticket, &[]),
        ("?token= (empty)", "?token=", &[]),
        (
            "garbage sb_access cookie from the own origin",
            "",
            &[("cookie", &garbage_cookie), ("origin", &own_origin)],
        ),
        (
            "expired sb_access cookie from the own origin",
            "",
            &[("cookie", &expired_cookie), ("origin", &own_origin)],
        ),
    ];
    for (case, query, headers) in cases {
        let refused = refusal(&app, query, headers, case).await;
        assert_refused(&refused, 401, "unauthorized", case);
    }
    // The refused ticket was not consumed by the attempts that misused it.
    connect(&app, &format!("?ticket={ticket}"), &[], "the ticket after it was refused as a token").await;
}

#[actix_web::test]
async fn cookie_connections_are_accepted_only_from_an_allowed_origin() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;
    let cookie = format!("sb_access={token}");
    let own = app.address.clone();
    let own_with_slash = format!("{own}/");
    let other_port = format!("http://127.0.0.1:{}", app.port.wrapping_add(1));
    let https_own = own.replace("http://", "https://");
    let localhost = format!("http://localhost:{}", app.port);
    let suffix = format!("{own}.evil.example");
    // (case, headers, accepted)
    let cases: &[OriginCase] = &[
        ("the server's own origin", &[("cookie", &cookie), ("origin", &own)], true),
        ("the own origin with a trailing slash", &[("cookie", &cookie), ("origin", &own_with_slash)], true),
        ("a foreign origin", &[("cookie", &cookie), ("origin", "http://evil.example")], false),
        ("no Origin header", &[("cookie", &cookie)], false),
        ("Origin: null", &[("cookie", &cookie), ("origin", "null")], false),
        ("the own host on another port", &[("cookie", &cookie), ("origin", &other_port)], false),
        ("the own host over https", &[("cookie", &cookie), ("origin", &https_own)], false),
        ("another name for the own host", &[("cookie", &cookie), ("origin", &localhost)], false),
        ("the own origin as a prefix of a foreign one", &[("cookie", &cookie), ("origin", &suffix)], false),
    ];
    for (case, headers, accepted) in cases {
        if *accepted {
            let mut client = connect(&app, "", headers, case).await;
            assert_serving(&mut client, case).await;
        } else {
            assert_refused(&refusal(&app, "", headers, case).await, 403, "forbidden", case);
        }
    }
    // Bearer credentials are not subject to the Origin check: a script elsewhere cannot send them.
    let with_bearer = bearer(&token);
    connect(
        &app,
        "",
        &[("authorization", &with_bearer), ("origin", "http://evil.example")],
        "Bearer from a foreign origin",
    )
    .await;

    let app = spawn_app_with(&["--allowed-origins", "http://app.example"]).await;
    let (_, token) = app.user_with_token().await;
    let cookie = format!("sb_access={token}");
    let own = app.address.clone();
    let cases: &[OriginCase] = &[
        ("an origin in --allowed-origins", &[("cookie", &cookie), ("origin", "http://app.example")], true),
        ("the own origin next to --allowed-origins", &[("cookie", &cookie), ("origin", &own)], true),
        (
            "a foreign origin next to --allowed-origins",
            &[("cookie", &cookie), ("origin", "http://evil.example")],
            false,
        ),
        (
            "an allowed origin over another scheme",
            &[("cookie", &cookie), ("origin", "https://app.example")],
            false,
        ),
        (
            "a subdomain of an allowed origin",
            &[("cookie", &cookie), ("origin", "http://x.app.example")],
            false,
        ),
    ];
    for (case, headers, accepted) in cases {
        if *accepted {
            let mut client = connect(&app, "", headers, case).await;
            assert_serving(&mut client, case).await;
        } else {
            assert_refused(&refusal(&app, "", headers, case).await, 403, "forbidden", case);
        }
    }
}

#[actix_web::test]
async fn the_per_user_session_cap_refuses_the_next_upgrade_with_429_until_a_socket_closes() {
    let app = spawn_app_with(&["--ws-max-sessions-per-user", "2"]).await;
    let (user, token) = app.user_with_token().await;
    let (_, other_token) = app.user_with_token().await;
    let with_token = bearer(&token);
    let with_key = bearer(&user.api_key);

    let mut first = app.connect_ws(&token).await;
    let second = app.connect_ws(&user.api_key).await;
    // (case, query, headers): the cap counts the user's sessions, whatever the credential.
    let token_query = format!("?token={token}");
    let over: &[UpgradeCase] = &[
        ("a third socket with the access token", "", &[("authorization", &with_token)]),
        ("a third socket with the API key", "", &[("authorization", &with_key)]),
        ("a third socket with ?token=", &token_query, &[]),
    ];
    for (case, query, headers) in over {
        assert_refused(&refusal(&app, query, headers, case).await, 429, "rate_limited", case);
    }
    let mut stranger = app.connect_ws(&other_token).await;
    assert_serving(&mut stranger, "another user's socket while the first user is at the cap").await;
    assert_serving(&mut first, "a socket of the user at the cap").await;

    // A clean close (close frame) frees a place.
    first.stream.close(None).await.expect("send a close frame");
    let (_, ending) = read_to_end(&mut first, Duration::from_secs(5)).await;
    assert_ne!(ending, Ending::StillOpen, "the server ends a connection the client closed");
    let mut replacement = reconnect_within(&app, &token, Duration::from_secs(3), "after a close frame").await;
    assert_serving(&mut replacement, "the socket that took the freed place").await;
    assert_refused(
        &refusal(&app, "", &[("authorization", &with_token)], "cap reached again").await,
        429,
        "rate_limited",
        "cap reached again",
    );

    // A dropped TCP connection (no close frame) frees a place too.
    drop(second);
    let mut replacement =
        reconnect_within(&app, &token, Duration::from_secs(3), "after a dropped connection").await;
    assert_serving(&mut replacement, "the socket that took the place of the dropped one").await;
}

/// Retries an upgrade until it is accepted; fails after `limit`.
async fn reconnect_within(app: &TestApp, token: &str, limit: Duration, case: &str) -> WsClient {
    let deadline = Instant::now() + limit;
    let header = bearer(token);
    loop {
        match app.try_connect_ws("", &[("authorization", &header)]).await {
            Ok(client) => return client,
            Err(refused) if Instant::now() < deadline => {
                assert_eq!(refused.status, 429, "{case}: only the cap may refuse: {}", refused.body);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(refused) => {
                panic!("{case}: still refused after {limit:?}: {} {}", refused.status, refused.body)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The envelope: answers, errors and reply_to
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn every_request_gets_its_answer_or_error_carrying_its_id_as_reply_to() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;
    let mut client = app.connect_ws(&token).await;
    let missing = uuid::Uuid::now_v7().to_string();
    let long_id = "i".repeat(64);
    // (case, frame, answer type, error code, a check of the answer, what the check means)
    type Check = fn(&Value) -> bool;
    type Case<'a> = (&'a str, Value, &'a str, Option<&'a str>, Check, &'a str);
    let cases: &[Case] = &[
        ("ping", json!({"type": "ping"}), "pong", None, |_| true, "-"),
        ("ping with a 64-character id", json!({"type": "ping"}), "pong", None, |_| true, "-"),
        (
            "credits.get",
            json!({"type": "credits.get"}),
            "credits",
            None,
            |f| f["credits"] == 100,
            "credits is 100",
        ),
        (
            "chat.list of a new user",
            json!({"type": "chat.list"}),
            "chat.list",
            None,
            |f| f["chats"] == json!([]),
            "no chats",
        ),
        (
            "chat.create",
            json!({"type": "chat.create", "title": "Envelope"}),
            "chat.created",
            None,
            |f| f["chat"]["title"] == "Envelope" && f["chat"]["id"].is_string(),
            "the chat with its title and id",
        ),
        (
            "chat.history of an unknown chat",
            json!({"type": "chat.history", "chat_id": missing}),
            "error",
            Some("not_found"),
            |_| true,
            "-",
        ),
        (
            "chat.send to an unknown chat",
            json!({"type": "chat.send", "chat_id": missing, "content": "hello"}),
            "error",
            Some("not_found"),
            |_| true,
            "-",
        ),
        (
            "chat.history with limit 0",
            json!({"type": "chat.history", "chat_id": missing, "limit": 0}),
            "error",
            Some("invalid_message"),
            |_| true,
            "-",
        ),
        (
            "chat.create with a 201-character title",
            json!({"type": "chat.create", "title": "t".repeat(201)}),
            "error",
            Some("invalid_message"),
            |_| true,
            "-",
        ),
        (
            "image.generate 10 pixels wide",
            json!({"type": "image.generate", "prompt": "a lighthouse", "width": 10}),
            "error",
            Some("invalid_message"),
            |_| true,
            "-",
        ),
        (
            "presence.subscribe by a user",
            json!({"type": "presence.subscribe"}),
            "error",
            Some("forbidden"),
            |_| true,
            "-",
        ),
        (
            "presence.unsubscribe",
            json!({"type": "presence.unsubscribe"}),
            "presence.unsubscribed",
            None,
            |_| true,
            "-",
        ),
        (
            "credits.get after the refused paid requests",
            json!({"type": "credits.get"}),
            "credits",
            None,
            |f| f["credits"] == 100,
            "nothing was charged",
        ),
    ];
    for (n, (case, frame, kind, code, check, meaning)) in cases.iter().enumerate() {
        let id = if case.contains("64-character") { long_id.clone() } else { format!("req-{n}") };
        let answer = client.request(&id, frame.clone()).await;
        assert_eq!(answer["type"], *kind, "{case}: answer {answer}");
        assert_eq!(answer["reply_to"], id.as_str(), "{case}: reply_to");
        if let Some(code) = code {
            assert_eq!(answer["code"], *code, "{case}: error code in {answer}");
            assert!(
                answer["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{case}: error message in {answer}"
            );
        }
        assert!(check(&answer), "{case}: {meaning}: {answer}");
    }

    // Without an id, the answer carries no reply_to.
    client.send(json!({"type": "ping"})).await;
    let pong = client.recv().await;
    assert_eq!(pong["type"], "pong", "ping without id: {pong}");
    assert!(pong.get("reply_to").is_none(), "an answer to a request without id has no reply_to: {pong}");
    client.send(json!({"type": "chat.history", "chat_id": missing})).await;
    let error = client.recv().await;
    assert_eq!((&error["type"], &error["code"]), (&json!("error"), &json!("not_found")), "{error}");
    assert!(error.get("reply_to").is_none(), "an error for a request without id has no reply_to: {error}");
}

#[actix_web::test]
async fn an_admin_subscribes_to_presence_and_unsubscribes_with_reply_to() {
    let admin_email = unique_email();
    let app = spawn_app_with(&["--admin-email", &admin_email, "--admin-password", PASSWORD]).await;
    let login = app.post_login(&admin_email, PASSWORD).await;
    assert_eq!(login.status(), StatusCode::OK, "the bootstrap admin logs in");
    let token = login.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let mut admin = app.connect_ws(&token).await;
    assert_eq!(admin.hello["user"]["role"], "admin", "hello names the admin role: {}", admin.hello);

    let snapshot = admin.request("sub-1", json!({"type": "presence.subscribe"})).await;
    assert_eq!(snapshot["type"], "presence.snapshot", "{snapshot}");
    assert!(
        snapshot["users"].is_array() && snapshot["sessions"].as_u64().is_some_and(|n| n >= 1),
        "{snapshot}"
    );
    let done = admin.request("unsub-1", json!({"type": "presence.unsubscribe"})).await;
    assert_eq!(done["type"], "presence.unsubscribed", "{done}");
}

#[actix_web::test]
async fn bad_frames_get_invalid_message_and_the_connection_stays_open() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;
    let mut client = app.connect_ws(&token).await;
    let long_id = format!(r#"{{"type":"ping","id":"{}"}}"#, "i".repeat(65));
    let long_multibyte_id = format!(r#"{{"type":"ping","id":"{}"}}"#, "é".repeat(65));
    // (case, text frame, expected reply_to: the id when it was readable)
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("not JSON", r#"{"type":"ping""#, None),
        ("an empty frame", "", None),
        ("a JSON array", r#"[{"type":"ping","id":"a"}]"#, None),
        ("a JSON string", r#""ping""#, None),
        ("JSON null", "null", None),
        ("a JSON number", "42", None),
        ("an object without type", r#"{"id":"b0"}"#, Some("b0")),
        ("a type that is not a string", r#"{"type":5,"id":"b1"}"#, Some("b1")),
        ("an unknown type", r#"{"type":"nope","id":"b2"}"#, Some("b2")),
        ("a type of the server's own frames", r#"{"type":"pong","id":"b3"}"#, Some("b3")),
        ("a missing field", r#"{"type":"chat.send","id":"b4","chat_id":"c"}"#, Some("b4")),
        (
            "a field of the wrong type",
            r#"{"type":"chat.send","id":"b5","chat_id":5,"content":"hi"}"#,
            Some("b5"),
        ),
        ("an unknown field", r#"{"type":"chat.list","id":"b6","admin":true}"#, Some("b6")),
        ("an unknown field on ping", r#"{"type":"ping","id":"b7","extra":1}"#, Some("b7")),
        (
            "an operator object as chat_id",
            r#"{"type":"chat.history","id":"b8","chat_id":{"$gt":""}}"#,
            Some("b8"),
        ),
        ("an operator object without id", r#"{"type":"chat.history","chat_id":{"$gt":""}}"#, None),
        ("limit as a string", r#"{"type":"chat.history","id":"b9","chat_id":"x","limit":"10"}"#, Some("b9")),
        ("a negative width", r#"{"type":"image.generate","id":"b10","prompt":"p","width":-1}"#, Some("b10")),
        ("an id of 65 characters", &long_id, None),
        ("an id of 65 two-byte characters", &long_multibyte_id, None),
        ("an id that is a number", r#"{"type":"ping","id":7}"#, None),
        ("an id that is an object", r#"{"type":"ping","id":{"a":1}}"#, None),
    ];
    // Every case runs and every wrong answer is listed, so one failure does not hide the others.
    let mut wrong = Vec::new();
    for (case, text, reply_to) in cases {
        client.stream.send(Message::text(text.to_string())).await.expect("send frame");
        let answer = client.recv().await;
        let expected_reply_to = reply_to.map_or(Value::Null, |id| json!(id));
        let right = answer["type"] == "error"
            && answer["code"] == "invalid_message"
            && answer["message"].as_str().is_some_and(|m| !m.is_empty())
            && answer.get("reply_to").cloned().unwrap_or(Value::Null) == expected_reply_to;
        if !right {
            let expected = format!("invalid_message, reply_to {expected_reply_to}");
            wrong.push(format!("{case}: {text} was answered {answer} (expected {expected})"));
        }
        assert_serving(&mut client, case).await;
    }

    // Values the client sent are not echoed in error messages.
    let marker = "MARKER<script>";
    for (case, frame) in [
        ("marker as the type", json!({"type": marker, "id": "m1"})),
        (
            "marker as a field of the wrong type",
            json!({"type": "chat.create", "id": "m2", "title": [marker]}),
        ),
        (
            "marker as chat_id of the wrong type",
            json!({"type": "chat.send", "id": "m3", "chat_id": {"x": marker}, "content": marker}),
        ),
    ] {
        let id = frame["id"].as_str().unwrap().to_owned();
        let answer = client.request(&id, frame).await;
        if answer["code"] != "invalid_message" || answer.to_string().contains("MARKER") {
            wrong.push(format!(
                "{case}: answered {answer} (expected invalid_message without the client's value)"
            ));
        }
    }

    client
        .stream
        .send(Message::binary(br#"{"type":"ping","id":"bin"}"#.to_vec()))
        .await
        .expect("send binary");
    let answer = client.recv().await;
    if answer["type"] != "error" || answer["code"] != "invalid_message" || answer.get("reply_to").is_some() {
        wrong.push(format!("a binary frame: answered {answer} (expected invalid_message without reply_to)"));
    }
    assert_serving(&mut client, "after a binary frame").await;
    assert!(wrong.is_empty(), "bad frames answered wrongly:\n{}", wrong.join("\n"));
}

#[actix_web::test]
async fn a_websocket_ping_from_the_client_gets_a_pong_with_its_payload() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;
    let mut client = app.connect_ws(&token).await;
    client.stream.send(Message::Ping(b"are-you-there".to_vec().into())).await.expect("send ping");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(remaining, client.stream.next()).await.expect("a pong within 5 s");
        match frame.expect("connection open").expect("frame") {
            Message::Pong(payload) => {
                assert_eq!(&payload[..], b"are-you-there", "the pong carries the ping's payload");
                break;
            }
            Message::Ping(_) => continue,
            other => panic!("expected a pong, got {other:?}"),
        }
    }
    assert_serving(&mut client, "after a WebSocket-level ping").await;
}

// ---------------------------------------------------------------------------------------------
// The 64 KiB limit
// ---------------------------------------------------------------------------------------------

/// A text frame of exactly `size` bytes: `{"type":"chat.create","id":"<id>","title":"xxx…"}`, a
/// well-formed request whose title is far too long, so it is answered with `invalid_message`.
fn padded_frame(id: &str, size: usize) -> String {
    let head = format!(r#"{{"type":"chat.create","id":"{id}","title":""#);
    let tail = r#""}"#;
    assert!(size >= head.len() + tail.len());
    format!("{head}{}{tail}", "x".repeat(size - head.len() - tail.len()))
}

/// What a connection does after a frame.
#[derive(Debug)]
enum Outcome {
    /// It answers with `invalid_message` and keeps serving.
    Answers,
    /// It closes with this code.
    Closes(u16),
}

#[actix_web::test]
async fn a_frame_above_64_kib_closes_the_connection_with_1009_and_one_below_does_not() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;
    let text = |data: Vec<u8>, fin: bool| Message::Frame(Frame::message(data, OpCode::Data(Data::Text), fin));
    let more =
        |data: Vec<u8>, fin: bool| Message::Frame(Frame::message(data, OpCode::Data(Data::Continue), fin));
    let half = padded_frame("two-halves", 80 * 1024).into_bytes();
    let small = padded_frame("frag", 3 * 1024).into_bytes();
    // (case, frames to send, outcome)
    let cases: Vec<(&str, Vec<Message>, Outcome)> = vec![
        ("a 60 KiB frame", vec![Message::text(padded_frame("big", 60 * 1024))], Outcome::Answers),
        (
            "a frame of exactly 64 KiB",
            vec![Message::text(padded_frame("edge", MAX_MESSAGE_BYTES))],
            Outcome::Answers,
        ),
        (
            "a frame of 64 KiB + 1 byte",
            vec![Message::text(padded_frame("over", MAX_MESSAGE_BYTES + 1))],
            Outcome::Closes(1009),
        ),
        ("a frame of 70 000 bytes", vec![Message::text(padded_frame("huge", 70_000))], Outcome::Closes(1009)),
        ("a binary frame of 70 000 bytes", vec![Message::binary(vec![b'x'; 70_000])], Outcome::Closes(1009)),
        (
            "a message of three small fragments",
            vec![
                text(small[..1000].to_vec(), false),
                more(small[1000..2000].to_vec(), false),
                more(small[2000..].to_vec(), true),
            ],
            Outcome::Answers,
        ),
        (
            "a message of two 40 KiB fragments (80 KiB in all)",
            vec![text(half[..40 * 1024].to_vec(), false), more(half[40 * 1024..].to_vec(), true)],
            Outcome::Closes(1009),
        ),
    ];
    for (case, frames, outcome) in cases {
        let mut client = app.connect_ws(&token).await;
        for frame in frames {
            client.stream.send(frame).await.unwrap_or_else(|e| panic!("{case}: sending: {e}"));
        }
        match outcome {
            Outcome::Answers => {
                let answer = client.recv().await;
                assert_eq!(answer["type"], "error", "{case}: the over-long title is refused: {answer}");
                assert_eq!(answer["code"], "invalid_message", "{case}: {answer}");
                assert!(
                    answer["reply_to"].is_string(),
                    "{case}: the id of a large frame is read and echoed: {answer}"
                );
                assert_serving(&mut client, case).await;
            }
            Outcome::Closes(code) => {
                let (frames, ending) = read_to_end(&mut client, Duration::from_secs(5)).await;
                assert_eq!(
                    ending,
                    Ending::Close(Some(code)),
                    "{case}: how the connection ended (after {frames:?})"
                );
                assert!(texts(&frames).is_empty(), "{case}: no answer before the close: {frames:?}");
            }
        }
    }
}

#[actix_web::test]
async fn a_text_frame_that_is_not_utf8_is_not_reported_as_too_big() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;
    let mut client = app.connect_ws(&token).await;
    let bytes = vec![b'{', 0xff, 0xfe, b'}'];
    client
        .stream
        .send(Message::Frame(Frame::message(bytes, OpCode::Data(Data::Text), true)))
        .await
        .expect("send");
    // RFC 6455 §8.1 lets the server fail the connection with 1007 (invalid payload data); docs/API.md
    // lets it answer invalid_message and keep serving. A 1009 ("message too big") is wrong.
    let (frames, ending) = read_to_end(&mut client, Duration::from_secs(2)).await;
    match ending {
        Ending::Close(Some(1007)) => {}
        Ending::StillOpen => {
            let answers = texts(&frames);
            assert!(
                answers.iter().any(|f| f["code"] == "invalid_message"),
                "an open connection answered the bad frame with invalid_message: {answers:?}"
            );
            assert_serving(&mut client, "after a text frame that is not UTF-8").await;
        }
        other => {
            panic!("a text frame of 4 bytes that are not UTF-8 ended the connection with {other:?}, not 1007")
        }
    }
}

#[actix_web::test]
async fn a_frame_announced_above_64_kib_is_refused_without_waiting_for_its_payload() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;
    // (case, announced payload length, bytes of it sent): a server that buffers a whole frame
    // before checking its size lets one client make it hold 64 MiB (or far more) of memory.
    let cases: &[(&str, u64, usize)] = &[
        ("a 70 000-byte frame, sent in full", 70_000, 70_000),
        ("a frame announcing 64 MiB, of which 128 KiB are sent", 64 * 1024 * 1024, 128 * 1024),
        ("a frame announcing 1 GiB, of which 128 KiB are sent", 1024 * 1024 * 1024, 128 * 1024),
    ];
    for (case, announced, sent) in cases {
        let mut client = app.connect_ws(&token).await;
        let mut header = vec![0x81, 0x80 | 127];
        header.extend_from_slice(&announced.to_be_bytes());
        header.extend_from_slice(&[0, 0, 0, 0]); // mask key 0: the payload goes as is
        let MaybeTlsStream::Plain(tcp) = client.stream.get_mut() else { panic!("plain TCP expected") };
        write_raw(tcp, &header).await.expect("write the frame header");
        let chunk = vec![b'x'; 16 * 1024];
        let mut left = *sent;
        while left > 0 {
            let piece = &chunk[..left.min(chunk.len())];
            let written = tokio::time::timeout(Duration::from_secs(2), write_raw(tcp, piece)).await;
            if !matches!(written, Ok(Ok(()))) {
                break; // the server closed or stopped reading: either is fine
            }
            left -= piece.len();
        }
        // A server that closes while bytes are still arriving may reset the connection, which can
        // swallow its close frame: either ending is fine, waiting for the rest of the frame is not.
        let (_, ending) = read_to_end(&mut client, Duration::from_secs(3)).await;
        assert!(
            matches!(ending, Ending::Close(Some(1009)) | Ending::Dropped),
            "{case}: refused (1009) once 64 KiB are exceeded, not when the frame ends; \
             got {ending:?} 3 s after {sent} bytes"
        );
    }
}

/// Writes raw bytes on the client's socket, past the WebSocket client (which would not send a
/// half frame); `Err` once the server has closed.
async fn write_raw(tcp: &tokio::net::TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        tcp.writable().await?;
        match tcp.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Heartbeat
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn the_server_pings_every_heartbeat_and_a_client_that_reads_stays_open() {
    let app = spawn_app_with(&["--ws-heartbeat-ms", "200"]).await;
    let (_, token) = app.user_with_token().await;
    let mut client = app.connect_ws(&token).await;
    assert_eq!(client.hello["heartbeat_ms"], 200, "hello announces the heartbeat: {}", client.hello);

    // Reading lets tungstenite answer each ping with a pong.
    let started = Instant::now();
    let (frames, ending) = read_to_end(&mut client, Duration::from_millis(1_800)).await;
    assert_eq!(
        ending,
        Ending::StillOpen,
        "a client that reads and answers pings stays open for 1.8 s: {frames:?}"
    );
    let pings = frames.iter().filter(|m| matches!(m, Message::Ping(_))).count();
    assert!(
        pings >= 4,
        "about 9 pings in 1.8 s at 200 ms, got {pings} in {:?}: {frames:?}",
        started.elapsed()
    );
    assert!(texts(&frames).is_empty(), "no text frames unasked: {frames:?}");
    assert_serving(&mut client, "after 1.8 s of heartbeats").await;
}

#[actix_web::test]
async fn a_client_silent_for_three_heartbeats_is_closed_with_4003_and_a_shorter_silence_is_fine() {
    // A 500 ms heartbeat: a client is closed after 1.5 s of silence, so each check below stays a
    // whole second clear of that line on a busy machine.
    let app = spawn_app_with(&["--ws-heartbeat-ms", "500"]).await;
    let (_, token) = app.user_with_token().await;

    // One interval of silence (a third of the allowance) does not close the connection.
    let mut patient = app.connect_ws(&token).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_serving(&mut patient, "after 500 ms of silence at a 500 ms heartbeat").await;

    // Reading nothing and sending nothing for 2.5 s: the server closes with 4003. The bytes are
    // read past the WebSocket client, which would answer the buffered pings by writing to a
    // socket the server has closed, and the reset that earns can swallow the close frame.
    let mut silent = app.connect_ws(&token).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (frames, eof) = raw_frames(&mut silent, Duration::from_secs(5)).await;
    let opcodes: Vec<u8> = frames.iter().map(|(opcode, _)| *opcode).collect();
    let close = frames.iter().find(|(opcode, _)| *opcode == 0x8).map(|(_, payload)| payload.clone());
    let close = close.unwrap_or_else(|| {
        panic!("the silent connection got a close frame (frames by opcode: {opcodes:?}, eof {eof})")
    });
    assert!(close.len() >= 2, "the close frame carries a code: {close:?}");
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 4003, "close code of the silent connection");
    assert!(opcodes.iter().filter(|&&op| op == 0x9).count() >= 2, "pings came first: {opcodes:?}");
    assert_eq!(opcodes.last(), Some(&0x8), "nothing follows the close frame: {opcodes:?}");
    assert!(eof, "the server ended the TCP connection after its close frame");

    // A client that keeps sending, even without reading, is not silent.
    let mut talker = app.connect_ws(&token).await;
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_millis(2_500) {
        talker
            .stream
            .send(Message::text(json!({"type": "ping", "id": format!("t{sent}")}).to_string()))
            .await
            .expect("send");
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (frames, ending) = read_to_end(&mut talker, Duration::from_millis(500)).await;
    assert_eq!(ending, Ending::StillOpen, "a client that sent a frame every 100 ms stays open: {frames:?}");
    let pongs = texts(&frames).iter().filter(|f| f["type"] == "pong").count();
    assert_eq!(pongs, sent, "every ping it sent was answered");
}

/// Reads the socket's bytes past the WebSocket client until the server ends the connection (true)
/// or `limit` passes (false), and splits them into server frames: (opcode, payload).
async fn raw_frames(client: &mut WsClient, limit: Duration) -> (Vec<(u8, Vec<u8>)>, bool) {
    let MaybeTlsStream::Plain(tcp) = client.stream.get_mut() else { panic!("plain TCP expected") };
    let deadline = Instant::now() + limit;
    let mut bytes = Vec::new();
    let mut eof = false;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(remaining, tcp.readable()).await.is_err() {
            break;
        }
        let mut buffer = [0u8; 8192];
        match tcp.try_read(&mut buffer) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => {
                eof = true;
                break;
            }
        }
    }
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 2 <= bytes.len() {
        let (opcode, masked, short) =
            (bytes[at] & 0x0f, bytes[at + 1] & 0x80 != 0, (bytes[at + 1] & 0x7f) as usize);
        assert!(!masked, "server frames are not masked");
        let (length, header) = match short {
            126 if at + 4 <= bytes.len() => (u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize, 4),
            127 if at + 10 <= bytes.len() => {
                (u64::from_be_bytes(bytes[at + 2..at + 10].try_into().unwrap()) as usize, 10)
            }
            126 | 127 => break,
            n => (n, 2),
        };
        if at + header + length > bytes.len() {
            break;
        }
        frames.push((opcode, bytes[at + header..at + header + length].to_vec()));
        at += header + length;
    }
    (frames, eof)
}

// ---------------------------------------------------------------------------------------------
// Slow consumers
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_client_that_stops_reading_is_closed_and_never_slows_another_user() {
    // A process of its own, so that `ws_outbound_dropped_total` counts this test's frames only.
    let (app, _server) = spawn_app_process(&[
        "--ws-outbound-bytes",
        "16384",
        "--starting-credits",
        "100000",
        "--ws-rate-limit-per-minute",
        "100000",
    ])
    .await;
    let (_, slow_token) = app.user_with_token().await;
    let (_, other_token) = app.user_with_token().await;
    let mut slow = app.connect_ws(&slow_token).await;
    let mut other = app.connect_ws(&other_token).await;
    let chat = slow.request("create", json!({"type": "chat.create", "title": "flood"})).await;
    assert_eq!(chat["type"], "chat.created", "{chat}");
    let chat_id = chat["chat"]["id"].as_str().unwrap().to_owned();
    let slow_consumer = [r#"reason="slow_consumer""#];
    let dropped_before = scrape(&app).await.value("ws_outbound_dropped_total", &slow_consumer);

    // Each message is echoed word by word: about 2 000 chat.delta frames per message.
    const MESSAGES: usize = 30;
    const WORDS: usize = 2_000;
    let content = "word ".repeat(WORDS);
    for n in 0..MESSAGES {
        let frame =
            json!({"type": "chat.send", "id": format!("flood-{n}"), "chat_id": chat_id, "content": content});
        if slow.stream.send(Message::text(frame.to_string())).await.is_err() {
            break; // already closed by the server
        }
    }
    let requested = MESSAGES * (WORDS + 2);

    // Meanwhile another user's round trips stay fast.
    let mut slowest = Duration::ZERO;
    for n in 0..20 {
        let started = Instant::now();
        let pong = tokio::time::timeout(
            Duration::from_secs(5),
            other.request(&format!("p{n}"), json!({"type": "ping"})),
        )
        .await
        .unwrap_or_else(|_| panic!("ping {n} of the other user got no pong in 5 s"));
        assert_eq!(pong["type"], "pong", "{pong}");
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A server that let the flood hold up other users would block them until the slow client is
    // closed (many seconds, or the 5 s above); 3 s leaves room for a busy two-core machine.
    assert!(slowest < Duration::from_secs(3), "the other user's slowest ping round trip took {slowest:?}");

    // The slow client now reads: it finds a bounded number of frames, then the end.
    let (frames, ending) = read_to_end(&mut slow, Duration::from_secs(20)).await;
    let read = texts(&frames).len();
    assert!(
        matches!(ending, Ending::Close(None) | Ending::Close(Some(4002)) | Ending::Dropped),
        "the slow client was closed (4002) or dropped, got {ending:?} after {read} frames"
    );
    assert!(
        read < requested / 10,
        "the server stopped streaming: {read} frames read of {requested} requested"
    );
    let dropped = scrape(&app).await.value("ws_outbound_dropped_total", &slow_consumer) - dropped_before;
    assert!(dropped > 0.0, "the frames never sent are counted: {dropped}");

    // Its place is freed and the user can connect again (once the replies it asked for are
    // written, so the new socket is not flooded with the rest of them).
    wait_for_replies(&app, &slow_token, &chat_id).await;
    let mut again = reconnect_within(&app, &slow_token, Duration::from_secs(3), "after a slow close").await;
    assert_serving(&mut again, "the slow user's new socket").await;
    assert_serving(&mut other, "the other user's socket at the end").await;
}

/// Waits (up to 20 s) until every user message of the chat has its stored reply, twice in a row.
async fn wait_for_replies(app: &TestApp, token: &str, chat_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    loop {
        let response = app.get_with(&format!("/api/chats/{chat_id}/messages?limit=100"), token).await;
        assert_eq!(response.status(), StatusCode::OK, "GET the chat's messages");
        let messages: Vec<Value> = response.json().await.unwrap();
        let users = messages.iter().filter(|m| m["role"] == "user").count();
        let replies = messages.iter().filter(|m| m["role"] == "assistant").count();
        if users == replies && last == Some(messages.len()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replies still being written after 20 s: {users} messages, {replies} replies"
        );
        last = Some(messages.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[actix_web::test]
async fn a_client_that_reads_promptly_gets_a_long_reply_in_full_with_the_default_queue() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;
    let mut client = app.connect_ws(&token).await;
    let chat = client.request("create", json!({"type": "chat.create"})).await;
    let chat_id = chat["chat"]["id"].as_str().expect("chat id").to_owned();
    // (case, words): the default outbound queue holds 256 frames; the reply has words + 2 deltas.
    for (case, words) in
        [("a 300-word reply", 300), ("a 1 000-word reply", 1_000), ("a 2 000-word reply", 2_000)]
    {
        let content: String = (0..words).map(|i| format!("w{i} ")).collect();
        let id = format!("long-{words}");
        client.send(json!({"type": "chat.send", "id": id, "chat_id": chat_id, "content": content})).await;
        let mut reply = String::new();
        let mut deltas = 0;
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), client.stream.next()).await;
            let frame = match next {
                Err(_) => panic!("{case}: no frame for 10 s after {deltas} deltas"),
                Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<Value>(&text).unwrap(),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(other) => panic!(
                    "{case}: a client that reads promptly lost its connection \
                     after {deltas} deltas: {other:?}"
                ),
            };
            match frame["type"].as_str() {
                Some("chat.delta") => {
                    deltas += 1;
                    reply.push_str(frame["delta"].as_str().unwrap());
                }
                Some("chat.done") => {
                    assert_eq!(
                        frame["message"]["content"].as_str(),
                        Some(reply.as_str()),
                        "{case}: the deltas add up to the reply"
                    );
                    break;
                }
                Some("error") => panic!("{case}: {frame}"),
                _ => {}
            }
        }
        assert_eq!(reply, format!("You said: {content}"), "{case}: every delta arrived ({deltas})");
    }
}

// ---------------------------------------------------------------------------------------------
// Revocation
// ---------------------------------------------------------------------------------------------

/// Reads until `session.revoked`, then expects close 4001.
async fn assert_revoked(client: &mut WsClient, case: &str) {
    let (frames, ending) = read_to_end(client, Duration::from_secs(5)).await;
    let texts = texts(&frames);
    let revoked = texts.iter().position(|f| f["type"] == "session.revoked");
    let revoked = revoked
        .unwrap_or_else(|| panic!("{case}: no session.revoked before the end ({ending:?}): {texts:?}"));
    assert!(
        texts[revoked]["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{case}: a reason in {}",
        texts[revoked]
    );
    assert_eq!(revoked, texts.len() - 1, "{case}: session.revoked is the last text frame: {texts:?}");
    assert_eq!(ending, Ending::Close(Some(4001)), "{case}: close code after session.revoked");
}

#[actix_web::test]
async fn logout_closes_the_sockets_of_that_login_with_4001_and_a_password_change_closes_all() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let token_1 = app.login(&user).await["access_token"].as_str().unwrap().to_owned();
    let token_2 = app.login(&user).await["access_token"].as_str().unwrap().to_owned();
    let (_, stranger_token) = app.user_with_token().await;
    let ticket_1 = ws_ticket(&app, &token_1).await;

    let (bearer_1, bearer_2, key_bearer) = (bearer(&token_1), bearer(&token_2), bearer(&user.api_key));
    let (query_1, ticket_query_1, cookie_1) =
        (format!("?token={token_1}"), format!("?ticket={ticket_1}"), format!("sb_access={token_1}"));
    let own = app.address.clone();
    // (case, query, headers): sockets of login session 1, closed by its logout.
    let of_login_1: &[UpgradeCase] = &[
        ("login 1, Bearer", "", &[("authorization", &bearer_1)]),
        ("login 1, ?token=", &query_1, &[]),
        ("login 1, ?ticket=", &ticket_query_1, &[]),
        ("login 1, cookie", "", &[("cookie", &cookie_1), ("origin", &own)]),
    ];
    // Sockets of the same user that the logout of login 1 must not touch.
    let others: &[UpgradeCase] = &[
        ("login 2, Bearer", "", &[("authorization", &bearer_2)]),
        ("API key, Bearer", "", &[("authorization", &key_bearer)]),
        ("API key, X-API-Key", "", &[("x-api-key", &user.api_key)]),
    ];
    let mut doomed = Vec::new();
    for (case, query, headers) in of_login_1 {
        doomed.push((*case, connect(&app, query, headers, case).await));
    }
    let mut survivors = Vec::new();
    for (case, query, headers) in others {
        survivors.push((*case, connect(&app, query, headers, case).await));
    }
    let mut stranger = app.connect_ws(&stranger_token).await;

    assert_eq!(post_empty(&app, "/api/logout", &token_1).await, StatusCode::NO_CONTENT, "logout of login 1");
    for (case, client) in &mut doomed {
        assert_revoked(client, &format!("{case}, after its logout")).await;
    }
    for (case, client) in &mut survivors {
        assert_serving(client, &format!("{case}, after the logout of login 1")).await;
    }
    let refused =
        refusal(&app, "", &[("authorization", &bearer_1)], "login 1's token after its logout").await;
    assert_refused(&refused, 401, "unauthorized", "login 1's token after its logout");

    let change = json!({"current_password": PASSWORD, "new_password": "a-brand-new-passphrase-77"});
    let response = app.post_json_with("/api/me/password", &token_2, &change).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "password change");
    for (case, client) in &mut survivors {
        assert_revoked(client, &format!("{case}, after the password change")).await;
    }
    assert_serving(&mut stranger, "another user's socket after both revocations").await;
}

// ---------------------------------------------------------------------------------------------
// Shutdown of the real binary
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn sigterm_closes_every_socket_with_1001_and_the_process_exits_0_within_10_seconds() {
    let data_dir = Arc::new(TempDir::new().unwrap());
    let port = free_port();
    let mut args: Vec<String> = vec![
        "switchboard".into(),
        "--bind".into(),
        format!("127.0.0.1:{port}"),
        "--data-dir".into(),
        data_dir.path().to_str().unwrap().into(),
        "--hash-concurrency".into(),
        "2".into(),
    ];
    if let TestStore::Mongo(uri) = test_store() {
        args.extend(["--mongodb-uri".into(), uri, "--mongodb-db".into(), fresh_database_name()]);
    }
    let mut command = server_command();
    command.args(&args[1..]);
    let mut server = ServerProcess::start_command(command, port).await;
    let client = server.client.clone();
    let address = format!("http://127.0.0.1:{port}");
    let app = TestApp {
        address,
        port,
        client,
        data_dir: data_dir.clone(),
        config: Config::try_parse_from(&args).unwrap(),
    };
    let (_, token_a) = app.user_with_token().await;
    let (_, token_b) = app.user_with_token().await;
    let mut sockets = vec![
        ("user A's first socket", app.connect_ws(&token_a).await),
        ("user A's second socket", app.connect_ws(&token_a).await),
        ("user B's socket", app.connect_ws(&token_b).await),
    ];
    for (case, socket) in &mut sockets {
        assert_serving(socket, case).await;
    }

    // The clients read nothing until the process has exited: shutdown must not wait for them.
    let signalled = Instant::now();
    server.process.signal("TERM");
    let status = server
        .process
        .exit_within(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("still running 10 s after SIGTERM:\n{}", server.process.stderr()));
    eprintln!("SIGTERM: exited in {:?}", signalled.elapsed());
    for (case, socket) in &mut sockets {
        let (frames, ending) = read_to_end(socket, Duration::from_secs(5)).await;
        assert_eq!(ending, Ending::Close(Some(1001)), "{case}: how it ended after SIGTERM ({frames:?})");
    }
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after {:?}:\n{}",
        signalled.elapsed(),
        server.process.stderr()
    );
}

#[actix_web::test]
async fn regenerating_the_api_key_closes_the_sockets_opened_with_the_old_key_only() {
    let app = spawn_app().await;
    let (user, token) = app.user_with_token().await;
    let mut by_key = app.connect_ws(&user.api_key).await;
    let mut by_token = app.connect_ws(&token).await;
    let body = json!({"current_password": user.password});
    let response = app.post_json_with("/api/me/api-key", &token, &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (revoked, _) = by_key.recv_until("session.revoked").await;
    assert_eq!(revoked["reason"], "api_key_regenerated");
    assert_eq!(by_key.closed().await, Some(4001), "the old key's socket closes with 4001");
    let pong = by_token.request("p", json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong", "the access-token socket stays open");
}

#[actix_web::test]
async fn a_plain_get_of_ws_without_a_handshake_is_a_400() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;
    let response = app.get_with("/ws", &token).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "bad_request", "{body}");
}

#[actix_web::test]
async fn pipelining_past_the_in_flight_cap_is_answered_rate_limited_not_queued() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;
    let mut ws = app.connect_ws(&token).await;
    // chat.create writes a row each; 200 at once exceed the 64 a session may have waiting.
    for n in 0..200 {
        ws.send(json!({"type": "chat.create", "id": format!("c{n}")})).await;
    }
    let (mut created, mut limited) = (0, 0);
    while created + limited < 200 {
        let frame = ws.recv().await;
        match frame["type"].as_str() {
            Some("chat.created") => created += 1,
            Some("error") if frame["code"] == "rate_limited" => limited += 1,
            _ => {}
        }
    }
    assert!(created >= 64, "at least the cap is served: {created}");
    assert!(limited > 0, "the rest are refused, not queued without bound");
}
