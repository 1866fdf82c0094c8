//! `idle`: opens many sessions and holds them, to find the server's memory per idle session. The
//! server's RSS is read after a short warm-up (so allocator arenas and actor systems already
//! exist) and again once the sessions have settled; the growth divided by the sessions is the
//! figure. Sessions keep reading while held, which answers the server's heartbeat pings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use super::{Window, collect_held, note_failed_opens, note_held, report_for};
use crate::cli::Settings;
use crate::report::Report;
use crate::session::{Socket, Target, register_users, tokens_of};
use crate::tally::Tally;
use crate::usage::{open_files_limit, rss_kib};

/// Sessions opened before the first memory reading.
const WARM_UP_SESSIONS: usize = 50;
/// Pause after opening, before the second reading, so queued work settles.
const SETTLE: Duration = Duration::from_secs(3);

/// Opens and holds the sessions (raw: against a bare WebSocket server, without credentials).
pub async fn run(settings: &Settings, raw: bool) -> Result<Report, String> {
    let target = Arc::new(Target::new(&settings.url, "/ws", settings.source_addresses, settings.sessions)?);
    warn_about_open_files(settings.sessions);
    let tokens =
        if raw { Vec::new() } else { tokens_of(&register_users(&target.base_url, settings.users).await?) };
    let (warm, _) = target.open_many(WARM_UP_SESSIONS.min(settings.sessions), &tokens, "idle: warm-up").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = settings.server_pid.and_then(rss_kib);
    let opening = Instant::now();
    let (sockets, opens) = target.open_many(settings.sessions, &tokens, "idle: opening").await;
    let open_seconds = opening.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let rss_after = settings.server_pid.and_then(rss_kib);
    let opened = sockets.len() as u64;

    let window = Window::open("idle: holding", settings.seconds, settings.server_pid);
    let tasks: Vec<_> =
        sockets.into_iter().chain(warm).map(|socket| hold(socket, window.tally(), window.deadline)).collect();
    let (held, sockets) = collect_held(tasks).await;
    let (seconds, usage) = window.close();
    drop(sockets);

    let mut report = report_for("idle", &target.ws_url, settings);
    report.setting("raw", raw);
    report.setting("source_addresses", target.source_address_count());
    report.operation("session opens", open_seconds, opens.clone());
    note_failed_opens(&mut report, &opens);
    note_held(&mut report, &held);
    report.figure("held_seconds", (seconds * 100.0).round() / 100.0);
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        let per_session = after.saturating_sub(before) as f64 * 1024.0 / opened.max(1) as f64;
        report.figure("server_rss_before_kib", before);
        report.figure("server_rss_after_kib", after);
        report.figure("server_rss_per_session_bytes", per_session.round());
    }
    report.usage = Some(usage);
    Ok(report)
}

/// Holds `socket` in a task of its own until `deadline` (see [`hold_until`]).
fn hold(socket: Socket, tally: Tally, deadline: Instant) -> tokio::task::JoinHandle<(Tally, Socket)> {
    tokio::spawn(hold_until(socket, tally, deadline))
}

/// Reads `socket` until `deadline`, skipping whatever arrives (reading is what answers the
/// server's heartbeat pings); one success if it is still open then, else the way it ended. The
/// socket comes back so the caller decides when it is dropped.
pub async fn hold_until(mut socket: Socket, mut tally: Tally, deadline: Instant) -> (Tally, Socket) {
    loop {
        match tokio::time::timeout_at(deadline.into(), socket.next()).await {
            Err(_) => {
                tally.count(1);
                break;
            }
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => {
                tally.error("closed");
                break;
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
    (tally, socket)
}

/// Says on stderr when the open-files limit is below what the run needs.
pub fn warn_about_open_files(sessions: usize) {
    if let Some(limit) = open_files_limit()
        && (limit as usize) < sessions + 100
    {
        eprintln!(
            "warning: open-files limit is {limit}, below {sessions} sessions: raise it with `ulimit -n` (load/README.md)"
        );
    }
}
