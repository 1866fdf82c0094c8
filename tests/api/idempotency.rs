//! Idempotent paid requests (docs/API.md §5): a retry with the same `idempotency_key`, from any
//! session, on any node, after a restart, is charged once and answered with the first request's
//! result; a retry while the first runs waits for it; the same key with another body is
//! `invalid_message`; a first request that was refused or failed leaves the key free.

use std::time::Duration;

use futures_util::future::join;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::crash::Deployment;
use crate::support::app::{PASSWORD, TestApp, assert_generations, spawn_app_sharing_store, spawn_app_with};
use crate::support::upstream::fake_assistant;
use crate::support::ws::WsClient;

/// Frames until the one that ends request `id` (`chat.done`, `image.created` or `error` with
/// `reply_to` = `id`; a failed reply's `chat.done` is followed by its `unavailable`, which ends
/// it); returns it and the frames of that request before it.
async fn answer(ws: &mut WsClient, id: &str) -> (Value, Vec<Value>) {
    let mut before = Vec::new();
    loop {
        let frame = ws.recv().await;
        if frame["reply_to"] != id {
            continue;
        }
        let failed = frame["message"]["status"] == "failed";
        if matches!(frame["type"].as_str(), Some("chat.done" | "image.created" | "error")) && !failed {
            return (frame, before);
        }
        before.push(frame);
    }
}

async fn create_chat(ws: &mut WsClient) -> String {
    let created = ws.request("create", json!({"type": "chat.create", "title": "retries"})).await;
    created["chat"]["id"].as_str().expect("chat created").to_owned()
}

fn send(id: &str, chat_id: &str, content: &str, key: &str) -> Value {
    json!({"type": "chat.send", "id": id, "chat_id": chat_id, "content": content, "idempotency_key": key})
}

/// The user's ledger entries, newest first.
async fn ledger(app: &TestApp, token: &str) -> Vec<Value> {
    let body: Value = app.get_with("/api/me/usage?limit=100", token).await.json().await.unwrap();
    body["entries"].as_array().unwrap().clone()
}

/// How many generations the user's ledger holds credits for (each settled once, chained).
async fn generations(app: &TestApp, token: &str, start: i64) -> usize {
    let oldest_first: Vec<Value> = ledger(app, token).await.into_iter().rev().collect();
    assert_generations(&oldest_first, start, "idempotency").len()
}

#[actix_web::test]
async fn a_retry_from_another_session_is_charged_once_and_answered_with_the_stored_reply() {
    let app = spawn_app_with(&[]).await;
    let (_, token) = app.user_with_token().await;
    let (mut first, mut second) = (app.connect_ws(&token).await, app.connect_ws(&token).await);
    let chat_id = create_chat(&mut first).await;

    first.send(send("a", &chat_id, "hello once", "key-1")).await;
    let (done, frames) = answer(&mut first, "a").await;
    assert_eq!(done["type"], "chat.done", "the first request is answered: {done}");
    assert!(frames.iter().any(|f| f["type"] == "chat.message"), "and does the work: {frames:?}");

    second.send(send("b", &chat_id, "hello once", "key-1")).await;
    let (replayed, frames) = answer(&mut second, "b").await;
    assert_eq!(replayed["type"], "chat.done", "the retry gets chat.done: {replayed}");
    assert_eq!(replayed["message"], done["message"], "with the first request's stored reply");
    assert_eq!(replayed["chat_id"], chat_id.as_str());
    assert_eq!(replayed["credits"], 99, "and the balance, charged once: {replayed}");
    assert!(frames.is_empty(), "the retry streams nothing and stores no message: {frames:?}");

    assert_eq!(generations(&app, &token, 100).await, 1, "one generation in the ledger");
    let history: Value =
        app.get_with(&format!("/api/chats/{chat_id}/messages"), &token).await.json().await.unwrap();
    assert_eq!(history.as_array().unwrap().len(), 2, "one message and one reply stored: {history}");
}

#[actix_web::test]
async fn the_same_key_with_a_different_body_is_invalid_and_charges_nothing() {
    let app = spawn_app_with(&[]).await;
    let (_, token) = app.user_with_token().await;
    let mut ws = app.connect_ws(&token).await;
    let chat_id = create_chat(&mut ws).await;
    ws.send(send("a", &chat_id, "the first body", "key-2")).await;
    assert_eq!(answer(&mut ws, "a").await.0["type"], "chat.done");

    let cases = [
        ("other content", send("b", &chat_id, "another body", "key-2")),
        (
            "an image under a chat's key",
            json!({"type": "image.generate", "id": "b", "prompt": "x", "idempotency_key": "key-2"}),
        ),
        ("an empty key", send("b", &chat_id, "the first body", "")),
        ("a key of 65 characters", send("b", &chat_id, "the first body", &"k".repeat(65))),
    ];
    for (case, frame) in cases {
        ws.send(frame).await;
        let (error, _) = answer(&mut ws, "b").await;
        assert_eq!(
            (error["type"].as_str(), error["code"].as_str()),
            (Some("error"), Some("invalid_message")),
            "{case}: {error}"
        );
    }
    assert_eq!(generations(&app, &token, 100).await, 1, "only the first request was charged");
}

#[actix_web::test]
async fn a_retry_while_the_first_runs_waits_for_it_on_the_same_or_another_node() {
    let assistant = fake_assistant(Duration::from_millis(700)).await;
    let flags = ["--assistant-url", assistant.as_str()];
    let a = spawn_app_with(&flags).await;
    let b = spawn_app_sharing_store(&a, &flags).await;
    let user = a.register_user().await;
    let token = a.login(&user).await["access_token"].as_str().unwrap().to_owned();
    let token_b = b.login(&user).await["access_token"].as_str().unwrap().to_owned();
    let mut on_a = a.connect_ws(&token).await;
    let mut also_on_a = a.connect_ws(&token).await;
    let mut on_b = b.connect_ws(&token_b).await;
    let chat_id = create_chat(&mut on_a).await;

    on_a.send(send("first", &chat_id, "slow reply", "key-3")).await;
    // Both retries are sent while the assistant is still thinking: once the first has started
    // (its hold made, its upstream request under way), not after a guessed pause.
    on_a.recv_until("chat.started").await;
    also_on_a.send(send("same-node", &chat_id, "slow reply", "key-3")).await;
    on_b.send(send("other-node", &chat_id, "slow reply", "key-3")).await;
    let (first, _) = answer(&mut on_a, "first").await;
    let ((same_node, _), (other_node, _)) =
        join(answer(&mut also_on_a, "same-node"), answer(&mut on_b, "other-node")).await;
    assert_eq!(first["type"], "chat.done", "{first}");
    for (case, retry) in [("same node", same_node), ("other node", other_node)] {
        assert_eq!(retry["type"], "chat.done", "{case}: the waiting retry is answered: {retry}");
        assert_eq!(retry["message"], first["message"], "{case}: with the first request's reply");
    }
    assert_eq!(generations(&a, &token, 100).await, 1, "one charge for three requests");
}

#[actix_web::test]
async fn a_refused_or_failed_first_request_leaves_the_key_free_for_the_retry() {
    let assistant = fake_assistant(Duration::ZERO).await;
    let admin = format!("admin-{}@example.com", uuid::Uuid::new_v4().simple());
    let flags = [
        "--assistant-url",
        &assistant,
        "--starting-credits",
        "0",
        "--admin-email",
        &admin,
        "--admin-password",
        PASSWORD,
    ];
    let app = spawn_app_with(&flags).await;
    let (user, token) = app.user_with_token().await;
    let mut ws = app.connect_ws(&token).await;
    let chat_id = create_chat(&mut ws).await;
    ws.send(send("poor", &chat_id, "hello", "key-4")).await;
    let (refused, _) = answer(&mut ws, "poor").await;
    assert_eq!(refused["code"], "insufficient_credits", "{refused}");

    let admin_login: Value = app.post_login(&admin, PASSWORD).await.json().await.unwrap();
    let admin_token = admin_login["access_token"].as_str().unwrap();
    let grant = json!({"amount": 5, "reason": "top-up"});
    let granted =
        app.post_json_with(&format!("/api/admin/users/{}/credits", user.id), admin_token, &grant).await;
    assert_eq!(granted.status(), StatusCode::OK, "the admin's grant");

    ws.send(send("paid", &chat_id, "hello", "key-4")).await;
    let (done, _) = answer(&mut ws, "paid").await;
    assert_eq!(done["type"], "chat.done", "the retry after a refusal does the work: {done}");
    assert_eq!(done["credits"], 4, "{done}");

    ws.send(send("fails", &chat_id, "please fail", "key-5")).await;
    assert_eq!(answer(&mut ws, "fails").await.0["code"], "unavailable");
    ws.send(send("fails-again", &chat_id, "please fail", "key-5")).await;
    let (again, _) = answer(&mut ws, "fails-again").await;
    assert_eq!(again["code"], "unavailable", "a retry after a failure runs again: {again}");
    let entries = ledger(&app, &token).await;
    let kinds: Vec<&str> = entries.iter().rev().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["grant", "hold", "settle", "hold", "settle", "hold", "settle"], "{entries:?}");
    let oldest_first: Vec<Value> = entries.into_iter().rev().collect();
    let charged: Vec<i64> =
        assert_generations(&oldest_first, 0, "retries").iter().map(|g| g.charged).collect();
    assert_eq!(charged, [1, 0, 0], "the turn that ran was charged, the failed ones were not");
}

#[actix_web::test]
async fn an_image_retry_after_a_restart_is_answered_with_the_stored_image_and_charged_once() {
    let deployment = Deployment::new(&[]);
    let mut server = deployment.start().await;
    let email = format!("images-{}@example.com", uuid::Uuid::new_v4().simple());
    server.register(&email).await;
    let token = server.login_body(&email).await["access_token"].as_str().unwrap().to_owned();
    let request = |id: &str| json!({"type": "image.generate", "id": id, "prompt": "a lighthouse", "width": 256, "idempotency_key": "img-1"});
    let mut ws = server.connect_ws(&token).await;
    ws.send(request("first")).await;
    let (created, _) = answer(&mut ws, "first").await;
    assert_eq!(created["type"], "image.created", "{created}");
    assert_eq!(created["credits"], 90, "{created}");

    server.stop_with("TERM").await;
    let server = deployment.start().await;
    let mut ws = server.connect_ws(&token).await;
    ws.send(request("retry")).await;
    let (replayed, _) = answer(&mut ws, "retry").await;
    assert_eq!(replayed["type"], "image.created", "the key outlives the restart: {replayed}");
    assert_eq!(replayed["image"], created["image"], "the stored image is the answer");
    assert_eq!(replayed["credits"], 90, "charged once: {replayed}");
    let (status, images) = server.get_with("/api/images", &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(images.as_array().unwrap().len(), 1, "one image stored: {images}");
}

#[actix_web::test]
async fn replays_of_a_key_count_against_the_free_budget() {
    let app = spawn_app_with(&["--ws-free-per-minute", "5"]).await;
    let (_, token) = app.user_with_token().await;
    let mut ws = app.connect_ws(&token).await;
    let chat_id = create_chat(&mut ws).await;
    let mut refused = None;
    // The chat's creation took one of the five; the first send and its replays take the rest.
    for n in 0..10 {
        let id = format!("r{n}");
        ws.send(send(&id, &chat_id, "once", "replayed")).await;
        let (answer, _) = answer(&mut ws, &id).await;
        if answer["type"] == "error" {
            refused = Some((n, answer));
            break;
        }
        assert_eq!(answer["type"], "chat.done", "request {n}: {answer}");
    }
    let (n, refusal) = refused.expect("replays are not free without end");
    assert_eq!(refusal["code"], "rate_limited", "{refusal}");
    assert!(refusal["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{refusal}");
    assert_eq!(n, 4, "the fifth request of the minute is the one refused");
    assert_eq!(generations(&app, &token, 100).await, 1, "charged once");
}

#[actix_web::test]
async fn a_key_older_than_a_day_runs_afresh_even_though_its_result_is_stored() {
    let app = spawn_app_with(&[]).await;
    let (user, token) = app.user_with_token().await;
    let mut ws = app.connect_ws(&token).await;
    let chat_id = create_chat(&mut ws).await;
    ws.send(send("a", &chat_id, "yesterday", "daily")).await;
    let (done, _) = answer(&mut ws, "a").await;
    assert_eq!(done["type"], "chat.done", "{done}");
    // The claim is backdated past the key's lifetime, its result still stored.
    let store = app.open_store().await;
    let mut record = store.idempotency_record(&user.id, "daily").await.unwrap().expect("claimed");
    store.release_idempotency_key(&user.id, "daily", &record.claim_id).await.unwrap();
    record.created_at -= time::Duration::hours(25);
    assert_eq!(store.claim_idempotency_key(&record).await.unwrap(), None, "backdated");

    ws.send(send("b", &chat_id, "yesterday", "daily")).await;
    let (again, frames) = answer(&mut ws, "b").await;
    assert_eq!(again["type"], "chat.done", "{again}");
    assert_ne!(again["message"]["id"], done["message"]["id"], "a new reply, not yesterday's");
    assert!(frames.iter().any(|f| f["type"] == "chat.message"), "the work is done again: {frames:?}");
    assert_eq!(generations(&app, &token, 100).await, 2, "and charged again");
}

#[actix_web::test]
async fn a_retry_after_its_result_was_deleted_is_told_at_once() {
    let app = spawn_app_with(&[]).await;
    let (_, token) = app.user_with_token().await;
    let mut ws = app.connect_ws(&token).await;
    ws.send(json!({"type": "image.generate", "id": "a", "prompt": "a lighthouse", "idempotency_key": "pic"}))
        .await;
    let (created, _) = answer(&mut ws, "a").await;
    assert_eq!(created["type"], "image.created", "{created}");
    let image_id = created["image"]["id"].as_str().unwrap();
    let deleted =
        app.request(reqwest::Method::DELETE, &format!("/api/images/{image_id}")).bearer_auth(&token);
    assert_eq!(deleted.send().await.unwrap().status(), StatusCode::NO_CONTENT);

    let started = std::time::Instant::now();
    ws.send(json!({"type": "image.generate", "id": "b", "prompt": "a lighthouse", "idempotency_key": "pic"}))
        .await;
    let (retry, _) = answer(&mut ws, "b").await;
    assert_eq!(retry["code"], "not_found", "the result is gone: {retry}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "told at once, not after a wait: {:?}",
        started.elapsed()
    );
    assert_eq!(generations(&app, &token, 100).await, 1, "and not charged again");
}
