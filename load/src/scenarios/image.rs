//! `image`: charged image round trips, `image.generate` until its `image.created`. With the
//! built-in generator the server draws a real PNG, so this measures that work as well as the
//! credit charge and the fan-out of the result.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::{ANSWER_GRACE, Window, collect, note_failed_opens, pause, report_for, round_trip};
use crate::cli::Settings;
use crate::report::Report;
use crate::session::{Target, register_users, tokens_of};

/// Registers the users, opens the sessions and measures image round trips of `size` pixels.
pub async fn run(settings: &Settings, interval_ms: u64, size: u32) -> Result<Report, String> {
    let target = Arc::new(Target::new(&settings.url, "/ws", settings.source_addresses, settings.sessions)?);
    let tokens = tokens_of(&register_users(&target.base_url, settings.users).await?);
    let (sockets, opens) = target.open_many(settings.sessions, &tokens, "image: opening sessions").await;
    if sockets.is_empty() {
        return Err(format!("no session opened: {:?}", opens.errors));
    }
    let window = Window::open("image", settings.seconds, settings.server_pid);
    let deadline = window.deadline;
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(n, mut socket)| {
            let mut tally = window.tally();
            tokio::spawn(async move {
                let mut round = 0u64;
                while Instant::now() < deadline {
                    round += 1;
                    let id = format!("s{n}-{round}");
                    let frame = json!({
                        "type": "image.generate", "id": id,
                        "prompt": format!("load test {n} {round}"), "width": size, "height": size,
                    });
                    let until = deadline + ANSWER_GRACE;
                    let ids = [id];
                    let frames = vec![frame.to_string()];
                    if let Err(code) =
                        round_trip(&mut socket, frames, &ids, "image.created", &mut tally, until).await
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
    let mut report = report_for("image", &target.ws_url, settings);
    report.setting("interval_ms", interval_ms);
    report.setting("size", size);
    report.operation("image round trips", seconds, total);
    note_failed_opens(&mut report, &opens);
    report.usage = Some(usage);
    Ok(report)
}
