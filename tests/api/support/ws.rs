//! A WebSocket client for the black-box tests (tokio-tungstenite), speaking the JSON protocol.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use super::app::TestApp;

/// How long a test waits for one frame before failing.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// An open WebSocket connection.
pub struct WsClient {
    /// The raw stream, for tests that need frames the helpers do not cover.
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The `hello` frame.
    pub hello: Value,
}

/// How an upgrade was refused.
#[derive(Debug)]
pub struct Refused {
    /// HTTP status of the refusal.
    pub status: u16,
    /// Body of the refusal.
    pub body: String,
}

impl TestApp {
    /// `ws://127.0.0.1:<port>/ws` plus `query`.
    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://127.0.0.1:{}/ws{query}", self.port)
    }

    /// Connects with `Authorization: Bearer <token>` (JWT or API key) and reads `hello`.
    pub async fn connect_ws(&self, token: &str) -> WsClient {
        self.try_connect_ws("", &[("authorization", &format!("Bearer {token}"))])
            .await
            .expect("upgrade accepted")
    }

    /// Connects with a query string and headers; `Err` carries the HTTP refusal.
    pub async fn try_connect_ws(&self, query: &str, headers: &[(&str, &str)]) -> Result<WsClient, Refused> {
        WsClient::try_connect(&self.ws_url(query), headers).await
    }
}

impl WsClient {
    /// Connects to `url` with `headers` and reads `hello`; `Err` carries the HTTP refusal.
    pub async fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<WsClient, Refused> {
        let mut request = url.into_client_request().unwrap();
        for (name, value) in headers {
            let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
            request.headers_mut().insert(name, HeaderValue::from_str(value).unwrap());
        }
        match connect_async(request).await {
            Ok((stream, _)) => {
                let mut client = WsClient { stream, hello: Value::Null };
                client.hello = client.recv().await;
                assert_eq!(client.hello["type"], "hello", "first frame is hello");
                Ok(client)
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(Refused {
                status: response.status().as_u16(),
                body: response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default(),
            }),
            Err(e) => panic!("WebSocket connect failed: {e}"),
        }
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) {
        self.stream.send(Message::text(frame.to_string())).await.expect("send frame");
    }

    /// The next text frame as JSON (pings are answered by tungstenite; pongs skipped).
    pub async fn recv(&mut self) -> Value {
        // One deadline for the text frame: heartbeat pings must not keep the wait going.
        let deadline = tokio::time::Instant::now() + FRAME_TIMEOUT;
        loop {
            let next =
                tokio::time::timeout_at(deadline, self.stream.next()).await.expect("a frame within 10 s");
            match next.expect("connection open").expect("frame") {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Frames until one of type `kind` (returned); the others are returned too, in order.
    pub async fn recv_until(&mut self, kind: &str) -> (Value, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return (frame, before);
            }
            before.push(frame);
        }
    }

    /// Sends a request and returns the first frame whose `reply_to` is `id`.
    pub async fn request(&mut self, id: &str, mut frame: Value) -> Value {
        frame["id"] = Value::String(id.to_owned());
        self.send(frame).await;
        loop {
            let reply = self.recv().await;
            if reply["reply_to"] == id {
                return reply;
            }
        }
    }

    /// Waits for the close frame and returns its code (None when the connection just ended).
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(FRAME_TIMEOUT, self.stream.next()).await.expect("closed within 10 s") {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }
}
