//! The holes an audit of the release build found, each tried the way the auditor tried it:
//! revocation racing sockets that are still opening, parallel upgrades past the session cap,
//! unlimited free frames and chats, reset tokens that outlive a password change or a
//! deactivation, and ws tickets that outlive the API key that bought them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;
use crate::ws_helpers::WsClient;

/// Opens sockets with `?token=` from several tasks until `stop`, returning every one that opened.
async fn open_sockets_until(app: &TestApp, query: String, stop: Arc<AtomicBool>) -> Vec<WsClient> {
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (url, stop, query) = (app.ws_url(""), stop.clone(), query.clone());
            tokio::spawn(async move {
                let mut opened = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    let url = format!("{url}{query}");
                    if let Ok((stream, _)) = tokio_tungstenite::connect_async(url).await {
                        opened.push(stream);
                    }
                }
                opened
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        for stream in task.await.unwrap() {
            all.push(WsClient { stream, hello: Value::Null });
        }
    }
    all
}

/// How a socket that must be revoked ended: `Ok` for close 4001, else what was seen instead.
async fn revoked_within(client: &mut WsClient, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, client.stream.next()).await {
            Err(_) => return Err(format!("still open after {limit:?}")),
            Ok(Some(Ok(Message::Close(frame)))) => {
                let code = frame.map(|f| u16::from(f.code));
                return if code == Some(4001) { Ok(()) } else { Err(format!("closed with {code:?}")) };
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(format!("connection error {e}")),
            Ok(None) => return Err("dropped without a close frame".into()),
        }
    }
}

#[actix_web::test]
async fn sockets_that_were_opening_while_their_session_was_revoked_are_closed_too() {
    let app = spawn_app_with(&["--ws-max-sessions-per-user", "10000"]).await;
    let user = app.register_user().await;
    // (case, how the session ends): logout of that login, then a password change of the user.
    for (trial, revocation) in ["logout", "password change", "logout", "password change"].iter().enumerate() {
        let case = format!("trial {trial} ({revocation})");
        let login = app.login(&user).await;
        let token = login["access_token"].as_str().unwrap().to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let opening = {
            let (app, stop, query) = (clone_app(&app), stop.clone(), format!("?token={token}"));
            tokio::spawn(async move { open_sockets_until(&app, query, stop).await })
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        let status = match *revocation {
            "logout" => {
                app.request(Method::POST, "/api/logout").bearer_auth(&token).send().await.unwrap().status()
            }
            _ => {
                let body = json!({"current_password": PASSWORD, "new_password": PASSWORD});
                app.post_json_with("/api/me/password", &token, &body).await.status()
            }
        };
        assert_eq!(status, StatusCode::NO_CONTENT, "{case}: the revocation succeeds");
        // Upgrades still running when the answer came may complete afterwards; stop a moment later.
        tokio::time::sleep(Duration::from_millis(150)).await;
        stop.store(true, Ordering::Release);
        let mut sockets = opening.await.unwrap();
        assert!(!sockets.is_empty(), "{case}: some sockets opened before the revocation");
        let mut survivors = Vec::new();
        for (i, socket) in sockets.iter_mut().enumerate() {
            if let Err(seen) = revoked_within(socket, Duration::from_secs(3)).await {
                survivors.push(format!("socket {i}: {seen}"));
            }
        }
        assert!(
            survivors.is_empty(),
            "{case}: {} of {} sockets survived: {survivors:?}",
            survivors.len(),
            sockets.len()
        );
    }
}

/// A second handle on the same server, for a task.
fn clone_app(app: &TestApp) -> TestApp {
    TestApp {
        address: app.address.clone(),
        port: app.port,
        client: app.client.clone(),
        data_dir: app.data_dir.clone(),
        config: app.config.clone(),
    }
}

#[actix_web::test]
async fn a_hundred_parallel_upgrades_open_exactly_as_many_sessions_as_the_cap() {
    let app = spawn_app_with(&["--ws-max-sessions-per-user", "32"]).await;
    let (_, token) = app.user_with_token().await;
    let url = app.ws_url(&format!("?token={token}"));
    let attempts = (0..100).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { tokio_tungstenite::connect_async(url).await })
    });
    let mut opened = Vec::new();
    let mut refused = Vec::new();
    for attempt in futures_util::future::join_all(attempts).await {
        match attempt.unwrap() {
            Ok((stream, _)) => opened.push(stream),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                refused.push(response.status().as_u16())
            }
            Err(e) => panic!("an upgrade failed without an HTTP answer: {e}"),
        }
    }
    assert_eq!(opened.len(), 32, "sessions opened by 100 parallel upgrades with a cap of 32");
    assert!(refused.iter().all(|s| *s == 429), "every other upgrade is 429: {refused:?}");

    // Every refusal gave its reservation back: closing one session frees exactly one place.
    drop(opened.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match tokio_tungstenite::connect_async(url.clone()).await {
            Ok((stream, _)) => {
                opened.push(stream);
                break;
            }
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("the freed place was not given back within 3 s: {e}"),
        }
    }
    let over = tokio_tungstenite::connect_async(url).await;
    assert!(over.is_err(), "the cap holds again once the freed place is taken");
}

#[actix_web::test]
async fn free_requests_are_rate_limited_per_user_and_chats_are_capped() {
    let app = spawn_app_with(&["--ws-free-per-minute", "5", "--max-chats-per-user", "3"]).await;
    let (_, token) = app.user_with_token().await;
    let mut ws = app.connect_ws(&token).await;
    for i in 0..3 {
        let created = ws.request(&format!("c{i}"), json!({"type": "chat.create"})).await;
        assert_eq!(created["type"], "chat.created", "chat {i} of 3: {created}");
    }
    let refused = ws.request("c3", json!({"type": "chat.create"})).await;
    assert_eq!(refused["type"], "error", "a fourth chat: {refused}");
    assert_eq!(refused["code"], "quota_exceeded", "a fourth chat: {refused}");
    assert!(refused["message"].as_str().unwrap().contains('3'), "the message names the cap: {refused}");

    // Four free requests so far; the fifth fits, the sixth is refused with a retry time.
    let listed = ws.request("l1", json!({"type": "chat.list"})).await;
    assert_eq!(listed["chats"].as_array().map(Vec::len), Some(3), "the cap kept the list at 3: {listed}");
    let limited = ws.request("l2", json!({"type": "credits.get"})).await;
    assert_eq!(limited["code"], "rate_limited", "the sixth free request in a minute: {limited}");
    assert!(limited["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "a retry time: {limited}");
    let message = limited["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("Too many requests; retry in "), "it names the free budget: {limited}");
    assert!(!message.contains("paid"), "a free request is not told about paid messages: {limited}");
    let pong = ws.request("p", json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong", "pings are never limited: {pong}");
    let (_, other) = app.user_with_token().await;
    let mut other = app.connect_ws(&other).await;
    let answer = other.request("o", json!({"type": "chat.list"})).await;
    assert_eq!(answer["type"], "chat.list", "another user has their own budget: {answer}");
}

/// Requests a reset mail for `email` and returns the token of mail number `nth` (1-based).
async fn reset_token(app: &TestApp, email: &str, nth: usize) -> String {
    let response = app.post_json("/api/password/forgot", &json!({"email": email})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED, "forgot request accepted");
    reset_token_from_mail(&app.wait_for_mail(nth).await[nth - 1])
}

async fn reset(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    app.post_json("/api/password/reset", &json!({"token": token, "new_password": password})).await
}

#[actix_web::test]
async fn a_password_change_or_a_deactivation_voids_every_outstanding_reset_token() {
    let admin_email = unique_email();
    let app = spawn_app_with(&["--admin-email", &admin_email, "--admin-password", PASSWORD]).await;
    let admin = app.post_login(&admin_email, PASSWORD).await.json::<Value>().await.unwrap();
    let admin_token = admin["access_token"].as_str().unwrap().to_owned();

    let (user, token) = app.user_with_token().await;
    let stale = reset_token(&app, &user.email, 1).await;
    let changed = "a-changed-passphrase-31";
    let body = json!({"current_password": PASSWORD, "new_password": changed});
    assert_eq!(app.post_json_with("/api/me/password", &token, &body).await.status(), StatusCode::NO_CONTENT);
    let refused = reset(&app, &stale, "an-attackers-passphrase-9").await;
    assert_error(refused, StatusCode::BAD_REQUEST, "invalid_token", "reset after a password change").await;
    assert_eq!(
        app.post_login(&user.email, changed).await.status(),
        StatusCode::OK,
        "the changed password stands"
    );

    let user = TestUser { password: changed.to_owned(), ..user };
    let stale = reset_token(&app, &user.email, 2).await;
    let patch = |active: bool| {
        app.request(Method::PATCH, &format!("/api/admin/users/{}", user.id))
            .bearer_auth(&admin_token)
            .json(&json!({"active": active}))
            .send()
    };
    assert_eq!(patch(false).await.unwrap().status(), StatusCode::OK, "deactivation");
    let refused = reset(&app, &stale, "an-attackers-passphrase-9").await;
    assert_error(refused, StatusCode::BAD_REQUEST, "invalid_token", "reset of a deactivated account").await;
    assert_eq!(patch(true).await.unwrap().status(), StatusCode::OK, "reactivation");
    let refused = reset(&app, &stale, "an-attackers-passphrase-9").await;
    assert_error(
        refused,
        StatusCode::BAD_REQUEST,
        "invalid_token",
        "the token stays void after reactivation",
    )
    .await;
    assert_eq!(
        app.post_login(&user.email, changed).await.status(),
        StatusCode::OK,
        "the password is unchanged"
    );

    // A reset voids the others too: the newest token resets, and none issued before it works.
    let older = reset_token(&app, &user.email, 3).await;
    let newest = reset_token(&app, &user.email, 4).await;
    assert_eq!(reset(&app, &newest, "a-reset-passphrase-55").await.status(), StatusCode::NO_CONTENT);
    let refused = reset(&app, &older, "an-attackers-passphrase-9").await;
    assert_error(refused, StatusCode::BAD_REQUEST, "invalid_token", "an older token after a reset").await;
}

#[actix_web::test]
async fn a_ws_ticket_bought_with_an_api_key_dies_with_the_key() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let ticket = |key: String| {
        let app = clone_app(&app);
        async move {
            let response = app.request(Method::POST, "/api/ws-ticket").bearer_auth(key).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "a ticket for the API key");
            response.json::<Value>().await.unwrap()["ticket"].as_str().unwrap().to_owned()
        }
    };
    let old_ticket = ticket(user.api_key.clone()).await;
    let spare_ticket = ticket(user.api_key.clone()).await;
    let regenerated = app
        .request(Method::POST, "/api/me/api-key")
        .bearer_auth(&user.api_key)
        .json(&json!({"current_password": user.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(regenerated.status(), StatusCode::OK, "the key is regenerated");
    let new_key = regenerated.json::<Value>().await.unwrap()["api_key"].as_str().unwrap().to_owned();
    for (case, ticket) in
        [("a ticket of the old key", &old_ticket), ("another ticket of the old key", &spare_ticket)]
    {
        let refused = app.try_connect_ws(&format!("?ticket={ticket}"), &[]).await;
        let refused = refused.err().unwrap_or_else(|| panic!("{case}: the upgrade was accepted"));
        assert_eq!(refused.status, 401, "{case}: {}", refused.body);
    }
    let fresh = ticket(new_key).await;
    assert!(
        app.try_connect_ws(&format!("?ticket={fresh}"), &[]).await.is_ok(),
        "a ticket of the new key opens"
    );
}
