//! `ping`: every session sends `ping` and waits for its `pong`, in a loop, for the window. With no
//! pause this is the saturation figure the `guard` compares chat against; with `--raw` it runs
//! against the bare echo server, where any text frame is a ping and its echo the pong. With
//! `--flood N`, one more session sends N invalid frames a second meanwhile.

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
pub async fn run(settings: &Settings, interval_ms: u64, raw: bool, flood: u64) -> Result<Report, String> {
    let target = Arc::new(Target::new(&settings.url, "/ws", settings.source_addresses, settings.sessions)?);
    let tokens =
        if raw { Vec::new() } else { tokens_of(&register_users(&target.base_url, settings.users).await?) };
    if flood == 0 {
        return measure(settings, &target, &tokens, interval_ms, raw).await;
    }
    let token = tokens.first().ok_or("--flood needs a Switchboard server (not --raw)")?;
    let flooder =
        target.open_with_hello(settings.sessions, token, Instant::now() + Duration::from_secs(30)).await?.0;
    let until = Instant::now() + Duration::from_secs(settings.seconds) + Duration::from_secs(5);
    let flooding = tokio::spawn(flood_with(flooder, flood, until));
    let mut report = measure(settings, &target, &tokens, interval_ms, raw).await?;
    let (seconds, sent, answered) = flooding.await.map_err(|_| "the flooder panicked")?;
    report.setting("flood", flood);
    report.figure("flood frames sent per second", (sent as f64 / seconds).round());
    report.figure("flood error frames read back", answered);
    Ok(report)
}

/// Sends `per_second` invalid frames a second on `socket` until `until`, reading what comes
/// back; answers the seconds it ran, the frames sent and the answers read.
async fn flood_with(socket: Socket, per_second: u64, until: Instant) -> (f64, u64, u64) {
    use futures_util::StreamExt;
    let (mut sink, mut stream) = socket.split();
    let reader = tokio::spawn(async move {
        let mut answered = 0u64;
        while let Ok(Some(Ok(_))) = tokio::time::timeout_at(until.into(), stream.next()).await {
            answered += 1;
        }
        answered
    });
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    let per_tick = per_second.div_ceil(100).max(1);
    let mut sent = 0u64;
    'flood: while Instant::now() < until - Duration::from_secs(5) {
        ticks.tick().await;
        for n in 0..per_tick {
            let frame = if n % 2 == 0 { "{not json" } else { r#"{"type":"no.such.type","id":"f"}"# };
            if sink.send(Message::text(frame)).await.is_err() {
                break 'flood;
            }
            sent += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let answered = reader.await.unwrap_or(0);
    (seconds, sent, answered)
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
