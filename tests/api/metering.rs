//! Metered generations (docs/API.md §8) against a scriptable OpenAI-compatible upstream: a turn
//! holds its worst case and settles to the cost of the usage the upstream reports (or the server's
//! own count, marked estimated); racing requests never start more upstream calls than the balance
//! holds; a stop from another session drops the upstream request and bills the partial reply; a
//! failing upstream charges nothing; models the catalogue lacks or the role may not use are refused
//! before any hold; images are priced by size.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::app::*;
use crate::support::scripted_upstream::{Script, Upstream};
use crate::support::ws::WsClient;

/// Credits a new user starts with in these tests.
const START: i64 = 1_000;
/// Output tokens a metered turn may write.
const MAX_OUTPUT: i64 = 50;

/// A catalogue of a metered chat model on `upstream` (1 credit per input token, 2 per output
/// token), a per-turn model at 25 credits there too, an admins-only model, and an image model
/// priced by size, written to a file in `dir`.
fn models_file(dir: &TempDir, upstream: &str) -> String {
    let path = dir.path().join("models.toml");
    let text = format!(
        r#"
[[chat]]
id = "metered"
name = "Metered"
url = "{upstream}"
input_price = 1000000
output_price = 2000000
max_output_tokens = {MAX_OUTPUT}
default = true

[[chat]]
id = "flat"
url = "{upstream}"
message_price = 25

[[chat]]
id = "staff-only"
message_price = 1
roles = ["admin"]

[[image]]
id = "painter"
url = "{upstream}"
prices = {{ "256x256" = 5, "512x512" = 10 }}
default = true
"#
    );
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// A server with the catalogue above on an upstream playing `script`.
struct Metered {
    app: TestApp,
    upstream: Upstream,
    _dir: TempDir,
}

async fn metered(script: Script, starting_credits: i64) -> Metered {
    let upstream = Upstream::start(script).await;
    let dir = TempDir::new().unwrap();
    let models = models_file(&dir, &upstream.base);
    let credits = starting_credits.to_string();
    let app = spawn_app_with(&[
        "--models",
        &models,
        "--starting-credits",
        &credits,
        "--ws-rate-limit-per-minute",
        "10000",
    ])
    .await;
    Metered { app, upstream, _dir: dir }
}

async fn get_json(app: &TestApp, path: &str, token: &str) -> Value {
    let response = app.get_with(path, token).await;
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.unwrap()
}

async fn new_chat(ws: &mut WsClient) -> String {
    let created = ws.request("new-chat", json!({"type": "chat.create", "title": "metered"})).await;
    created["chat"]["id"].as_str().unwrap_or_else(|| panic!("chat.created: {created}")).to_owned()
}

/// Frames until the one of `kind` about `message_id` (or answering request `id`), returned with
/// every frame before it.
async fn until(ws: &mut WsClient, kind: &str, key: &str) -> (Value, Vec<Value>) {
    let mut before = Vec::new();
    loop {
        let frame = ws.recv().await;
        let about = frame["reply_to"] == key || frame["message_id"] == key || frame["message"]["id"] == key;
        if frame["type"] == kind && about {
            return (frame, before);
        }
        before.push(frame);
    }
}

/// The user's ledger, oldest first.
async fn ledger(app: &TestApp, token: &str) -> Vec<Value> {
    let page = get_json(app, "/api/me/usage?limit=100", token).await;
    let mut entries = page["entries"].as_array().unwrap().clone();
    entries.reverse();
    entries
}

/// Sends one metered turn and reads it to its `chat.done`: `(chat.started, chat.done)`.
async fn one_turn(ws: &mut WsClient, chat_id: &str, model: &str) -> (Value, Value) {
    ws.send(json!({"type": "chat.send", "id": "turn", "chat_id": chat_id, "content": "How long is a piece of string?", "model": model}))
        .await;
    let (started, _) = until(ws, "chat.started", "turn").await;
    let reply_id = started["message_id"].as_str().unwrap().to_owned();
    let (done, _) = until(ws, "chat.done", &reply_id).await;
    (started, done)
}

#[actix_web::test]
async fn a_turn_holds_its_worst_case_and_settles_to_the_usage_the_upstream_reports() {
    let server = metered(Script::reply(&["Hello", " there"], Some((7, 5))), START).await;
    let (_, token) = server.app.user_with_token().await;
    let mut ws = server.app.connect_ws(&token).await;
    let chat_id = new_chat(&mut ws).await;

    let (started, done) = one_turn(&mut ws, &chat_id, "metered").await;
    let held = started["held"].as_i64().unwrap();
    let counted_input = held - 2 * MAX_OUTPUT;
    assert!(
        counted_input > 0,
        "the hold is the counted input plus max_output_tokens at their prices: {started}"
    );
    assert_eq!(started["model"], "metered");
    assert_eq!(started["credits"], START - held, "chat.started tells the balance after the hold");
    // 7 input tokens at 1 credit and 5 output tokens at 2 credits.
    assert_eq!(done["message"]["charged"], 17, "{done}");
    assert_eq!(done["message"]["usage"], json!({"input_tokens": 7, "output_tokens": 5, "estimated": false}));
    assert_eq!(done["message"]["status"], "complete");
    assert_eq!(done["message"]["content"], "Hello there");
    assert_eq!(done["credits"], START - 17);

    let entries = ledger(&server.app, &token).await;
    let kinds: Vec<&str> = entries.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["hold", "settle"], "{entries:#?}");
    let reply_id = done["message"]["id"].clone();
    assert_eq!((&entries[0]["amount"], &entries[0]["ref"]), (&json!(-held), &reply_id));
    assert_eq!((&entries[1]["amount"], &entries[1]["ref"]), (&json!(held - 17), &reply_id));
    assert_eq!(entries[1]["usage"], done["message"]["usage"], "the settle carries the usage");
    let me = get_json(&server.app, "/api/me", &token).await;
    assert_eq!((me["credits"].as_i64(), me["credits_held"].as_i64()), (Some(START - 17), Some(0)), "{me}");

    let calls = server.upstream.calls();
    assert_eq!(calls.len(), 1);
    let body = &calls[0].body;
    assert_eq!(body["model"], "metered");
    assert_eq!(body["max_tokens"], MAX_OUTPUT, "max_output_tokens is sent upstream: {body}");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}), "usage is asked for: {body}");
}

#[actix_web::test]
async fn without_reported_usage_the_server_counts_the_tokens_and_says_so() {
    let server = metered(Script::reply(&["Hello", " there"], None), START).await;
    let (_, token) = server.app.user_with_token().await;
    let mut ws = server.app.connect_ws(&token).await;
    let chat_id = new_chat(&mut ws).await;

    let (started, done) = one_turn(&mut ws, &chat_id, "metered").await;
    let counted_input = started["held"].as_i64().unwrap() - 2 * MAX_OUTPUT;
    // o200k: "Hello there" is two tokens.
    let usage = json!({"input_tokens": counted_input, "output_tokens": 2, "estimated": true});
    assert_eq!(done["message"]["usage"], usage, "{done}");
    assert_eq!(done["message"]["charged"], counted_input + 4, "{done}");
}

#[actix_web::test]
async fn twelve_racing_requests_on_a_balance_for_four_holds_start_four_upstream_calls() {
    let script = Script { gated: true, ..Script::reply(&["one", " two"], None) };
    let server = metered(script, 100).await;
    let (_, token) = server.app.user_with_token().await;
    let mut sockets = Vec::new();
    for _ in 0..4 {
        sockets.push(server.app.connect_ws(&token).await);
    }
    let chat_id = new_chat(&mut sockets[0]).await;

    // Every session sends three turns at once; each waits for its three answers to begin.
    let outcomes = join_all(sockets.iter_mut().enumerate().map(|(s, ws)| {
        let chat_id = chat_id.clone();
        async move {
            for n in 0..3 {
                let frame = json!({"type": "chat.send", "id": format!("s{s}-{n}"), "chat_id": chat_id, "content": "race", "model": "flat"});
                ws.send(frame).await;
            }
            let mut outcomes = Vec::new();
            while outcomes.len() < 3 {
                let frame = ws.recv().await;
                let mine = frame["reply_to"].as_str().is_some_and(|r| r.starts_with(&format!("s{s}-")));
                if mine && matches!(frame["type"].as_str(), Some("chat.started" | "error")) {
                    outcomes.push(frame);
                }
            }
            outcomes
        }
    }))
    .await;
    let outcomes: Vec<Value> = outcomes.into_iter().flatten().collect();
    let started: Vec<&Value> = outcomes.iter().filter(|f| f["type"] == "chat.started").collect();
    let refused: Vec<&Value> = outcomes.iter().filter(|f| f["type"] == "error").collect();
    assert_eq!((started.len(), refused.len()), (4, 8), "{outcomes:#?}");
    for error in &refused {
        assert_eq!(error["code"], "insufficient_credits", "{error}");
        assert_eq!(error["needed"], 25, "the refusal names the hold: {error}");
        assert!(error["balance"].as_i64().is_some_and(|b| (0..25).contains(&b)), "and the balance: {error}");
    }
    server.upstream.wait_for(Duration::from_secs(10), "four calls", |calls| calls.len() == 4).await;
    server.upstream.open_gate();
    let mut replies: HashSet<&str> = started.iter().map(|f| f["message_id"].as_str().unwrap()).collect();
    while !replies.is_empty() {
        let frame = sockets[0].recv().await;
        if frame["type"] == "chat.done" {
            assert!(
                replies.remove(frame["message"]["id"].as_str().unwrap()),
                "one chat.done per reply: {frame}"
            );
            let message = &frame["message"];
            assert_eq!(
                (&message["status"], &message["charged"]),
                (&json!("complete"), &json!(25)),
                "{frame}"
            );
        }
    }
    assert_eq!(server.upstream.calls().len(), 4, "no upstream call started without its hold");
    let me = get_json(&server.app, "/api/me", &token).await;
    assert_eq!((me["credits"].as_i64(), me["credits_held"].as_i64()), (Some(0), Some(0)), "{me}");
}

#[actix_web::test]
async fn a_stop_from_another_session_drops_the_upstream_request_and_bills_the_partial_reply() {
    let words: Vec<String> = (0..200).map(|n| format!(" word{n}")).collect();
    let script = Script {
        deltas: words.clone(),
        pause: Duration::from_millis(50),
        usage: Some((1, 1000)),
        fail: None,
        gated: false,
    };
    let server = metered(script, START).await;
    let (_, token) = server.app.user_with_token().await;
    let mut asking = server.app.connect_ws(&token).await;
    let mut stopping = server.app.connect_ws(&token).await;
    let chat_id = new_chat(&mut asking).await;

    asking.send(json!({"type": "chat.send", "id": "long", "chat_id": chat_id, "content": "Count.", "model": "metered"})).await;
    let (started, _) = until(&mut asking, "chat.started", "long").await;
    let reply_id = started["message_id"].as_str().unwrap().to_owned();
    until(&mut stopping, "chat.started", &reply_id).await;
    // Let a few deltas through, then stop from the other session.
    let mut seen = 0;
    while seen < 3 {
        let frame = stopping.recv().await;
        if frame["type"] == "chat.delta" && frame["message_id"] == reply_id {
            seen += 1;
        }
    }
    let stopped_at = Instant::now();
    stopping.send(json!({"type": "chat.stop", "id": "stop", "message_id": reply_id})).await;
    let calls = server
        .upstream
        .wait_for(Duration::from_secs(5), "the client go away", |c| c[0].went_away.is_some())
        .await;
    let dropped_after = calls[0].went_away.unwrap().saturating_duration_since(stopped_at);
    assert!(
        dropped_after < Duration::from_secs(1),
        "the upstream request is dropped within 1 s: {dropped_after:?}"
    );
    assert!(!calls[0].finished, "the upstream never finished its answer");

    for ws in [&mut asking, &mut stopping] {
        let (done, _) = until(ws, "chat.done", &reply_id).await;
        let message = &done["message"];
        assert_eq!(message["status"], "stopped", "every session hears the stop: {done}");
        let usage = &message["usage"];
        assert_eq!(usage["estimated"], true, "the usage never came, so it is counted: {done}");
        let output = usage["output_tokens"].as_i64().unwrap();
        assert!((3..200 * 2).contains(&output), "the output produced is billed: {done}");
        let expected = usage["input_tokens"].as_i64().unwrap() + 2 * output;
        assert_eq!(
            message["charged"].as_i64(),
            Some(expected.min(started["held"].as_i64().unwrap())),
            "{done}"
        );
        let content = message["content"].as_str().unwrap();
        assert!(content.starts_with(" word0 word1 word2"), "the partial reply is kept: {content}");
        assert!(content.len() < words.concat().len(), "but not the rest: {content}");
    }
    let history = get_json(&server.app, &format!("/api/chats/{chat_id}/messages"), &token).await;
    let stored = history.as_array().unwrap().iter().find(|m| m["id"] == reply_id.as_str()).cloned();
    assert_eq!(stored.as_ref().map(|m| m["status"].clone()), Some(json!("stopped")), "{history}");
    let me = get_json(&server.app, "/api/me", &token).await;
    assert_eq!(me["credits_held"], 0, "the hold is settled: {me}");
}

#[actix_web::test]
async fn a_failing_upstream_charges_nothing_and_says_so() {
    let script = Script { fail: Some(500), ..Script::reply(&[], None) };
    let server = metered(script, START).await;
    let (_, token) = server.app.user_with_token().await;
    let mut ws = server.app.connect_ws(&token).await;
    let chat_id = new_chat(&mut ws).await;

    ws.send(json!({"type": "chat.send", "id": "f", "chat_id": chat_id, "content": "hi", "model": "metered"}))
        .await;
    let (started, _) = until(&mut ws, "chat.started", "f").await;
    let reply_id = started["message_id"].as_str().unwrap().to_owned();
    // The requester is told `unavailable` and every session gets the failed `chat.done`, in either order.
    let (done, before) = until(&mut ws, "chat.done", &reply_id).await;
    let error = match before.into_iter().find(|f| f["type"] == "error") {
        Some(error) => error,
        None => until(&mut ws, "error", "f").await.0,
    };
    assert_eq!(error["code"], "unavailable", "{error}");
    assert_eq!(
        (&done["message"]["status"], &done["message"]["charged"]),
        (&json!("failed"), &json!(0)),
        "{done}"
    );
    assert_eq!(done["credits"], START);
    let entries = ledger(&server.app, &token).await;
    let amounts: Vec<i64> = entries.iter().map(|e| e["amount"].as_i64().unwrap()).collect();
    let held = started["held"].as_i64().unwrap();
    assert_eq!(amounts, [-held, held], "held, then all of it given back: {entries:#?}");
}

#[actix_web::test]
async fn models_the_catalogue_lacks_or_the_role_may_not_use_are_refused_before_any_hold() {
    let server = metered(Script::reply(&["x"], None), START).await;
    let (_, token) = server.app.user_with_token().await;
    let mut ws = server.app.connect_ws(&token).await;
    let chat_id = new_chat(&mut ws).await;

    let cases = [("nope", "invalid_message"), ("staff-only", "forbidden")];
    for (model, code) in cases {
        let frame = json!({"type": "chat.send", "chat_id": chat_id, "content": "hi", "model": model});
        let answer = ws.request(model, frame).await;
        assert_eq!(
            (answer["type"].as_str(), answer["code"].as_str()),
            (Some("error"), Some(code)),
            "{model}: {answer}"
        );
    }
    let image = json!({"type": "image.generate", "prompt": "a cat", "width": 300, "height": 300});
    let answer = ws.request("odd-size", image).await;
    assert_eq!(answer["code"], "invalid_message", "an image size without a price: {answer}");
    let entries = ledger(&server.app, &token).await;
    assert!(entries.is_empty(), "nothing held or charged: {entries:#?}");
    assert!(server.upstream.calls().is_empty(), "nothing reached the upstream");

    let listed = get_json(&server.app, "/api/models", &token).await;
    let ids: Vec<&str> =
        listed["chat"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["metered", "flat"], "a user is not shown the admins' model: {listed}");
}

#[actix_web::test]
async fn an_image_is_held_and_charged_at_its_sizes_price() {
    let server = metered(Script::reply(&[], None), START).await;
    let (_, token) = server.app.user_with_token().await;
    let mut ws = server.app.connect_ws(&token).await;

    let frame = json!({"type": "image.generate", "prompt": "a lighthouse", "width": 256, "height": 256});
    let created = ws.request("img", frame).await;
    assert_eq!(created["type"], "image.created", "{created}");
    assert_eq!(created["charged"], 5, "{created}");
    let calls = server.upstream.calls();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].path.ends_with("/images/generations"), "{:?}", calls[0].path);
    assert_eq!((&calls[0].body["model"], &calls[0].body["size"]), (&json!("painter"), &json!("256x256")));
    let entries = ledger(&server.app, &token).await;
    let amounts: Vec<i64> = entries.iter().map(|e| e["amount"].as_i64().unwrap()).collect();
    assert_eq!(amounts, [-5, 0], "held 5, all of it charged: {entries:#?}");
}
