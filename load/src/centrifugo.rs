//! The Centrifugo side of load/compare.sh: the same three measurements as for Switchboard
//! (connects/s, round trips/s, idle memory per connection) in Centrifugo's JSON client protocol
//! over WebSocket (`/connection/websocket`). Each frame carries newline-separated JSON commands
//! or replies; a client authenticates with a `connect` command holding an HS256 JWT, subscribes
//! with `subscribe`, publishes with `publish`; the server's ping is an empty `{}` that the client
//! answers with `{}`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::SinkExt;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_tungstenite::tungstenite::Message;

use crate::cli::{CentrifugoArgs, Settings};
use crate::report::Report;
use crate::scenarios::connect::close;
use crate::scenarios::idle::warn_about_open_files;
use crate::scenarios::{
    ANSWER_GRACE, Window, collect, collect_held, note_failed_opens, note_held, pause, report_for,
};
use crate::session::{Socket, Target, next_text, open_all};
use crate::tally::Tally;
use crate::usage::rss_kib;

/// A signed HS256 connection token for user `subject`, valid one hour.
pub fn connection_token(secret: &str, subject: &str) -> String {
    let expires = SystemTime::now().duration_since(UNIX_EPOCH).map(|now| now.as_secs()).unwrap_or(0) + 3600;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(json!({"sub": subject, "exp": expires}).to_string());
    let signed = format!("{header}.{claims}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// The next replies from the server, answering any ping (`{}`) on the way.
async fn next_replies(socket: &mut Socket, until: Instant) -> Result<Vec<Value>, String> {
    loop {
        let text = next_text(socket, until).await?;
        let mut replies = Vec::new();
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            if line.trim() == "{}" {
                socket.send(Message::text("{}")).await.map_err(|_| "closed".to_owned())?;
                continue;
            }
            replies.push(serde_json::from_str(line).map_err(|_| "bad_json".to_owned())?);
        }
        if !replies.is_empty() {
            return Ok(replies);
        }
    }
}

/// Sends `command` (which carries `"id": id`) and waits for the reply with that id.
async fn request(socket: &mut Socket, id: u64, command: Value, until: Instant) -> Result<Value, String> {
    socket.send(Message::text(command.to_string())).await.map_err(|_| "closed".to_owned())?;
    loop {
        for reply in next_replies(socket, until).await? {
            if reply["id"].as_u64() != Some(id) {
                continue;
            }
            if let Some(code) = reply["error"]["code"].as_u64() {
                return Err(format!("centrifugo_{code}"));
            }
            return Ok(reply);
        }
    }
}

/// Opens a connection and authenticates it with `token`.
async fn open(target: &Target, index: usize, token: &str, until: Instant) -> Result<Socket, String> {
    let mut socket = target.open(index, None).await?;
    request(&mut socket, 1, json!({"id": 1, "connect": {"token": token, "name": "switchboard-load"}}), until)
        .await?;
    Ok(socket)
}

/// The target and one signed token per user.
fn prepare(
    arguments: &CentrifugoArgs,
    settings: &Settings,
    connections: usize,
) -> Result<(Arc<Target>, Arc<Vec<String>>), String> {
    let target = Target::new(&settings.url, "/connection/websocket", settings.source_addresses, connections)?;
    let tokens = (0..settings.users)
        .map(|user| connection_token(&arguments.hmac_secret, &format!("load-user-{user}")))
        .collect();
    Ok((Arc::new(target), Arc::new(tokens)))
}

/// `centrifugo-connect`: loops of open + connect command + close (defaults: 50 loops, 10 users).
pub async fn connects(arguments: &CentrifugoArgs) -> Result<Report, String> {
    let settings = arguments.common.settings(50, Some(10), 10);
    let (target, tokens) = prepare(arguments, &settings, settings.sessions * 4)?;
    let window = Window::open("centrifugo-connect", settings.seconds, settings.server_pid);
    let loops = settings.sessions;
    let tasks: Vec<_> = (0..loops)
        .map(|n| {
            let (target, tokens, deadline, mut tally) =
                (target.clone(), tokens.clone(), window.deadline, window.tally());
            tokio::spawn(async move {
                let mut round = 0;
                while Instant::now() < deadline {
                    let index = n + round * loops;
                    round += 1;
                    let started = Instant::now();
                    match open(&target, index, &tokens[index % tokens.len()], started + ANSWER_GRACE).await {
                        Ok(socket) => {
                            tally.success(started.elapsed().as_micros() as u64);
                            close(socket).await;
                        }
                        Err(code) => {
                            tally.error(&code);
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
    let mut report = report_for("centrifugo-connect", &target.ws_url, &settings);
    report.operation("authenticated connects (open + connect + close)", seconds, total);
    report.usage = Some(usage);
    Ok(report)
}

/// Opens `count` authenticated connections (see [`open_all`]).
async fn open_many(
    target: &Arc<Target>,
    tokens: &Arc<Vec<String>>,
    count: usize,
    label: &str,
) -> (Vec<Socket>, Tally) {
    open_all(count, label, |index| {
        let (target, tokens) = (target.clone(), tokens.clone());
        async move {
            let until = Instant::now() + Duration::from_secs(30);
            open(&target, index, &tokens[index % tokens.len()], until).await
        }
    })
    .await
}

/// `centrifugo-ping`: each connection subscribes to its own channel and publishes to it in a
/// loop; a round trip ends when its own publication comes back (defaults: 1,000 sessions, 20 users).
pub async fn round_trips(arguments: &CentrifugoArgs) -> Result<Report, String> {
    let settings = arguments.common.settings(1000, Some(20), 10);
    let (target, tokens) = prepare(arguments, &settings, settings.sessions)?;
    let (sockets, opens) =
        open_many(&target, &tokens, settings.sessions, "centrifugo-ping: connecting").await;
    let mut subscribed = Vec::with_capacity(sockets.len());
    for (n, mut socket) in sockets.into_iter().enumerate() {
        let channel = format!("{}:s{n}", arguments.namespace);
        let subscribe = json!({"id": 2, "subscribe": {"channel": channel}});
        request(&mut socket, 2, subscribe, Instant::now() + ANSWER_GRACE)
            .await
            .map_err(|code| format!("subscribe: {code}"))?;
        subscribed.push((socket, channel));
    }
    let window = Window::open("centrifugo-ping", settings.seconds, settings.server_pid);
    let (deadline, interval_ms) = (window.deadline, arguments.interval_ms);
    let tasks: Vec<_> = subscribed
        .into_iter()
        .map(|(mut socket, channel)| {
            let mut tally = window.tally();
            tokio::spawn(async move {
                let mut id = 2u64;
                while Instant::now() < deadline {
                    id += 1;
                    if let Err(code) =
                        publish_and_wait(&mut socket, &channel, id, &mut tally, deadline + ANSWER_GRACE).await
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
    let mut report = report_for("centrifugo-ping", &target.ws_url, &settings);
    report.setting("interval_ms", interval_ms);
    report.operation("round trips (publish -> own publication)", seconds, total);
    note_failed_opens(&mut report, &opens);
    report.usage = Some(usage);
    Ok(report)
}

/// Publishes `{"n": id}` to `channel` and reads until that publication arrives.
async fn publish_and_wait(
    socket: &mut Socket,
    channel: &str,
    id: u64,
    tally: &mut Tally,
    until: Instant,
) -> Result<(), String> {
    let started = Instant::now();
    let publish = json!({"id": id, "publish": {"channel": channel, "data": {"n": id}}});
    socket.send(Message::text(publish.to_string())).await.map_err(|_| "closed".to_owned())?;
    loop {
        for reply in next_replies(socket, until).await? {
            if reply["id"].as_u64() == Some(id)
                && let Some(code) = reply["error"]["code"].as_u64()
            {
                tally.error(&format!("centrifugo_{code}"));
                return Ok(());
            }
            if reply["push"]["pub"]["data"]["n"].as_u64() == Some(id) {
                tally.success(started.elapsed().as_micros() as u64);
                return Ok(());
            }
        }
    }
}

/// `centrifugo-idle`: idle authenticated connections and the server's memory per connection,
/// measured as `idle` does it (defaults: 10,000 connections, 20 users, held 10 s).
pub async fn idle(arguments: &CentrifugoArgs) -> Result<Report, String> {
    let settings = arguments.common.settings(10_000, Some(20), 10);
    warn_about_open_files(settings.sessions);
    let (target, tokens) = prepare(arguments, &settings, settings.sessions)?;
    let (warm, _) = open_many(&target, &tokens, 50.min(settings.sessions), "centrifugo-idle: warm-up").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = settings.server_pid.and_then(rss_kib);
    let opening = Instant::now();
    let (sockets, opens) = open_many(&target, &tokens, settings.sessions, "centrifugo-idle: opening").await;
    let open_seconds = opening.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = settings.server_pid.and_then(rss_kib);
    let opened = sockets.len() as u64;
    let window = Window::open("centrifugo-idle: holding", settings.seconds, settings.server_pid);
    let tasks: Vec<_> = sockets
        .into_iter()
        .chain(warm)
        .map(|mut socket| {
            let (mut tally, deadline) = (window.tally(), window.deadline);
            tokio::spawn(async move {
                // Reading answers the server's pings, which keeps the connection alive.
                loop {
                    match next_replies(&mut socket, deadline).await {
                        Ok(_) => continue,
                        Err(code) if code == "timeout" => tally.count(1),
                        Err(code) => tally.error(&code),
                    }
                    return (tally, socket);
                }
            })
        })
        .collect();
    let (held, sockets) = collect_held(tasks).await;
    let (seconds, usage) = window.close();
    drop(sockets);
    let mut report = report_for("centrifugo-idle", &target.ws_url, &settings);
    report.operation("connection opens", open_seconds, opens.clone());
    note_failed_opens(&mut report, &opens);
    note_held(&mut report, &held);
    report.figure("held_seconds", (seconds * 100.0).round() / 100.0);
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        report.figure("server_rss_before_kib", before);
        report.figure("server_rss_after_kib", after);
        report.figure(
            "server_rss_per_session_bytes",
            (after.saturating_sub(before) as f64 * 1024.0 / opened.max(1) as f64).round(),
        );
    }
    report.usage = Some(usage);
    Ok(report)
}
