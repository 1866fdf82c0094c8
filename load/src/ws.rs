//! WebSocket workloads: idle sessions (server memory per session), ping round trips, and charged
//! chat round trips (`chat.send` → `chat.done`). Sessions are spread over several users so the
//! per-user session cap and credit actors see a realistic mix.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::Client;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

use crate::Tally;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Registers `users` users and returns their access tokens.
async fn tokens(url: &str, users: usize) -> Vec<String> {
    let client = Client::new();
    let mut tokens = Vec::with_capacity(users);
    for _ in 0..users {
        tokens.push(crate::register_and_login(&client, url).await.1);
    }
    tokens
}

/// Opens one session and reads its `hello`.
async fn connect(url: &str, token: &str) -> Socket {
    let ws_url = format!("{}/ws", url.replacen("http", "ws", 1));
    let mut request = ws_url.into_client_request().expect("ws url");
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    // Small buffers: the generator holds thousands of sockets.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (mut socket, _) = connect_async_with_config(request, Some(config), true).await.expect("upgrade");
    let hello = next_json(&mut socket).await.expect("hello");
    assert_eq!(hello["type"], "hello");
    socket
}

async fn connect_many(url: &str, sessions: usize, tokens: &[String]) -> Vec<Socket> {
    let mut sockets = Vec::with_capacity(sessions);
    // Connect in batches so the accept queue is not flooded.
    for batch in (0..sessions).collect::<Vec<_>>().chunks(200) {
        let opened =
            futures_util::future::join_all(batch.iter().map(|i| connect(url, &tokens[i % tokens.len()])))
                .await;
        sockets.extend(opened);
    }
    sockets
}

async fn next_json(socket: &mut Socket) -> Option<Value> {
    while let Some(frame) = socket.next().await {
        match frame.ok()? {
            Message::Text(text) => return serde_json::from_str(&text).ok(),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
    None
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server process");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Opens `sessions` idle sessions and reports the server's RSS growth per session.
pub async fn idle(url: &str, sessions: usize, users: usize, server_pid: u32) {
    let tokens = tokens(url, users).await;
    // Warm up allocator arenas and actor systems with a few sessions first.
    let warm = connect_many(url, 50.min(sessions), &tokens).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(server_pid);
    let started = Instant::now();
    let sockets = connect_many(url, sessions, &tokens).await;
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(server_pid);
    let per_session = (after.saturating_sub(before)) as f64 * 1024.0 / sessions as f64;
    println!(
        "ws-idle: {sessions} sessions over {users} users opened in {:.1} s ({:.0}/s)",
        opened.as_secs_f64(),
        sessions as f64 / opened.as_secs_f64()
    );
    println!(
        "server RSS {before} KiB -> {after} KiB: {:.0} bytes ({:.2} KB) per idle session",
        per_session,
        per_session / 1000.0
    );
    drop(sockets);
    drop(warm);
}

/// Every session does ping → pong round trips for `seconds`.
pub async fn ping(url: &str, sessions: usize, users: usize, seconds: u64, interval_ms: u64) {
    let tokens = tokens(url, users).await;
    let sockets = connect_many(url, sessions, &tokens).await;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(n, mut socket)| {
            tokio::spawn(async move {
                let mut tally = Tally::new();
                let frame = json!({"type": "ping"}).to_string();
                // Spread the sessions' pings evenly over the interval.
                if interval_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(n as u64 * interval_ms / sessions as u64)).await;
                }
                while Instant::now() < deadline {
                    if interval_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(interval_ms)).await;
                    }
                    let start = Instant::now();
                    if socket.send(Message::text(frame.clone())).await.is_err() {
                        tally.failed += 1;
                        break;
                    }
                    match next_json(&mut socket).await {
                        Some(reply) if reply["type"] == "pong" => {
                            tally.success(start.elapsed().as_micros() as u64)
                        }
                        _ => tally.failed += 1,
                    }
                }
                tally
            })
        })
        .collect();
    let total = collect(tasks).await;
    let label = format!("ws ping round trips, {sessions} sessions, pause {interval_ms} ms");
    println!("{}", total.line(&label, seconds as f64));
}

/// Every session sends `chat.send` and waits for its `chat.done`, for `seconds`.
pub async fn chat(url: &str, sessions: usize, users: usize, seconds: u64) {
    let tokens = tokens(url, users).await;
    let mut sockets = connect_many(url, sessions, &tokens).await;
    let mut chats = Vec::with_capacity(sessions);
    for socket in &mut sockets {
        socket
            .send(Message::text(json!({"type": "chat.create", "title": "load"}).to_string()))
            .await
            .expect("send");
        loop {
            let frame = next_json(socket).await.expect("chat.created");
            if frame["type"] == "chat.created" {
                chats.push(frame["chat"]["id"].as_str().expect("chat id").to_owned());
                break;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = sockets
        .into_iter()
        .zip(chats)
        .enumerate()
        .map(|(n, (mut socket, chat_id))| {
            tokio::spawn(async move {
                let mut tally = Tally::new();
                let mut i = 0u64;
                while Instant::now() < deadline {
                    i += 1;
                    let id = format!("{n}-{i}");
                    let frame = json!({"type": "chat.send", "id": id, "chat_id": chat_id, "content": "hello load test"});
                    let start = Instant::now();
                    if socket.send(Message::text(frame.to_string())).await.is_err() {
                        tally.failed += 1;
                        break;
                    }
                    // Other sessions of the same user also push their events here; wait for ours.
                    loop {
                        match next_json(&mut socket).await {
                            Some(reply) if reply["reply_to"] == id.as_str() && reply["type"] == "chat.done" => {
                                tally.success(start.elapsed().as_micros() as u64);
                                break;
                            }
                            Some(reply) if reply["reply_to"] == id.as_str() && reply["type"] == "error" => {
                                tally.failed += 1;
                                break;
                            }
                            Some(_) => continue,
                            None => {
                                tally.failed += 1;
                                return tally;
                            }
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let total = collect(tasks).await;
    println!("{}", total.line(&format!("charged chat round trips, {sessions} sessions"), seconds as f64));
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
    let mut total = Tally::new();
    for task in tasks {
        total.merge(&task.await.expect("load task"));
    }
    total
}
