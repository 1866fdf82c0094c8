//! A scriptable OpenAI-compatible upstream on 127.0.0.1 for the metering tests: it streams chat
//! replies delta by delta at a chosen pace, reports usage or not, fails on demand, can hold every
//! stream open after its first delta until the test opens a gate, answers image generations, and
//! records each call: its body, and whether (and when) the client went away before the end.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::request_reader::read_request;
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Notify, watch};

/// How the upstream answers every chat call.
#[derive(Debug, Clone)]
pub struct Script {
    /// The reply, delta by delta.
    pub deltas: Vec<String>,
    /// The wait before each delta.
    pub pause: Duration,
    /// `(prompt_tokens, completion_tokens)` sent in a final usage chunk; `None`: no usage.
    pub usage: Option<(u64, u64)>,
    /// Answer this status (with an error body) instead of a stream.
    pub fail: Option<u16>,
    /// Hold every stream open after its first delta until [`Upstream::open_gate`].
    pub gated: bool,
}

impl Script {
    /// A reply of `deltas` sent at once, with `usage` reported.
    pub fn reply(deltas: &[&str], usage: Option<(u64, u64)>) -> Script {
        Script {
            deltas: deltas.iter().map(|d| (*d).to_owned()).collect(),
            pause: Duration::ZERO,
            usage,
            fail: None,
            gated: false,
        }
    }
}

/// One call the upstream received.
#[derive(Debug, Clone)]
pub struct Call {
    /// Its path.
    pub path: String,
    /// Its JSON body.
    pub body: Value,
    /// When the client closed its connection before the answer ended.
    pub went_away: Option<Instant>,
    /// Whether the whole answer was written.
    pub finished: bool,
}

#[derive(Default)]
struct Calls {
    list: Mutex<Vec<Call>>,
    changed: Notify,
}

impl Calls {
    fn update(&self, index: usize, change: impl FnOnce(&mut Call)) {
        change(&mut self.list.lock().unwrap_or_else(PoisonError::into_inner)[index]);
        self.changed.notify_waiters();
    }
}

/// The running upstream.
pub struct Upstream {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    calls: Arc<Calls>,
    gate: watch::Sender<bool>,
}

/// A PNG of one white pixel, what every image generation answers.
fn tiny_png() -> Vec<u8> {
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, 1, 1);
    encoder.set_color(png::ColorType::Rgb);
    encoder.write_header().unwrap().write_image_data(&[255, 255, 255]).unwrap();
    png
}

impl Upstream {
    /// Starts an upstream that answers every call by `script`.
    pub async fn start(script: Script) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("the upstream binds");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(Calls::default());
        let (gate, _) = watch::channel(false);
        let upstream = Upstream { base, calls: calls.clone(), gate: gate.clone() };
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (calls, script, gate) = (calls.clone(), script.clone(), gate.subscribe());
                tokio::spawn(async move {
                    let request = read_request(&mut socket).await;
                    let path = request.head.split(' ').nth(1).unwrap_or_default().to_owned();
                    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
                    let index = {
                        let mut list = calls.list.lock().unwrap_or_else(PoisonError::into_inner);
                        list.push(Call { path: path.clone(), body, went_away: None, finished: false });
                        list.len() - 1
                    };
                    calls.changed.notify_waiters();
                    let (mut read, mut write) = socket.into_split();
                    // The client going away is its end of the connection closing under the answer.
                    let went_away = async move {
                        let mut byte = [0u8; 64];
                        while matches!(read.read(&mut byte).await, Ok(n) if n > 0) {}
                    };
                    let answered = answer(&mut write, &path, &script, gate);
                    tokio::select! {
                        () = went_away => calls.update(index, |call| call.went_away = Some(Instant::now())),
                        written = answered => {
                            if written.is_ok() {
                                calls.update(index, |call| call.finished = true);
                            }
                            let _ = write.shutdown().await;
                        }
                    }
                });
            }
        });
        upstream
    }

    /// Lets every held stream go on to its end.
    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.list.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Waits until the calls satisfy `done` (within `limit`), and answers them.
    pub async fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&[Call]) -> bool) -> Vec<Call> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.calls.changed.notified();
            let calls = self.calls();
            if done(&calls) {
                return calls;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("the upstream did not see {what} within {limit:?}: {calls:?}");
            }
        }
    }
}

/// Writes the whole answer to one call.
async fn answer(
    write: &mut OwnedWriteHalf,
    path: &str,
    script: &Script,
    mut gate: watch::Receiver<bool>,
) -> std::io::Result<()> {
    if let Some(status) = script.fail {
        let body = r#"{"error":{"message":"the upstream failed on purpose"}}"#;
        let head = format!(
            "HTTP/1.1 {status} Failed\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        return write.write_all(format!("{head}{body}").as_bytes()).await;
    }
    if path.ends_with("/images/generations") {
        let encoded = base64::engine::general_purpose::STANDARD.encode(tiny_png());
        let body = json!({"created": 1, "data": [{"b64_json": encoded}]}).to_string();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        return write.write_all(format!("{head}{body}").as_bytes()).await;
    }
    write
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        .await?;
    for (n, delta) in script.deltas.iter().enumerate() {
        tokio::time::sleep(script.pause).await;
        let chunk = json!({"choices": [{"index": 0, "delta": {"content": delta}}]});
        write.write_all(format!("data: {chunk}\n\n").as_bytes()).await?;
        write.flush().await?;
        if n == 0 && script.gated {
            let _ = gate.wait_for(|open| *open).await;
        }
    }
    if let Some((prompt, completion)) = script.usage {
        let chunk =
            json!({"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}});
        write.write_all(format!("data: {chunk}\n\n").as_bytes()).await?;
    }
    write.write_all(b"data: [DONE]\n\n").await
}
