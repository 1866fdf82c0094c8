//! Storage failures as a WebSocket client and an operator see them: MongoDB killed under open
//! sessions (storage-needing requests answer `unavailable`, pings go on, nothing is charged
//! without its work, and all recovers without a restart), and an embedded data dir that cannot
//! be used (one line and exit 2 at start-up; `unavailable` at run time, never a panic).

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::crash::{connect_ws, login, register};
use crate::helpers::{TestStore, assert_generations, test_store};
use crate::support::ferret::{Ferret, ferretdb_binary};
use crate::support::free_port;
use crate::support::process::{ServerProcess, run_to_exit, server_command};
use crate::support::store::mongo_env;
use crate::ws_helpers::WsClient;

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
    let Some(binary) = ferretdb_binary() else {
        if matches!(test_store(), TestStore::Mongo(_)) {
            panic!("the MongoDB pass needs FerretDB: set SWITCHBOARD_TEST_FERRETDB or put ferretdb on PATH");
        }
        eprintln!("skipped: no FerretDB (set SWITCHBOARD_TEST_FERRETDB) for the WebSocket outage test");
        return;
    };
    let mut ferret = Ferret::start(binary).await;
    let data_dir = TempDir::new().unwrap();
    let server = ServerProcess::start(data_dir.path(), &mongo_env(&ferret.uri())).await;
    let email = format!("outage-{}@example.com", uuid::Uuid::new_v4().simple());
    register(&server, &email).await;
    let token = login(&server, &email).await["access_token"].as_str().unwrap().to_owned();
    let mut ws = connect_ws(&server, &token).await;
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
    let mounted =
        Command::new("mount").args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"]).arg(&read_only).status();
    let _unmount = Unmount(read_only.clone());
    if mounted.is_ok_and(|s| s.success()) {
        cases.push(("a read-only file system", read_only.clone()));
    } else {
        eprintln!("read-only case skipped: mount is not permitted here");
    }
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

/// Unmounts a test's mount point when dropped (a no-op when nothing is mounted there).
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).stderr(std::process::Stdio::null()).status();
    }
}

#[actix_web::test]
async fn a_full_disk_under_the_embedded_store_answers_unavailable_and_recovers_when_space_returns() {
    if !matches!(test_store(), TestStore::Sqlite) {
        return;
    }
    let parent = TempDir::new().unwrap();
    let dir = parent.path().join("small");
    std::fs::create_dir(&dir).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"]).arg(&dir).status();
    let _unmount = Unmount(dir.clone());
    if !mounted.is_ok_and(|s| s.success()) {
        eprintln!("skipped: mount is not permitted here, so no small file system to fill");
        return;
    }
    let server = ServerProcess::start(&dir, &[]).await;
    let email = format!("full-{}@example.com", uuid::Uuid::new_v4().simple());
    register(&server, &email).await;
    let token = login(&server, &email).await["access_token"].as_str().unwrap().to_owned();
    let mut ws = connect_ws(&server, &token).await;
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
