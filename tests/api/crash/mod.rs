//! Crash safety: the real server as a child process, killed with SIGKILL during a storm of paid
//! requests and grants, then restarted on the same store; and `switchboard
//! check-ledger [--repair]`, which the crash test runs and which is also tested here on ledgers
//! broken on purpose. Every check holds on both stores.

mod storm;

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchboard::store::sqlite::SqliteStore;
use switchboard::store::{
    CachedBalance, Chat, ChatMessage, DynStore, EntryKind, LedgerEntry, MessageRole, MessageStatus,
    ServiceType, now,
};
use tempfile::TempDir;

use crate::support::app::PASSWORD;
use crate::support::process::{ServerProcess, run_to_exit, server_command};
use crate::support::store::store_env;

/// One deployment's store and settings, outliving the server processes started on it.
pub struct Deployment {
    data_dir: TempDir,
    env: Vec<(String, String)>,
    /// The configured admin's email (password [`PASSWORD`]).
    pub admin_email: String,
}

impl Deployment {
    /// A fresh store (data dir, and a fresh database under MongoDB), an admin, limits out of
    /// reach, and `extra` settings.
    pub fn new(extra: &[(&str, &str)]) -> Deployment {
        let admin_email = format!("admin-{}@example.com", uuid::Uuid::new_v4().simple());
        let mut env: Vec<(String, String)> = [
            ("SWITCHBOARD_ADMIN_EMAIL", admin_email.as_str()),
            ("SWITCHBOARD_ADMIN_PASSWORD", PASSWORD),
            ("RATE_LIMIT_PER_MINUTE", "1000000"),
            ("WS_RATE_LIMIT_PER_MINUTE", "1000000"),
            ("SWITCHBOARD_WS_FREE_PER_MINUTE", "1000000"),
            ("SWITCHBOARD_REGISTRATIONS_PER_IP_PER_HOUR", "1000000"),
            ("SWITCHBOARD_LOGIN_FAILURES_PER_IP", "1000000"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        env.extend(store_env());
        Deployment { data_dir: TempDir::new().expect("data dir"), env, admin_email }
    }

    /// Starts a server on this deployment's store and waits until it answers.
    pub async fn start(&self) -> ServerProcess {
        ServerProcess::start(self.data_dir.path(), &self.env).await
    }

    /// Runs `switchboard check-ledger [--repair]` with the deployment's settings; its exit code
    /// and stdout.
    pub async fn check_ledger(&self, repair: bool) -> (Option<i32>, String) {
        let mut command = server_command();
        command.env("SWITCHBOARD_DATA_DIR", self.data_dir.path()).envs(self.env.iter().cloned());
        command.arg("check-ledger");
        if repair {
            command.arg("--repair");
        }
        let (status, stdout, stderr) = run_to_exit(command, "check-ledger").await;
        assert!(!stderr.contains("panicked"), "check-ledger does not panic; stderr:\n{stderr}");
        (status.code(), stdout)
    }

    /// The deployment's store opened in the test process, beside the server.
    pub async fn open_store(&self) -> DynStore {
        let setting = |name: &str| self.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        match (setting("MONGODB_URI"), setting("MONGODB_DB")) {
            (Some(uri), Some(db)) => Arc::new(
                switchboard::store::mongo::MongoStore::connect(&uri, &db).await.expect("MongoDB connects"),
            ),
            _ => Arc::new(SqliteStore::open(self.data_dir.path()).expect("SQLite opens beside the server")),
        }
    }
}

/// The balance as every view shows it, each labelled: `/api/me`, `/api/me/stats`, the admin's
/// user view and user list, and a new WebSocket's `hello` and `credits.get`.
pub async fn every_view_of_the_balance(
    server: &ServerProcess,
    token: &str,
    admin_token: &str,
    user_id: &str,
    email: &str,
) -> Vec<(&'static str, Value)> {
    let (_, me) = server.get_with("/api/me", token).await;
    let (_, stats) = server.get_with("/api/me/stats", token).await;
    let (_, admin_view) = server.get_with(&format!("/api/admin/users/{user_id}"), admin_token).await;
    let (_, list) = server.get_with(&format!("/api/admin/users?q={email}"), admin_token).await;
    let listed = list["users"].as_array().and_then(|u| u.iter().find(|u| u["id"] == user_id)).cloned();
    let mut ws = server.connect_ws(token).await;
    let hello = ws.hello["credits"].clone();
    let credits = ws.request("bal", json!({"type": "credits.get"})).await;
    let _ = ws.stream.close(None).await;
    vec![
        ("GET /api/me", me["credits"].clone()),
        ("GET /api/me/stats", stats["credits"].clone()),
        ("GET /api/admin/users/{id}", admin_view["credits"].clone()),
        ("GET /api/admin/users", listed.map(|u| u["credits"].clone()).unwrap_or(Value::Null)),
        ("WebSocket hello", hello),
        ("WebSocket credits.get", credits["credits"].clone()),
    ]
}

/// A ledger entry written straight to the store, as a writer that crashed before refreshing
/// the cached balance (or a bug) would leave it.
fn raw_entry(user_id: &str, seq: i64, amount: i64, balance_after: i64) -> LedgerEntry {
    LedgerEntry {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: user_id.to_owned(),
        seq,
        service_type: ServiceType::Grant,
        amount,
        balance_after,
        reference: Some("written by the test".into()),
        actor_id: None,
        refund_of: None,
        created_at: now(),
        kind: EntryKind::of_legacy(ServiceType::Grant),
        model: None,
        usage: None,
        held_after: 0,
        day_spent_after: None,
    }
}

#[actix_web::test]
async fn a_cached_balance_behind_the_ledger_is_never_shown_and_check_ledger_repairs_it() {
    let deployment = Deployment::new(&[]);
    let server = deployment.start().await;
    let admin_token =
        server.login_body(&deployment.admin_email).await["access_token"].as_str().unwrap().to_owned();
    let email = format!("stale-{}@example.com", uuid::Uuid::new_v4().simple());
    let user_id = server.register(&email).await;
    let token = server.login_body(&email).await["access_token"].as_str().unwrap().to_owned();
    let grant = json!({"amount": 7, "reason": "before the crash window"});
    let response = server
        .client
        .post(server.url(&format!("/api/admin/users/{user_id}/credits")))
        .bearer_auth(&admin_token)
        .json(&grant)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the grant lands");

    // The entry lands but the cache refresh does not: the window a crash can leave on MongoDB.
    let store = deployment.open_store().await;
    store.insert_ledger_entry(&raw_entry(&user_id, 2, 5, 112)).await.unwrap();
    let cached = store.user_by_id(&user_id).await.unwrap().unwrap().cached_balance();
    assert_eq!(cached, CachedBalance { seq: 1, credits: 107 }, "the cached balance lags the ledger");

    for (view, credits) in every_view_of_the_balance(&server, &token, &admin_token, &user_id, &email).await {
        assert_eq!(credits, 112, "{view} shows the ledger's balance, not the stale cache");
    }

    let (code, report) = deployment.check_ledger(false).await;
    assert_eq!(code, Some(0), "a stale cache alone is not damage:\n{report}");
    assert!(
        report
            .contains(&format!("user {user_id}: stale cached balance 107 (seq 1), ledger says 112 (seq 2)")),
        "the stale cache is reported:\n{report}"
    );
    assert!(report.contains("0 damaged, 1 stale cached balances, 0 repaired"), "summary:\n{report}");

    let (code, report) = deployment.check_ledger(true).await;
    assert_eq!(code, Some(0), "--repair exits 0:\n{report}");
    assert!(report.contains("0 damaged, 1 stale cached balances, 1 repaired"), "summary:\n{report}");
    let cached = store.user_by_id(&user_id).await.unwrap().unwrap().cached_balance();
    assert_eq!(cached, CachedBalance { seq: 2, credits: 112 }, "the cache was rewritten");

    let (code, report) = deployment.check_ledger(false).await;
    assert_eq!(code, Some(0), "after the repair:\n{report}");
    assert!(report.contains("0 damaged, 0 stale cached balances"), "nothing left to repair:\n{report}");
}

#[actix_web::test]
async fn check_ledger_reports_gaps_broken_chains_and_negative_balances_as_damage_and_exits_1() {
    let deployment = Deployment::new(&[("STARTING_CREDITS", "10")]);
    let server = deployment.start().await;
    let mut users = Vec::new();
    for case in ["gap", "chain", "negative", "sound"] {
        users.push(server.register(&format!("{case}-{}@example.com", uuid::Uuid::new_v4().simple())).await);
    }
    let store = deployment.open_store().await;
    let (gap, chain, negative, sound) = (&users[0], &users[1], &users[2], &users[3]);
    // Entries with the cache refreshed too, so only the damage is reported for these users.
    let write = |entry: LedgerEntry| {
        let store = store.clone();
        async move {
            let (user, seq, balance) = (entry.user_id.clone(), entry.seq, entry.balance_after);
            store.insert_ledger_entry(&entry).await.unwrap();
            store.cache_balance(&user, seq, balance).await.unwrap();
        }
    };
    write(raw_entry(gap, 1, 1, 11)).await;
    write(raw_entry(gap, 3, 1, 12)).await;
    write(raw_entry(chain, 1, 1, 11)).await;
    write(raw_entry(chain, 2, 1, 15)).await;
    write(raw_entry(negative, 1, -12, -2)).await;
    write(raw_entry(sound, 1, 5, 15)).await;
    write(raw_entry(sound, 2, -15, 0)).await;

    let (code, report) = deployment.check_ledger(true).await;
    assert_eq!(code, Some(1), "damage remains after --repair:\n{report}");
    let cases = [
        (gap, "gap in seq: expected 2, found 3"),
        (chain, "broken chain at seq 2: balance_after 15, expected 12"),
        (negative, "negative balance -2 at seq 1"),
    ];
    for (user, problem) in cases {
        assert!(report.contains(&format!("user {user}: {problem}")), "{problem} is reported:\n{report}");
    }
    assert!(!report.contains(&format!("user {sound}")), "the sound ledger is not reported:\n{report}");
    assert!(report.contains("3 damaged, 0 stale cached balances"), "summary:\n{report}");
}

#[actix_web::test]
async fn check_ledger_reports_a_hold_left_open_and_repair_settles_it_and_ends_its_reply() {
    let deployment = Deployment::new(&[("STARTING_CREDITS", "100")]);
    let server = deployment.start().await;
    let email = format!("held-{}@example.com", uuid::Uuid::new_v4().simple());
    let user_id = server.register(&email).await;
    let token = server.login(&email).await.expect("logs in");
    let store = deployment.open_store().await;

    // What a node that died mid-reply leaves: the reply stored as streaming with its text so far,
    // and its hold of 30, made twenty minutes ago, never settled.
    let chat = Chat {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: user_id.clone(),
        title: "left running".into(),
        created_at: now(),
        updated_at: now(),
    };
    store.insert_chat(&chat).await.unwrap();
    let reply = ChatMessage {
        status: MessageStatus::Streaming,
        model: Some("echo".into()),
        ..ChatMessage::new(
            uuid::Uuid::now_v7().to_string(),
            &chat,
            MessageRole::Assistant,
            "half a rep".into(),
        )
    };
    store.insert_message(&reply).await.unwrap();
    let hold = LedgerEntry {
        service_type: ServiceType::Chat,
        reference: Some(reply.id.clone()),
        created_at: now() - time::Duration::minutes(20),
        kind: EntryKind::Hold,
        model: Some("echo".into()),
        held_after: 30,
        ..raw_entry(&user_id, 1, -30, 70)
    };
    store.insert_ledger_entry(&hold).await.unwrap();
    store.cache_balance(&user_id, 1, 70).await.unwrap();

    let (code, report) = deployment.check_ledger(false).await;
    assert_eq!(code, Some(1), "a hold left open is damage:\n{report}");
    let open = format!("user {user_id}: hold of 30 at seq 1 for {} has no settle", reply.id);
    assert!(report.contains(&open), "the open hold is reported:\n{report}");

    let (code, report) = deployment.check_ledger(true).await;
    assert_eq!(code, Some(0), "--repair settles it:\n{report}");
    assert!(report.contains(&format!("{open}: settled, charged 0")), "what it charged:\n{report}");
    let (code, report) = deployment.check_ledger(false).await;
    assert_eq!(code, Some(0), "nothing is left open:\n{report}");

    let (_, me) = server.get_with("/api/me", &token).await;
    assert_eq!((me["credits"].as_i64(), me["credits_held"].as_i64()), (Some(100), Some(0)), "released: {me}");
    let ended = store.message(&reply.id).await.unwrap().expect("the reply is kept");
    assert_eq!(
        (ended.status, ended.charged, ended.content.as_str()),
        (MessageStatus::Interrupted, Some(0), "half a rep")
    );
}
