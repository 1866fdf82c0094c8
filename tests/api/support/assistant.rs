//! A fake OpenAI-compatible assistant on 127.0.0.1: it streams a fixed reply in two deltas after
//! a chosen delay, or answers 500 when the newest message contains "fail".

use std::time::Duration;

use serde_json::{Value, json};
use switchboard::test_support::read_request;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

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
