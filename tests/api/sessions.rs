//! Login sessions over REST (docs/API.md §4): the user's live sessions with where each came from and
//! its open sockets, ending one (its tokens fail, its sockets close 4001), ending every other one,
//! an admin's view of a user's sessions with the power to end one, and sockets still opening
//! when their session is revoked, which are closed too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::app::*;
use crate::support::ws::WsClient;

/// Logs `user` in with a `User-Agent`; the login body.
async fn login_as(app: &TestApp, user: &TestUser, user_agent: &str) -> Value {
    let response = app
        .request(Method::POST, "/api/login")
        .header("user-agent", user_agent)
        .json(&json!({"email": user.email, "password": user.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "login succeeds");
    response.json().await.unwrap()
}

/// The session id inside a refresh token (`<sid>.<secret>`).
fn sid_of(login: &Value) -> String {
    login["refresh_token"].as_str().unwrap().split_once('.').unwrap().0.to_owned()
}

fn token(login: &Value) -> &str {
    login["access_token"].as_str().unwrap()
}

async fn sessions(app: &TestApp, bearer: &str) -> Vec<Value> {
    let response = app.get_with("/api/me/sessions", bearer).await;
    assert_eq!(response.status(), StatusCode::OK, "the sessions list");
    let body: Value = response.json().await.unwrap();
    body["sessions"].as_array().unwrap().clone()
}

async fn delete_with(app: &TestApp, path: &str, bearer: &str) -> Response {
    app.request(Method::DELETE, path).bearer_auth(bearer).send().await.unwrap()
}

#[actix_web::test]
async fn the_sessions_list_shows_where_each_login_came_from_and_its_open_sockets() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let laptop = login_as(&app, &user, "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0").await;
    let phone = login_as(&app, &user, "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0) Safari/604.1").await;
    let _tab1 = app.connect_ws(token(&laptop)).await;
    let _tab2 = app.connect_ws(token(&laptop)).await;
    let _api_socket = app.connect_ws(&user.api_key).await;

    let listed = sessions(&app, token(&laptop)).await;
    assert_eq!(listed.len(), 2, "both logins: {listed:?}");
    assert_eq!(listed[0]["id"], sid_of(&phone), "the most recently used first");
    let by_id = |sid: &str| listed.iter().find(|s| s["id"] == sid).unwrap().clone();
    let (laptop_view, phone_view) = (by_id(&sid_of(&laptop)), by_id(&sid_of(&phone)));
    assert_eq!(laptop_view["current"], true, "the asking session is current");
    assert_eq!(phone_view["current"], false);
    assert_eq!(laptop_view["sockets"], 2, "two sockets of the laptop's login (the API-key socket has none)");
    assert_eq!(phone_view["sockets"], 0);
    assert_eq!(laptop_view["ip"], "127.0.0.1");
    assert!(laptop_view["user_agent"].as_str().unwrap().contains("Firefox"), "{laptop_view}");
    assert!(phone_view["user_agent"].as_str().unwrap().contains("iPhone"), "{phone_view}");
    assert!(rfc3339(&laptop_view["last_used_at"]) >= rfc3339(&laptop_view["created_at"]), "{laptop_view}");

    // A refresh is a use; a plain request is not.
    let before = phone_view["last_used_at"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    app.get_with("/api/me", token(&phone)).await;
    assert_eq!(
        by_id_in(&sessions(&app, &user.api_key).await, &sid_of(&phone))["last_used_at"],
        before.as_str()
    );
    let refreshed =
        app.post_json("/api/token/refresh", &json!({"refresh_token": phone["refresh_token"]})).await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    let after = by_id_in(&sessions(&app, &user.api_key).await, &sid_of(&phone));
    assert!(
        rfc3339(&after["last_used_at"]) > rfc3339(&Value::from(before)),
        "a refresh moves last_used_at: {after}"
    );

    let with_key = sessions(&app, &user.api_key).await;
    assert!(with_key.iter().all(|s| s["current"] == false), "an API key has no current session");
    let anonymous = app.request(Method::GET, "/api/me/sessions").send().await.unwrap();
    assert_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized", "no credential").await;
}

fn rfc3339(value: &Value) -> time::OffsetDateTime {
    let text = value.as_str().unwrap_or_else(|| panic!("a time, got {value}"));
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
}

fn by_id_in(list: &[Value], sid: &str) -> Value {
    list.iter().find(|s| s["id"] == sid).unwrap_or_else(|| panic!("{sid} is listed in {list:?}")).clone()
}

#[actix_web::test]
async fn ending_a_session_fails_its_tokens_and_closes_its_sockets_with_4001() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let stranger = app.register_user().await;
    let kept = login_as(&app, &user, "kept").await;
    let ended = login_as(&app, &user, "ended").await;
    let strangers = login_as(&app, &stranger, "stranger").await;
    let mut socket = app.connect_ws(token(&ended)).await;
    let mut bystander = app.connect_ws(token(&kept)).await;

    let path = format!("/api/me/sessions/{}", sid_of(&ended));
    assert_eq!(delete_with(&app, &path, token(&kept)).await.status(), StatusCode::NO_CONTENT);

    let (revoked, _) = socket.recv_until("session.revoked").await;
    assert_eq!(revoked["reason"], "session_ended");
    assert_eq!(socket.closed().await, Some(4001), "the ended session's socket closes with 4001");
    assert_eq!(
        app.get_with("/api/me", token(&ended)).await.status(),
        StatusCode::UNAUTHORIZED,
        "its access token fails"
    );
    let refresh =
        app.post_json("/api/token/refresh", &json!({"refresh_token": ended["refresh_token"]})).await;
    assert_eq!(refresh.status(), StatusCode::UNAUTHORIZED, "its refresh token fails");
    assert_eq!(
        bystander.request("p", json!({"type": "ping"})).await["type"],
        "pong",
        "the other session's socket stays"
    );
    let listed: Vec<Value> = sessions(&app, token(&kept)).await;
    assert_eq!(listed.len(), 1, "only the kept session is left: {listed:?}");

    let cases = [
        ("the same session again", path.clone()),
        ("another user's session", format!("/api/me/sessions/{}", sid_of(&strangers))),
        ("an unknown id", "/api/me/sessions/no-such-session".to_owned()),
    ];
    for (case, path) in cases {
        assert_error(delete_with(&app, &path, token(&kept)).await, StatusCode::NOT_FOUND, "not_found", case)
            .await;
    }
    assert_eq!(
        app.get_with("/api/me", token(&strangers)).await.status(),
        StatusCode::OK,
        "the stranger is untouched"
    );
}

#[actix_web::test]
async fn revoke_others_ends_every_session_but_the_current_one_and_with_an_api_key_every_one() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let current = login_as(&app, &user, "current").await;
    let others = [login_as(&app, &user, "other 1").await, login_as(&app, &user, "other 2").await];
    let mut other_socket = app.connect_ws(token(&others[0])).await;

    let response = app.post_json_with("/api/me/sessions/revoke-others", token(&current), &json!({})).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(other_socket.closed().await, Some(4001), "another session's socket closes");
    for other in &others {
        assert_eq!(app.get_with("/api/me", token(other)).await.status(), StatusCode::UNAUTHORIZED);
    }
    let left = sessions(&app, token(&current)).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["current"], true);
    assert_eq!(
        app.get_with("/api/me", &user.api_key).await.status(),
        StatusCode::UNAUTHORIZED,
        "the key is void"
    );

    let body = json!({"current_password": user.password});
    let key: Value =
        app.post_json_with("/api/me/api-key", token(&current), &body).await.json().await.unwrap();
    let api_key = key["api_key"].as_str().unwrap().to_owned();
    let response = app
        .request(Method::POST, "/api/me/sessions/revoke-others")
        .bearer_auth(&api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_with("/api/me", token(&current)).await.status(),
        StatusCode::UNAUTHORIZED,
        "with an API key all end"
    );
    assert!(sessions(&app, &api_key).await.is_empty());
    assert_eq!(app.get_with("/api/me", &api_key).await.status(), StatusCode::OK, "the API key still works");
}

#[actix_web::test]
async fn an_admin_lists_a_users_sessions_and_ends_one() {
    let app = spawn_app_with(&["--admin-email", "chief@example.com", "--admin-password", PASSWORD]).await;
    let admin = app.post_login("chief@example.com", PASSWORD).await.json::<Value>().await.unwrap();
    let user = app.register_user().await;
    let other = app.register_user().await;
    let login = login_as(&app, &user, "Mozilla/5.0 Chrome/130").await;
    let other_login = login_as(&app, &other, "other").await;
    let mut socket = app.connect_ws(token(&login)).await;

    let path = format!("/api/admin/users/{}/sessions", user.id);
    let response = app.get_with(&path, token(&admin)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let listed: Value = response.json().await.unwrap();
    let listed = listed["sessions"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], sid_of(&login));
    assert_eq!(listed[0]["current"], false, "never current for an admin");
    assert_eq!(listed[0]["sockets"], 1);

    let refusals = [
        ("a user asks", app.get_with(&path, token(&login)).await, StatusCode::FORBIDDEN, "forbidden"),
        (
            "nobody asks",
            app.request(Method::GET, &path).send().await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "an unknown user",
            app.get_with("/api/admin/users/nobody/sessions", token(&admin)).await,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "another user's session under this user",
            delete_with(&app, &format!("{path}/{}", sid_of(&other_login)), token(&admin)).await,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "a user ending their own session by the admin route",
            delete_with(&app, &format!("{path}/{}", sid_of(&login)), token(&login)).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
    ];
    for (case, response, status, code) in refusals {
        assert_error(response, status, code, case).await;
    }

    let response = delete_with(&app, &format!("{path}/{}", sid_of(&login)), token(&admin)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(socket.closed().await, Some(4001), "the user's socket closes");
    assert_eq!(app.get_with("/api/me", token(&login)).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get_with("/api/me", token(&other_login)).await.status(),
        StatusCode::OK,
        "others are untouched"
    );
}

// ---------------------------------------------------------------- sockets still opening

/// A socket that opened, and when: sent is when its upgrade request went out, opened when the
/// `101` came back.
struct Opened {
    client: WsClient,
    sent: Instant,
    opened: Instant,
}

/// Opens sockets with `?token=` from six tasks until `stop`, counting them in `count` as they
/// open; returns every one that opened.
async fn open_sockets_until(
    app: &TestApp,
    query: String,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
) -> Vec<Opened> {
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (url, stop, count) = (app.ws_url(&query), stop.clone(), count.clone());
            tokio::spawn(async move {
                let mut opened = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    let sent = Instant::now();
                    if let Ok((stream, _)) = tokio_tungstenite::connect_async(&url).await {
                        let client = WsClient { stream, hello: Value::Null };
                        opened.push(Opened { client, sent, opened: Instant::now() });
                        count.fetch_add(1, Ordering::Release);
                    }
                }
                opened
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

/// How a socket that must be revoked ended: `Ok` for close 4001, else what was seen instead.
async fn revoked_within(client: &mut WsClient, limit: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, client.stream.next()).await {
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
    // A socket whose `101` came back after the revocation was answered passed its credential
    // check before the revocation took hold (a check after it fails, 401) and was still opening
    // when it did: the case under test. Trials go on until enough of them were caught in flight.
    let (mut in_flight, mut trial) = (0, 0);
    while trial < 4 || in_flight < 3 {
        assert!(
            trial < 40,
            "in {trial} trials only {in_flight} upgrades were still opening when a revocation was answered"
        );
        let revocation = if trial % 2 == 0 { "logout" } else { "password change" };
        let case = format!("trial {trial} ({revocation})");
        trial += 1;
        let login = app.login(&user).await;
        let token = login["access_token"].as_str().unwrap().to_owned();
        let (stop, count) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let opening = {
            let (app, stop, count, query) =
                (app.clone(), stop.clone(), count.clone(), format!("?token={token}"));
            tokio::spawn(async move { open_sockets_until(&app, query, stop, count).await })
        };
        // Revoke once upgrades are flowing: a few have opened.
        let deadline = Instant::now() + Duration::from_secs(30);
        while count.load(Ordering::Acquire) < 3 {
            assert!(Instant::now() < deadline, "{case}: no sockets opened in 30 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let sent = Instant::now();
        let status = match revocation {
            "logout" => {
                app.request(Method::POST, "/api/logout").bearer_auth(&token).send().await.unwrap().status()
            }
            _ => {
                let body = json!({"current_password": PASSWORD, "new_password": PASSWORD});
                app.post_json_with("/api/me/password", &token, &body).await.status()
            }
        };
        let answered = Instant::now();
        assert_eq!(status, StatusCode::NO_CONTENT, "{case}: the revocation succeeds");
        // Upgrades under way finish; no new one starts.
        stop.store(true, Ordering::Release);
        let mut sockets = opening.await.unwrap();
        in_flight += sockets.iter().filter(|s| s.sent < answered && s.opened > answered).count();
        let mut survivors = Vec::new();
        for (i, socket) in sockets.iter_mut().enumerate() {
            if let Err(seen) = revoked_within(&mut socket.client, Duration::from_secs(30)).await {
                let when = if socket.opened > answered { "after" } else { "before" };
                survivors.push(format!("socket {i} (opened {when} the answer): {seen}"));
            }
        }
        assert!(
            survivors.is_empty(),
            "{case}: {} of {} sockets survived (revocation sent {:?} after the first opened): {survivors:?}",
            survivors.len(),
            sockets.len(),
            sent.duration_since(sockets.iter().map(|s| s.opened).min().unwrap_or(sent)),
        );
    }
}
