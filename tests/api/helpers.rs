//! `spawn_app()` starts the real server on port 0 with a fresh data dir (and, when the suite
//! runs against MongoDB, a fresh database), and `TestApp` talks HTTP to it.
//!
//! The store is chosen by `SWITCHBOARD_TEST_STORE` (`sqlite`, the default, or `mongo` with
//! `SWITCHBOARD_TEST_MONGODB_URI`); `scripts/test` runs the suite once for each.

use std::sync::Arc;

use crate::support::http_client;
use clap::Parser;
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use switchboard::config::Config;
use switchboard::startup::Application;
use switchboard::store::DynStore;
use tempfile::TempDir;

/// A password that passes every rule.
pub const PASSWORD: &str = "violet-harbour-lantern-42";

/// Which store the suite runs against.
pub enum TestStore {
    /// The embedded SQLite store.
    Sqlite,
    /// MongoDB (FerretDB in CI) at this URI.
    Mongo(String),
}

/// The store chosen by the environment; a missing MongoDB URI is an error, never a silent skip.
pub fn test_store() -> TestStore {
    match std::env::var("SWITCHBOARD_TEST_STORE").as_deref() {
        Ok("mongo") => TestStore::Mongo(
            std::env::var("SWITCHBOARD_TEST_MONGODB_URI")
                .expect("SWITCHBOARD_TEST_STORE=mongo needs SWITCHBOARD_TEST_MONGODB_URI"),
        ),
        Ok("sqlite") | Err(_) => TestStore::Sqlite,
        Ok(other) => panic!("unknown SWITCHBOARD_TEST_STORE {other:?}"),
    }
}

/// Limits and throttles set out of reach, so tests that send many requests from 127.0.0.1 are not
/// refused; a test of a limit passes its own value, which replaces the one here.
pub const RELAXED_LIMITS: [(&str, &str); 7] = [
    ("--rate-limit-per-minute", "100000"),
    ("--login-failures-per-account", "100000"),
    ("--login-failures-per-ip", "100000"),
    ("--reset-failures-per-ip", "100000"),
    ("--forgot-per-email-per-hour", "100000"),
    ("--forgot-per-ip-per-hour", "100000"),
    ("--registrations-per-ip-per-hour", "100000"),
];

/// The [`RELAXED_LIMITS`] that `extra` does not set itself.
fn relaxed_limits(extra: &[&str]) -> Vec<String> {
    RELAXED_LIMITS
        .iter()
        .filter(|(flag, _)| !extra.contains(flag))
        .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
        .collect()
}

/// Flags for a fresh server: port 0, a new data dir, a new database.
pub fn test_args(data_dir: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "switchboard",
        "--bind",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--hash-concurrency",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let TestStore::Mongo(uri) = test_store() {
        args.extend(["--mongodb-uri".into(), uri, "--mongodb-db".into(), fresh_database_name()]);
    }
    args.extend(relaxed_limits(extra));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A database name no other test uses.
pub fn fresh_database_name() -> String {
    format!("sb_test_{}", uuid::Uuid::new_v4().simple())
}

/// A running server and a client for it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The bound port.
    pub port: u16,
    /// Client without a cookie store: each test says which credential it sends.
    pub client: Client,
    /// The server's data dir (outbox, secret, SQLite file); removed on drop.
    pub data_dir: Arc<TempDir>,
    /// The server's settings.
    pub config: Config,
}

/// A registered user and its credentials.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// The user's id.
    pub id: String,
    /// Its email.
    pub email: String,
    /// Its password.
    pub password: String,
    /// The API key from registration.
    pub api_key: String,
}

/// Starts a server with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts a server with extra flags (e.g. `["--starting-credits", "5"]`).
pub async fn spawn_app_with(extra: &[&str]) -> TestApp {
    let data_dir = Arc::new(TempDir::new().expect("temp dir"));
    spawn_app_in(data_dir, extra).await
}

/// Starts a server on an existing data dir (to test restarts).
pub async fn spawn_app_in(data_dir: Arc<TempDir>, extra: &[&str]) -> TestApp {
    let config = Config::try_parse_from(test_args(data_dir.path(), extra)).expect("test config");
    config.check().expect("test config is consistent");
    let app = Application::build(config.clone()).await.expect("server builds");
    let port = app.port();
    actix_web::rt::spawn(app.run());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client: http_client().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        data_dir,
        config,
    }
}

/// A unique email for one test.
pub fn unique_email() -> String {
    format!("user-{}@example.com", uuid::Uuid::new_v4().simple())
}

impl TestApp {
    /// A request to `path` with no credential.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.address))
    }

    /// GET with a bearer token (JWT or API key).
    pub async fn get_with(&self, path: &str, bearer: &str) -> Response {
        self.request(Method::GET, path).bearer_auth(bearer).send().await.expect("request")
    }

    /// POST a JSON body without credentials.
    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path).json(body).send().await.expect("request")
    }

    /// POST a JSON body with a bearer token.
    pub async fn post_json_with(&self, path: &str, bearer: &str, body: &Value) -> Response {
        self.request(Method::POST, path).bearer_auth(bearer).json(body).send().await.expect("request")
    }

    /// POST /api/register.
    pub async fn post_register(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/api/register",
            &json!({"email": email, "password": password, "first_name": "Ada", "last_name": "Lovelace"}),
        )
        .await
    }

    /// POST /api/login.
    pub async fn post_login(&self, email: &str, password: &str) -> Response {
        self.post_json("/api/login", &json!({"email": email, "password": password})).await
    }

    /// Registers a new user with [`PASSWORD`] and returns it.
    pub async fn register_user(&self) -> TestUser {
        let email = unique_email();
        let response = self.post_register(&email, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::CREATED, "registration succeeds");
        let body: Value = response.json().await.unwrap();
        TestUser {
            id: body["user"]["id"].as_str().unwrap().to_owned(),
            email,
            password: PASSWORD.to_owned(),
            api_key: body["api_key"].as_str().unwrap().to_owned(),
        }
    }

    /// Logs `user` in and returns the login body (tokens and user).
    pub async fn login(&self, user: &TestUser) -> Value {
        let response = self.post_login(&user.email, &user.password).await;
        assert_eq!(response.status(), StatusCode::OK, "login succeeds");
        response.json().await.unwrap()
    }

    /// Registers and logs in a user; returns it with its access token.
    pub async fn user_with_token(&self) -> (TestUser, String) {
        let user = self.register_user().await;
        let token = self.login(&user).await["access_token"].as_str().unwrap().to_owned();
        (user, token)
    }

    /// Opens the server's own store (for the ledger and contract checks, and to set up states the
    /// API cannot make, such as a claim from yesterday).
    pub async fn open_store(&self) -> DynStore {
        match &self.config.mongodb_uri {
            Some(uri) => Arc::new(
                switchboard::store::mongo::MongoStore::connect(uri, &self.config.mongodb_db)
                    .await
                    .expect("mongo"),
            ),
            // A second connection to the server's own file: WAL lets it read and write beside
            // the server's writer.
            None => {
                Arc::new(switchboard::store::sqlite::SqliteStore::open(self.data_dir.path()).expect("sqlite"))
            }
        }
    }

    /// Mail files in the outbox, oldest first.
    pub fn outbox(&self) -> Vec<String> {
        let dir = self.data_dir.path().join("outbox");
        let mut files: Vec<_> =
            std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        files.sort();
        files.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
    }

    /// Waits (up to 5 s) for the outbox to hold `count` mails and returns them.
    pub async fn wait_for_mail(&self, count: usize) -> Vec<String> {
        for _ in 0..100 {
            let mails = self.outbox();
            if mails.len() >= count {
                return mails;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("expected {count} mails in the outbox, found {}", self.outbox().len());
    }
}

/// The reset token in a mailed link.
pub fn reset_token_from_mail(mail: &str) -> String {
    let start = mail.find("token=").expect("mail has a reset link") + "token=".len();
    mail[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

/// Asserts the `{error, code}` shape and the code; returns the body.
pub async fn assert_error(response: Response, status: StatusCode, code: &str, case: &str) -> Value {
    assert_eq!(response.status(), status, "{case}: status");
    let body: Value = response.json().await.unwrap_or_else(|e| panic!("{case}: JSON error body: {e}"));
    assert_eq!(body["code"], code, "{case}: code in {body}");
    assert!(body["error"].as_str().is_some_and(|s| !s.is_empty()), "{case}: error sentence in {body}");
    body
}

/// The value of a Set-Cookie named `name`, with its attributes.
pub fn set_cookie(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// Just the value part of a Set-Cookie header line.
pub fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_owned()
}

/// Starts a second server on `app`'s data dir and, under MongoDB, on its database too, so start-up
/// work on existing data (restarts, the admin bootstrap) can be tested with either store.
pub async fn spawn_app_sharing_store(app: &TestApp, extra: &[&str]) -> TestApp {
    let data_dir = app.data_dir.path().to_str().unwrap();
    let mut args: Vec<String> =
        ["switchboard", "--bind", "127.0.0.1:0", "--data-dir", data_dir, "--hash-concurrency", "2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    if let Some(uri) = &app.config.mongodb_uri {
        args.extend([
            "--mongodb-uri".into(),
            uri.clone(),
            "--mongodb-db".into(),
            app.config.mongodb_db.clone(),
        ]);
    }
    args.extend(relaxed_limits(extra));
    args.extend(extra.iter().map(|s| s.to_string()));
    let config = Config::try_parse_from(args).expect("test config");
    config.check().expect("test config is consistent");
    let server = Application::build(config.clone()).await.expect("server builds");
    let port = server.port();
    actix_web::rt::spawn(server.run());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client: http_client().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        data_dir: app.data_dir.clone(),
        config,
    }
}

/// The keys of `user` in every answer (docs/API.md §4), sorted.
pub const USER_FIELDS: [&str; 12] = [
    "active",
    "api_key_prefix",
    "created_at",
    "credits",
    "credits_held",
    "email",
    "first_name",
    "id",
    "last_login",
    "last_name",
    "role",
    "spent_today",
];

/// One generation in a ledger: its hold and its settle (docs/API.md §8).
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The entries' `ref`: the reply's or the image's id.
    pub reference: String,
    /// The hold's amount, positive.
    pub held: i64,
    /// What was kept: held − the settle's amount.
    pub charged: i64,
    /// The settle's `usage`.
    pub usage: Value,
    /// The entries' `model`.
    pub model: Value,
}

/// Asserts that `oldest_first` (a user's whole ledger, oldest first, starting from `start`)
/// chains: each `balance_after` is the one before plus the amount and never below 0, and `seq`
/// runs 1, 2, 3…; every `hold` is followed by exactly one `settle` of the same `ref` (never more,
/// never before it) giving back between 0 and what it held; other kinds only add up. Answers the
/// generations in the order they were held.
pub fn assert_generations(oldest_first: &[Value], start: i64, case: &str) -> Vec<Generation> {
    let mut balance = start;
    let mut open: Vec<Generation> = Vec::new();
    let mut closed: Vec<Generation> = Vec::new();
    for (k, entry) in oldest_first.iter().enumerate() {
        let amount =
            entry["amount"].as_i64().unwrap_or_else(|| panic!("{case}: entry {k} has an amount: {entry}"));
        balance += amount;
        assert_eq!(entry["balance_after"], balance, "{case}: entry {k} chains from the one before: {entry}");
        assert!(balance >= 0, "{case}: the balance never goes below 0: entry {k}: {entry}");
        assert_eq!(entry["seq"], k as i64 + 1, "{case}: seq counts 1, 2, 3…: {entry}");
        let reference = entry["ref"].as_str().unwrap_or_default().to_owned();
        match entry["kind"].as_str() {
            Some("hold") => {
                assert!(amount < 0, "{case}: a hold takes credits: {entry}");
                let known = open.iter().chain(&closed).any(|g| g.reference == reference);
                assert!(!known, "{case}: one hold per generation: {entry}");
                open.push(Generation {
                    reference,
                    held: -amount,
                    charged: 0,
                    usage: Value::Null,
                    model: entry["model"].clone(),
                });
            }
            Some("settle") => {
                let at = open.iter().position(|g| g.reference == reference).unwrap_or_else(|| {
                    panic!("{case}: a settle closes an open hold of its ref: entry {k}: {entry}")
                });
                let mut generation = open.remove(at);
                assert!(
                    (0..=generation.held).contains(&amount),
                    "{case}: a settle gives back 0..=held: {entry}"
                );
                assert_eq!(
                    entry["model"], generation.model,
                    "{case}: settle and hold name one model: {entry}"
                );
                generation.charged = generation.held - amount;
                generation.usage = entry["usage"].clone();
                closed.push(generation);
            }
            Some("grant" | "allowance" | "refund" | "charge") => {}
            other => panic!("{case}: unknown ledger kind {other:?}: {entry}"),
        }
    }
    assert!(open.is_empty(), "{case}: every hold was settled; still open: {open:?}");
    closed.sort_by_key(|g| oldest_first.iter().position(|e| e["ref"] == g.reference.as_str()));
    closed
}
