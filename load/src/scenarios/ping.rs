//! `ping`: every session sends `ping` and waits for its `pong`, in a loop, for the window. With no
//! pause this is the saturation figure the `guard` compares chat against; with `--raw` it runs
//! against the bare echo server, where any text frame is a ping and its echo the pong.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use super::{ANSWER_GRACE, Window, collect, note_failed_opens, pause, report_for};
use crate::cli::Settings;
use crate::report::Report;
use crate::session::{Frame, Socket, Target, next_text, register_users, tokens_of};
use crate::tally::Tally;

/// Registers the users (unless raw), opens the sessions and measures.
pub async fn run(settings: &Settings, interval_ms: u64, raw: bool) -> Result<Report, String> {
    let target = Arc::new(Target::new(&settings.url, "/ws", settings.source_addresses, settings.sessions)?);
    let tokens =
        if raw { Vec::new() } else { tokens_of(&register_users(&target.base_url, settings.users).await?) };
    measure(settings, &target, &tokens, interval_ms, raw).await
}

/// Opens `settings.sessions` sessions with `tokens` (empty: raw) and measures ping round trips.
pub async fn measure(
    settings: &Settings,
    target: &Arc<Target>,
    tokens: &[String],
    interval_ms: u64,
    raw: bool,
) -> Result<Report, String> {
    let (sockets, opens) = target.open_many(settings.sessions, tokens, "ping: opening sessions").await;
    if sockets.is_empty() {
        return Err(format!("no session opened: {:?}", opens.errors));
    }
    let sessions = sockets.len() as u64;
    let window = Window::open("ping", settings.seconds, settings.server_pid);
    let deadline = window.deadline;
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(n, mut socket)| {
            let mut tally = window.tally();
            tokio::spawn(async move {
                // Spread the sessions' pings evenly over the interval instead of in waves.
                if interval_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(n as u64 * interval_ms / sessions)).await;
                }
                while Instant::now() < deadline {
                    if let Err(code) = ping_once(&mut socket, raw, &mut tally, deadline + ANSWER_GRACE).await
                    {
                        tally.error(&code);
                        break;
                    }
                    pause(interval_ms, deadline).await;
                }
                tally
            })
        })
        .collect();
    let total = collect(tasks).await;
    let (seconds, usage) = window.close();
    let mut report = report_for("ping", &target.ws_url, settings);
    report.setting("interval_ms", interval_ms);
    report.setting("raw", raw);
    report.setting("source_addresses", target.source_address_count());
    report.operation("ping round trips", seconds, total);
    note_failed_opens(&mut report, &opens);
    report.usage = Some(usage);
    Ok(report)
}

/// One ping round trip on `socket`, counted on `tally`; `Err` when the session is gone.
pub async fn ping_once(
    socket: &mut Socket,
    raw: bool,
    tally: &mut Tally,
    until: Instant,
) -> Result<(), String> {
    let started = Instant::now();
    let frame = if raw { "ping" } else { r#"{"type":"ping"}"# };
    socket.send(Message::text(frame)).await.map_err(|_| "closed".to_owned())?;
    loop {
        let text = next_text(socket, until).await?;
        if raw {
            tally.success(started.elapsed().as_micros() as u64);
            return Ok(());
        }
        let frame = Frame::parse(&text);
        match frame.kind.as_str() {
            "pong" => {
                tally.success(started.elapsed().as_micros() as u64);
                return Ok(());
            }
            "error" => {
                tally.error(frame.code.as_deref().unwrap_or("error"));
                return Ok(());
            }
            // Events for the user (other sessions' chats) are not the answer.
            _ => continue,
        }
    }
}
