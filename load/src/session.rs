//! Reaching the server: load users registered over REST, WebSocket sessions opened from a chosen
//! 127.0.0.x source address, and the frames read back with a deadline so no worker waits forever.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use reqwest::{Client, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use crate::progress::Progress;
use crate::tally::Tally;

/// One open WebSocket session over plain TCP.
pub type Socket = WebSocketStream<TcpStream>;

/// Password of every load user.
pub const PASSWORD: &str = "violet-harbour-lantern-42";

/// How many sessions one source address should carry: the ephemeral port range
/// (net.ipv4.ip_local_port_range, 32768-60999 by default) gives each address about 28k ports, so
/// past this many connections the next source address is taken.
const SESSIONS_PER_SOURCE_ADDRESS: usize = 20_000;

/// Where the load goes and from which source addresses.
pub struct Target {
    /// `http://host:port` of the first node, for the REST calls.
    pub base_url: String,
    /// The WebSocket URL, e.g. `ws://127.0.0.1:8080/ws` (the nodes' URLs, comma-separated, when
    /// several are given).
    pub ws_url: String,
    /// The nodes: session `i` connects to node `i % len`.
    nodes: Vec<Node>,
    /// Client addresses to bind before connecting, used in turn; empty lets the kernel choose.
    sources: Vec<IpAddr>,
}

/// One server node sessions connect to.
struct Node {
    server: SocketAddr,
    ws_url: String,
}

impl Target {
    /// Reads `url` (http://, ws:// or bare host:port; a path given replaces `default_path`; several
    /// comma-separated for the nodes of a cluster, REST going to the first) and picks
    /// `source_addresses` loopback addresses (0: one per 20,000 sessions).
    pub fn new(
        url: &str,
        default_path: &str,
        source_addresses: usize,
        sessions: usize,
    ) -> Result<Target, String> {
        let mut nodes = Vec::new();
        let mut base_url = String::new();
        for url in url.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            let (authority, node) = Node::parse(url, default_path)?;
            if base_url.is_empty() {
                base_url = format!("http://{authority}");
            }
            nodes.push(node);
        }
        let Some(first) = nodes.first() else { return Err("no server URL given".into()) };
        let wanted = if source_addresses == 0 {
            sessions.div_ceil(SESSIONS_PER_SOURCE_ADDRESS)
        } else {
            source_addresses
        };
        let loopback_v4 = nodes.iter().all(|n| n.server.ip().is_loopback() && n.server.is_ipv4());
        let sources = if wanted <= 1 {
            Vec::new()
        } else if loopback_v4 && wanted <= 254 {
            (1..=wanted as u8).map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))).collect()
        } else {
            return Err(
                "several source addresses need an IPv4 loopback server and at most 254 of them".into()
            );
        };
        let ws_url = if nodes.len() == 1 {
            first.ws_url.clone()
        } else {
            nodes.iter().map(|n| n.ws_url.as_str()).collect::<Vec<_>>().join(",")
        };
        Ok(Target { base_url, ws_url, nodes, sources })
    }

    /// How many source addresses the sessions are spread over (1 when the kernel chooses).
    pub fn source_address_count(&self) -> usize {
        self.sources.len().max(1)
    }

    /// Opens session number `index` (which picks its source address), with `token` as bearer
    /// credential when given; the error is a short code for the report.
    pub async fn open(&self, index: usize, token: Option<&str>) -> Result<Socket, String> {
        let node = &self.nodes[index % self.nodes.len()];
        let socket = if node.server.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() };
        let socket = socket.map_err(|error| io_code(&error))?;
        if !self.sources.is_empty() {
            let source = SocketAddr::new(self.sources[index % self.sources.len()], 0);
            socket.bind(source).map_err(|error| io_code(&error))?;
        }
        let stream = socket.connect(node.server).await.map_err(|error| io_code(&error))?;
        stream.set_nodelay(true).map_err(|error| io_code(&error))?;
        let mut request = node.ws_url.as_str().into_client_request().map_err(|_| "bad_url".to_owned())?;
        if let Some(token) = token {
            let value = format!("Bearer {token}").parse().map_err(|_| "bad_token".to_owned())?;
            request.headers_mut().insert("authorization", value);
        }
        // Small buffers: the generator holds tens of thousands of sockets, and tungstenite's
        // default read buffer (128 KiB, allocated at once) would cost gigabytes.
        let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
        match client_async_with_config(request, stream, Some(config)).await {
            Ok((socket, _)) => Ok(socket),
            Err(WsError::Http(response)) => Err(response.status().as_u16().to_string()),
            Err(WsError::Io(error)) => Err(io_code(&error)),
            Err(_) => Err("handshake".to_owned()),
        }
    }

    /// Opens a Switchboard session and reads its `hello`, which it returns.
    pub async fn open_with_hello(
        &self,
        index: usize,
        token: &str,
        until: Instant,
    ) -> Result<(Socket, Value), String> {
        let mut socket = self.open(index, Some(token)).await?;
        let text = next_text(&mut socket, until).await?;
        let hello: Value = serde_json::from_str(&text).map_err(|_| "bad_json".to_owned())?;
        match hello["type"].as_str() {
            Some("hello") => Ok((socket, hello)),
            Some("error") => Err(hello["code"].as_str().unwrap_or("error").to_owned()),
            _ => Err("no_hello".to_owned()),
        }
    }

    /// Opens `count` sessions (see [`open_all`]), using `tokens[i % len]` for session i (none:
    /// raw sessions without credentials or hello).
    pub async fn open_many(
        self: &Arc<Self>,
        count: usize,
        tokens: &[String],
        label: &str,
    ) -> (Vec<Socket>, Tally) {
        let tokens = Arc::new(tokens.to_vec());
        open_all(count, label, |index| {
            let (target, tokens) = (self.clone(), tokens.clone());
            async move {
                let until = Instant::now() + std::time::Duration::from_secs(30);
                match tokens.get(index % tokens.len().max(1)) {
                    Some(token) => {
                        target.open_with_hello(index, token, until).await.map(|(socket, _)| socket)
                    }
                    None => target.open(index, None).await,
                }
            }
        })
        .await
    }
}

impl Node {
    /// One node's URL; answers its `host:port` too.
    fn parse(url: &str, default_path: &str) -> Result<(String, Node), String> {
        if url.starts_with("https://") || url.starts_with("wss://") {
            return Err("TLS is not supported: point the load tool at the plain listener".into());
        }
        let rest = ["http://", "ws://"].iter().find_map(|scheme| url.strip_prefix(scheme)).unwrap_or(url);
        let (authority, path) = match rest.find('/') {
            Some(slash) if slash + 1 < rest.len() => (&rest[..slash], &rest[slash..]),
            Some(slash) => (&rest[..slash], default_path),
            None => (rest, default_path),
        };
        let server = authority
            .to_socket_addrs()
            .map_err(|error| format!("cannot resolve {authority}: {error}"))?
            .next()
            .ok_or_else(|| format!("{authority} resolves to no address"))?;
        Ok((authority.to_owned(), Node { server, ws_url: format!("ws://{authority}{path}") }))
    }
}

/// Opens `count` sessions with `open(index)`, 200 at a time so the accept queue is not flooded,
/// counting them on a progress line called `label` as they come. The tally times the successful
/// opens and counts the failed ones by code.
pub async fn open_all<Open, Opening>(count: usize, label: &str, open: Open) -> (Vec<Socket>, Tally)
where
    Open: Fn(usize) -> Opening,
    Opening: std::future::Future<Output = Result<Socket, String>>,
{
    let progress = Progress::new(label);
    let _ticker = crate::progress::show(&progress, None);
    let opened: Vec<(Result<Socket, String>, u64)> = futures_util::stream::iter(0..count)
        .map(|index| {
            let (opening, progress) = (open(index), progress.clone());
            async move {
                let started = Instant::now();
                let result = opening.await;
                match result {
                    Ok(_) => progress.done(1),
                    Err(_) => progress.failed(),
                }
                (result, started.elapsed().as_micros() as u64)
            }
        })
        .buffered(200)
        .collect()
        .await;
    // The progress line has counted these already, as they came.
    let mut tally = Tally::new();
    let mut sockets = Vec::with_capacity(count);
    for (result, micros) in opened {
        match result {
            Ok(socket) => {
                tally.success(micros);
                sockets.push(socket);
            }
            Err(code) => tally.error(&code),
        }
    }
    (sockets, tally)
}

/// A short code for an I/O error ("too_many_open_files" is the one to expect past `ulimit -n`).
pub fn io_code(error: &std::io::Error) -> String {
    match error.raw_os_error() {
        Some(24) => "too_many_open_files".to_owned(),
        Some(99) => "address_not_available".to_owned(),
        _ => error.kind().to_string().replace(' ', "_"),
    }
}

/// The next text frame, skipping control frames; `closed` when the session ends and `timeout`
/// when nothing arrives before `until`.
pub async fn next_text<S>(socket: &mut S, until: Instant) -> Result<Utf8Bytes, String>
where
    S: futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
{
    loop {
        match tokio::time::timeout_at(until.into(), socket.next()).await {
            Err(_) => return Err("timeout".to_owned()),
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return Err("closed".to_owned()),
            Ok(Some(Ok(Message::Text(text)))) => return Ok(text),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// The fields of a Switchboard frame that the workers look at; the rest is skipped unparsed.
#[derive(Deserialize, Default)]
pub struct Frame {
    /// The frame's `type`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The `id` of the request that caused it.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// The error code of an `error` frame.
    #[serde(default)]
    pub code: Option<String>,
    /// How long a `rate_limited` error asks the client to wait.
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
}

impl Frame {
    /// Reads the header fields of a frame (an empty frame when it is not JSON).
    pub fn parse(text: &str) -> Frame {
        serde_json::from_str(text).unwrap_or_default()
    }

    /// Whether this frame answers the request with id `id`.
    pub fn answers(&self, id: &str) -> bool {
        self.reply_to.as_deref() == Some(id)
    }
}

/// A load user: registered, logged in, with its id from the login answer.
pub struct LoadUser {
    /// Email (unique per run).
    pub email: String,
    /// Access token (15 minutes).
    pub token: String,
    /// User id.
    pub user_id: String,
}

/// Registers a fresh user and logs it in.
pub async fn register_and_login(client: &Client, base_url: &str) -> Result<LoadUser, String> {
    let email = format!("load-{}@example.com", uuid::Uuid::new_v4().simple());
    let body = json!({"email": email, "password": PASSWORD, "first_name": "Load", "last_name": "Test"});
    let registered = client
        .post(format!("{base_url}/api/register"))
        .json(&body)
        .send()
        .await
        .map_err(|error| format!("cannot reach {base_url}: {error}"))?;
    if registered.status() != StatusCode::CREATED {
        return Err(format!(
            "registration answered {} (raise --registrations-per-ip-per-hour)",
            registered.status()
        ));
    }
    let login = log_in(client, base_url, &email, PASSWORD).await?;
    Ok(LoadUser { email, token: login.0, user_id: login.1 })
}

/// Logs in and returns the access token and the user id.
pub async fn log_in(
    client: &Client,
    base_url: &str,
    email: &str,
    password: &str,
) -> Result<(String, String), String> {
    let answer = client
        .post(format!("{base_url}/api/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .map_err(|error| format!("login: {error}"))?;
    if answer.status() != StatusCode::OK {
        return Err(format!("login of {email} answered {}", answer.status()));
    }
    let body: Value = answer.json().await.map_err(|error| format!("login body: {error}"))?;
    let token = body["access_token"].as_str().ok_or("login answer without access_token")?;
    let user_id = body["user"]["id"].as_str().unwrap_or_default();
    Ok((token.to_owned(), user_id.to_owned()))
}

/// Registers `count` users, eight at a time (password hashing is the server's bottleneck here).
pub async fn register_users(base_url: &str, count: usize) -> Result<Vec<LoadUser>, String> {
    eprintln!("registering and logging in {count} load users at {base_url}");
    let client = Client::new();
    let users: Vec<Result<LoadUser, String>> = futures_util::stream::iter(0..count)
        .map(|_| register_and_login(&client, base_url))
        .buffer_unordered(8)
        .collect()
        .await;
    users.into_iter().collect()
}

/// The access tokens of `users`.
pub fn tokens_of(users: &[LoadUser]) -> Vec<String> {
    users.iter().map(|user| user.token.clone()).collect()
}
