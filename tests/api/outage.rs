//! Storage failures as a WebSocket client and an operator see them: MongoDB unreachable at start-up
//! (one line, exit 2) or killed under a running server (REST answers 503 and WebSocket requests
//! `unavailable`, pings go on, nothing is charged without its work, and all recovers without a
//! restart), and an embedded data dir that cannot be used (one line and exit 2 at start-up;
//! `unavailable` when the disk fills, never a panic). Each test brings its own FerretDB or file
//! system (`support::ferret`, `support::mount`), so all of them run on both passes.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::app::assert_generations;
use crate::support::ferret::{Ferret, ferretdb_binary};
use crate::support::free_port;
use crate::support::mount::Tmpfs;
use crate::support::process::{ServerProcess, run_to_exit, server_command};
use crate::support::store::fresh_database_name;
use crate::support::store::mongo_env;
use crate::support::ws::WsClient;

/// The frame answering request `id`, skipping others (pushed events, pongs of other requests).
async fn answer(ws: &mut WsClient, id: &str, frame: Value) -> Value {
    let mut frame = frame;
    frame["id"] = json!(id);
    ws.send(frame).await;
    loop {
        let reply = ws.recv().await;
        let progress = matches!(reply["type"].as_str(), Some("chat.message" | "chat.started" | "chat.delta"));
        // A failed reply's chat.done comes with an `unavailable` error, which answers the request.
        let failed = reply["type"] == "chat.done" && reply["message"]["status"] == "failed";
        if reply["reply_to"] == id && !progress && !failed {
            return reply;
        }
    }
}

#[actix_web::test]
async fn with_mongodb_down_websocket_requests_answer_unavailable_pings_go_on_and_all_recovers() {
    let mut ferret = Ferret::start(ferretdb_binary()).await;
    let data_dir = TempDir::new().unwrap();
    let server = ServerProcess::start(data_dir.path(), &mongo_env(&ferret.uri())).await;
    let email = format!("outage-{}@example.com", uuid::Uuid::new_v4().simple());
    server.register(&email).await;
    let token = server.login_body(&email).await["access_token"].as_str().unwrap().to_owned();
    let mut ws = server.connect_ws(&token).await;
    let chat = answer(&mut ws, "c", json!({"type": "chat.create"})).await;
    let chat_id = chat["chat"]["id"].as_str().expect("chat created").to_owned();

    ferret.kill();

    let started = Instant::now();
    let requests = [
        ("credits.get", json!({"type": "credits.get"})),
        ("chat.list", json!({"type": "chat.list"})),
        ("chat.send", json!({"type": "chat.send", "chat_id": chat_id, "content": "while down"})),
        ("image.generate", json!({"type": "image.generate", "prompt": "while down"})),
    ];
    for (n, (case, frame)) in requests.into_iter().enumerate() {
        let reply = answer(&mut ws, &format!("down-{n}"), frame).await;
        assert_eq!(
            (reply["type"].as_str(), reply["code"].as_str()),
            (Some("error"), Some("unavailable")),
            "{case}: {reply}"
        );
        let pong = answer(&mut ws, &format!("ping-{n}"), json!({"type": "ping"})).await;
        assert_eq!(pong["type"], "pong", "pings go on while storage is down");
    }
    assert!(started.elapsed() < Duration::from_secs(40), "answered in bounded time: {:?}", started.elapsed());
    assert!(server.process.stderr().lines().all(|l| !l.contains("panicked")), "no panic");

    ferret.restart().await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let credits = loop {
        let reply = answer(&mut ws, "after", json!({"type": "credits.get"})).await;
        if reply["type"] == "credits" {
            break reply["credits"].clone();
        }
        assert!(Instant::now() < deadline, "storage-needing requests work again within 20 s: {reply}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(credits, 100, "nothing was charged for the refused work");
    let done =
        answer(&mut ws, "sent", json!({"type": "chat.send", "chat_id": chat_id, "content": "back"})).await;
    assert_eq!(done["type"], "chat.done", "the same socket chats again without a restart: {done}");
    assert_eq!(done["credits"], 99, "{done}");
}

#[actix_web::test]
async fn an_unusable_data_dir_stops_start_up_with_one_line_and_exit_2() {
    let parent = TempDir::new().unwrap();
    let not_a_dir = parent.path().join("a-file");
    std::fs::write(&not_a_dir, "not a directory").unwrap();
    let mut cases = vec![("a file, not a directory", not_a_dir.clone())];
    // A read-only file system (root ignores permission bits, so a mount it is), where allowed.
    let read_only = parent.path().join("read-only");
    std::fs::create_dir(&read_only).unwrap();
    let _mounted = Tmpfs::mount(&read_only, "ro,size=1m");
    cases.push(("a read-only file system", read_only.clone()));
    for (case, dir) in cases {
        let mut command = server_command();
        command
            .env("SWITCHBOARD_BIND", format!("127.0.0.1:{}", free_port()))
            .env("SWITCHBOARD_DATA_DIR", &dir);
        let (status, _, stderr) = run_to_exit(command, case).await;
        assert_eq!(status.code(), Some(2), "{case}: exit code; stderr:\n{stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{case}: one line on stderr:\n{stderr}");
        assert!(
            lines[0].contains("data dir") && lines[0].contains(&*dir.to_string_lossy()),
            "{case}: the line names the data dir: {}",
            lines[0]
        );
    }
}

#[actix_web::test]
async fn a_full_disk_under_the_embedded_store_answers_unavailable_and_recovers_when_space_returns() {
    let parent = TempDir::new().unwrap();
    let dir = parent.path().join("small");
    std::fs::create_dir(&dir).unwrap();
    let _mounted = Tmpfs::mount(&dir, "size=8m");
    let server = ServerProcess::start(&dir, &[]).await;
    let email = format!("full-{}@example.com", uuid::Uuid::new_v4().simple());
    server.register(&email).await;
    let token = server.login_body(&email).await["access_token"].as_str().unwrap().to_owned();
    let mut ws = server.connect_ws(&token).await;
    let chat = answer(&mut ws, "c", json!({"type": "chat.create"})).await;
    let chat_id = chat["chat"]["id"].as_str().expect("chat created").to_owned();

    // Fill the file system, then ask for writes big enough to need new pages.
    let filler = dir.join("filler");
    let _ = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", filler.display()))
        .args(["bs=64k"])
        .stderr(std::process::Stdio::null())
        .status();
    let big = "x".repeat(15_000);
    let mut refused = 0;
    for n in 0..40 {
        let reply = answer(
            &mut ws,
            &format!("full-{n}"),
            json!({"type": "chat.send", "chat_id": chat_id, "content": big}),
        )
        .await;
        match reply["type"].as_str() {
            Some("chat.done") => {}
            Some("error") => {
                assert_eq!(reply["code"], "unavailable", "a full disk is unavailable: {reply}");
                refused += 1;
            }
            other => panic!("unexpected {other:?}: {reply}"),
        }
        let pong = answer(&mut ws, &format!("ping-{n}"), json!({"type": "ping"})).await;
        assert_eq!(pong["type"], "pong");
    }
    assert!(refused > 0, "writes fail once the disk is full");
    let (status, _) = server.get_with("/api/me", &token).await;
    assert_eq!(status, StatusCode::OK, "reads go on");
    assert!(server.process.stderr().lines().all(|l| !l.contains("panicked")), "no panic");

    std::fs::remove_file(&filler).unwrap();
    let before = answer(&mut ws, "bal", json!({"type": "credits.get"})).await["credits"].as_i64().unwrap();
    let done =
        answer(&mut ws, "again", json!({"type": "chat.send", "chat_id": chat_id, "content": "space again"}))
            .await;
    assert_eq!(done["type"], "chat.done", "writes work again once space returns: {done}");
    assert_eq!(done["credits"], before - 1, "{done}");
    let (status, usage) = server.get_with("/api/me/usage?limit=100", &token).await;
    assert_eq!(status, StatusCode::OK);
    let oldest_first: Vec<Value> = usage["entries"].as_array().unwrap().iter().rev().cloned().collect();
    let generations = assert_generations(&oldest_first, 100, "full disk");
    let charged: i64 = generations.iter().map(|g| g.charged).sum();
    assert_eq!(
        charged,
        100 - done["credits"].as_i64().unwrap(),
        "only the turns that were answered were charged"
    );
}

#[actix_web::test]
async fn an_unreachable_mongodb_at_start_up_stops_the_server_with_one_line_and_no_password() {
    let data_dir = TempDir::new().unwrap();
    let closed_port = free_port();
    let mut command = server_command();
    command
        .env("SWITCHBOARD_BIND", format!("127.0.0.1:{}", free_port()))
        .env("SWITCHBOARD_DATA_DIR", data_dir.path())
        .env("MONGODB_URI", format!("mongodb://operator:hunter2-db-password@127.0.0.1:{closed_port}/"))
        .env("MONGODB_DB", fresh_database_name());
    let started = Instant::now();
    let (status, _, stderr) = run_to_exit(command, "unreachable MongoDB").await;
    assert_eq!(status.code(), Some(2), "exit code; stderr:\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "gave up within 10 s");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr, got:\n{stderr}");
    assert!(
        lines[0].contains("storage") || lines[0].contains("MONGODB_URI"),
        "the line says storage failed: {:?}",
        lines[0]
    );
    assert!(
        !stderr.contains("hunter2-db-password"),
        "the line does not show the database password: {stderr}"
    );
}

#[actix_web::test]
async fn the_server_answers_503_while_mongodb_is_down_and_recovers_by_itself() {
    let mut ferret = Ferret::start(ferretdb_binary()).await;
    let data_dir = TempDir::new().unwrap();
    let mut server = ServerProcess::start(data_dir.path(), &mongo_env(&ferret.uri())).await;
    let (_, token) = server.user_with_token().await;
    assert_eq!(server.get_with("/api/me", &token).await.0, StatusCode::OK, "GET /api/me while storage is up");

    ferret.kill();

    let started = Instant::now();
    let (status, body) = server.get_with("/api/me", &token).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "GET /api/me answered within 10 s, not after {took:?}");
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!("unavailable")),
        "GET /api/me: {body}"
    );
    let started = Instant::now();
    assert_eq!(
        server.status_of("/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "/readyz while storage is down"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "/readyz answered within 10 s");
    assert!(server.process.is_running(), "the server is still running; stderr:\n{}", server.process.stderr());
    assert_eq!(server.status_of("/healthz").await, StatusCode::OK, "/healthz stays up while storage is down");

    ferret.restart().await;

    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut ready, mut me) = (StatusCode::SERVICE_UNAVAILABLE, StatusCode::SERVICE_UNAVAILABLE);
    while Instant::now() < deadline {
        ready = server.status_of("/readyz").await;
        me = server.get_with("/api/me", &token).await.0;
        if ready == StatusCode::OK && me == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        (ready, me),
        (StatusCode::OK, StatusCode::OK),
        "/readyz and GET /api/me within 15 s of FerretDB's return"
    );
    assert!(server.process.is_running(), "the server never stopped");
}
