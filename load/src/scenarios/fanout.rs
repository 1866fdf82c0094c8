//! `fanout`: one user with many sessions. The first session sends chat messages, keeping
//! `--in-flight` of them outstanding; the server pushes every frame of each exchange
//! (`chat.message`, the deltas, `chat.done`, `credits.updated`) to every session of the user.
//! Every session counts the frames it receives (deliveries/s), and times each `chat.done` from
//! the moment its `chat.send` left the sender (delivery delay). `--presence` runs the admin
//! presence variant in presence.rs instead.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{Window, collect, create_chat, note_failed_opens, pause, report_for};
use crate::cli::Settings;
use crate::report::Report;
use crate::session::{Frame, Target, next_text, register_users, tokens_of};
use crate::tally::Tally;

/// When each message (by its number) left the sender.
type SentAt = Arc<RwLock<HashMap<u64, Instant>>>;

/// Opens `settings.sessions` sessions of one user and measures deliveries.
pub async fn run(settings: &Settings, in_flight: usize, interval_ms: u64) -> Result<Report, String> {
    let target = Arc::new(Target::new(&settings.url, "/ws", settings.source_addresses, settings.sessions)?);
    let tokens = tokens_of(&register_users(&target.base_url, 1).await?);
    let (mut sockets, opens) = target.open_many(settings.sessions, &tokens, "fanout: opening sessions").await;
    if sockets.is_empty() {
        return Err(format!("no session opened: {:?}", opens.errors));
    }
    let mut sender = sockets.remove(0);
    let chat_id = create_chat(&mut sender, "create").await.map_err(|code| format!("chat.create: {code}"))?;
    let sent_at: SentAt = Arc::default();
    let slots = Arc::new(Semaphore::new(in_flight.max(1)));

    let window = Window::open("fanout: deliveries", settings.seconds, settings.server_pid);
    let deadline = window.deadline;
    let (mut sink, sender_stream) = sender.split();
    let sender_reader = tokio::spawn(read_deliveries(
        sender_stream,
        window.tally(),
        deadline,
        sent_at.clone(),
        Some(slots.clone()),
    ));
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|socket| {
            let reader = read_deliveries(socket, window.tally(), deadline, sent_at.clone(), None);
            tokio::spawn(async move { reader.await.0 })
        })
        .collect();
    let sending = {
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            let mut number = 0u64;
            while let Ok(Ok(slot)) = tokio::time::timeout_at(deadline.into(), slots.acquire()).await {
                // The slot comes back when the sender's reader sees this message's chat.done.
                slot.forget();
                number += 1;
                let id = format!("f{number}");
                let frame = json!({"type": "chat.send", "id": id, "chat_id": chat_id, "content": format!("fanout {id}")});
                sent_at.write().expect("sent_at lock").insert(number, Instant::now());
                if sink.send(Message::text(frame.to_string())).await.is_err() {
                    break;
                }
                pause(interval_ms, deadline).await;
            }
            sink
        })
    };
    let mut deliveries = collect(readers).await;
    let (sender_deliveries, sends) = sender_reader.await.map_err(|_| "sender reader panicked")?;
    deliveries.merge(&sender_deliveries);
    let _sink = sending.await.map_err(|_| "sender panicked")?;
    let (seconds, usage) = window.close();

    let mut report = report_for("fanout", &target.ws_url, settings);
    report.setting("users", 1);
    report.setting("in_flight", in_flight);
    report.setting("interval_ms", interval_ms);
    let frames_per_message = deliveries.ok as f64 / sends.ok.max(1) as f64;
    report.operation("deliveries (frames, all sessions)", seconds, deliveries);
    report.operation("messages sent (send -> own chat.done)", seconds, sends);
    report.figure("frames_delivered_per_message", (frames_per_message * 10.0).round() / 10.0);
    report.figure("delivery_latency_is", "chat.send leaving the sender -> chat.done at each session");
    note_failed_opens(&mut report, &opens);
    report.usage = Some(usage);
    Ok(report)
}

/// Counts every text frame until `deadline` and times each `chat.done`. The sender's reader
/// (given `slots`) also frees a slot and times the round trip when its own message completes.
async fn read_deliveries<S>(
    mut stream: S,
    mut deliveries: Tally,
    deadline: Instant,
    sent_at: SentAt,
    slots: Option<Arc<Semaphore>>,
) -> (Tally, Tally)
where
    S: futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
{
    let mut sends = Tally::new();
    loop {
        let text = match next_text(&mut stream, deadline).await {
            Ok(text) => text,
            Err(code) if code == "timeout" => break,
            Err(code) => {
                deliveries.error(&code);
                break;
            }
        };
        deliveries.count(1);
        let frame = Frame::parse(&text);
        if frame.kind != "chat.done" && frame.kind != "error" {
            continue;
        }
        let Some(number) = message_number(&frame, &text) else { continue };
        let Some(sent) = sent_at.read().expect("sent_at lock").get(&number).copied() else { continue };
        let micros = sent.elapsed().as_micros() as u64;
        if frame.kind == "chat.done" {
            deliveries.time(micros);
        }
        if let Some(slots) = &slots {
            match frame.code.as_deref() {
                None => sends.success(micros),
                Some(code) => sends.error(code),
            }
            slots.add_permits(1);
        }
    }
    (deliveries, sends)
}

/// Which message a `chat.done` (or error) belongs to: its `reply_to` ("f17"), or, on copies that
/// do not carry it, the number at the end of the echoed content ("You said: fanout f17").
fn message_number(frame: &Frame, text: &str) -> Option<u64> {
    if let Some(reply_to) = &frame.reply_to {
        return reply_to.strip_prefix('f')?.parse().ok();
    }
    let value: Value = serde_json::from_str(text).ok()?;
    let content = value["message"]["content"].as_str()?;
    content.rsplit(' ').next()?.strip_prefix('f')?.parse().ok()
}
