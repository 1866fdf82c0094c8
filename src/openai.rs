//! One client for OpenAI-compatible upstreams, for chat and images: streamed chat completions that
//! ask for the usage figures (`stream_options.include_usage`) and yield text deltas and that usage
//! as they come, image generations answered in base64, timeouts at every wait, and cancellation by
//! dropping: dropping a chat stream drops its HTTP request, so a stopped reply stops upstream too.
//! The API key is never logged or quoted (a server's error body is not echoed: some quote the key).

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use serde::{Deserialize, Serialize};

/// How long connecting to an upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a chat upstream may stay silent, before its headers and between chunks.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one whole image generation may take, answer included; image models are slow.
const IMAGE_TIMEOUT: Duration = Duration::from_secs(120);
/// A server that never sends a newline must not make us buffer without bound.
const MAX_LINE_BYTES: usize = 1024 * 1024;
/// A 1024×1024 PNG in base64 inside JSON stays well below this; more means a broken or hostile server.
const MAX_IMAGE_ANSWER_BYTES: usize = 32 * 1024 * 1024;
/// Upstream error messages are quoted only this far, to keep log lines and errors short.
const MAX_QUOTED_CHARS: usize = 200;
/// Every PNG file starts with these bytes.
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Who wrote one turn of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TurnRole {
    /// The person chatting.
    User,
    /// The assistant.
    Assistant,
}

/// One message of a conversation, as an upstream reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatTurn {
    /// Who wrote it.
    pub role: TurnRole,
    /// What was written.
    pub content: String,
}

/// Tokens an upstream reports a completion used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Tokens read (the prompt).
    pub input_tokens: u64,
    /// Tokens written (the reply).
    pub output_tokens: u64,
}

/// One piece of a streamed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// The next text of the reply.
    Delta(String),
    /// What the completion used (OpenAI sends it last, when asked).
    Usage(Usage),
}

/// A streamed reply; dropping it drops the HTTP request.
pub type ChunkStream = BoxStream<'static, Result<Chunk, OpenAiError>>;

/// Why an upstream call failed; messages never contain the API key.
#[derive(Debug, thiserror::Error)]
pub enum OpenAiError {
    /// The request could not be sent (connection refused, DNS, TLS…).
    #[error("could not reach the upstream")]
    Request(#[source] reqwest::Error),
    /// The upstream answered with a non-2xx status.
    #[error("the upstream answered with HTTP status {0}")]
    Status(reqwest::StatusCode),
    /// Reading the answer failed part-way.
    #[error("reading the upstream's answer failed")]
    Stream(#[source] reqwest::Error),
    /// The answer was not what the protocol promises.
    #[error("the upstream's answer was malformed: {0}")]
    Protocol(String),
    /// A streamed reply ended without `data: [DONE]`, so it may be cut short.
    #[error("the upstream's reply ended before it was complete")]
    Truncated,
    /// The upstream stayed silent for too long.
    #[error("the upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// The answer was larger than any real one.
    #[error("the upstream's answer is larger than {MAX_IMAGE_ANSWER_BYTES} bytes")]
    TooLarge,
}

/// A client of one OpenAI-compatible base URL.
#[derive(Clone)]
pub struct OpenAiClient {
    http: reqwest::Client,
    base: String,
    api_key: Option<String>,
    read_timeout: Duration,
}

impl fmt::Debug for OpenAiClient {
    // By hand, so that logging a client can never print its API key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("base", &self.base)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("read_timeout", &self.read_timeout)
            .finish()
    }
}

/// Makes ring the process's TLS provider (no OpenSSL, no aws-lc), once; reqwest is built with
/// `rustls-no-provider`, so every `reqwest::Client` in the process (the tests' too) needs this first.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn http_client() -> reqwest::Result<reqwest::Client> {
    install_tls_provider();
    reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).build()
}

/// Whether the upstreams' HTTP client can be built here (it reads the system's root
/// certificates); start-up calls it, so a host without them is told at once, in one line.
pub fn check_client() -> Result<(), String> {
    http_client().map(drop).map_err(|e| {
        format!("the HTTP client for model upstreams cannot start ({e}); install the system's CA certificates (ca-certificates)")
    })
}

impl OpenAiClient {
    /// A client of `base_url` (`/v1/...` is appended unless it ends in `/v1` already).
    pub fn new(base_url: &str, api_key: Option<String>) -> OpenAiClient {
        // check_client ran at start-up: the client builds on this host.
        let http = http_client().expect("the upstream HTTP client was checked at start-up");
        OpenAiClient {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            api_key,
            read_timeout: DEFAULT_READ_TIMEOUT,
        }
    }

    /// Changes how long a chat upstream may stay silent (default 60 s), e.g. for a slow local model.
    pub fn with_read_timeout(mut self, read_timeout: Duration) -> OpenAiClient {
        self.read_timeout = read_timeout;
        self
    }

    /// `<base>/v1/<path>`, without doubling a `/v1` the operator already wrote.
    fn endpoint(&self, path: &str) -> String {
        if self.base.ends_with("/v1") {
            format!("{}/{path}", self.base)
        } else {
            format!("{}/v1/{path}", self.base)
        }
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.post(self.endpoint(path));
        match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Starts a streamed chat completion of `messages` by `model`, at most `max_tokens` long, and
    /// asks for the usage figures; the stream yields text deltas and then the usage.
    pub async fn stream_chat(
        &self,
        model: &str,
        messages: &[ChatTurn],
        max_tokens: u32,
    ) -> Result<ChunkStream, OpenAiError> {
        let body = serde_json::json!({
            "model": model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": max_tokens,
        });
        tracing::debug!(base = %self.base, model, turns = messages.len(), "asking for a chat completion");
        let response =
            match tokio::time::timeout(self.read_timeout, self.post("chat/completions").json(&body).send())
                .await
            {
                Err(_) => return Err(OpenAiError::Timeout(self.read_timeout)),
                Ok(Err(e)) if e.is_timeout() => return Err(OpenAiError::Timeout(CONNECT_TIMEOUT)),
                // The URL is dropped from the error: an operator may have put credentials in it.
                Ok(Err(e)) => return Err(OpenAiError::Request(e.without_url())),
                Ok(Ok(response)) => response,
            };
        if !response.status().is_success() {
            return Err(OpenAiError::Status(response.status()));
        }
        let reader = SseReader::new(response.bytes_stream().boxed(), self.read_timeout);
        Ok(stream::unfold(reader, |mut reader| async move {
            reader.next_chunk().await.map(|item| (item, reader))
        })
        .boxed())
    }

    /// Generates one `width`×`height` image of `prompt` by `model`; answers its PNG bytes.
    pub async fn generate_image(
        &self,
        model: &str,
        prompt: &str,
        width: u32,
        height: u32,
    ) -> Result<Vec<u8>, OpenAiError> {
        let mut body = serde_json::json!({"model": model, "prompt": prompt, "n": 1, "size": format!("{width}x{height}")});
        // OpenAI's gpt-image models always answer in base64 and refuse `response_format` as unknown;
        // DALL·E and most compatible servers need it to answer in base64 rather than with a URL.
        if !model.starts_with("gpt-image") {
            body["response_format"] = "b64_json".into();
        }
        tracing::debug!(base = %self.base, model, width, height, "asking for an image");
        let exchange = async {
            let response = self
                .post("images/generations")
                .json(&body)
                .send()
                .await
                .map_err(|e| OpenAiError::Request(e.without_url()))?;
            if !response.status().is_success() {
                return Err(OpenAiError::Status(response.status()));
            }
            read_limited(response).await
        };
        let body = tokio::time::timeout(IMAGE_TIMEOUT, exchange)
            .await
            .map_err(|_| OpenAiError::Timeout(IMAGE_TIMEOUT))??;
        let answer: ImagesAnswer = serde_json::from_slice(&body)
            .map_err(|e| OpenAiError::Protocol(format!("the answer is not the expected JSON ({e})")))?;
        let encoded = answer
            .data
            .into_iter()
            .next()
            .and_then(|datum| datum.b64_json)
            .ok_or_else(|| OpenAiError::Protocol("the answer has no data[0].b64_json".into()))?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| OpenAiError::Protocol(format!("data[0].b64_json is not base64 ({e})")))?;
        if !png.starts_with(PNG_SIGNATURE) {
            return Err(OpenAiError::Protocol("data[0].b64_json is not a PNG".into()));
        }
        Ok(png)
    }
}

/// Reads an answer body, refusing to hold more than [`MAX_IMAGE_ANSWER_BYTES`].
async fn read_limited(response: reqwest::Response) -> Result<Vec<u8>, OpenAiError> {
    if response.content_length().is_some_and(|length| length > MAX_IMAGE_ANSWER_BYTES as u64) {
        return Err(OpenAiError::TooLarge);
    }
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| OpenAiError::Stream(e.without_url()))?;
        if body.len() + chunk.len() > MAX_IMAGE_ANSWER_BYTES {
            return Err(OpenAiError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The parts of an images answer that we read.
#[derive(Deserialize)]
struct ImagesAnswer {
    data: Vec<ImageDatum>,
}

#[derive(Deserialize)]
struct ImageDatum {
    b64_json: Option<String>,
}

/// Reads Server-Sent Events from a body that arrives in arbitrary chunks and picks out the text
/// deltas and the usage.
struct SseReader<S> {
    body: S,
    buffer: Vec<u8>,
    /// A usage that came in the same event as a delta, given out right after it.
    pending: Option<Usage>,
    /// How much of `buffer` is known to hold no newline, so each byte is searched once.
    scanned: usize,
    end_of_body: bool,
    finished: bool,
    read_timeout: Duration,
}

/// What one line of the event stream means to us.
enum SseLine {
    /// A `data:` event with text, the usage, or both.
    Data {
        delta: Option<String>,
        usage: Option<Usage>,
    },
    Done,
    Skip,
}

impl<S, B> SseReader<S>
where
    S: Stream<Item = reqwest::Result<B>> + Unpin,
    B: AsRef<[u8]>,
{
    fn new(body: S, read_timeout: Duration) -> Self {
        SseReader {
            body,
            buffer: Vec::new(),
            pending: None,
            scanned: 0,
            end_of_body: false,
            finished: false,
            read_timeout,
        }
    }

    /// The next chunk; `None` after `[DONE]`, and after the first error so a stream never goes on past it.
    async fn next_chunk(&mut self) -> Option<Result<Chunk, OpenAiError>> {
        if let Some(usage) = self.pending.take() {
            return Some(Ok(Chunk::Usage(usage)));
        }
        if self.finished {
            return None;
        }
        let item = self.read_chunk().await;
        if !matches!(item, Some(Ok(_))) {
            self.finished = true;
        }
        item
    }

    async fn read_chunk(&mut self) -> Option<Result<Chunk, OpenAiError>> {
        loop {
            while let Some(line) = self.take_line() {
                match parse_line(&line) {
                    Ok(SseLine::Data { delta: Some(text), usage }) => {
                        self.pending = usage;
                        return Some(Ok(Chunk::Delta(text)));
                    }
                    Ok(SseLine::Data { delta: None, usage: Some(usage) }) => {
                        return Some(Ok(Chunk::Usage(usage)));
                    }
                    Ok(SseLine::Data { delta: None, usage: None }) => {}
                    Ok(SseLine::Done) => return None,
                    Ok(SseLine::Skip) => {}
                    Err(e) => return Some(Err(e)),
                }
            }
            if self.end_of_body {
                return Some(Err(OpenAiError::Truncated));
            }
            if self.buffer.len() > MAX_LINE_BYTES {
                return Some(Err(OpenAiError::Protocol("a line of the event stream is too long".into())));
            }
            match tokio::time::timeout(self.read_timeout, self.body.next()).await {
                Err(_) => return Some(Err(OpenAiError::Timeout(self.read_timeout))),
                Ok(Some(Ok(chunk))) => self.buffer.extend_from_slice(chunk.as_ref()),
                Ok(Some(Err(e))) => return Some(Err(OpenAiError::Stream(e.without_url()))),
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

/// Interprets one line: `data: {json}` may carry a delta and the usage (OpenAI's final chunk has
/// `choices: []` and `usage`), `data: [DONE]` ends, anything else is skipped.
fn parse_line(line: &[u8]) -> Result<SseLine, OpenAiError> {
    let Some(data) = line.strip_prefix(b"data:") else {
        // Blank lines end an event, `:` starts a comment, and `event:`/`id:`/`retry:` carry nothing we use.
        return Ok(SseLine::Skip);
    };
    let data = data.strip_prefix(b" ").unwrap_or(data);
    if data == b"[DONE]" {
        return Ok(SseLine::Done);
    }
    let value: serde_json::Value = serde_json::from_slice(data)
        .map_err(|e| OpenAiError::Protocol(format!("a data line is not JSON ({e})")))?;
    if let Some(error) = value.get("error").filter(|error| !error.is_null()) {
        let message = error.get("message").and_then(|m| m.as_str()).unwrap_or("no message");
        let message: String = message.chars().take(MAX_QUOTED_CHARS).collect();
        return Err(OpenAiError::Protocol(format!("the upstream reported an error: {message}")));
    }
    // Role announcements and finish reasons carry no text.
    let delta = value
        .pointer("/choices/0/delta/content")
        .and_then(|content| content.as_str())
        .filter(|text| !text.is_empty())
        .map(str::to_owned);
    let usage = value.get("usage").filter(|usage| !usage.is_null()).and_then(|usage| {
        Some(Usage {
            input_tokens: usage.get("prompt_tokens")?.as_u64()?,
            output_tokens: usage.get("completion_tokens")?.as_u64()?,
        })
    });
    Ok(SseLine::Data { delta, usage })
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    use super::*;
    use crate::test_support::{Recorded, read_request};

    /// Starts an HTTP/1.1 server on a free port that answers one request by writing `parts` one at
    /// a time with a short pause between them, then waits `linger` before closing. Answers its base
    /// URL, the request it got, and whether the client hung up before the server was done.
    async fn serve_once(
        parts: Vec<Vec<u8>>,
        linger: Duration,
    ) -> (String, oneshot::Receiver<Recorded>, oneshot::Receiver<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (sender, receiver) = oneshot::channel();
        let (hung_up, went_away) = oneshot::channel();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let _ = sender.send(read_request(&mut socket).await);
            let mut gone = false;
            for part in parts {
                if socket.write_all(&part).await.is_err() || socket.flush().await.is_err() {
                    gone = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if !gone {
                // A client that hung up makes the read end at once.
                let mut probe = [0u8; 1];
                gone = matches!(
                    tokio::time::timeout(linger, tokio::io::AsyncReadExt::read(&mut socket, &mut probe))
                        .await,
                    Ok(Ok(0) | Err(_))
                );
            }
            let _ = hung_up.send(gone);
        });
        (base, receiver, went_away)
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

    async fn collect(stream: ChunkStream) -> Vec<Result<Chunk, OpenAiError>> {
        stream.collect().await
    }

    fn delta(text: &str) -> Chunk {
        Chunk::Delta(text.into())
    }

    #[tokio::test]
    async fn a_chat_stream_asks_for_usage_and_yields_deltas_then_the_usage() {
        let parts = vec![
            SSE_HEAD.to_vec(),
            b": keep-alive comment\r\n\r\n".to_vec(),
            b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\r\n\r\n".to_vec(),
            // One line split across two writes, to check that partial lines are kept until complete.
            b"data: {\"choices\":[{\"delta\":{\"con".to_vec(),
            b"tent\":\"Sunny\"}}]}\n\nevent: message\n".to_vec(),
            b"data:{\"choices\":[{\"delta\":{\"content\":\" \\u00e9t\\u00e9!\"},\"finish_reason\":null}]}\n\n".to_vec(),
            b"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n".to_vec(),
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":31,\"completion_tokens\":4,\"total_tokens\":35}}\n\n".to_vec(),
            b"data: [DONE]\n\n".to_vec(),
        ];
        let (base, request, _) = serve_once(parts, Duration::ZERO).await;
        let client = OpenAiClient::new(&format!("{base}/v1/"), Some("sk-test-key".into()));

        let chunks = collect(client.stream_chat("test-model", &history(), 256).await.unwrap()).await;
        let chunks: Vec<Chunk> = chunks.into_iter().map(Result::unwrap).collect();
        let usage = Chunk::Usage(Usage { input_tokens: 31, output_tokens: 4 });
        assert_eq!(chunks, [delta("Sunny"), delta(" été!"), usage]);

        let request = request.await.unwrap();
        assert!(request.head.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"), "{}", request.head);
        assert!(request.head.to_ascii_lowercase().contains("authorization: bearer sk-test-key\r\n"));
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "model": "test-model",
                "stream": true,
                "stream_options": {"include_usage": true},
                "max_tokens": 256,
                "messages": [
                    {"role": "user", "content": "Hello there"},
                    {"role": "assistant", "content": "You said: Hello there"},
                    {"role": "user", "content": "What is the weather like?"},
                ],
            })
        );
        assert!(!format!("{client:?}").contains("sk-test-key"), "{client:?}");
    }

    #[tokio::test]
    async fn a_usage_in_the_same_event_as_the_last_delta_comes_right_after_it() {
        let parts = vec![
            SSE_HEAD.to_vec(),
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1}}\n\n".to_vec(),
            b"data: [DONE]\n\n".to_vec(),
        ];
        let (base, _, _) = serve_once(parts, Duration::ZERO).await;
        let chunks =
            collect(OpenAiClient::new(&base, None).stream_chat("m", &history(), 8).await.unwrap()).await;
        let chunks: Vec<Chunk> = chunks.into_iter().map(Result::unwrap).collect();
        assert_eq!(chunks, [delta("Hi"), Chunk::Usage(Usage { input_tokens: 2, output_tokens: 1 })]);
    }

    #[tokio::test]
    async fn dropping_a_chat_stream_hangs_up_on_the_upstream() {
        let mut parts = vec![SSE_HEAD.to_vec()];
        for n in 0..200 {
            parts.push(
                format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"w{n} \"}}}}]}}\n\n").into_bytes(),
            );
        }
        let (base, _, went_away) = serve_once(parts, Duration::from_secs(5)).await;
        let mut stream = OpenAiClient::new(&base, None).stream_chat("m", &history(), 8).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), delta("w0 "));
        drop(stream);
        let gone = tokio::time::timeout(Duration::from_secs(5), went_away).await.expect("the server notices");
        assert!(gone.unwrap(), "the upstream saw the client go away before it finished");
    }

    #[tokio::test]
    async fn a_chat_without_a_key_sends_no_authorization() {
        let (base, request, _) =
            serve_once(vec![SSE_HEAD.to_vec(), b"data: [DONE]\n".to_vec()], Duration::ZERO).await;
        let chunks =
            collect(OpenAiClient::new(&base, None).stream_chat("m", &history(), 8).await.unwrap()).await;
        assert!(chunks.is_empty(), "{chunks:?}");
        let request = request.await.unwrap();
        assert!(request.head.starts_with("POST /v1/chat/completions "), "{}", request.head);
        assert!(!request.head.to_ascii_lowercase().contains("authorization"), "{}", request.head);
    }

    #[tokio::test]
    async fn a_server_error_status_names_the_status_but_never_the_key() {
        let body = "bad key sk-secret-key-1234567";
        let answer =
            format!("HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let (base, _, _) = serve_once(vec![answer.into_bytes()], Duration::ZERO).await;
        let client = OpenAiClient::new(&base, Some("sk-secret-key-1234567".into()));
        let error = client.stream_chat("m", &history(), 8).await.err().expect("a 500 must be an error");
        assert!(matches!(error, OpenAiError::Status(status) if status.as_u16() == 500), "{error:?}");
        assert!(!format!("{error:?} {error}").contains("sk-secret"), "{error:?}");
    }

    #[tokio::test]
    async fn a_stream_cut_before_done_ends_with_truncated_and_garbage_with_protocol() {
        for (case, tail, expected) in [
            ("cut", Vec::new(), "Truncated"),
            ("garbage", b"data: {this is not json\n\n".to_vec(), "Protocol"),
            (
                "error event",
                b"data: {\"error\":{\"message\":\"model overloaded\"}}\n\n".to_vec(),
                "overloaded",
            ),
        ] {
            let mut parts = vec![
                SSE_HEAD.to_vec(),
                b"data: {\"choices\":[{\"delta\":{\"content\":\"Half\"}}]}\n\n".to_vec(),
            ];
            parts.push(tail);
            let (base, _, _) = serve_once(parts, Duration::ZERO).await;
            let chunks =
                collect(OpenAiClient::new(&base, None).stream_chat("m", &history(), 8).await.unwrap()).await;
            assert_eq!(chunks.len(), 2, "{case}: {chunks:?}");
            assert_eq!(chunks[0].as_ref().unwrap(), &delta("Half"), "{case}");
            let error = chunks[1].as_ref().unwrap_err();
            assert!(format!("{error:?} {error}").contains(expected), "{case}: {error:?}");
        }
    }

    #[tokio::test]
    async fn a_stalled_upstream_times_out_instead_of_hanging() {
        let parts =
            vec![SSE_HEAD.to_vec(), b"data: {\"choices\":[{\"delta\":{\"content\":\"Hm\"}}]}\n\n".to_vec()];
        let (base, _, _) = serve_once(parts, Duration::from_secs(30)).await;
        let client = OpenAiClient::new(&base, None).with_read_timeout(Duration::from_millis(300));
        let chunks = collect(client.stream_chat("m", &history(), 8).await.unwrap()).await;
        assert!(matches!(chunks.last(), Some(Err(OpenAiError::Timeout(_)))), "{chunks:?}");
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_a_request_error() {
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let error = OpenAiClient::new(&format!("http://127.0.0.1:{port}"), None)
            .stream_chat("m", &history(), 8)
            .await;
        assert!(matches!(error, Err(OpenAiError::Request(_))), "{:?}", error.err());
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
            assert_eq!(OpenAiClient::new(base, None).endpoint("chat/completions"), expected, "{description}");
        }
    }

    fn json_answer(status: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    async fn a_png() -> Vec<u8> {
        use crate::images::ImageGenerator as _;
        crate::images::BuiltinGenerator.generate("served", 256, 256).await.unwrap()
    }

    #[tokio::test]
    async fn an_image_request_names_model_size_and_format_and_decodes_the_png() {
        let png = a_png().await;
        let encoded = base64::engine::general_purpose::STANDARD.encode(&png);
        let answer =
            json_answer("200 OK", &format!(r#"{{"created":1,"data":[{{"b64_json":"{encoded}"}}]}}"#));
        let (base, request, _) = serve_once(vec![answer], Duration::ZERO).await;
        let client = OpenAiClient::new(&format!("{base}/v1"), Some("sk-image-key".into()));
        assert_eq!(client.generate_image("dall-e-2", "a lighthouse", 512, 256).await.unwrap(), png);
        let request = request.await.unwrap();
        assert!(request.head.starts_with("POST /v1/images/generations HTTP/1.1\r\n"), "{}", request.head);
        assert!(request.head.to_ascii_lowercase().contains("authorization: bearer sk-image-key\r\n"));
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        let expected = serde_json::json!({"model": "dall-e-2", "prompt": "a lighthouse", "n": 1, "size": "512x256", "response_format": "b64_json"});
        assert_eq!(body, expected);
    }

    #[tokio::test]
    async fn gpt_image_models_are_not_sent_a_response_format() {
        let encoded = base64::engine::general_purpose::STANDARD.encode(a_png().await);
        let answer = json_answer("200 OK", &format!(r#"{{"data":[{{"b64_json":"{encoded}"}}]}}"#));
        let (base, request, _) = serve_once(vec![answer], Duration::ZERO).await;
        OpenAiClient::new(&base, None).generate_image("gpt-image-1", "p", 1024, 1024).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&request.await.unwrap().body).unwrap();
        assert_eq!(body.get("response_format"), None, "{body}");
    }

    #[tokio::test]
    async fn an_image_answer_that_is_no_png_or_too_large_is_refused() {
        let encoded = base64::engine::general_purpose::STANDARD.encode(b"GIF89a not a png at all");
        for (payload, description) in [
            (format!(r#"{{"data":[{{"b64_json":"{encoded}"}}]}}"#), "a GIF"),
            (r#"{"data":[{"b64_json":"@@@ not base64"}]}"#.to_owned(), "not base64"),
            (r#"{"data":[{"url":"http://example.com/a.png"}]}"#.to_owned(), "a URL instead"),
            (r#"{"data":[]}"#.to_owned(), "no images"),
            ("<html>oops</html>".to_owned(), "not JSON"),
        ] {
            let (base, _, _) = serve_once(vec![json_answer("200 OK", &payload)], Duration::ZERO).await;
            let result = OpenAiClient::new(&base, None).generate_image("m", "p", 512, 512).await;
            assert!(matches!(result, Err(OpenAiError::Protocol(_))), "{description}: {result:?}");
        }
        let huge = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"data\":",
            MAX_IMAGE_ANSWER_BYTES + 1
        );
        let (base, _, _) = serve_once(vec![huge.into_bytes()], Duration::ZERO).await;
        let result = OpenAiClient::new(&base, None).generate_image("m", "p", 512, 512).await;
        assert!(matches!(result, Err(OpenAiError::TooLarge)), "{result:?}");
    }
}
