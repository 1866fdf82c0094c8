//! The realtime gateway end to end (docs/API.md §4-§5): paid `chat.send` and `image.generate` over
//! WebSockets with their credits, ledger and refunds, racing sessions on one node and on two
//! nodes sharing one store, the per-user WebSocket rate limit, an OpenAI-compatible assistant and
//! image generator played by tiny fake HTTP servers, and admin presence.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_tungstenite::tungstenite::Message;

use crate::support::app::*;
use crate::support::store::{TestStore, test_store};
use crate::support::upstream::{SSE_HEAD, fake_upstream, server_error, sse_delta};
use crate::support::ws::{FRAME_TIMEOUT, WsClient};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// GET `path` with a bearer token, asserting 200, and returns the JSON body.
async fn get_ok(app: &TestApp, path: &str, token: &str) -> Value {
    let response = app.get_with(path, token).await;
    let status = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(status, StatusCode::OK, "GET {path} succeeds: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path} answers JSON ({e}): {text}"))
}

/// The balance as `GET /api/me` shows it.
async fn rest_balance(app: &TestApp, token: &str) -> i64 {
    get_ok(app, "/api/me", token).await["credits"].as_i64().expect("credits is a number in /api/me")
}

/// The balance as `credits.get` answers it.
async fn ws_balance(ws: &mut WsClient, id: &str) -> i64 {
    let answer = ws.request(id, json!({"type": "credits.get"})).await;
    assert_eq!(answer["type"], "credits", "credits.get answers a credits frame: {answer}");
    answer["credits"].as_i64().unwrap_or_else(|| panic!("credits is a number: {answer}"))
}

/// Creates a chat over the socket and returns its id.
async fn create_chat(ws: &mut WsClient, id: &str, title: &str) -> String {
    let created = ws.request(id, json!({"type": "chat.create", "title": title})).await;
    assert_eq!(created["type"], "chat.created", "chat.create answers chat.created: {created}");
    created["chat"]["id"].as_str().unwrap_or_else(|| panic!("the chat has an id: {created}")).to_owned()
}

/// Reads frames until the one that ends request `id` (`chat.done`, `image.created` or `error`
/// with `reply_to` = `id`); returns it and every frame before it.
async fn finish(ws: &mut WsClient, id: &str) -> (Value, Vec<Value>) {
    let mut before = Vec::new();
    loop {
        let frame = ws.recv().await;
        let ends = matches!(frame["type"].as_str(), Some("chat.done" | "image.created" | "error"));
        if ends && frame["reply_to"] == id {
            return (frame, before);
        }
        before.push(frame);
    }
}

/// Frames up to the `pong` answering a fresh ping: whatever was still queued for this socket.
async fn drain(ws: &mut WsClient, fence: &str) -> Vec<Value> {
    ws.send(json!({"type": "ping", "id": fence})).await;
    let mut frames = Vec::new();
    loop {
        let frame = ws.recv().await;
        if frame["type"] == "pong" && frame["reply_to"] == fence {
            return frames;
        }
        frames.push(frame);
    }
}

/// Asserts an `error` frame with `code`, answering `id`.
fn assert_ws_error(frame: &Value, code: &str, id: &str, case: &str) {
    assert_eq!(frame["type"], "error", "{case}: an error frame: {frame}");
    assert_eq!(frame["code"], code, "{case}: error code: {frame}");
    assert_eq!(frame["reply_to"], id, "{case}: the error answers its request: {frame}");
    assert!(
        frame["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{case}: a message for people: {frame}"
    );
}

/// The `credits` values of the `credits.updated` frames among `frames`, in order.
fn credit_updates(frames: &[Value]) -> Vec<i64> {
    frames.iter().filter(|f| f["type"] == "credits.updated").map(|f| f["credits"].as_i64().unwrap()).collect()
}

/// Closes a client's socket and waits for the server's close.
async fn hang_up(mut ws: WsClient) {
    ws.stream.close(None).await.expect("close frame sent");
    let _ = ws.closed().await;
}

/// Every ledger entry of the user, newest first, read page by page (`limit` per page).
async fn usage_pages(app: &TestApp, token: &str, limit: usize) -> (Vec<Value>, Vec<Option<String>>) {
    let mut entries = Vec::new();
    let mut cursors = Vec::new();
    let mut path = format!("/api/me/usage?limit={limit}");
    loop {
        let page = get_ok(app, &path, token).await;
        let page_entries = page["entries"].as_array().unwrap_or_else(|| panic!("entries array: {page}"));
        entries.extend(page_entries.iter().cloned());
        let next = page["next_before"].as_str().map(str::to_owned);
        cursors.push(next.clone());
        match next {
            Some(cursor) => path = format!("/api/me/usage?limit={limit}&before={cursor}"),
            None => return (entries, cursors),
        }
        assert!(cursors.len() <= 1000, "paging the usage ends");
    }
}

/// Asserts that the user's whole ledger is exactly one hold and one settle per message of
/// `charges`, each holding and charging 1 credit, chained from `charges.len()` down to 0, with
/// sequence numbers 1..=2n (via the paging cursors, and directly in the store under MongoDB).
async fn assert_exact_chat_ledger(
    app: &TestApp,
    token: &str,
    user_id: &str,
    charges: &HashSet<String>,
    case: &str,
) {
    let n = charges.len();
    assert!(n > 0 && n.is_multiple_of(5), "{case}: the helper expects charges by fives");
    let entry_count = 2 * n;
    let (entries, cursors) = usage_pages(app, token, 10).await;
    assert_eq!(entries.len(), entry_count, "{case}: exactly a hold and a settle per message");
    let oldest_first: Vec<Value> = entries.iter().rev().cloned().collect();
    let generations = assert_generations(&oldest_first, n as i64, case);
    assert_eq!(generations.len(), n, "{case}: one generation per message");
    for generation in &generations {
        assert!(
            charges.contains(&generation.reference),
            "{case}: {generation:?} is a charged message's reply"
        );
        assert_eq!(
            (generation.held, generation.charged),
            (1, 1),
            "{case}: held and charged 1: {generation:?}"
        );
    }
    assert_eq!(entries[0]["balance_after"], 0, "{case}: the balance ends at 0");
    let expected: Vec<Option<String>> = (0..entry_count / 10)
        .map(|p| Some(entry_count - 10 * p - 9).filter(|&seq| seq > 1).map(|seq| seq.to_string()))
        .collect();
    assert_eq!(
        cursors, expected,
        "{case}: paging by 10, the cursors are the sequence numbers m-9, m-19 … so seq runs 1..={entry_count}"
    );

    if matches!(test_store(), TestStore::Mongo(_)) {
        let store = app.open_store().await;
        let stored = store.ledger_page(user_id, None, 1000).await.expect("ledger readable");
        let seqs: Vec<i64> = stored.iter().map(|e| e.seq).collect();
        let expected: Vec<i64> = (1..=entry_count as i64).rev().collect();
        assert_eq!(
            seqs, expected,
            "{case}: stored sequence numbers are exactly {entry_count}..1 without gaps"
        );
    }
}

/// What one session saw of its own burst of `chat.send`.
#[derive(Debug, Default)]
struct Tally {
    /// `chat.done` answering one of its requests.
    charged: usize,
    /// `insufficient_credits` errors answering one of its requests.
    insufficient: usize,
    /// `unavailable` errors (the work failed and its hold was released).
    unavailable: usize,
    /// `chat.done` with `status: failed` (a reply that failed after it started: the requesting
    /// session gets `unavailable` as well, in either order).
    failed: usize,
    /// Ids of the user messages stored for its requests (`chat.message` with its `reply_to`).
    messages: Vec<String>,
    /// Ids of the replies that answered them (`chat.done`): each is a generation's `ref`.
    replies: Vec<String>,
    /// Anything else that ended one of its requests.
    unexpected: Vec<Value>,
}

/// The next text frame of a session that reads eagerly; a close from the server is a failure that
/// says how far the session got (the server may only close clients that stop reading).
async fn next_frame(ws: &mut WsClient, who: &str, read: usize) -> Value {
    loop {
        let next = tokio::time::timeout(FRAME_TIMEOUT, ws.stream.next())
            .await
            .unwrap_or_else(|_| panic!("{who}: no frame within {FRAME_TIMEOUT:?} after {read} frames"));
        match next {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("JSON frame"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(close))) => panic!(
                "{who}: the server closed the connection ({close:?}) after {read} frames although this \
                 client reads every frame as soon as it arrives: a burst of frames fanned out to the \
                 session overflowed its outbound queue and it was taken for a slow consumer (and a \
                 slow-consumer close should carry code 4002)"
            ),
            other => panic!("{who}: expected a text frame after {read} frames, got {other:?}"),
        }
    }
}

/// Sends `count` `chat.send` frames without waiting (ids `<tag>-<n>`), then reads until every one of
/// them has ended in `chat.done` or an error.
async fn burst(ws: &mut WsClient, tag: &str, chat_id: &str, count: usize) -> Tally {
    let ids: HashSet<String> = (0..count).map(|n| format!("{tag}-{n}")).collect();
    for n in 0..count {
        let content = format!("race {tag} {n}");
        ws.send(
            json!({"type": "chat.send", "id": format!("{tag}-{n}"), "chat_id": chat_id, "content": content}),
        )
        .await;
    }
    let mut tally = Tally::default();
    let mut ended = HashSet::new();
    let mut read = 0;
    while ended.len() < count {
        let frame = next_frame(ws, &format!("session {tag}"), read).await;
        read += 1;
        let Some(reply_to) = frame["reply_to"].as_str().filter(|r| ids.contains(*r)).map(str::to_owned)
        else {
            continue;
        };
        match frame["type"].as_str() {
            Some("chat.message") => tally.messages.push(frame["message"]["id"].as_str().unwrap().to_owned()),
            Some("chat.started" | "chat.delta") => {}
            Some("chat.done") if frame["message"]["status"] == "failed" => tally.failed += 1,
            Some(kind) => {
                assert!(
                    ended.insert(reply_to.clone()),
                    "{tag}: request {reply_to} ends only once; again with {frame}"
                );
                match kind {
                    "chat.done" => {
                        tally.charged += 1;
                        tally.replies.push(frame["message"]["id"].as_str().unwrap().to_owned());
                    }
                    "error" if frame["code"] == "insufficient_credits" => tally.insufficient += 1,
                    "error" if frame["code"] == "unavailable" => tally.unavailable += 1,
                    _ => tally.unexpected.push(frame),
                }
            }
            None => panic!("{tag}: a frame without type: {frame}"),
        }
    }
    tally
}

/// Sums the tallies and asserts the totals of a race; the ids of the paid replies.
fn assert_race_totals(tallies: &[Tally], charged: usize, insufficient: usize, case: &str) -> HashSet<String> {
    let unexpected: Vec<&Value> = tallies.iter().flat_map(|t| &t.unexpected).collect();
    assert!(
        unexpected.is_empty(),
        "{case}: every request ends in chat.done or insufficient_credits: {unexpected:?}"
    );
    let unavailable: usize = tallies.iter().map(|t| t.unavailable).sum();
    assert_eq!(unavailable, 0, "{case}: no request fails as unavailable (ledger contention?)");
    let total_charged: usize = tallies.iter().map(|t| t.charged).sum();
    let total_insufficient: usize = tallies.iter().map(|t| t.insufficient).sum();
    assert_eq!(
        total_charged, charged,
        "{case}: exactly {charged} messages were paid and answered ({tallies:?})"
    );
    assert_eq!(total_insufficient, insufficient, "{case}: exactly {insufficient} were refused for credits");
    let messages: HashSet<String> = tallies.iter().flat_map(|t| t.messages.iter().cloned()).collect();
    let message_count: usize = tallies.iter().map(|t| t.messages.len()).sum();
    assert_eq!(message_count, charged, "{case}: one chat.message to the sender per paid message");
    assert_eq!(messages.len(), charged, "{case}: every stored message has its own id");
    let replies: HashSet<String> = tallies.iter().flat_map(|t| t.replies.iter().cloned()).collect();
    assert_eq!(replies.len(), charged, "{case}: every reply has its own id");
    replies
}

/// A server started with a configured admin; returns it and the admin's email.
async fn app_with_admin(extra: &[&str]) -> (TestApp, String) {
    let email = format!("admin-{}@example.com", uuid::Uuid::new_v4().simple());
    let mut args = vec!["--admin-email", email.as_str(), "--admin-password", PASSWORD];
    args.extend_from_slice(extra);
    (spawn_app_with(&args).await, email)
}

/// Logs in as the configured admin; returns its user id and access token.
async fn admin_login(app: &TestApp, email: &str) -> (String, String) {
    let response = app.post_login(email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK, "the configured admin can log in");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["role"], "admin", "the configured admin has the admin role: {body}");
    (body["user"]["id"].as_str().unwrap().to_owned(), body["access_token"].as_str().unwrap().to_owned())
}

/// Decodes a PNG and returns its width and height.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    let reader =
        png::Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("the content decodes as PNG");
    (reader.info().width, reader.info().height)
}

fn assert_rfc3339_utc(value: &Value, case: &str) {
    let text = value.as_str().unwrap_or_else(|| panic!("{case}: a timestamp string, got {value}"));
    let parsed =
        OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{case}: RFC 3339 {text:?}: {e}"));
    assert!(parsed.offset().is_utc(), "{case}: UTC in {text:?}");
}

// ---------------------------------------------------------------------------------------------
// Races
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn five_sessions_racing_forty_messages_each_spend_exactly_one_hundred_credits() {
    let app = spawn_app_with(&["--ws-rate-limit-per-minute", "10000"]).await;
    let (user, token) = app.user_with_token().await;
    let mut sockets = Vec::new();
    for _ in 0..5 {
        sockets.push(app.connect_ws(&token).await);
    }
    let chat_id = create_chat(&mut sockets[0], "c", "race").await;

    let tallies = join_all(sockets.iter_mut().enumerate().map(|(i, ws)| {
        let tag = format!("s{i}");
        let chat_id = chat_id.clone();
        async move { burst(ws, &tag, &chat_id, 40).await }
    }))
    .await;

    let charged = assert_race_totals(&tallies, 100, 100, "one node, five sessions");
    assert_eq!(ws_balance(&mut sockets[0], "bal").await, 0, "credits.get shows the balance spent to 0");
    assert_eq!(rest_balance(&app, &token).await, 0, "GET /api/me shows the balance spent to 0");
    let stats = get_ok(&app, "/api/me/stats", &token).await;
    assert_eq!(stats["credits_used"]["chat"], 100, "stats count 100 credits used on chat: {stats}");
    assert_exact_chat_ledger(&app, &token, &user.id, &charged, "one node, five sessions").await;
}

#[actix_web::test]
async fn two_nodes_sharing_one_store_racing_one_user_never_overspend() {
    let a = spawn_app_with(&["--ws-rate-limit-per-minute", "10000"]).await;
    let b = spawn_app_sharing_store(&a, &["--ws-rate-limit-per-minute", "10000"]).await;
    let user = a.register_user().await;
    let token_a = a.login(&user).await["access_token"].as_str().unwrap().to_owned();
    let token_b = b.login(&user).await["access_token"].as_str().unwrap().to_owned();
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(a.connect_ws(&token_a).await);
        sockets.push(b.connect_ws(&token_b).await);
    }
    let chat_id = create_chat(&mut sockets[0], "c", "two nodes").await;

    let tallies = join_all(sockets.iter_mut().enumerate().map(|(i, ws)| {
        let tag = format!("{}{i}", if i % 2 == 0 { "a" } else { "b" });
        let chat_id = chat_id.clone();
        async move { burst(ws, &tag, &chat_id, 30).await }
    }))
    .await;

    let charged = assert_race_totals(&tallies, 100, 80, "two nodes, three sessions each");
    let (on_a, on_b): (Vec<_>, Vec<_>) = tallies.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let node_charges = |side: &[(usize, &Tally)]| side.iter().map(|(_, t)| t.charged).sum::<usize>();
    eprintln!(
        "two-node race: node A charged {}, node B charged {}",
        node_charges(&on_a),
        node_charges(&on_b)
    );
    assert_eq!(ws_balance(&mut sockets[0], "bal-a").await, 0, "credits.get on node A shows 0");
    assert_eq!(ws_balance(&mut sockets[1], "bal-b").await, 0, "credits.get on node B shows 0");
    assert_eq!(rest_balance(&a, &token_a).await, 0, "GET /api/me on node A shows 0");
    assert_eq!(rest_balance(&b, &token_b).await, 0, "GET /api/me on node B shows 0");
    assert_exact_chat_ledger(&a, &token_a, &user.id, &charged, "two nodes").await;
}

/// Sessions racing `chat.send` on 10 credits against an assistant that always fails (on one node
/// or on two sharing a store): every hold is settled with nothing charged and the ledger stays exact.
async fn race_failing_assistant(two_nodes: bool, case: &str) {
    let upstream = fake_upstream(server_error()).await;
    let flags = [
        "--assistant-url",
        &upstream.base,
        "--starting-credits",
        "10",
        "--ws-rate-limit-per-minute",
        "10000",
    ];
    let a = spawn_app_with(&flags).await;
    let b = if two_nodes { Some(spawn_app_sharing_store(&a, &flags).await) } else { None };
    let user = a.register_user().await;
    let token_a = a.login(&user).await["access_token"].as_str().unwrap().to_owned();
    let mut sockets = Vec::new();
    for n in 0..6 {
        match &b {
            Some(b) if n % 2 == 1 => {
                let token_b = b.login(&user).await["access_token"].as_str().unwrap().to_owned();
                sockets.push(b.connect_ws(&token_b).await);
            }
            _ => sockets.push(a.connect_ws(&token_a).await),
        }
    }
    let chat_id = create_chat(&mut sockets[0], "c", "refund race").await;

    let tallies = join_all(sockets.iter_mut().enumerate().map(|(i, ws)| {
        let (tag, chat_id) = (format!("r{i}"), chat_id.clone());
        async move { burst(ws, &tag, &chat_id, 20).await }
    }))
    .await;

    let unexpected: Vec<&Value> = tallies.iter().flat_map(|t| &t.unexpected).collect();
    assert!(
        unexpected.is_empty(),
        "{case}: requests end in unavailable or insufficient_credits: {unexpected:?}"
    );
    let charged: usize = tallies.iter().map(|t| t.charged).sum();
    let refunded: usize = tallies.iter().map(|t| t.unavailable).sum();
    let insufficient: usize = tallies.iter().map(|t| t.insufficient).sum();
    let messages: usize = tallies.iter().map(|t| t.messages.len()).sum();
    assert_eq!(charged, 0, "{case}: the failing assistant never completes a reply");
    assert_eq!(refunded + insufficient, 120, "{case}: every request got an answer");
    assert!(refunded >= 10, "{case}: at least the first 10 requests were charged: {refunded}");
    assert_eq!(messages, refunded, "{case}: one stored message per charged request");
    let failed: usize = tallies.iter().map(|t| t.failed).sum();
    assert_eq!(failed, refunded, "{case}: every failed reply's chat.done reached its session too");

    for (n, ws) in sockets.iter_mut().enumerate() {
        assert_eq!(ws_balance(ws, "bal").await, 10, "{case}: socket {n} sees every credit refunded");
    }
    assert_eq!(rest_balance(&a, &token_a).await, 10, "{case}: GET /api/me shows every credit refunded");
    let (entries, _) = usage_pages(&a, &token_a, 100).await;
    let oldest_first: Vec<Value> = entries.into_iter().rev().collect();
    assert_eq!(oldest_first.len(), 2 * refunded, "{case}: one hold and one settle per failed request");
    let generations = assert_generations(&oldest_first, 10, case);
    assert_eq!(generations.len(), refunded, "{case}: the ledger's generations match the unavailable answers");
    assert!(
        generations.iter().all(|g| (g.held, g.charged) == (1, 0)),
        "{case}: each held 1 and charged nothing: {generations:?}"
    );
    let stats = get_ok(&a, "/api/me/stats", &token_a).await;
    assert_eq!(stats["credits_used"]["chat"], 0, "{case}: nothing was spent net of refunds: {stats}");
}

#[actix_web::test]
async fn racing_sessions_against_a_failing_assistant_get_every_charge_refunded() {
    race_failing_assistant(false, "one node, failing assistant").await;
}

#[actix_web::test]
async fn racing_sessions_on_two_nodes_against_a_failing_assistant_get_every_charge_refunded() {
    race_failing_assistant(true, "two nodes, failing assistant").await;
}

#[actix_web::test]
async fn five_sessions_racing_image_generation_make_exactly_as_many_images_as_the_credits_pay_for() {
    let app = spawn_app_with(&["--ws-rate-limit-per-minute", "10000"]).await;
    let (_, token) = app.user_with_token().await;
    let mut sockets = Vec::new();
    for _ in 0..5 {
        sockets.push(app.connect_ws(&token).await);
    }
    let outcomes = join_all(sockets.iter_mut().enumerate().map(|(i, ws)| async move {
        let ids: Vec<String> = (0..4).map(|n| format!("img{i}-{n}")).collect();
        for id in &ids {
            let prompt = format!("picture {id}");
            ws.send(
                json!({"type": "image.generate", "id": id, "prompt": prompt, "width": 256, "height": 256}),
            )
            .await;
        }
        let mut ends = Vec::new();
        while ends.len() < ids.len() {
            let frame = ws.recv().await;
            let mine = frame["reply_to"].as_str().is_some_and(|r| ids.iter().any(|id| id == r));
            if mine && matches!(frame["type"].as_str(), Some("image.created" | "error")) {
                ends.push(frame);
            }
        }
        ends
    }))
    .await;
    let ends: Vec<Value> = outcomes.into_iter().flatten().collect();
    let created = ends.iter().filter(|f| f["type"] == "image.created").count();
    let refused = ends.iter().filter(|f| f["type"] == "error" && f["code"] == "insufficient_credits").count();
    assert_eq!((created, refused), (10, 10), "10 images of 10 credits on 100 credits, 10 refused: {ends:?}");
    assert_eq!(ws_balance(&mut sockets[0], "b").await, 0, "credits.get shows 0");
    assert_eq!(
        get_ok(&app, "/api/images", &token).await.as_array().unwrap().len(),
        10,
        "10 images are stored"
    );
    let stats = get_ok(&app, "/api/me/stats", &token).await;
    assert_eq!(
        (&stats["total_images"], &stats["credits_used"]["image"]),
        (&json!(10), &json!(100)),
        "stats: {stats}"
    );
    let usage = get_ok(&app, "/api/me/usage?limit=100", &token).await;
    let oldest_first: Vec<Value> = usage["entries"].as_array().unwrap().iter().rev().cloned().collect();
    let generations = assert_generations(&oldest_first, 100, "image race");
    assert_eq!(generations.len(), 10, "ten images held and settled: {usage}");
    assert!(
        generations.iter().all(|g| (g.held, g.charged) == (10, 10)),
        "each held and charged 10: {generations:?}"
    );
    let holds: Vec<i64> = oldest_first
        .iter()
        .filter(|e| e["kind"] == "hold")
        .map(|e| e["balance_after"].as_i64().unwrap())
        .collect();
    assert_eq!(
        holds,
        (0..10).rev().map(|k| k * 10).collect::<Vec<_>>(),
        "ten holds from 90 down to 0: {usage}"
    );
}

#[actix_web::test]
async fn sessions_that_read_every_frame_are_never_closed_as_slow_during_a_fan_out_burst() {
    // Eight sessions of one user each send 60 messages at once; every paid message fans six frames
    // out to all eight sessions, so each session must take about 2,900 frames (≈600 KB, less than
    // the default 1 MiB outbound budget even if none were written yet) in a second or two while its
    // client reads without pause. Eight rounds, each on fresh sockets; one under MongoDB, where the
    // store (FerretDB in tests) is too slow for more and the frames come less bunched anyway.
    let rounds = if matches!(test_store(), TestStore::Mongo(_)) { 1 } else { 8 };
    let app = spawn_app_with(&["--ws-rate-limit-per-minute", "100000", "--starting-credits", "3840"]).await;
    let (_, token) = app.user_with_token().await;
    for round in 0..rounds {
        let mut sockets = Vec::new();
        for _ in 0..8 {
            sockets.push(app.connect_ws(&token).await);
        }
        let chat_id = create_chat(&mut sockets[0], "c", &format!("burst {round}")).await;
        let tallies = join_all(sockets.iter_mut().enumerate().map(|(i, ws)| {
            let (tag, chat_id) = (format!("round{round}-s{i}"), chat_id.clone());
            async move { burst(ws, &tag, &chat_id, 60).await }
        }))
        .await;
        assert_race_totals(&tallies, 480, 0, &format!("burst round {round}"));
        for ws in sockets {
            hang_up(ws).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Chat
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_chat_message_is_charged_stored_and_streamed_to_every_session_of_the_user() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;
    let mut ws = app.connect_ws(&token).await;
    let mut twin = app.connect_ws(&token).await;
    assert_eq!(ws.hello["credits"], 100, "hello shows the starting credits: {}", ws.hello);

    let chat_id = create_chat(&mut ws, "create", "Trip planning").await;
    let listed = ws.request("list", json!({"type": "chat.list"})).await;
    assert_eq!(listed["type"], "chat.list", "chat.list answers chat.list: {listed}");
    let chat = listed["chats"].as_array().unwrap().iter().find(|c| c["id"] == chat_id.as_str()).cloned();
    let chat = chat.unwrap_or_else(|| panic!("chat.list contains the new chat: {listed}"));
    assert_eq!(chat["title"], "Trip planning", "the chat keeps its title: {chat}");

    let content = "hello there, assistant";
    ws.send(json!({"type": "chat.send", "id": "m1", "chat_id": chat_id, "content": content})).await;
    let (done, before) = finish(&mut ws, "m1").await;

    assert_eq!(done["type"], "chat.done", "the message is answered with chat.done: {done} after {before:?}");
    let kinds: Vec<&str> = before.iter().map(|f| f["type"].as_str().unwrap()).collect();
    let updated_at =
        kinds.iter().position(|k| *k == "credits.updated").expect("a credits.updated before chat.done");
    let message_at =
        kinds.iter().position(|k| *k == "chat.message").expect("a chat.message before chat.done");
    let first_delta =
        kinds.iter().position(|k| *k == "chat.delta").expect("chat.delta frames before chat.done");
    assert!(
        updated_at < message_at && message_at < first_delta,
        "charge, then the user's message, then deltas: {kinds:?}"
    );
    assert_eq!(credit_updates(&before), [99], "the sender is told the new balance once: {before:?}");

    let message = &before[message_at];
    assert_eq!(message["reply_to"], "m1", "chat.message answers the request: {message}");
    assert_eq!(message["chat_id"], chat_id.as_str(), "chat.message names the chat: {message}");
    assert_eq!(message["message"]["role"], "user", "chat.message carries the user's message: {message}");
    assert_eq!(message["message"]["content"], content, "the user's message is stored as sent: {message}");
    let user_message_id = message["message"]["id"].as_str().unwrap().to_owned();

    let deltas: Vec<&Value> = before.iter().filter(|f| f["type"] == "chat.delta").collect();
    assert!(deltas.len() >= 2, "the reply is streamed in several deltas: {deltas:?}");
    let reply_id = done["message"]["id"].as_str().unwrap().to_owned();
    assert!(
        deltas.iter().all(|d| d["message_id"] == reply_id.as_str()),
        "every delta names the reply: {deltas:?}"
    );
    assert!(
        deltas.iter().all(|d| d["chat_id"] == chat_id.as_str()),
        "every delta names the chat: {deltas:?}"
    );
    let streamed: String = deltas.iter().map(|d| d["delta"].as_str().unwrap()).collect();
    assert_eq!(done["message"]["content"], streamed.as_str(), "chat.done carries the concatenated deltas");
    assert_eq!(streamed, format!("You said: {content}"), "the echo assistant repeats the message");
    assert_eq!(done["message"]["role"], "assistant", "chat.done carries the assistant's message: {done}");
    assert_eq!(done["credits"], 99, "chat.done shows the balance after the charge: {done}");
    assert_eq!(done["chat_id"], chat_id.as_str(), "chat.done names the chat: {done}");

    let (twin_done, twin_before) = twin.recv_until("chat.done").await;
    assert_eq!(twin_done["message"]["id"], reply_id.as_str(), "the other session gets the same chat.done");
    assert_eq!(twin_done["message"]["content"], streamed.as_str(), "the other session gets the same reply");
    assert_eq!(credit_updates(&twin_before), [99], "the other session is told the new balance");
    let twin_message = twin_before.iter().find(|f| f["type"] == "chat.message").expect("a chat.message copy");
    assert_eq!(twin_message["message"]["id"], user_message_id.as_str(), "the copy is the same user message");
    let twin_stream: String = twin_before
        .iter()
        .filter(|f| f["type"] == "chat.delta")
        .map(|d| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(twin_stream, streamed, "the other session gets every delta, in order");

    let history = ws.request("hist", json!({"type": "chat.history", "chat_id": chat_id})).await;
    assert_eq!(history["type"], "chat.history", "chat.history answers chat.history: {history}");
    let ids: Vec<&str> =
        history["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [user_message_id.as_str(), reply_id.as_str()],
        "history holds both messages, oldest first"
    );

    let chats = get_ok(&app, "/api/chats", &token).await;
    assert!(
        chats.as_array().unwrap().iter().any(|c| c["id"] == chat_id.as_str()),
        "GET /api/chats lists the chat: {chats}"
    );
    let messages = get_ok(&app, &format!("/api/chats/{chat_id}/messages"), &token).await;
    let rest_ids: Vec<&str> =
        messages.as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(rest_ids, ids, "GET /api/chats/{{id}}/messages returns both messages, oldest first");
    assert_eq!(messages[1]["content"], streamed.as_str(), "the stored reply is the streamed one");

    assert_eq!(ws_balance(&mut ws, "bal").await, 99, "credits.get shows 99 after one message");
    let stats = get_ok(&app, "/api/me/stats", &token).await;
    assert_eq!(stats["total_chats"], 1, "stats count one chat: {stats}");
    assert_eq!(stats["credits_used"]["chat"], 1, "stats count one credit used on chat: {stats}");
    assert_eq!(stats["credits"], 99, "stats show the balance: {stats}");
    let usage = get_ok(&app, "/api/me/usage", &token).await;
    let oldest_first: Vec<Value> = usage["entries"].as_array().unwrap().iter().rev().cloned().collect();
    assert_eq!(oldest_first.len(), 2, "a hold and its settle: {usage}");
    let generations = assert_generations(&oldest_first, 100, "one chat turn");
    let expected = Generation {
        reference: reply_id.clone(),
        held: 1,
        charged: 1,
        usage: done["usage"].clone(),
        model: json!("echo"),
    };
    assert_eq!(generations, [expected], "the reply held and was charged 1 credit at the echo model: {usage}");
    assert_eq!(oldest_first[0]["service_type"], "chat", "chat entries: {usage}");
    assert_eq!(
        done["usage"]["estimated"], true,
        "the echo assistant reports no usage, so the server counted: {done}"
    );
    assert!(done["usage"]["input_tokens"].as_i64().unwrap() > 0, "input tokens counted: {done}");
    assert!(done["usage"]["output_tokens"].as_i64().unwrap() > 0, "output tokens counted: {done}");
    assert_eq!(done["charged"], 1, "chat.done names the charge: {done}");
    assert_eq!(done["message"]["status"], "complete", "the reply completed: {done}");
    let started =
        before.iter().find(|f| f["type"] == "chat.started").expect("chat.started before the deltas");
    assert_eq!(
        (&started["message_id"], &started["model"], &started["held"], &started["credits"]),
        (&json!(reply_id), &json!("echo"), &json!(1), &json!(99)),
        "chat.started names the reply, the model, the hold and the balance: {started}"
    );

    // Another user can neither read nor write this chat.
    let (_, other_token) = app.user_with_token().await;
    let response = app.get_with(&format!("/api/chats/{chat_id}/messages"), &other_token).await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found", "another user's GET of the messages").await;
    let mut other = app.connect_ws(&other_token).await;
    let answer = other.request("h", json!({"type": "chat.history", "chat_id": chat_id})).await;
    assert_ws_error(&answer, "not_found", "h", "another user's chat.history");
    let answer =
        other.request("s", json!({"type": "chat.send", "chat_id": chat_id, "content": "mine now"})).await;
    assert_ws_error(&answer, "not_found", "s", "another user's chat.send");
    assert_eq!(ws_balance(&mut other, "b").await, 100, "a refused chat.send on a foreign chat costs nothing");
    let leftovers = drain(&mut ws, "fence").await;
    assert!(
        leftovers.iter().all(|f| f["type"] != "chat.message" && f["type"] != "credits.updated"),
        "the owner's sessions see nothing of the other user's attempts: {leftovers:?}"
    );
}

#[actix_web::test]
async fn credits_updated_reaches_every_session_of_the_user_and_no_one_else() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;
    let (_, stranger_token) = app.user_with_token().await;
    let mut first = app.connect_ws(&token).await;
    let mut second = app.connect_ws(&token).await;
    let mut stranger = app.connect_ws(&stranger_token).await;

    let chat_id = create_chat(&mut first, "c", "fan-out").await;
    first
        .send(json!({"type": "chat.send", "id": "m", "chat_id": chat_id, "content": "ping the others"}))
        .await;
    let (_, before) = finish(&mut first, "m").await;
    assert_eq!(credit_updates(&before), [99], "the charging session gets credits.updated 99");
    let (update, _) = second.recv_until("credits.updated").await;
    assert_eq!(update["credits"], 99, "the user's other session gets credits.updated 99: {update}");
    let seen = drain(&mut stranger, "fence").await;
    assert!(seen.is_empty(), "another user's session receives none of it: {seen:?}");
}

#[actix_web::test]
async fn a_paid_message_without_enough_credits_is_refused_and_stores_nothing() {
    let app = spawn_app_with(&["--starting-credits", "0"]).await;
    let (_, token) = app.user_with_token().await;
    let mut ws = app.connect_ws(&token).await;
    assert_eq!(ws.hello["credits"], 0, "hello shows 0 credits: {}", ws.hello);
    let chat_id = create_chat(&mut ws, "c", "broke").await;

    ws.send(json!({"type": "chat.send", "id": "m", "chat_id": chat_id, "content": "anyone?"})).await;
    let (answer, before) = finish(&mut ws, "m").await;
    assert_ws_error(&answer, "insufficient_credits", "m", "chat.send on 0 credits");
    let after = drain(&mut ws, "fence").await;
    let frames: Vec<&Value> = before.iter().chain(&after).collect();
    assert!(
        frames
            .iter()
            .all(|f| !matches!(f["type"].as_str(), Some("chat.message" | "chat.delta" | "credits.updated"))),
        "nothing is charged, stored or streamed: {frames:?}"
    );
    let history = ws.request("h", json!({"type": "chat.history", "chat_id": chat_id})).await;
    assert_eq!(history["messages"], json!([]), "chat.history is empty: {history}");
    let messages = get_ok(&app, &format!("/api/chats/{chat_id}/messages"), &token).await;
    assert_eq!(messages, json!([]), "no message was stored");
    assert_eq!(ws_balance(&mut ws, "b").await, 0, "the balance stays 0");
    let usage = get_ok(&app, "/api/me/usage", &token).await;
    assert_eq!(usage["entries"], json!([]), "no ledger entry: {usage}");
}

#[actix_web::test]
async fn an_image_that_costs_more_than_the_balance_is_refused() {
    let app = spawn_app_with(&["--price-image", "10", "--starting-credits", "5"]).await;
    let (_, token) = app.user_with_token().await;
    let mut ws = app.connect_ws(&token).await;
    let answer = ws.request("i", json!({"type": "image.generate", "prompt": "a lighthouse"})).await;
    assert_ws_error(&answer, "insufficient_credits", "i", "image.generate on 5 credits at price 10");
    assert_eq!(ws_balance(&mut ws, "b").await, 5, "the balance stays 5");
    assert_eq!(get_ok(&app, "/api/images", &token).await, json!([]), "no image was stored");
    let usage = get_ok(&app, "/api/me/usage", &token).await;
    assert_eq!(usage["entries"], json!([]), "no ledger entry: {usage}");
}

#[actix_web::test]
async fn the_fourth_paid_message_in_a_minute_is_rate_limited_and_free_frames_never_are() {
    let app = spawn_app_with(&["--ws-rate-limit-per-minute", "3"]).await;
    let (_, token) = app.user_with_token().await;
    let mut ws = app.connect_ws(&token).await;
    let chat_id = create_chat(&mut ws, "c", "limits").await;
    for n in 0..3 {
        let id = format!("m{n}");
        ws.send(
            json!({"type": "chat.send", "id": id, "chat_id": chat_id, "content": format!("message {n}")}),
        )
        .await;
        let (done, _) = finish(&mut ws, &id).await;
        assert_eq!(done["type"], "chat.done", "paid message {n} of 3 goes through: {done}");
    }

    ws.send(json!({"type": "chat.send", "id": "m3", "chat_id": chat_id, "content": "one too many"})).await;
    let (refused, before) = finish(&mut ws, "m3").await;
    assert_ws_error(&refused, "rate_limited", "m3", "the fourth chat.send");
    let retry =
        refused["retry_after_ms"].as_u64().unwrap_or_else(|| panic!("retry_after_ms is a number: {refused}"));
    assert!(retry > 0 && retry <= 60_000, "retry_after_ms is within the minute: {retry}");
    assert!(credit_updates(&before).is_empty(), "a refused message is not charged: {before:?}");

    let image = ws.request("i", json!({"type": "image.generate", "prompt": "a kite"})).await;
    assert_ws_error(&image, "rate_limited", "i", "image.generate shares the paid-message limit");

    for n in 0..10 {
        let id = format!("p{n}");
        let pong = ws.request(&id, json!({"type": "ping"})).await;
        assert_eq!(pong["type"], "pong", "ping {n} after the limit is answered: {pong}");
    }
    assert_eq!(ws_balance(&mut ws, "b").await, 97, "credits.get still works; only 3 credits were charged");
    let listed = ws.request("l", json!({"type": "chat.list"})).await;
    assert_eq!(listed["type"], "chat.list", "chat.list is never limited: {listed}");
    assert_eq!(rest_balance(&app, &token).await, 97, "GET /api/me shows 100 - 3");
    let usage = get_ok(&app, "/api/me/usage", &token).await;
    let oldest_first: Vec<Value> = usage["entries"].as_array().unwrap().iter().rev().cloned().collect();
    let generations = assert_generations(&oldest_first, 100, "rate limit");
    assert_eq!(generations.len(), 3, "three generations in the ledger, none for refused frames: {usage}");
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible assistant
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn an_openai_compatible_assistant_streams_its_reply_through_the_gateway() {
    let parts = vec![SSE_HEAD.to_vec(), sse_delta("Hel"), sse_delta("lo"), b"data: [DONE]\n\n".to_vec()];
    let mut upstream = fake_upstream(parts).await;
    let app = spawn_app_with(&["--assistant-url", &upstream.base, "--assistant-model", "test-model"]).await;
    let (_, token) = app.user_with_token().await;
    let mut ws = app.connect_ws(&token).await;
    let chat_id = create_chat(&mut ws, "c", "real assistant").await;

    ws.send(json!({"type": "chat.send", "id": "m", "chat_id": chat_id, "content": "Say hello"})).await;
    let (done, before) = finish(&mut ws, "m").await;
    assert_eq!(done["type"], "chat.done", "the reply completes: {done} after {before:?}");
    let deltas: Vec<&str> =
        before.iter().filter(|f| f["type"] == "chat.delta").map(|f| f["delta"].as_str().unwrap()).collect();
    assert_eq!(deltas, ["Hel", "lo"], "each upstream delta becomes one chat.delta, in order");
    assert_eq!(done["message"]["content"], "Hello", "chat.done carries the whole reply: {done}");
    assert_eq!(done["credits"], 99, "the message cost one credit: {done}");

    let request = tokio::time::timeout(Duration::from_secs(5), upstream.requests.recv())
        .await
        .expect("the fake assistant was asked")
        .expect("a recorded request");
    assert!(
        request.head.starts_with("POST /v1/chat/completions "),
        "POST to /v1/chat/completions: {}",
        request.head
    );
    let body: Value = serde_json::from_slice(&request.body).expect("the request body is JSON");
    assert_eq!(body["model"], "test-model", "the configured model is sent: {body}");
    assert_eq!(body["stream"], true, "the reply is requested as a stream: {body}");
    let last = body["messages"].as_array().and_then(|m| m.last()).cloned().unwrap_or(Value::Null);
    assert_eq!(
        last,
        json!({"role": "user", "content": "Say hello"}),
        "the user's message is the last turn: {body}"
    );

    let history = get_ok(&app, &format!("/api/chats/{chat_id}/messages"), &token).await;
    assert_eq!(history[1]["content"], "Hello", "the streamed reply is stored: {history}");
}

/// Sends one chat.send to an app whose assistant fails as `parts` say: the requesting session
/// gets `unavailable` and the reply's `chat.done` with status `failed` (in either order), and the
/// hold is settled charging nothing.
async fn assert_assistant_failure_charges_nothing(parts: Vec<Vec<u8>>, case: &str) {
    let upstream = fake_upstream(parts).await;
    let app = spawn_app_with(&["--assistant-url", &upstream.base, "--assistant-model", "test-model"]).await;
    let (_, token) = app.user_with_token().await;
    let mut ws = app.connect_ws(&token).await;
    let chat_id = create_chat(&mut ws, "c", "failing assistant").await;

    ws.send(json!({"type": "chat.send", "id": "m", "chat_id": chat_id, "content": "Say hello"})).await;
    let mut frames = Vec::new();
    let (mut error, mut done) = (None, None);
    while error.is_none() || done.is_none() {
        let frame = ws.recv().await;
        match frame["type"].as_str() {
            Some("error") => assert!(error.replace(frame.clone()).is_none(), "{case}: one error: {frame}"),
            Some("chat.done") => {
                assert!(done.replace(frame.clone()).is_none(), "{case}: one chat.done: {frame}")
            }
            _ => {}
        }
        frames.push(frame);
    }
    let (error, done) = (error.unwrap(), done.unwrap());
    assert_ws_error(&error, "unavailable", "m", case);
    assert_eq!(
        (&done["message"]["status"], &done["charged"], &done["credits"], &done["reply_to"]),
        (&json!("failed"), &json!(0), &json!(100), &json!("m")),
        "{case}: the reply ended failed, charging nothing: {done}"
    );
    frames.extend(drain(&mut ws, "fence").await);
    assert_eq!(credit_updates(&frames), [99, 100], "{case}: held to 99, then released to 100: {frames:?}");
    assert!(
        frames.iter().any(|f| f["type"] == "chat.message"),
        "{case}: the user's message was stored first"
    );
    let reply_id = done["message"]["id"].as_str().unwrap();

    assert_eq!(ws_balance(&mut ws, "b").await, 100, "{case}: credits.get shows the whole balance");
    assert_eq!(rest_balance(&app, &token).await, 100, "{case}: GET /api/me shows the whole balance");
    let usage = get_ok(&app, "/api/me/usage", &token).await;
    let oldest_first: Vec<Value> = usage["entries"].as_array().unwrap().iter().rev().cloned().collect();
    let generations = assert_generations(&oldest_first, 100, case);
    assert_eq!(generations.len(), 1, "{case}: one generation: {usage}");
    assert_eq!(
        (generations[0].reference.as_str(), generations[0].held, generations[0].charged),
        (reply_id, 1, 0),
        "{case}: the reply held 1 and was charged nothing: {usage}"
    );
    let history = get_ok(&app, &format!("/api/chats/{chat_id}/messages"), &token).await;
    assert_eq!(history[1]["status"], "failed", "{case}: the stored reply says it failed: {history}");
    let stats = get_ok(&app, "/api/me/stats", &token).await;
    assert_eq!(stats["credits_used"]["chat"], 0, "{case}: nothing was spent: {stats}");
}

#[actix_web::test]
async fn an_assistant_answering_500_costs_nothing_in_the_end() {
    assert_assistant_failure_charges_nothing(server_error(), "assistant answers 500").await;
}

#[actix_web::test]
async fn an_assistant_stream_cut_before_done_costs_nothing_in_the_end() {
    let parts = vec![SSE_HEAD.to_vec(), sse_delta("Hel")];
    assert_assistant_failure_charges_nothing(parts, "assistant stream cut before [DONE]").await;
}

// ---------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_generated_image_is_charged_stored_as_png_and_private_to_its_owner_and_admins() {
    let (app, admin_email) = app_with_admin(&[]).await;
    let (_, token) = app.user_with_token().await;
    let mut ws = app.connect_ws(&token).await;

    let fox_prompt = "a red fox in the snow";
    ws.send(json!({"type": "image.generate", "id": "i1", "prompt": fox_prompt, "width": 256, "height": 320}))
        .await;
    let (created, before) = finish(&mut ws, "i1").await;
    assert_eq!(
        created["type"], "image.created",
        "image.generate answers image.created: {created} after {before:?}"
    );
    assert_eq!(credit_updates(&before), [90], "the sender is told the balance after the charge: {before:?}");
    assert_eq!(created["credits"], 90, "image.created shows 100 - 10: {created}");
    let image = &created["image"];
    let image_id =
        image["id"].as_str().unwrap_or_else(|| panic!("the image has an id: {created}")).to_owned();
    assert_eq!(image["prompt"], "a red fox in the snow", "the prompt is kept: {image}");
    assert_eq!((&image["width"], &image["height"]), (&json!(256), &json!(320)), "the size is kept: {image}");
    let url = image["url"].as_str().unwrap_or_else(|| panic!("the image has a url: {image}")).to_owned();
    assert_eq!(url, format!("/api/images/{image_id}/content"), "the url points at the content");

    let listed = get_ok(&app, "/api/images", &token).await;
    assert!(
        listed.as_array().unwrap().iter().any(|i| i["id"] == image_id.as_str()),
        "GET /api/images lists it: {listed}"
    );
    let one = get_ok(&app, &format!("/api/images/{image_id}"), &token).await;
    assert_eq!(one["prompt"], "a red fox in the snow", "GET /api/images/{{id}} shows it: {one}");

    let response = app.get_with(&url, &token).await;
    assert_eq!(response.status(), StatusCode::OK, "the owner reads the content");
    assert_eq!(response.headers()["content-type"], "image/png", "the content is image/png");
    let fox = response.bytes().await.unwrap().to_vec();
    assert_eq!(png_size(&fox), (256, 320), "the PNG is 256×320");

    let stats = get_ok(&app, "/api/me/stats", &token).await;
    assert_eq!(stats["total_images"], 1, "stats count one image: {stats}");
    assert_eq!(stats["credits_used"]["image"], 10, "stats count 10 credits used on images: {stats}");
    let usage = get_ok(&app, "/api/me/usage", &token).await;
    let oldest_first: Vec<Value> = usage["entries"].as_array().unwrap().iter().rev().cloned().collect();
    let generations = assert_generations(&oldest_first, 100, "one image");
    assert_eq!(
        generations.iter().map(|g| (g.reference.as_str(), g.held, g.charged)).collect::<Vec<_>>(),
        [(image_id.as_str(), 10, 10)],
        "the image held and was charged its price: {usage}"
    );
    assert_eq!(oldest_first[0]["service_type"], "image", "image entries: {usage}");
    assert_eq!(
        (&created["charged"], &image["charged"]),
        (&json!(10), &json!(10)),
        "image.created names the charge: {created}"
    );

    let whale_prompt = "a blue whale at dawn";
    ws.send(
        json!({"type": "image.generate", "id": "i2", "prompt": whale_prompt, "width": 256, "height": 320}),
    )
    .await;
    let (whale, _) = finish(&mut ws, "i2").await;
    assert_eq!(whale["type"], "image.created", "a second image is made: {whale}");
    assert_eq!(whale["credits"], 80, "and charged: {whale}");
    let whale_url = whale["image"]["url"].as_str().unwrap();
    let whale_png = app.get_with(whale_url, &token).await.bytes().await.unwrap().to_vec();
    assert_eq!(png_size(&whale_png), (256, 320), "the second PNG is 256×320 too");
    assert_ne!(fox, whale_png, "different prompts give different pictures");

    let bad = ws.request("bad", json!({"type": "image.generate", "prompt": "tiny", "width": 100})).await;
    assert_ws_error(&bad, "invalid_message", "bad", "width 100");
    assert_eq!(ws_balance(&mut ws, "b").await, 80, "an invalid size costs nothing");

    let (_, stranger) = app.user_with_token().await;
    for path in [format!("/api/images/{image_id}"), url.clone()] {
        let response = app.get_with(&path, &stranger).await;
        assert_error(response, StatusCode::NOT_FOUND, "not_found", &format!("another user's GET {path}"))
            .await;
    }
    assert_eq!(get_ok(&app, "/api/images", &stranger).await, json!([]), "another user's list is empty");

    let (_, admin_token) = admin_login(&app, &admin_email).await;
    let seen = get_ok(&app, &format!("/api/images/{image_id}"), &admin_token).await;
    assert_eq!(seen["id"], image_id.as_str(), "an admin sees any image: {seen}");
    let response = app.get_with(&url, &admin_token).await;
    assert_eq!(response.status(), StatusCode::OK, "an admin reads any image's content");
    assert_eq!(response.bytes().await.unwrap().to_vec(), fox, "the admin gets the same PNG");
}

#[actix_web::test]
async fn an_image_generator_failure_charges_nothing() {
    let mut upstream = fake_upstream(server_error()).await;
    let app = spawn_app_with(&["--image-url", &upstream.base, "--image-model", "test-image-model"]).await;
    let (_, token) = app.user_with_token().await;
    let mut ws = app.connect_ws(&token).await;

    ws.send(json!({"type": "image.generate", "id": "i", "prompt": "a storm", "width": 256, "height": 256}))
        .await;
    let (answer, before) = finish(&mut ws, "i").await;
    assert_ws_error(&answer, "unavailable", "i", "image generator answers 500");
    let mut frames = before;
    frames.extend(drain(&mut ws, "fence").await);
    assert_eq!(credit_updates(&frames), [90, 100], "held to 90, then released to 100: {frames:?}");
    assert!(frames.iter().all(|f| f["type"] != "image.created"), "no image.created: {frames:?}");

    let request = tokio::time::timeout(Duration::from_secs(5), upstream.requests.recv())
        .await
        .expect("the fake image generator was asked")
        .expect("a recorded request");
    assert!(
        request.head.starts_with("POST /v1/images/generations "),
        "POST to the images endpoint: {}",
        request.head
    );
    let body: Value = serde_json::from_slice(&request.body).expect("JSON request body");
    assert_eq!(
        (&body["prompt"], &body["size"]),
        (&json!("a storm"), &json!("256x256")),
        "prompt and size sent: {body}"
    );

    assert_eq!(ws_balance(&mut ws, "b").await, 100, "credits.get shows the refunded balance");
    assert_eq!(rest_balance(&app, &token).await, 100, "GET /api/me shows the refunded balance");
    let usage = get_ok(&app, "/api/me/usage", &token).await;
    let oldest_first: Vec<Value> = usage["entries"].as_array().unwrap().iter().rev().cloned().collect();
    let generations = assert_generations(&oldest_first, 100, "failing image generator");
    assert_eq!(
        generations.iter().map(|g| (g.held, g.charged)).collect::<Vec<_>>(),
        [(10, 0)],
        "the ledger has the hold, settled charging nothing: {usage}"
    );
    assert_eq!(get_ok(&app, "/api/images", &token).await, json!([]), "no image was stored");
}

// ---------------------------------------------------------------------------------------------
// Presence
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn an_admin_follows_users_joining_opening_sessions_and_leaving() {
    let (app, admin_email) = app_with_admin(&[]).await;
    let (admin_id, admin_token) = admin_login(&app, &admin_email).await;
    let mut admin = app.connect_ws(&admin_token).await;

    let snapshot = admin.request("sub", json!({"type": "presence.subscribe"})).await;
    assert_eq!(snapshot["type"], "presence.snapshot", "presence.subscribe answers a snapshot: {snapshot}");
    assert_eq!(
        (&snapshot["active_users"], &snapshot["sessions"]),
        (&json!(1), &json!(1)),
        "only the admin: {snapshot}"
    );
    let users = snapshot["users"].as_array().unwrap();
    assert_eq!(users.len(), 1, "one user online: {snapshot}");
    assert_eq!(users[0]["user_id"], admin_id.as_str(), "the admin sees itself: {snapshot}");
    assert_eq!(users[0]["email"], admin_email.as_str(), "with its email: {snapshot}");
    assert_eq!(users[0]["sessions"], 1, "with one session: {snapshot}");
    assert_rfc3339_utc(&users[0]["connected_since"], "snapshot connected_since");

    let (user, token) = app.user_with_token().await;
    let first = app.connect_ws(&token).await;
    let joined = admin.recv().await;
    assert_eq!(joined["type"], "presence.joined", "the admin hears the user join: {joined}");
    assert_eq!(joined["user_id"], user.id.as_str(), "the joined user: {joined}");
    assert_eq!(joined["email"], user.email.as_str(), "with its email: {joined}");
    assert_eq!(joined["sessions"], 1, "with one session: {joined}");
    assert_rfc3339_utc(&joined["connected_since"], "joined connected_since");

    let second = app.connect_ws(&token).await;
    let sessions = admin.recv().await;
    assert_eq!(
        sessions["type"], "presence.sessions",
        "a second socket changes the session count: {sessions}"
    );
    assert_eq!(
        (&sessions["user_id"], &sessions["sessions"]),
        (&json!(user.id), &json!(2)),
        "now 2: {sessions}"
    );

    let rest = get_ok(&app, "/api/admin/presence", &admin_token).await;
    assert_eq!(
        (&rest["active_users"], &rest["sessions"]),
        (&json!(2), &json!(3)),
        "REST snapshot counts: {rest}"
    );
    let find = |id: &str| rest["users"].as_array().unwrap().iter().find(|u| u["user_id"] == id).cloned();
    let admin_entry = find(&admin_id).unwrap_or_else(|| panic!("the REST snapshot has the admin: {rest}"));
    assert_eq!(admin_entry["sessions"], 1, "the admin has one session: {rest}");
    assert_eq!(admin_entry["email"], admin_email.as_str(), "the REST snapshot has the same shape: {rest}");
    assert_rfc3339_utc(&admin_entry["connected_since"], "REST connected_since");
    let user_entry = find(&user.id).unwrap_or_else(|| panic!("the REST snapshot has the user: {rest}"));
    assert_eq!(user_entry["sessions"], 2, "the user has two sessions: {rest}");

    let response = app.get_with("/api/admin/presence", &token).await;
    assert_error(response, StatusCode::FORBIDDEN, "forbidden", "a normal user's GET /api/admin/presence")
        .await;
    let response = app.request(Method::GET, "/api/admin/presence").send().await.unwrap();
    assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized", "an anonymous GET /api/admin/presence")
        .await;

    hang_up(first).await;
    let sessions = admin.recv().await;
    assert_eq!(sessions["type"], "presence.sessions", "closing one socket changes the count: {sessions}");
    assert_eq!(
        (&sessions["user_id"], &sessions["sessions"]),
        (&json!(user.id), &json!(1)),
        "now 1: {sessions}"
    );

    hang_up(second).await;
    let left = admin.recv().await;
    assert_eq!(left["type"], "presence.left", "closing the last socket is a leave: {left}");
    assert_eq!(left["user_id"], user.id.as_str(), "the user left: {left}");
    assert_eq!(left["reason"], "closed", "because the client closed: {left}");

    let rest = get_ok(&app, "/api/admin/presence", &admin_token).await;
    assert_eq!(
        (&rest["active_users"], &rest["sessions"]),
        (&json!(1), &json!(1)),
        "only the admin again: {rest}"
    );
    assert_eq!(rest["users"][0]["user_id"], admin_id.as_str(), "the admin is the one left online: {rest}");
}

#[actix_web::test]
async fn a_normal_user_cannot_subscribe_to_presence() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;
    let mut ws = app.connect_ws(&token).await;
    let answer = ws.request("sub", json!({"type": "presence.subscribe"})).await;
    assert_ws_error(&answer, "forbidden", "sub", "presence.subscribe by a normal user");
    let pong = ws.request("p", json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong", "the refusal does not close the connection: {pong}");
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
