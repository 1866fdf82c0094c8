//! The real binary's log, captured from stderr, after a flow that handles every kind of secret:
//! none of them may appear, and the security events must be there as structured JSON with the
//! user id and the client IP (taken from `X-Forwarded-For` of a trusted proxy).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::app::{PASSWORD, reset_token_from_mail, unique_email};
use crate::support::process::ServerProcess;
use crate::support::store::store_env;

/// The client address the trusted proxy (the test, on 127.0.0.1) forwards.
const CLIENT_IP: &str = "198.51.100.23";
const WRONG_PASSWORD: &str = "wrong-horse-battery-staple-1";
const NEW_PASSWORD: &str = "freshly-chosen-passphrase-99";

/// The server process, killed by its PID when dropped, and its data dir.
struct Server {
    server_process: ServerProcess,
    data_dir: TempDir,
}

impl Server {
    /// Starts the binary with JSON logs at `debug`, trusting 127.0.0.1 as a proxy.
    async fn start() -> Server {
        let data_dir = TempDir::new().unwrap();
        let mut env: Vec<(String, String)> = [
            ("SWITCHBOARD_LOG_FORMAT", "json"),
            ("RUST_LOG", "debug"),
            ("SWITCHBOARD_TRUSTED_PROXIES", "127.0.0.1/32"),
            ("SWITCHBOARD_LOGIN_FAILURES_PER_ACCOUNT", "2"),
        ]
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
        env.extend(store_env());
        let server_process = ServerProcess::start(data_dir.path(), &env).await;
        Server { server_process, data_dir }
    }

    fn log(&self) -> String {
        self.server_process.process.stderr()
    }

    /// POST as forwarded by the proxy; status and JSON body (Null when none).
    async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut request = self
            .server_process
            .client
            .post(self.server_process.url(path))
            .header("X-Forwarded-For", CLIENT_IP)
            .json(&body);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, bearer: &str) -> StatusCode {
        let request = self
            .server_process
            .client
            .get(self.server_process.url(path))
            .header("X-Forwarded-For", CLIENT_IP)
            .bearer_auth(bearer);
        request.send().await.unwrap().status()
    }

    /// The newest mail in the outbox, waiting up to 30 s for `count` of them.
    async fn mail(&self, count: usize) -> String {
        let dir = self.data_dir.path().join("outbox");
        for _ in 0..600 {
            let mut files: Vec<_> =
                std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
            files.sort();
            if files.len() >= count {
                return std::fs::read_to_string(files.last().unwrap()).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no mail in {}", dir.display());
    }
}

/// Opens `/ws` with a credential in the query string and closes it again.
async fn open_ws(server: &Server, query: &str) {
    let url = format!("ws://127.0.0.1:{}/ws?{query}", server.server_process.port);
    let (mut stream, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket upgrade");
    let _ = futures_util::SinkExt::close(&mut stream).await;
}

#[actix_web::test]
async fn no_secret_reaches_the_log_and_security_events_carry_user_and_client_ip() {
    let server = Server::start().await;
    let email = unique_email();
    let mut secrets: Vec<(&str, String)> =
        vec![("password", PASSWORD.into()), ("wrong password", WRONG_PASSWORD.into())];

    let registration =
        json!({"email": email, "password": PASSWORD, "first_name": "Ada", "last_name": "Lovelace"});
    let (status, body) = server.post("/api/register", None, registration).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let user_id = body["user"]["id"].as_str().unwrap().to_owned();
    let first_key = body["api_key"].as_str().unwrap().to_owned();
    secrets.push(("first API key", first_key.clone()));

    let (status, _) =
        server.post("/api/login", None, json!({"email": email, "password": WRONG_PASSWORD})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, login) =
        server.post("/api/login", None, json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    let (status, refreshed) =
        server.post("/api/token/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let access = refreshed["access_token"].as_str().unwrap().to_owned();
    secrets.push(("login access token", login["access_token"].as_str().unwrap().into()));
    secrets.push(("refresh token", refresh.clone()));
    secrets.push(("refresh token secret", refresh.split_once('.').unwrap().1.into()));
    secrets.push(("refreshed access token", access.clone()));
    secrets.push(("refreshed refresh token", refreshed["refresh_token"].as_str().unwrap().into()));

    assert_eq!(server.get("/api/me", &first_key).await, StatusCode::OK, "the API key works");
    let with_query = format!("/api/me?token={access}&api_key={first_key}");
    assert_eq!(server.get(&with_query, &access).await, StatusCode::OK, "secrets in a query string");
    let (status, key) =
        server.post("/api/me/api-key", Some(&access), json!({"current_password": PASSWORD})).await;
    assert_eq!(status, StatusCode::OK, "{key}");
    secrets.push(("regenerated API key", key["api_key"].as_str().unwrap().into()));

    let (status, ticket) = server.post("/api/ws-ticket", Some(&access), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{ticket}");
    let ticket = ticket["ticket"].as_str().unwrap().to_owned();
    open_ws(&server, &format!("ticket={ticket}")).await;
    open_ws(&server, &format!("token={access}")).await;
    secrets.push(("ws ticket", ticket));

    let (status, _) = server.post("/api/password/forgot", None, json!({"email": email})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let reset_token = reset_token_from_mail(&server.mail(1).await);
    let (status, _) = server
        .post("/api/password/reset", None, json!({"token": "guessed", "new_password": NEW_PASSWORD}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let reset = json!({"token": reset_token, "new_password": NEW_PASSWORD});
    assert_eq!(server.post("/api/password/reset", None, reset).await.0, StatusCode::NO_CONTENT);
    secrets.push(("reset token", reset_token));
    secrets.push(("new password", NEW_PASSWORD.into()));

    let wrong = json!({"email": email, "password": WRONG_PASSWORD});
    let statuses = [
        server.post("/api/login", None, wrong.clone()).await.0,
        server.post("/api/login", None, wrong.clone()).await.0,
        server.post("/api/login", None, wrong).await.0,
    ];
    assert_eq!(statuses[2], StatusCode::TOO_MANY_REQUESTS, "the account is throttled: {statuses:?}");
    let jwt_secret = std::fs::read_to_string(server.data_dir.path().join("jwt_secret")).unwrap();
    secrets.push(("JWT secret", jwt_secret.trim().into()));

    // Wait for the background work, then for a request sent last: the reset notice in the outbox,
    // and the access line of a path of its own (access lines are written once the answer is out).
    server.mail(2).await;
    let fence = format!("/fence-{}", uuid::Uuid::new_v4().simple());
    assert_eq!(server.get(&fence, &access).await, StatusCode::NOT_FOUND, "the fence request");
    server.server_process.wait_for_log(&fence).await;
    let log = server.log();
    assert!(log.contains("/api/me"), "the access log is on (else the check below proves nothing):\n{log}");
    let leaked: Vec<&str> =
        secrets.iter().filter(|(_, s)| log.contains(s.as_str())).map(|(what, _)| *what).collect();
    assert!(leaked.is_empty(), "the log contains: {leaked:?}");

    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect();
    let event = |name: &str, scope: Option<&str>| {
        lines.iter().find(|l| l["event"] == name && scope.is_none_or(|s| l["scope"] == s)).cloned()
    };
    let expected = [
        ("login_failed", None, true),
        ("login_succeeded", None, true),
        ("api_key_regenerated", None, true),
        ("password_reset_requested", None, true),
        ("password_reset_failed", None, false),
        ("password_reset_used", None, true),
        ("throttled", Some("login_account"), false),
    ];
    for (name, scope, names_user) in expected {
        let line = event(name, scope).unwrap_or_else(|| panic!("no {name} event in the log:\n{log}"));
        assert_eq!(line["client_ip"], CLIENT_IP, "{name}: client_ip in {line}");
        if names_user {
            assert_eq!(line["user_id"], user_id.as_str(), "{name}: user_id in {line}");
        }
    }
}
