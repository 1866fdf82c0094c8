//! The crash test: several users with several sessions each send paid chats (some of which the
//! assistant fails, so they are charged nothing) and images, an admin grants credits, new users
//! register, and the server is killed with SIGKILL in the middle of it. After a restart on the
//! same store, every ledger is exact and whole, every view shows its balance, everything a
//! client was told is stored, and nothing half-written is visible.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{Deployment, every_view_of_the_balance};
use crate::support::app::PASSWORD;
use crate::support::process::ServerProcess;
use crate::support::upstream::{REPLY, fake_assistant};
use crate::support::ws::WsClient;

const USERS: usize = 4;
const SESSIONS_PER_USER: usize = 3;
const STARTING_CREDITS: i64 = 100_000;
/// How long the storm runs before the kill.
const STORM: Duration = Duration::from_millis(2500);
/// What one session was told about its requests.
#[derive(Debug, Default)]
struct Told {
    /// Reply ids of `chat.started` frames answering this session's requests (each held credits).
    started: Vec<String>,
    /// User message ids of `chat.message` frames answering this session's requests.
    messages: Vec<String>,
    /// `(chat_id, reply id, charged)` of `chat.done` frames of complete replies.
    done: Vec<(String, String, i64)>,
    /// Reply ids of replies that failed (`chat.done` with status `failed`, then `unavailable`).
    failed: Vec<String>,
    /// `(image id, charged)` of `image.created` frames.
    images: Vec<(String, i64)>,
    /// Requests sent without an answer when the connection died.
    unanswered: usize,
}

/// One session's share of the storm: one request at a time until the connection dies.
async fn session_storm(mut ws: WsClient, tag: String, chat_id: String) -> Told {
    let mut told = Told::default();
    for n in 0.. {
        let id = format!("{tag}-{n}");
        let frame = match n % 4 {
            3 => {
                json!({"type": "image.generate", "id": id, "prompt": format!("crash {id}"), "width": 256, "height": 256})
            }
            1 => {
                json!({"type": "chat.send", "id": id, "chat_id": chat_id, "content": format!("please fail {id}")})
            }
            _ => json!({"type": "chat.send", "id": id, "chat_id": chat_id, "content": format!("hello {id}")}),
        };
        if ws.stream.send(Message::text(frame.to_string())).await.is_err() {
            return told;
        }
        loop {
            let frame = match tokio::time::timeout(Duration::from_secs(20), ws.stream.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    serde_json::from_str::<Value>(&text).expect("JSON frame")
                }
                Ok(Some(Ok(_))) => continue,
                // The server died (or hung, which the assertions below will show).
                _ => {
                    told.unanswered += 1;
                    return told;
                }
            };
            if frame["reply_to"] != id.as_str() {
                continue;
            }
            let charged = frame["charged"].as_i64().unwrap_or_default();
            match frame["type"].as_str() {
                Some("chat.message") => {
                    told.messages.push(frame["message"]["id"].as_str().unwrap().to_owned())
                }
                Some("chat.started") => told.started.push(frame["message_id"].as_str().unwrap().to_owned()),
                Some("chat.delta") => {}
                Some("chat.done") if frame["message"]["status"] == "failed" => {
                    told.failed.push(frame["message"]["id"].as_str().unwrap().to_owned());
                }
                Some("chat.done") => {
                    let reply = frame["message"]["id"].as_str().unwrap().to_owned();
                    told.done.push((chat_id.clone(), reply, charged));
                    break;
                }
                Some("image.created") => {
                    told.images.push((frame["image"]["id"].as_str().unwrap().to_owned(), charged));
                    break;
                }
                Some("error") => {
                    assert_eq!(
                        frame["code"], "unavailable",
                        "{id}: only the failing assistant errs: {frame}"
                    );
                    break;
                }
                other => panic!("{id}: unexpected {other:?}: {frame}"),
            }
        }
    }
    told
}

/// A user of the storm.
struct StormUser {
    id: String,
    email: String,
    token: String,
}

#[actix_web::test]
async fn a_server_killed_during_a_storm_of_paid_requests_and_grants_restarts_exact_and_whole() {
    let assistant = fake_assistant(Duration::ZERO).await;
    let starting = STARTING_CREDITS.to_string();
    let deployment =
        Deployment::new(&[("ASSISTANT_URL", assistant.as_str()), ("STARTING_CREDITS", starting.as_str())]);
    let mut server = deployment.start().await;
    let admin_token =
        server.login_body(&deployment.admin_email).await["access_token"].as_str().unwrap().to_owned();
    let mut users = Vec::new();
    for n in 0..USERS {
        let email = format!("storm{n}-{}@example.com", uuid::Uuid::new_v4().simple());
        let id = server.register(&email).await;
        let token = server.login_body(&email).await["access_token"].as_str().unwrap().to_owned();
        users.push(StormUser { id, email, token });
    }
    let mut storms = Vec::new();
    for (u, user) in users.iter().enumerate() {
        for s in 0..SESSIONS_PER_USER {
            let mut ws = server.connect_ws(&user.token).await;
            let created = ws.request("c", json!({"type": "chat.create", "title": "storm"})).await;
            let chat_id = created["chat"]["id"].as_str().expect("chat created").to_owned();
            storms.push(tokio::spawn(session_storm(ws, format!("u{u}s{s}"), chat_id)));
        }
    }
    // Grants, acknowledged or not, and registrations, acknowledged or not.
    let acknowledged_grants = Arc::new(Mutex::new(HashSet::<String>::new()));
    let registered = Arc::new(Mutex::new(Vec::<String>::new()));
    let grants = {
        let (client, acknowledged) = (server.client.clone(), acknowledged_grants.clone());
        let targets: Vec<String> =
            users.iter().map(|u| server.url(&format!("/api/admin/users/{}/credits", u.id))).collect();
        let admin_token = admin_token.clone();
        tokio::spawn(async move {
            for n in 0.. {
                let reason = format!("grant-{n}");
                let body = json!({"amount": 3, "reason": reason});
                let sent =
                    client.post(&targets[n % targets.len()]).bearer_auth(&admin_token).json(&body).send();
                match sent.await {
                    Ok(r) if r.status() == StatusCode::OK => acknowledged.lock().unwrap().insert(reason),
                    Ok(r) => panic!("a grant answered {}", r.status()),
                    Err(_) => return,
                };
            }
        })
    };
    let registrations = {
        let (client, registered) = (server.client.clone(), registered.clone());
        let url = server.url("/api/register");
        tokio::spawn(async move {
            for _ in 0.. {
                let email = format!("crash-reg-{}@example.com", uuid::Uuid::new_v4().simple());
                let body = json!({"email": email, "password": PASSWORD, "first_name": "Reg", "last_name": "Istered"});
                match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status() == StatusCode::CREATED => registered.lock().unwrap().push(email),
                    Ok(r) => panic!("a registration answered {}", r.status()),
                    Err(_) => return,
                }
            }
        })
    };

    tokio::time::sleep(STORM).await;
    server.process.kill();

    let told: Vec<Told> = join_all(storms).await.into_iter().map(|t| t.expect("session task")).collect();
    grants.await.expect("grant task");
    registrations.await.expect("registration task");
    let answered: usize = told.iter().map(|t| t.done.len() + t.failed.len() + t.images.len()).sum();
    let unanswered: usize = told.iter().map(|t| t.unanswered).sum();
    eprintln!(
        "storm: {answered} paid requests answered, {unanswered} in flight at the kill, {} grants and {} registrations acknowledged",
        acknowledged_grants.lock().unwrap().len(),
        registered.lock().unwrap().len()
    );
    assert!(answered >= USERS * SESSIONS_PER_USER, "the storm was a storm: {answered} answered requests");

    // Before the restart, and again beside the restarted server.
    let (code, report) = deployment.check_ledger(false).await;
    assert_eq!(code, Some(0), "check-ledger after the kill finds no damage:\n{report}");
    let server = deployment.start().await;
    let (code, report) = deployment.check_ledger(true).await;
    assert_eq!(code, Some(0), "check-ledger --repair beside the restarted server:\n{report}");
    assert!(report.contains(" 0 damaged,"), "no damage:\n{report}");

    let acknowledged_grants = acknowledged_grants.lock().unwrap().clone();
    let mut granted_seen = HashSet::new();
    for (u, user) in users.iter().enumerate() {
        let told: Vec<&Told> = told[u * SESSIONS_PER_USER..(u + 1) * SESSIONS_PER_USER].iter().collect();
        let entries = all_usage(&server, &user.token).await;
        let balance = assert_exact_ledger(&entries, &user.email);
        for (view, credits) in
            every_view_of_the_balance(&server, &user.token, &admin_token, &user.id, &user.email).await
        {
            assert_eq!(
                credits, balance,
                "{}: {view} shows the ledger's balance after the restart",
                user.email
            );
        }
        let (generations, open) = ledger_generations(&entries, &user.email);
        assert!(
            open.len() <= SESSIONS_PER_USER,
            "{}: at most one hold per session was in flight at the kill: {open:?}",
            user.email
        );
        for grant in entries.iter().filter(|e| e["kind"] == "grant") {
            let grant = grant["ref"].as_str().unwrap().to_owned();
            assert!(granted_seen.insert(grant.clone()), "grant {grant} was applied once, to one user");
        }
        for t in &told {
            for (_, reply, charged) in &t.done {
                assert_eq!(
                    generations.get(reply),
                    Some(charged),
                    "{}: the charge told for {reply} stands",
                    user.email
                );
            }
            for reply in &t.failed {
                assert_eq!(
                    generations.get(reply),
                    Some(&0),
                    "{}: failed {reply} was charged nothing",
                    user.email
                );
            }
            for (image, charged) in &t.images {
                assert_eq!(
                    generations.get(image),
                    Some(charged),
                    "{}: the charge told for {image} stands",
                    user.email
                );
            }
            for reply in &t.started {
                assert!(
                    generations.contains_key(reply) || open.contains(reply),
                    "{}: the hold told of for {reply} stands",
                    user.email
                );
            }
        }
        // Holds nobody was told of: at most one request in flight per session.
        let told_refs: HashSet<&String> =
            told.iter().flat_map(|t| t.started.iter().chain(t.images.iter().map(|(id, _)| id))).collect();
        let untold = generations.keys().chain(&open).filter(|r| !told_refs.contains(r)).count();
        assert!(untold <= SESSIONS_PER_USER, "{}: {untold} holds nobody asked for", user.email);
        assert_stored_and_whole(&server, user, &told).await;
    }
    for grant in &acknowledged_grants {
        assert!(granted_seen.contains(grant), "acknowledged {grant} stands after the restart");
    }
    let registered = registered.lock().unwrap().clone();
    for email in &registered {
        server.login_body(email).await;
    }
    assert_registered_users_are_whole(&server, &admin_token).await;
}

/// Every ledger entry of the user, oldest first.
async fn all_usage(server: &ServerProcess, token: &str) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut path = "/api/me/usage?limit=100".to_owned();
    loop {
        let (status, page) = server.get_with(&path, token).await;
        assert_eq!(status, StatusCode::OK, "usage page: {page}");
        entries.extend(page["entries"].as_array().unwrap().iter().cloned());
        match page["next_before"].as_str() {
            Some(before) => path = format!("/api/me/usage?limit=100&before={before}"),
            None => break,
        }
    }
    entries.reverse();
    entries
}

/// Checks the chain (1, 2, 3… from the starting credits, never negative); returns the balance.
fn assert_exact_ledger(entries: &[Value], who: &str) -> i64 {
    let mut balance = STARTING_CREDITS;
    for (n, entry) in entries.iter().enumerate() {
        balance += entry["amount"].as_i64().unwrap();
        assert_eq!(
            entry["balance_after"],
            balance,
            "{who}: entry {} follows from the one before: {entry}",
            n + 1
        );
        assert_eq!(entry["seq"], n as i64 + 1, "{who}: seq runs 1, 2, 3…: {entry}");
        assert!(balance >= 0, "{who}: never negative: {entry}");
    }
    balance
}

/// The settled generations of a ledger (oldest first) by `ref`, with what each was charged, and
/// the refs of holds still open: each hold settled at most once, after it, giving back 0..=held.
fn ledger_generations(entries: &[Value], who: &str) -> (HashMap<String, i64>, Vec<String>) {
    let mut held: HashMap<String, i64> = HashMap::new();
    let mut charged = HashMap::new();
    for entry in entries {
        let reference = entry["ref"].as_str().unwrap_or_default().to_owned();
        let amount = entry["amount"].as_i64().unwrap();
        match entry["kind"].as_str() {
            Some("hold") => {
                assert!(!charged.contains_key(&reference), "{who}: one hold per generation: {entry}");
                assert!(held.insert(reference, -amount).is_none(), "{who}: one hold per generation: {entry}");
            }
            Some("settle") => {
                let hold = held
                    .remove(&reference)
                    .unwrap_or_else(|| panic!("{who}: a settle closes an open hold: {entry}"));
                assert!((0..=hold).contains(&amount), "{who}: a settle gives back 0..=held: {entry}");
                charged.insert(reference, hold - amount);
            }
            Some("grant") => {}
            other => panic!("{who}: unexpected kind {other:?}: {entry}"),
        }
    }
    (charged, held.into_keys().collect())
}

/// Every reply a session was told of is stored; every stored message and image is whole.
async fn assert_stored_and_whole(server: &ServerProcess, user: &StormUser, told: &[&Told]) {
    let mut stored = HashMap::new();
    let (_, chats) = server.get_with("/api/chats?limit=100", &user.token).await;
    for chat in chats.as_array().expect("an array of chats") {
        let chat_id = chat["id"].as_str().unwrap();
        let mut before = String::new();
        loop {
            let path = format!("/api/chats/{chat_id}/messages?limit=100{before}");
            let (status, page) = server.get_with(&path, &user.token).await;
            assert_eq!(status, StatusCode::OK, "{path}: {page}");
            let messages = page.as_array().expect("an array of messages").clone();
            for m in &messages {
                let content = m["content"].as_str().unwrap_or_default();
                match (m["role"].as_str(), m["status"].as_str()) {
                    (Some("assistant"), Some("complete")) => {
                        assert_eq!(content, REPLY.concat(), "a stored complete reply is whole: {m}")
                    }
                    (Some("assistant"), _) => {
                        assert!(
                            REPLY.concat().starts_with(content),
                            "an unfinished reply keeps what came: {m}"
                        )
                    }
                    (Some("user"), _) => {
                        assert!(content.starts_with("hello ") || content.starts_with("please fail "), "{m}")
                    }
                    other => panic!("unknown role {other:?}: {m}"),
                }
                stored.insert(m["id"].as_str().unwrap().to_owned(), chat_id.to_owned());
            }
            match (messages.first(), messages.len()) {
                (Some(first), 100) => before = format!("&before={}", first["id"].as_str().unwrap()),
                _ => break,
            }
        }
    }
    for t in told {
        for (chat_id, reply, _) in &t.done {
            assert_eq!(
                stored.get(reply),
                Some(chat_id),
                "{}: the reply of a chat.done is stored",
                user.email
            );
        }
        for message in t.messages.iter().chain(&t.started) {
            assert!(stored.contains_key(message), "{}: told message {message} is stored", user.email);
        }
    }
    let mut images = Vec::new();
    let mut path = "/api/images?limit=100".to_owned();
    loop {
        let (status, page) = server.get_with(&path, &user.token).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        let page = page.as_array().expect("an array of images").clone();
        images.extend(page.iter().cloned());
        match page.last() {
            Some(last) if page.len() == 100 => {
                path = format!("/api/images?limit=100&before={}", last["id"].as_str().unwrap())
            }
            _ => break,
        }
    }
    let listed: HashSet<String> = images.iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect();
    for image in &images {
        let response = server
            .client
            .get(server.url(&format!("/api/images/{}/content", image["id"].as_str().unwrap())))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "a listed image has its content: {image}");
        let png = response.bytes().await.unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 24, "a whole PNG: {image}");
        let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
        assert_eq!(width, image["width"], "the PNG is the image recorded: {image}");
    }
    for t in told {
        for (image, _) in &t.images {
            assert!(listed.contains(image), "{}: told image {image} is stored", user.email);
        }
    }
}

/// Every registered user the admin can see is whole: all fields set, and it can log in.
async fn assert_registered_users_are_whole(server: &ServerProcess, admin_token: &str) {
    let (status, list) = server.get_with("/api/admin/users?q=crash-reg-&limit=100", admin_token).await;
    assert_eq!(status, StatusCode::OK, "admin user list: {list}");
    for user in list["users"].as_array().expect("users") {
        for field in ["id", "email", "first_name", "last_name", "role", "api_key_prefix", "created_at"] {
            assert!(user[field].as_str().is_some_and(|v| !v.is_empty()), "{field} of {user}");
        }
        server.login_body(user["email"].as_str().unwrap()).await;
    }
}
