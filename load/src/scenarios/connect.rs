//! `connect`: authenticated connects per second. Each loop opens a session, waits for its
//! `hello` (the server has checked the token, joined presence and answered), closes it with a
//! close handshake, and starts again. The latency is from the TCP connect to the `hello`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::{ANSWER_GRACE, Window, collect, report_for};
use crate::cli::Settings;
use crate::report::Report;
use crate::session::{Socket, Target, register_users, tokens_of};

/// How long a closing session may take to finish its close handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Runs `settings.sessions` connect loops (raw: no credentials, no hello).
pub async fn run(settings: &Settings, raw: bool) -> Result<Report, String> {
    // Each loop holds one socket at a time, but closed ones linger briefly, so allow for more.
    let target =
        Arc::new(Target::new(&settings.url, "/ws", settings.source_addresses, settings.sessions * 4)?);
    let tokens = Arc::new(if raw {
        Vec::new()
    } else {
        tokens_of(&register_users(&target.base_url, settings.users).await?)
    });
    let window = Window::open("connect", settings.seconds, settings.server_pid);
    let loops = settings.sessions;
    let tasks: Vec<_> = (0..loops)
        .map(|n| {
            let (target, tokens, deadline) = (target.clone(), tokens.clone(), window.deadline);
            let mut tally = window.tally();
            tokio::spawn(async move {
                let mut round = 0;
                while Instant::now() < deadline {
                    let index = n + round * loops;
                    round += 1;
                    let started = Instant::now();
                    let opened = match tokens.get(index % tokens.len().max(1)) {
                        Some(token) => {
                            target.open_with_hello(index, token, started + ANSWER_GRACE).await.map(|(s, _)| s)
                        }
                        None => target.open(index, None).await,
                    };
                    match opened {
                        Ok(socket) => {
                            tally.success(started.elapsed().as_micros() as u64);
                            close(socket).await;
                        }
                        Err(code) => {
                            tally.error(&code);
                            // A refused connect returns at once; do not spin on it.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let total = collect(tasks).await;
    let (seconds, usage) = window.close();
    let mut report = report_for("connect", &target.ws_url, settings);
    report.setting("raw", raw);
    report.setting("source_addresses", target.source_address_count());
    report.operation(
        if raw { "connects" } else { "authenticated connects (open + hello + close)" },
        seconds,
        total,
    );
    report.usage = Some(usage);
    Ok(report)
}

/// Sends a close frame, reads until the server's close frame answers it, and drops the
/// connection. Waiting for the server to end the TCP connection instead would time the server's
/// linger, not the close: Switchboard (actix) keeps it about a second after the handshake, until
/// the client goes. The client's TIME_WAIT this leaves is reused at once on loopback
/// (net.ipv4.tcp_tw_reuse = 2, the default).
pub async fn close(mut socket: Socket) {
    let _ = socket.close(None).await;
    let until = tokio::time::Instant::now() + CLOSE_GRACE;
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(until, socket.next()).await {
        if message.is_close() {
            break;
        }
    }
}
