//! `spawn_app()` starts the real server on port 0 with a fresh data dir (and, when the suite
//! runs against MongoDB, a fresh database), and `TestApp` talks HTTP to it.
//!
//! The store is chosen by `SWITCHBOARD_TEST_STORE` (`sqlite`, the default, or `mongo` with
//! `SWITCHBOARD_TEST_MONGODB_URI`); `scripts/test` runs the suite once for each.

use std::path::Path;
use std::sync::Arc;

use clap::Parser;
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use switchboard::config::Config;
use switchboard::startup::Application;
use switchboard::store::DynStore;
use tempfile::TempDir;

use super::process::{ServerProcess, server_command};
use super::store::{TestStore, fresh_database_name, test_store};
use super::{free_port, http_client};

/// A password that passes every rule.
pub const PASSWORD: &str = "violet-harbour-lantern-42";

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

/// Flags for a server listening on `bind` with `data_dir`, on the MongoDB database `mongodb` names
/// (URI and database) or else the embedded store, and `extra` over [`RELAXED_LIMITS`].
fn server_args(
    bind: &str,
    data_dir: &Path,
    mongodb: Option<(String, String)>,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> =
        ["switchboard", "--bind", bind, "--data-dir", data_dir.to_str().unwrap(), "--hash-concurrency", "2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    if let Some((uri, db)) = mongodb {
        args.extend(["--mongodb-uri".into(), uri, "--mongodb-db".into(), db]);
    }
    args.extend(relaxed_limits(extra));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A fresh database of the MongoDB under test, or `None` on the embedded store.
fn fresh_mongodb() -> Option<(String, String)> {
    match test_store() {
        TestStore::Mongo(uri) => Some((uri, fresh_database_name())),
        TestStore::Sqlite => None,
    }
}

/// The settings `args` give, checked as the binary checks them.
fn parse_config(args: &[String]) -> Config {
    let config = Config::try_parse_from(args).expect("test config");
    config.check().expect("test config is consistent");
    config
}

/// A client that follows no redirects and keeps no cookies: each test says which credential it
/// sends.
fn test_client() -> Client {
    http_client().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A running server and a client for it; a clone is a second handle on the same server.
#[derive(Clone)]
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
    let config = parse_config(&server_args("127.0.0.1:0", data_dir.path(), fresh_mongodb(), extra));
    let app = Application::build(config.clone()).await.expect("server builds");
    let port = app.port();
    actix_web::rt::spawn(app.run());
    TestApp { address: format!("http://127.0.0.1:{port}"), port, client: test_client(), data_dir, config }
}

/// Starts the real binary in a process of its own, with the flags [`spawn_app_with`] would use,
/// and returns a [`TestApp`] for it with the process (killed by its PID when dropped). Its
/// Prometheus recorder is its own, while every in-process server of the test binary shares one:
/// a test that reads exact counter changes uses this, so no other test can move its counters.
pub async fn spawn_app_process(extra: &[&str]) -> (TestApp, ServerProcess) {
    let data_dir = Arc::new(TempDir::new().expect("temp dir"));
    let port = free_port();
    let args = server_args(&format!("127.0.0.1:{port}"), data_dir.path(), fresh_mongodb(), extra);
    let config = parse_config(&args);
    let mut command = server_command();
    command.args(&args[1..]);
    let server = ServerProcess::start_command(command, port).await;
    let app = TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client: test_client(),
        data_dir,
        config,
    };
    (app, server)
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

    /// Waits (up to 30 s) for the outbox to hold `count` mails and returns them.
    pub async fn wait_for_mail(&self, count: usize) -> Vec<String> {
        for _ in 0..600 {
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

/// Asserts a 422 whose `fields` names `field` (and only known fields); returns the body.
pub async fn assert_invalid_field(response: Response, field: &str, case: &str) -> Value {
    let body = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", case).await;
    let fields = body["fields"].as_object().unwrap_or_else(|| panic!("{case}: fields object in {body}"));
    let problems = fields.get(field).unwrap_or_else(|| panic!("{case}: fields names {field:?} in {body}"));
    assert!(
        problems
            .as_array()
            .is_some_and(|p| !p.is_empty() && p.iter().all(|s| s.as_str().is_some_and(|s| !s.is_empty()))),
        "{case}: a non-empty list of problems for {field:?} in {body}"
    );
    body
}

/// `GET /api/me` with the API key in `X-API-Key`.
pub async fn get_me_with_x_api_key(app: &TestApp, key: &str) -> Response {
    app.request(Method::GET, "/api/me").header("X-API-Key", key).send().await.expect("request")
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
    let mongodb = app.config.mongodb_uri.clone().map(|uri| (uri, app.config.mongodb_db.clone()));
    let config = parse_config(&server_args("127.0.0.1:0", app.data_dir.path(), mongodb, extra));
    let server = Application::build(config.clone()).await.expect("server builds");
    let port = server.port();
    actix_web::rt::spawn(server.run());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client: test_client(),
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
