//! Fake OpenAI-compatible services on 127.0.0.1: an assistant that streams a fixed reply in two
//! deltas after a chosen delay (or answers 500 when the newest message contains "fail"), and a
//! server that answers every request with bytes a test chooses, recording what it was sent.

use std::time::Duration;

use super::request_reader::{Recorded, read_request};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What the fake assistant answers, in two deltas.
pub const REPLY: [&str; 2] = ["stored ", "whole"];

/// Starts the fake assistant; its base URL (for `ASSISTANT_URL`).
pub async fn fake_assistant(delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("fake assistant binds");
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let request = read_request(&mut socket).await;
                let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
                let last = body["messages"].as_array().and_then(|m| m.last()).cloned().unwrap_or_default();
                tokio::time::sleep(delay).await;
                let answer = if last["content"].as_str().is_some_and(|c| c.contains("fail")) {
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .into()
                } else {
                    let mut sse = String::from(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n",
                    );
                    for delta in REPLY {
                        sse += &format!("data: {}\n\n", json!({"choices": [{"delta": {"content": delta}}]}));
                    }
                    sse + "data: [DONE]\n\n"
                };
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    base
}

/// A fake HTTP/1.1 server on 127.0.0.1 that answers every request with `parts` (written one at a
/// time) and then closes the connection.
pub struct FakeUpstream {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The requests, in arrival order.
    pub requests: mpsc::UnboundedReceiver<Recorded>,
}

/// Starts a [`FakeUpstream`] answering every request with `parts`.
pub async fn fake_upstream(parts: Vec<Vec<u8>>) -> FakeUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("fake upstream binds");
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (sender, requests) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (sender, parts) = (sender.clone(), parts.clone());
            tokio::spawn(async move {
                let _ = sender.send(read_request(&mut socket).await);
                for part in parts {
                    if socket.write_all(&part).await.is_err() {
                        return;
                    }
                    let _ = socket.flush().await;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let _ = socket.shutdown().await;
            });
        }
    });
    FakeUpstream { base, requests }
}

/// The head of a streamed (server-sent events) answer.
pub const SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";

/// One server-sent event carrying a chat delta of `text`.
pub fn sse_delta(text: &str) -> Vec<u8> {
    format!("data: {}\n\n", json!({"choices": [{"delta": {"content": text}}]})).into_bytes()
}

/// A 500 answer with an OpenAI-style error body.
pub fn server_error() -> Vec<Vec<u8>> {
    let body = r#"{"error":{"message":"upstream exploded"}}"#;
    vec![
        format!(
            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    ]
}
