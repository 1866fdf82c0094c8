//! `image`: charged image round trips, `image.generate` until its `image.created`. With the
//! built-in generator the server draws a real PNG, so this measures that work as well as the
//! credit charge and the fan-out of the result.

use serde_json::json;
use std::sync::Arc;

use super::{Window, note_failed_opens, report_for, request_rounds};
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
    let sessions = sockets.into_iter().map(|socket| (socket, ())).collect();
    let total = request_rounds(&window, sessions, interval_ms, "image.created", move |_: &(), n, round| {
        let id = format!("s{n}-{round}");
        let frame = json!({
            "type": "image.generate", "id": id,
            "prompt": format!("load test {n} {round}"), "width": size, "height": size,
        });
        (vec![frame.to_string()], vec![id])
    })
    .await;
    let (seconds, usage) = window.close();
    let mut report = report_for("image", &target.ws_url, settings);
    report.setting("interval_ms", interval_ms);
    report.setting("size", size);
    report.operation("image round trips", seconds, total);
    note_failed_opens(&mut report, &opens);
    report.usage = Some(usage);
    Ok(report)
}
