//! `fanout --presence`: an admin follows presence (`presence.subscribe`) while `--users` storm
//! users each join and leave in a loop: open a session, hold it `--hold-ms`, close it, pause
//! `--interval-ms`. With one session per user, every join gives one `presence.joined` and every
//! leave one `presence.left`, so each event is matched to the action that caused it (per user,
//! in order) and timed from the start of that action: the connect for a join, the close frame
//! for a leave. Actions whose event never came are reported as missed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use reqwest::Client;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::connect::close;
use super::{ANSWER_GRACE, Window, collect, pause};
use crate::cli::Settings;
use crate::report::Report;
use crate::session::{Frame, Target, log_in, next_text, register_users};
use crate::tally::Tally;

/// How long the admin keeps reading after the storm stops, for the last events.
const DRAIN: Duration = Duration::from_secs(2);

/// When each storm user's not yet matched actions started, oldest first.
type Pending = Arc<Mutex<HashMap<String, VecDeque<Instant>>>>;

/// The admin's credentials.
pub struct Admin {
    /// Email.
    pub email: String,
    /// Password.
    pub password: String,
}

/// Runs the presence storm and measures the admin's stream.
pub async fn run(
    settings: &Settings,
    admin: &Admin,
    hold_ms: u64,
    interval_ms: u64,
) -> Result<Report, String> {
    let target = Arc::new(Target::new(&settings.url, "/ws", settings.source_addresses, settings.users * 4)?);
    let (admin_token, _) = log_in(&Client::new(), &target.base_url, &admin.email, &admin.password).await?;
    let storm = register_users(&target.base_url, settings.users).await?;
    let (mut admin_socket, _) =
        target.open_with_hello(0, &admin_token, Instant::now() + ANSWER_GRACE).await?;
    let subscribe = r#"{"type":"presence.subscribe","id":"subscribe"}"#;
    admin_socket.send(Message::text(subscribe)).await.map_err(|_| "admin session closed")?;
    loop {
        let frame = Frame::parse(&next_text(&mut admin_socket, Instant::now() + ANSWER_GRACE).await?);
        match frame.kind.as_str() {
            "presence.snapshot" => break,
            "error" => return Err(format!("presence.subscribe: {}", frame.code.unwrap_or_default())),
            _ => continue,
        }
    }

    let pending: Pending = Arc::default();
    let window = Window::open("presence events", settings.seconds, settings.server_pid);
    let deadline = window.deadline;
    let actions: Vec<_> = storm
        .into_iter()
        .enumerate()
        .map(|(n, user)| {
            let (target, pending, mut tally) = (target.clone(), pending.clone(), Tally::new());
            tokio::spawn(async move {
                let note = |pending: &Pending| {
                    let mut pending = pending.lock().expect("pending lock");
                    pending.entry(user.user_id.clone()).or_default().push_back(Instant::now());
                };
                let mut round = 0;
                while Instant::now() < deadline {
                    note(&pending);
                    let index = n + round * 1000;
                    round += 1;
                    match target.open_with_hello(index, &user.token, Instant::now() + ANSWER_GRACE).await {
                        Ok((socket, _)) => {
                            tally.count(1);
                            pause(hold_ms, deadline).await;
                            note(&pending);
                            close(socket).await;
                            tally.count(1);
                        }
                        Err(code) => {
                            // No join happened, so no event will match this note.
                            pending
                                .lock()
                                .expect("pending lock")
                                .get_mut(&user.user_id)
                                .map(VecDeque::pop_back);
                            tally.error(&code);
                        }
                    }
                    pause(interval_ms, deadline).await;
                }
                tally
            })
        })
        .collect();

    let mut events = window.tally();
    let mut late_events = 0u64;
    while let Ok(text) = next_text(&mut admin_socket, deadline + DRAIN).await {
        let frame = Frame::parse(&text);
        if !frame.kind.starts_with("presence.") {
            continue;
        }
        if Instant::now() < deadline {
            events.count(1);
        } else {
            late_events += 1;
        }
        let value: Value = serde_json::from_str(&text).unwrap_or_default();
        let Some(user_id) = value["user_id"].as_str() else { continue };
        let started = pending.lock().expect("pending lock").get_mut(user_id).and_then(VecDeque::pop_front);
        if let Some(started) = started {
            events.time(started.elapsed().as_micros() as u64);
        }
    }
    let performed = collect(actions).await;
    let (_, usage) = window.close();
    let missed: usize = pending.lock().expect("pending lock").values().map(VecDeque::len).sum();

    let mut report = Report::new("fanout --presence", &target.ws_url);
    report.setting("storm_users", settings.users);
    report.setting("seconds", settings.seconds);
    report.setting("hold_ms", hold_ms);
    report.setting("interval_ms", interval_ms);
    let seconds = settings.seconds as f64;
    report.operation("presence events received by the admin", seconds, events);
    report.operation("storm joins and leaves", seconds, performed);
    report.figure("events_after_the_window", late_events);
    report.figure("actions_without_an_event", missed);
    report.figure("event_delay_is", "storm connect start or close frame -> event at the admin");
    report.usage = Some(usage);
    Ok(report)
}
