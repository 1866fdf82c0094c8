//! The scenarios, one file each, and what they share: the measured window (progress line plus
//! resource monitor), collecting the workers' tallies, and the request → answer round trip.

pub mod chat;
pub mod connect;
pub mod fanout;
pub mod guard;
pub mod idle;
pub mod image;
pub mod login;
pub mod mixed;
pub mod ping;
pub mod presence;
pub mod rest_auth;
pub mod slow;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use crate::cli::Settings;
use crate::progress::{Progress, Ticker};
use crate::report::Report;
use crate::session::{Frame, Socket, next_text};
use crate::tally::Tally;
use crate::usage::{Usage, UsageMonitor};

/// How long a worker may wait for the answer to a request sent just before the deadline.
pub const ANSWER_GRACE: Duration = Duration::from_secs(10);

/// The measured part of a run: from `open` to `close`, with the progress line and the server's
/// memory and CPU over exactly that window (set-up such as registering users is left out).
pub struct Window {
    /// The counters the workers bump.
    pub progress: Arc<Progress>,
    /// When the workers should stop starting new operations.
    pub deadline: Instant,
    started: Instant,
    monitor: Arc<UsageMonitor>,
    _ticker: Ticker,
}

impl Window {
    /// Opens a window of `seconds` labelled `label` on the progress line.
    pub fn open(label: &str, seconds: u64, server_pid: Option<u32>) -> Window {
        let progress = Progress::new(label);
        let monitor = Arc::new(UsageMonitor::start(server_pid));
        let ticker = crate::progress::show(&progress, Some(monitor.clone()));
        let started = Instant::now();
        Window {
            progress,
            deadline: started + Duration::from_secs(seconds),
            started,
            monitor,
            _ticker: ticker,
        }
    }

    /// A fresh tally that counts on this window's progress line.
    pub fn tally(&self) -> Tally {
        Tally::reporting_to(&self.progress)
    }

    /// Closes the window: how long it really lasted, seconds, and what it cost.
    pub fn close(self) -> (f64, Usage) {
        (self.started.elapsed().as_secs_f64(), self.monitor.finish())
    }
}

/// A report for `scenario` with the common settings noted.
pub fn report_for(scenario: &str, target: &str, settings: &Settings) -> Report {
    let mut report = Report::new(scenario, target);
    report.setting("sessions", settings.sessions);
    report.setting("users", settings.users);
    report.setting("seconds", settings.seconds);
    report
}

/// Runs one worker per session until `window` closes: each round sends the frames `request` makes
/// for (the session's state, its number, the round) and waits for an `answer` frame replying to
/// each id it gives, pausing `interval_ms` between rounds; answers the tallies added up.
pub async fn request_rounds<T, R>(
    window: &Window,
    sessions: Vec<(Socket, T)>,
    interval_ms: u64,
    answer: &'static str,
    request: R,
) -> Tally
where
    T: Send + 'static,
    R: Fn(&T, usize, u64) -> (Vec<String>, Vec<String>) + Clone + Send + 'static,
{
    let deadline = window.deadline;
    let tasks = sessions
        .into_iter()
        .enumerate()
        .map(|(n, (mut socket, state))| {
            let (mut tally, request) = (window.tally(), request.clone());
            tokio::spawn(async move {
                let mut round = 0u64;
                while Instant::now() < deadline {
                    round += 1;
                    let (frames, ids) = request(&state, n, round);
                    let until = deadline + ANSWER_GRACE;
                    if let Err(code) = round_trip(&mut socket, frames, &ids, answer, &mut tally, until).await
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
    collect(tasks).await
}

/// Waits for every worker and adds up their tallies.
pub async fn collect(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
    let mut total = Tally::new();
    for task in tasks {
        match task.await {
            Ok(tally) => total.merge(&tally),
            Err(_) => total.error("worker_panicked"),
        }
    }
    total
}

/// Waits for every holding worker, adds up their tallies, and hands back their sockets, so the
/// window can close before thousands of sockets are dropped (closing them costs seconds of
/// kernel time that is no part of holding them).
pub async fn collect_held(tasks: Vec<tokio::task::JoinHandle<(Tally, Socket)>>) -> (Tally, Vec<Socket>) {
    let mut total = Tally::new();
    let mut sockets = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok((tally, socket)) => {
                total.merge(&tally);
                sockets.push(socket);
            }
            Err(_) => total.error("worker_panicked"),
        }
    }
    (total, sockets)
}

/// Notes sessions that failed to open, by code, as figures of the report.
pub fn note_failed_opens(report: &mut Report, opens: &Tally) {
    report.figure("sessions_opened", opens.ok);
    if opens.failed() > 0 {
        report.figure("sessions_failed_to_open", serde_json::json!(opens.errors));
    }
}

/// Notes how many held sessions were still open at the end, and how the others ended.
pub fn note_held(report: &mut Report, held: &Tally) {
    report.figure("sessions_open_at_end", held.ok);
    if held.failed() > 0 {
        report.figure("sessions_lost_while_held", serde_json::json!(held.errors));
    }
}

/// Sends `frames`, then reads until every request id in `ids` has its `done_kind` frame or an
/// error. All done: one timed success. Errors: counted by code, and a `rate_limited` one's
/// `retry_after_ms` is waited out. `Err` means the session is gone (closed or timed out).
pub async fn round_trip(
    socket: &mut Socket,
    frames: Vec<String>,
    ids: &[String],
    done_kind: &str,
    tally: &mut Tally,
    until: Instant,
) -> Result<(), String> {
    let started = Instant::now();
    for frame in frames {
        socket.send(Message::text(frame)).await.map_err(|_| "closed".to_owned())?;
    }
    let mut waiting: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut failed = false;
    let mut wait_ms = 0;
    while !waiting.is_empty() {
        let text = next_text(socket, until).await?;
        let frame = Frame::parse(&text);
        // Other sessions of the same user push their own chat frames here too; only answers to
        // this session's requests matter, and of those only the final one or an error.
        let Some(position) = waiting.iter().position(|id| frame.answers(id)) else { continue };
        if frame.kind == done_kind {
            waiting.remove(position);
        } else if frame.kind == "error" {
            tally.error(frame.code.as_deref().unwrap_or("error"));
            wait_ms = wait_ms.max(frame.retry_after_ms.unwrap_or(0));
            failed = true;
            waiting.remove(position);
        }
    }
    if !failed {
        tally.success(started.elapsed().as_micros() as u64);
    } else if wait_ms > 0 {
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    }
    Ok(())
}

/// Starts a chat on `socket` and returns its id.
pub async fn create_chat(socket: &mut Socket, request_id: &str) -> Result<String, String> {
    let frame = serde_json::json!({"type": "chat.create", "id": request_id, "title": "load"});
    socket.send(Message::text(frame.to_string())).await.map_err(|_| "closed".to_owned())?;
    let until = Instant::now() + ANSWER_GRACE;
    loop {
        let text = next_text(socket, until).await?;
        let frame = Frame::parse(&text);
        if !frame.answers(request_id) {
            continue;
        }
        if frame.kind == "error" {
            return Err(frame.code.unwrap_or_else(|| "error".to_owned()));
        }
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|_| "bad_json".to_owned())?;
        return value["chat"]["id"].as_str().map(str::to_owned).ok_or_else(|| "no_chat_id".to_owned());
    }
}

/// Sleeps `interval_ms` (nothing when 0), but never past `deadline`, so a long pause does not
/// stretch the measured window.
pub async fn pause(interval_ms: u64, deadline: Instant) {
    if interval_ms > 0 {
        let wake = (Instant::now() + Duration::from_millis(interval_ms)).min(deadline);
        tokio::time::sleep_until(wake.into()).await;
    }
}
