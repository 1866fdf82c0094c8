//! The chat assistant behind `chat.send`: the built-in echo assistant and an OpenAI-compatible streaming
//! client.
//!
//! Both yield the reply as a stream of text deltas, so the WebSocket layer can forward each one as a
//! `chat.delta` frame as soon as it arrives and store the concatenation when the stream ends.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// How long connecting to the assistant may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the assistant may stay silent, before its headers and between chunks of its reply.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// A server that never sends a newline must not make us buffer without bound.
const MAX_LINE_BYTES: usize = 1024 * 1024;
/// Upstream error messages are quoted only this far, to keep log lines and errors short.
const MAX_QUOTED_CHARS: usize = 200;

/// Who wrote one turn of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TurnRole {
    /// The person chatting.
    User,
    /// The assistant.
    Assistant,
}

/// One message of a conversation, as the assistant sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatTurn {
    /// Who wrote it.
    pub role: TurnRole,
    /// What was written.
    pub content: String,
}

/// The reply as text deltas in order; the full reply is their concatenation.
pub type DeltaStream = BoxStream<'static, Result<String, AssistantError>>;

/// Why a reply could not be produced; messages never contain the API key.
#[derive(Debug, thiserror::Error)]
pub enum AssistantError {
    /// The request could not be sent (connection refused, DNS, TLS...).
    #[error("could not reach the assistant")]
    Request(#[source] reqwest::Error),
    /// The assistant answered with a non-2xx status.
    #[error("the assistant answered with HTTP status {0}")]
    Status(reqwest::StatusCode),
    /// Reading the streamed reply failed part-way.
    #[error("reading the assistant's reply failed")]
    Stream(#[source] reqwest::Error),
    /// The reply was not the Server-Sent Events the protocol promises.
    #[error("the assistant's reply was malformed: {0}")]
    Protocol(String),
    /// The reply ended without `data: [DONE]`, so it may be cut short.
    #[error("the assistant's reply ended before it was complete")]
    Truncated,
    /// The assistant stayed silent for too long.
    #[error("the assistant did not answer within {0:?}")]
    Timeout(Duration),
}

/// Something that writes the next assistant turn of a conversation.
#[async_trait]
pub trait Assistant: Send + Sync + 'static {
    /// Starts the reply to `history` (oldest turn first); the stream yields its text deltas in order.
    async fn reply(&self, history: Vec<ChatTurn>) -> Result<DeltaStream, AssistantError>;

    /// How many of the chat's latest messages the assistant wants as `history` (the new user
    /// message included): reading fewer is cheaper, and one is enough for an assistant that
    /// answers only the last message.
    fn context_messages(&self) -> i64 {
        20
    }
}

/// The OpenAI-compatible client when `ASSISTANT_URL` is set, else the echo assistant.
pub fn from_config(config: &Config) -> Arc<dyn Assistant> {
    match &config.assistant_url {
        Some(url) => Arc::new(OpenAiAssistant::new(
            url,
            config.assistant_model.clone(),
            config.assistant_api_key.clone(),
        )),
        None => Arc::new(EchoAssistant),
    }
}

/// The default assistant: answers "You said: <last user message>" word by word, without any network.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoAssistant;

#[async_trait]
impl Assistant for EchoAssistant {
    async fn reply(&self, history: Vec<ChatTurn>) -> Result<DeltaStream, AssistantError> {
        let last_user_message =
            history.iter().rev().find(|turn| turn.role == TurnRole::User).map_or("", |turn| &turn.content);
        let words = split_into_word_deltas(&format!("You said: {last_user_message}"));
        // Word by word for short replies, at most ECHO_DELTAS pieces for long ones: a stream
        // like a model's, without flooding sockets with thousands of tiny frames.
        let per_delta = words.len().div_ceil(ECHO_DELTAS).max(1);
        let deltas: Vec<String> = words.chunks(per_delta).map(|chunk| chunk.concat()).collect();
        Ok(stream::iter(deltas.into_iter().map(Ok)).boxed())
    }

    fn context_messages(&self) -> i64 {
        1
    }
}

/// Most pieces the echo assistant streams a reply in.
const ECHO_DELTAS: usize = 8;

/// Splits text into words, each carrying the whitespace after it, so the pieces join back exactly.
fn split_into_word_deltas(text: &str) -> Vec<String> {
    let mut deltas = Vec::new();
    let mut current = String::new();
    let mut previous_was_space = false;
    for c in text.chars() {
        if previous_was_space && !c.is_whitespace() {
            deltas.push(std::mem::take(&mut current));
        }
        current.push(c);
        previous_was_space = c.is_whitespace();
    }
    if !current.is_empty() {
        deltas.push(current);
    }
    deltas
}

/// A client of an OpenAI-compatible `/v1/chat/completions` endpoint that streams the reply.
pub struct OpenAiAssistant {
    client: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
    read_timeout: Duration,
}

impl fmt::Debug for OpenAiAssistant {
    // Written by hand so that logging the assistant can never print its API key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiAssistant")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("read_timeout", &self.read_timeout)
            .finish()
    }
}

impl OpenAiAssistant {
    /// A client of `<base_url>/v1/chat/completions` (or `<base_url>/chat/completions` when it ends in `/v1`).
    pub fn new(base_url: &str, model: impl Into<String>, api_key: Option<String>) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .expect("a reqwest client with only a connect timeout always builds");
        OpenAiAssistant {
            client,
            url: endpoint(base_url, "chat/completions"),
            model: model.into(),
            api_key,
            read_timeout: DEFAULT_READ_TIMEOUT,
        }
    }

    /// Changes how long the assistant may stay silent (default 60 s), e.g. for a slow local model.
    pub fn with_read_timeout(mut self, read_timeout: Duration) -> Self {
        self.read_timeout = read_timeout;
        self
    }
}

/// `<base>/v1/<path>`, without doubling a `/v1` the operator already wrote.
fn endpoint(base_url: &str, path: &str) -> String {
    let base = base_url.trim_end_matches('/');
    if base.ends_with("/v1") { format!("{base}/{path}") } else { format!("{base}/v1/{path}") }
}

#[async_trait]
impl Assistant for OpenAiAssistant {
    async fn reply(&self, history: Vec<ChatTurn>) -> Result<DeltaStream, AssistantError> {
        let body = serde_json::json!({ "model": self.model, "messages": history, "stream": true });
        let mut request = self.client.post(&self.url).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        tracing::debug!(url = %self.url, model = %self.model, turns = history.len(), "asking the assistant");
        let response = match tokio::time::timeout(self.read_timeout, request.send()).await {
            Err(_) => return Err(AssistantError::Timeout(self.read_timeout)),
            Ok(Err(e)) if e.is_timeout() => return Err(AssistantError::Timeout(CONNECT_TIMEOUT)),
            // The URL is dropped from the error: an operator may have put credentials in it.
            Ok(Err(e)) => return Err(AssistantError::Request(e.without_url())),
            Ok(Ok(response)) => response,
        };
        // The body of an error answer is not quoted: some servers echo part of the key back in it.
        if !response.status().is_success() {
            return Err(AssistantError::Status(response.status()));
        }
        let reader = SseReader::new(response.bytes_stream().boxed(), self.read_timeout);
        Ok(stream::unfold(reader, |mut reader| async move {
            reader.next_delta().await.map(|item| (item, reader))
        })
        .boxed())
    }
}

/// Reads Server-Sent Events from a body that arrives in arbitrary chunks and picks out the text deltas.
struct SseReader<S> {
    body: S,
    buffer: Vec<u8>,
    /// How much of `buffer` is known to hold no newline, so each byte is searched once.
    scanned: usize,
    end_of_body: bool,
    finished: bool,
    read_timeout: Duration,
}

/// What one line of the event stream means to us.
enum SseLine {
    Delta(String),
    Done,
    Skip,
}

impl<S, B> SseReader<S>
where
    S: Stream<Item = reqwest::Result<B>> + Unpin,
    B: AsRef<[u8]>,
{
    fn new(body: S, read_timeout: Duration) -> Self {
        SseReader { body, buffer: Vec::new(), scanned: 0, end_of_body: false, finished: false, read_timeout }
    }

    /// The next delta; `None` after `[DONE]`, and after the first error so a stream never goes on past it.
    async fn next_delta(&mut self) -> Option<Result<String, AssistantError>> {
        if self.finished {
            return None;
        }
        let item = self.read_delta().await;
        if !matches!(item, Some(Ok(_))) {
            self.finished = true;
        }
        item
    }

    async fn read_delta(&mut self) -> Option<Result<String, AssistantError>> {
        loop {
            while let Some(line) = self.take_line() {
                match parse_line(&line) {
                    Ok(SseLine::Delta(text)) => return Some(Ok(text)),
                    Ok(SseLine::Done) => return None,
                    Ok(SseLine::Skip) => {}
                    Err(e) => return Some(Err(e)),
                }
            }
            if self.end_of_body {
                return Some(Err(AssistantError::Truncated));
            }
            if self.buffer.len() > MAX_LINE_BYTES {
                return Some(Err(AssistantError::Protocol("a line of the event stream is too long".into())));
            }
            match tokio::time::timeout(self.read_timeout, self.body.next()).await {
                Err(_) => return Some(Err(AssistantError::Timeout(self.read_timeout))),
                Ok(Some(Ok(chunk))) => self.buffer.extend_from_slice(chunk.as_ref()),
                Ok(Some(Err(e))) => return Some(Err(AssistantError::Stream(e.without_url()))),
                Ok(None) => {
                    // A last line without its newline still counts, e.g. `data: [DONE]` right before EOF.
                    self.end_of_body = true;
                    if !self.buffer.is_empty() {
                        self.buffer.push(b'\n');
                    }
                }
            }
        }
    }

    /// Removes and returns the next complete line, without its `\n` or `\r\n`.
    fn take_line(&mut self) -> Option<Vec<u8>> {
        let Some(offset) = self.buffer[self.scanned..].iter().position(|&b| b == b'\n') else {
            self.scanned = self.buffer.len();
            return None;
        };
        let end = self.scanned + offset;
        let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
        self.scanned = 0;
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Some(line)
    }
}

/// Interprets one line: `data: {json}` may carry a delta, `data: [DONE]` ends, anything else is skipped.
fn parse_line(line: &[u8]) -> Result<SseLine, AssistantError> {
    let Some(data) = line.strip_prefix(b"data:") else {
        // Blank lines end an event, `:` starts a comment, and `event:`/`id:`/`retry:` carry nothing we use.
        return Ok(SseLine::Skip);
    };
    let data = data.strip_prefix(b" ").unwrap_or(data);
    if data == b"[DONE]" {
        return Ok(SseLine::Done);
    }
    let value: serde_json::Value = serde_json::from_slice(data)
        .map_err(|e| AssistantError::Protocol(format!("a data line is not JSON ({e})")))?;
    if let Some(error) = value.get("error").filter(|error| !error.is_null()) {
        let message = error.get("message").and_then(|m| m.as_str()).unwrap_or("no message");
        let message: String = message.chars().take(MAX_QUOTED_CHARS).collect();
        return Err(AssistantError::Protocol(format!("the assistant reported an error: {message}")));
    }
    match value.pointer("/choices/0/delta/content").and_then(|content| content.as_str()) {
        Some(text) if !text.is_empty() => Ok(SseLine::Delta(text.to_owned())),
        // Role announcements, finish reasons and usage chunks carry no text.
        _ => Ok(SseLine::Skip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    use crate::test_support::{Recorded, read_request};
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    /// Starts an HTTP/1.1 server on a free port that answers one request by writing `parts` one at a time
    /// with a short pause between them, then waits `linger` before closing. Returns its base URL.
    async fn serve_once(parts: Vec<Vec<u8>>, linger: Duration) -> (String, oneshot::Receiver<Recorded>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (sender, receiver) = oneshot::channel();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let _ = sender.send(read_request(&mut socket).await);
            for part in parts {
                socket.write_all(&part).await.unwrap();
                socket.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(linger).await;
        });
        (base, receiver)
    }

    const SSE_HEAD: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";

    fn history() -> Vec<ChatTurn> {
        vec![
            ChatTurn { role: TurnRole::User, content: "Hello there".into() },
            ChatTurn { role: TurnRole::Assistant, content: "You said: Hello there".into() },
            ChatTurn { role: TurnRole::User, content: "What is the weather like?".into() },
        ]
    }

    async fn collect(stream: DeltaStream) -> Vec<Result<String, AssistantError>> {
        stream.collect().await
    }

    #[tokio::test]
    async fn the_echo_assistant_streams_the_last_user_message_in_several_deltas() {
        let deltas: Vec<String> = collect(EchoAssistant.reply(history()).await.unwrap())
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(deltas, ["You ", "said: ", "What ", "is ", "the ", "weather ", "like?"]);
        assert_eq!(deltas.concat(), "You said: What is the weather like?");
    }

    #[tokio::test]
    async fn the_echo_assistant_gives_two_deltas_even_for_an_empty_history() {
        let deltas = collect(EchoAssistant.reply(Vec::new()).await.unwrap()).await;
        assert!(deltas.len() >= 2, "{deltas:?}");
        let text: String = deltas.into_iter().map(Result::unwrap).collect();
        assert_eq!(text, "You said: ");
    }

    #[tokio::test]
    async fn the_openai_client_sends_model_messages_stream_and_key_and_yields_deltas_in_order() {
        let parts = vec![
            SSE_HEAD.to_vec(),
            b": keep-alive comment\r\n\r\n".to_vec(),
            b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\r\n\r\n".to_vec(),
            // One line split across two writes, to check that partial lines are kept until complete.
            b"data: {\"choices\":[{\"delta\":{\"con".to_vec(),
            b"tent\":\"Sunny\"}}]}\n\nevent: message\n".to_vec(),
            b"data: {\"choices\":[{\"delta\":{\"content\":\" and warm, \"}}]}\n\n".to_vec(),
            b"data:{\"choices\":[{\"delta\":{\"content\":\"\\u00e9t\\u00e9!\"},\"finish_reason\":null}]}\n\n"
                .to_vec(),
            b"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n".to_vec(),
            b"data: [DONE]\n\n".to_vec(),
        ];
        let (base, request) = serve_once(parts, Duration::ZERO).await;
        let assistant =
            OpenAiAssistant::new(&format!("{base}/v1/"), "test-model", Some("sk-test-key".into()));

        let deltas = collect(assistant.reply(history()).await.unwrap()).await;
        let deltas: Vec<String> = deltas.into_iter().map(Result::unwrap).collect();
        assert_eq!(deltas, ["Sunny", " and warm, ", "été!"]);

        let request = request.await.unwrap();
        assert!(request.head.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"), "{}", request.head);
        assert!(request.head.to_ascii_lowercase().contains("authorization: bearer sk-test-key\r\n"));
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "model": "test-model",
                "stream": true,
                "messages": [
                    {"role": "user", "content": "Hello there"},
                    {"role": "assistant", "content": "You said: Hello there"},
                    {"role": "user", "content": "What is the weather like?"},
                ],
            })
        );
    }

    #[tokio::test]
    async fn the_openai_client_sends_no_authorization_without_a_key() {
        let (base, request) =
            serve_once(vec![SSE_HEAD.to_vec(), b"data: [DONE]\n".to_vec()], Duration::ZERO).await;
        let deltas = collect(OpenAiAssistant::new(&base, "m", None).reply(history()).await.unwrap()).await;
        assert!(deltas.is_empty(), "{deltas:?}");
        let request = request.await.unwrap();
        assert!(request.head.starts_with("POST /v1/chat/completions "), "{}", request.head);
        assert!(!request.head.to_ascii_lowercase().contains("authorization"), "{}", request.head);
    }

    #[tokio::test]
    async fn a_server_error_status_is_an_error_that_names_the_status_but_not_the_key() {
        let body = "bad key sk-secret-key-1234567";
        let answer =
            format!("HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let (base, _request) = serve_once(vec![answer.into_bytes()], Duration::ZERO).await;
        let assistant = OpenAiAssistant::new(&base, "m", Some("sk-secret-key-1234567".into()));
        let error = assistant.reply(history()).await.err().expect("a 500 must be an error");
        assert!(matches!(error, AssistantError::Status(status) if status.as_u16() == 500), "{error:?}");
        assert!(error.to_string().contains("500"), "{error}");
        assert!(!format!("{error:?} {error}").contains("sk-secret"), "{error:?}");
        assert!(!format!("{assistant:?}").contains("sk-secret"), "{assistant:?}");
    }

    #[tokio::test]
    async fn a_stream_cut_before_done_ends_with_an_error() {
        let parts =
            vec![SSE_HEAD.to_vec(), b"data: {\"choices\":[{\"delta\":{\"content\":\"Half\"}}]}\n\n".to_vec()];
        let (base, _request) = serve_once(parts, Duration::ZERO).await;
        let deltas = collect(OpenAiAssistant::new(&base, "m", None).reply(history()).await.unwrap()).await;
        assert_eq!(deltas.len(), 2, "{deltas:?}");
        assert_eq!(deltas[0].as_ref().unwrap(), "Half");
        assert!(matches!(deltas[1], Err(AssistantError::Truncated)), "{deltas:?}");
    }

    #[tokio::test]
    async fn a_garbage_data_line_is_an_error_and_ends_the_stream() {
        let parts = vec![
            SSE_HEAD.to_vec(),
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n".to_vec(),
            b"data: {this is not json\n\n".to_vec(),
            b"data: {\"choices\":[{\"delta\":{\"content\":\"after\"}}]}\n\ndata: [DONE]\n\n".to_vec(),
        ];
        let (base, _request) = serve_once(parts, Duration::ZERO).await;
        let deltas = collect(OpenAiAssistant::new(&base, "m", None).reply(history()).await.unwrap()).await;
        assert_eq!(deltas.len(), 2, "{deltas:?}");
        assert!(matches!(deltas[1], Err(AssistantError::Protocol(_))), "{deltas:?}");
    }

    #[tokio::test]
    async fn an_error_event_from_the_server_is_an_error() {
        let parts =
            vec![SSE_HEAD.to_vec(), b"data: {\"error\":{\"message\":\"model overloaded\"}}\n\n".to_vec()];
        let (base, _request) = serve_once(parts, Duration::ZERO).await;
        let deltas = collect(OpenAiAssistant::new(&base, "m", None).reply(history()).await.unwrap()).await;
        let error = deltas.into_iter().next().unwrap().unwrap_err();
        assert!(error.to_string().contains("model overloaded"), "{error}");
    }

    #[tokio::test]
    async fn a_stalled_server_gives_a_timeout_error_instead_of_hanging() {
        let parts =
            vec![SSE_HEAD.to_vec(), b"data: {\"choices\":[{\"delta\":{\"content\":\"Hm\"}}]}\n\n".to_vec()];
        let (base, _request) = serve_once(parts, Duration::from_secs(30)).await;
        let assistant = OpenAiAssistant::new(&base, "m", None).with_read_timeout(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let deltas = collect(assistant.reply(history()).await.unwrap()).await;
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        assert_eq!(deltas.len(), 2, "{deltas:?}");
        assert!(matches!(deltas[1], Err(AssistantError::Timeout(_))), "{deltas:?}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_request_error() {
        // Bind and drop a listener so the port is very likely closed.
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let assistant = OpenAiAssistant::new(&format!("http://127.0.0.1:{port}"), "m", None);
        let error = assistant.reply(history()).await.err().expect("nothing listens there");
        assert!(matches!(error, AssistantError::Request(_)), "{error:?}");
    }

    #[test]
    fn the_endpoint_does_not_double_a_v1_suffix() {
        for (base, expected, description) in [
            ("http://h:1", "http://h:1/v1/chat/completions", "bare host"),
            ("http://h:1/", "http://h:1/v1/chat/completions", "trailing slash"),
            ("http://h:1/v1", "http://h:1/v1/chat/completions", "ends in /v1"),
            ("http://h:1/api/v1/", "http://h:1/api/v1/chat/completions", "prefix and /v1/"),
            ("http://h:1/openai", "http://h:1/openai/v1/chat/completions", "prefix without /v1"),
        ] {
            assert_eq!(endpoint(base, "chat/completions"), expected, "{description}");
        }
    }
}
