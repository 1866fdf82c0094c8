//! `mixed`: a blend closer to real traffic than any single scenario. Of every hundred sessions,
//! `--chat-percent` chat (one message per `--chat-interval-ms`), `--idle-percent` stay idle,
//! and the rest ping once per `--interval-ms`; `--logins` loops log in over REST meanwhile.
//! Each kind is reported on its own line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Client;

use super::chat::chat_frames;
use super::idle::hold_until;
use super::login::login_loop;
use super::ping::ping_once;
use super::{
    ANSWER_GRACE, Window, collect, create_chat, note_failed_opens, note_held, pause, report_for, round_trip,
};
use crate::cli::Settings;
use crate::report::Report;
use crate::session::{Socket, Target, register_users, tokens_of};
use crate::tally::Tally;

/// How the sessions are shared out.
pub struct Blend {
    /// Pause between pings of a pinging session, ms.
    pub ping_interval_ms: u64,
    /// Percent of sessions that chat.
    pub chat_percent: usize,
    /// Percent of sessions that stay idle.
    pub idle_percent: usize,
    /// Pause between messages of a chatting session, ms.
    pub chat_interval_ms: u64,
    /// Concurrent login loops.
    pub logins: usize,
}

/// What one session does.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    Ping,
    Chat,
    Idle,
}

/// Opens the sessions, gives each its role, and measures every kind at once.
pub async fn run(settings: &Settings, blend: &Blend) -> Result<Report, String> {
    let target = Arc::new(Target::new(&settings.url, "/ws", settings.source_addresses, settings.sessions)?);
    let users = register_users(&target.base_url, settings.users).await?;
    let tokens = tokens_of(&users);
    let emails: Arc<Vec<String>> = Arc::new(users.into_iter().map(|user| user.email).collect());
    let (sockets, opens) = target.open_many(settings.sessions, &tokens, "mixed: opening sessions").await;

    let window = Window::open("mixed", settings.seconds, settings.server_pid);
    let deadline = window.deadline;
    let sessions = sockets.len().max(1) as u64;
    let mut workers: Vec<(Role, tokio::task::JoinHandle<Tally>)> = Vec::new();
    for (n, socket) in sockets.into_iter().enumerate() {
        let role = match n % 100 {
            share if share < blend.chat_percent => Role::Chat,
            share if share < blend.chat_percent + blend.idle_percent => Role::Idle,
            _ => Role::Ping,
        };
        // Start each session at its own point of its interval, not all in one wave.
        let offset = Duration::from_millis(n as u64 * blend.ping_interval_ms / sessions);
        let tally = window.tally();
        let task = match role {
            Role::Idle => tokio::spawn(async move { hold_until(socket, tally, deadline).await.0 }),
            Role::Ping => tokio::spawn(pinging(socket, tally, deadline, offset, blend.ping_interval_ms)),
            Role::Chat => tokio::spawn(chatting(socket, tally, deadline, n, blend.chat_interval_ms)),
        };
        workers.push((role, task));
    }
    let client = Client::builder().pool_max_idle_per_host(64).build().map_err(|error| error.to_string())?;
    let logins: Vec<_> = (0..blend.logins)
        .map(|n| {
            let url = format!("{}/api/login", target.base_url);
            login_loop(client.clone(), url, emails.clone(), n, window.tally(), deadline)
        })
        .collect();

    let mut by_role = [(Role::Ping, Vec::new()), (Role::Chat, Vec::new()), (Role::Idle, Vec::new())];
    for (role, task) in workers {
        if let Some((_, tasks)) = by_role.iter_mut().find(|(kind, _)| *kind == role) {
            tasks.push(task);
        }
    }
    let [(_, pings), (_, chats), (_, idles)] = by_role;
    let (pings, chats, idles, logins) =
        (collect(pings).await, collect(chats).await, collect(idles).await, collect(logins).await);
    let (seconds, usage) = window.close();

    let mut report = report_for("mixed", &target.ws_url, settings);
    report.setting("ping_interval_ms", blend.ping_interval_ms);
    report.setting("chat_percent", blend.chat_percent);
    report.setting("idle_percent", blend.idle_percent);
    report.setting("chat_interval_ms", blend.chat_interval_ms);
    report.setting("logins", blend.logins);
    report.operation("ping round trips", seconds, pings);
    report.operation("chat round trips", seconds, chats);
    report.operation("logins (POST /api/login)", seconds, logins);
    note_failed_opens(&mut report, &opens);
    note_held(&mut report, &idles);
    report.usage = Some(usage);
    Ok(report)
}

/// A pinging session: one ping per `interval_ms` after `offset`.
async fn pinging(
    mut socket: Socket,
    mut tally: Tally,
    deadline: Instant,
    offset: Duration,
    interval_ms: u64,
) -> Tally {
    tokio::time::sleep(offset).await;
    while Instant::now() < deadline {
        if let Err(code) = ping_once(&mut socket, false, &mut tally, deadline + ANSWER_GRACE).await {
            tally.error(&code);
            break;
        }
        pause(interval_ms, deadline).await;
    }
    tally
}

/// A chatting session: starts a chat, then one message per `interval_ms`.
async fn chatting(
    mut socket: Socket,
    mut tally: Tally,
    deadline: Instant,
    n: usize,
    interval_ms: u64,
) -> Tally {
    let chat_id = match create_chat(&mut socket, &format!("create-{n}")).await {
        Ok(chat_id) => chat_id,
        Err(code) => {
            tally.error(&format!("chat.create {code}"));
            return tally;
        }
    };
    let mut round = 0;
    while Instant::now() < deadline {
        round += 1;
        let (frames, ids) = chat_frames(&chat_id, n, round, false);
        if let Err(code) =
            round_trip(&mut socket, frames, &ids, "chat.done", &mut tally, deadline + ANSWER_GRACE).await
        {
            tally.error(&code);
            break;
        }
        pause(interval_ms, deadline).await;
    }
    tally
}
