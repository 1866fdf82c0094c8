//! `chat`: charged chat round trips. Each session starts a chat, then sends `chat.send` and waits
//! for its `chat.done` (every delta in between is read and skipped), in a loop. `--resend` sends
//! each request twice with one `idempotency_key` and waits for both answers: the server
//! charges and answers once, and replays the stored reply for the second.

use serde_json::json;
use std::sync::Arc;

use super::{Window, create_chat, note_failed_opens, report_for, request_rounds};
use crate::cli::Settings;
use crate::report::Report;
use crate::session::{Target, register_users, tokens_of};

/// Registers the users, opens the sessions and measures.
pub async fn run(settings: &Settings, interval_ms: u64, resend: bool) -> Result<Report, String> {
    let target = Arc::new(Target::new(&settings.url, "/ws", settings.source_addresses, settings.sessions)?);
    let tokens = tokens_of(&register_users(&target.base_url, settings.users).await?);
    measure(settings, &target, &tokens, interval_ms, resend).await
}

/// Opens the sessions with `tokens`, starts one chat in each, and measures chat round trips.
pub async fn measure(
    settings: &Settings,
    target: &Arc<Target>,
    tokens: &[String],
    interval_ms: u64,
    resend: bool,
) -> Result<Report, String> {
    let (sockets, opens) = target.open_many(settings.sessions, tokens, "chat: opening sessions").await;
    let created =
        futures_util::future::join_all(sockets.into_iter().enumerate().map(|(n, mut socket)| async move {
            create_chat(&mut socket, &format!("create-{n}")).await.map(|chat_id| (socket, chat_id))
        }))
        .await;
    let mut sessions = Vec::with_capacity(created.len());
    for result in created {
        sessions.push(result.map_err(|code| format!("chat.create failed: {code}"))?);
    }
    if sessions.is_empty() {
        return Err(format!("no session opened: {:?}", opens.errors));
    }

    let window = Window::open("chat", settings.seconds, settings.server_pid);
    let total =
        request_rounds(&window, sessions, interval_ms, "chat.done", move |chat_id: &String, n, round| {
            chat_frames(chat_id, n, round, resend)
        })
        .await;
    let (seconds, usage) = window.close();
    let mut report = report_for("chat", &target.ws_url, settings);
    report.setting("interval_ms", interval_ms);
    report.setting("resend", resend);
    report.operation("chat round trips", seconds, total);
    note_failed_opens(&mut report, &opens);
    report.usage = Some(usage);
    Ok(report)
}

/// The frames of one chat request of session `n`, round `round`, and the ids to wait for.
pub fn chat_frames(chat_id: &str, n: usize, round: u64, resend: bool) -> (Vec<String>, Vec<String>) {
    let content = "hello load test";
    if !resend {
        let id = format!("s{n}-{round}");
        let frame = json!({"type": "chat.send", "id": id, "chat_id": chat_id, "content": content});
        return (vec![frame.to_string()], vec![id]);
    }
    let key = format!("load-{n}-{round}");
    let ids = vec![format!("s{n}-{round}-a"), format!("s{n}-{round}-b")];
    let frames = ids
        .iter()
        .map(|id| {
            json!({"type": "chat.send", "id": id, "chat_id": chat_id, "content": content, "idempotency_key": key})
                .to_string()
        })
        .collect();
    (frames, ids)
}
