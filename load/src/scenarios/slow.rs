//! `slow-readers`: sessions that ask for a lot and stop reading. Each opens a chat, then sends
//! chat messages whose replies stream back word by word, and never reads again. The server must
//! close them (4002, once a client's backlog passes `SWITCHBOARD_WS_OUTBOUND_BYTES`) and its
//! memory must stay bounded: the report gives the server's RSS before, at its peak and after, and
//! how many sessions the server ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::{Window, note_failed_opens, report_for};
use crate::cli::Settings;
use crate::report::Report;
use crate::session::{Socket, Target, next_text, register_users, tokens_of};
use crate::usage::rss_kib;

/// Opens the sessions, makes each one a slow reader, and watches the server.
pub async fn run(settings: &Settings, messages: usize, words: usize) -> Result<Report, String> {
    let target = Arc::new(Target::new(&settings.url, "/ws", settings.source_addresses, settings.sessions)?);
    let tokens = tokens_of(&register_users(&target.base_url, settings.users).await?);
    let (sockets, opens) = target.open_many(settings.sessions, &tokens, "slow-readers: opening").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = settings.server_pid.and_then(rss_kib);
    let opened = sockets.len();

    let window = Window::open("slow-readers", settings.seconds, settings.server_pid);
    let content = "word ".repeat(words);
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|socket| tokio::spawn(stop_reading(socket, messages, content.clone())))
        .collect();
    let mut held = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(Some(socket)) = task.await {
            held.push(socket);
        }
    }
    tokio::time::sleep_until(window.deadline.into()).await;
    let rss_held = settings.server_pid.and_then(rss_kib);
    // Now read: a socket the server ended shows its close (or a reset) within a moment.
    let mut ended = 0;
    for mut socket in held {
        if ended_by_server(&mut socket).await {
            ended += 1;
        }
    }
    let (seconds, usage) = window.close();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = settings.server_pid.and_then(rss_kib);

    let mut report = report_for("slow-readers", &target.ws_url, settings);
    report.setting("messages", messages);
    report.setting("words", words);
    note_failed_opens(&mut report, &opens);
    report.figure("sessions that stopped reading", opened);
    report.figure("sessions the server ended", ended);
    report.figure("seconds", (seconds * 10.0).round() / 10.0);
    if let Some(before) = rss_before {
        report.figure("server_rss_before_kib", before);
    }
    if let Some(held) = rss_held {
        report.figure("server_rss_at_the_end_of_the_window_kib", held);
    }
    if let Some(after) = rss_after {
        report.figure("server_rss_after_the_sockets_are_read_kib", after);
    }
    report.usage = Some(usage);
    Ok(report)
}

/// Opens a chat, sends `messages` long chat messages, and returns the socket unread (`None`
/// when the session failed before that).
async fn stop_reading(mut socket: Socket, messages: usize, content: String) -> Option<Socket> {
    let create = json!({"type": "chat.create", "id": "c", "title": "slow reader"});
    socket.send(Message::text(create.to_string())).await.ok()?;
    let until = Instant::now() + Duration::from_secs(30);
    let chat_id = loop {
        let frame: serde_json::Value =
            serde_json::from_str(&next_text(&mut socket, until).await.ok()?).ok()?;
        if frame["type"] == "chat.created" {
            break frame["chat"]["id"].as_str()?.to_owned();
        }
    };
    for n in 0..messages {
        let send =
            json!({"type": "chat.send", "id": format!("s{n}"), "chat_id": chat_id, "content": content});
        socket.send(Message::text(send.to_string())).await.ok()?;
    }
    Some(socket)
}

/// Whether the server closed (or dropped) the socket: reading through what it queued finds the
/// end within a few seconds.
async fn ended_by_server(socket: &mut Socket) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(until.into(), socket.next()).await {
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => return true,
            Ok(Some(Ok(_))) => continue,
            Err(_) => return false,
        }
    }
}
