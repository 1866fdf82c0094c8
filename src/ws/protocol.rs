//! The WebSocket wire protocol (docs/API.md §5) in one place: what clients send
//! ([`ClientMessage`]), what the server sends ([`ServerMessage`]), error codes and close codes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::seams::presence::{PresenceEvent, Snapshot, UserPresence};
use crate::services::Event;
use crate::store::{Chat, ChatMessage, Image, MessageRole, Role};

/// Largest accepted frame (and reassembled message), bytes; larger ones close with 1009.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Longest accepted `id`.
pub const MAX_ID_CHARS: usize = 64;

/// Close codes the server uses.
pub mod close {
    /// The server is stopping.
    pub const SHUTDOWN: u16 = 1001;
    /// A frame above [`super::MAX_MESSAGE_BYTES`].
    pub const TOO_BIG: u16 = 1009;
    /// The session's credential was revoked (logout, password change, deactivation, role change).
    pub const REVOKED: u16 = 4001;
    /// The client stopped reading and its outbound queue filled up.
    pub const SLOW: u16 = 4002;
    /// No frame from the client for three heartbeat intervals.
    pub const TIMEOUT: u16 = 4003;
}

/// Error codes of `{"type":"error"}` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Bad JSON, unknown type, missing or bad field, binary frame.
    InvalidMessage,
    /// The balance is below the price.
    InsufficientCredits,
    /// Too many paid messages; see `retry_after_ms`.
    RateLimited,
    /// No such chat (or not yours).
    NotFound,
    /// A per-user cap on stored things is reached (chats); delete some to make room.
    QuotaExceeded,
    /// Not allowed for this role.
    Forbidden,
    /// Storage or the assistant/image service failed; any charge was refunded.
    Unavailable,
    /// A bug; logged.
    Internal,
}

/// A frame from the client, after its `id` was taken off. Variants without fields are empty
/// structs, not unit variants, because serde's `deny_unknown_fields` does not reach unit
/// variants of an internally tagged enum (`{"type":"ping","x":1}` would pass).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum ClientMessage {
    /// Liveness check.
    #[serde(rename = "ping")]
    Ping {},
    /// The balance now.
    #[serde(rename = "credits.get")]
    CreditsGet {},
    /// Start a chat.
    #[serde(rename = "chat.create")]
    ChatCreate {
        /// Optional title (default "New chat").
        #[serde(default)]
        title: Option<String>,
    },
    /// The user's chats, a page at a time.
    #[serde(rename = "chat.list")]
    ChatList {
        /// The `next_before` of the previous page.
        #[serde(default)]
        before: Option<String>,
        /// At most this many (1 to 100, default 50).
        #[serde(default)]
        limit: Option<i64>,
    },
    /// Messages of a chat, oldest first.
    #[serde(rename = "chat.history")]
    ChatHistory {
        /// Which chat.
        chat_id: String,
        /// Only messages before this message id.
        #[serde(default)]
        before: Option<String>,
        /// At most this many (1 to 100, default 50).
        #[serde(default)]
        limit: Option<i64>,
    },
    /// Send a message (paid) and stream the assistant's reply.
    #[serde(rename = "chat.send")]
    ChatSend {
        /// Which chat.
        chat_id: String,
        /// The message.
        content: String,
        /// Retries with the same key (within 24 hours) are charged once and answered with
        /// the first request's reply.
        #[serde(default)]
        idempotency_key: Option<String>,
    },
    /// Generate an image (paid).
    #[serde(rename = "image.generate")]
    ImageGenerate {
        /// What to draw.
        prompt: String,
        /// Width in pixels (256 to 1024, default 512).
        #[serde(default)]
        width: Option<u32>,
        /// Height in pixels (256 to 1024, default 512).
        #[serde(default)]
        height: Option<u32>,
        /// Retries with the same key (within 24 hours) are charged once and answered with
        /// the first request's image.
        #[serde(default)]
        idempotency_key: Option<String>,
    },
    /// Admins: follow who is online.
    #[serde(rename = "presence.subscribe")]
    PresenceSubscribe {},
    /// Stop following presence.
    #[serde(rename = "presence.unsubscribe")]
    PresenceUnsubscribe {},
}

impl ClientMessage {
    /// The `type` as a static label (for metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMessage::Ping {} => "ping",
            ClientMessage::CreditsGet {} => "credits.get",
            ClientMessage::ChatCreate { .. } => "chat.create",
            ClientMessage::ChatList { .. } => "chat.list",
            ClientMessage::ChatHistory { .. } => "chat.history",
            ClientMessage::ChatSend { .. } => "chat.send",
            ClientMessage::ImageGenerate { .. } => "image.generate",
            ClientMessage::PresenceSubscribe {} => "presence.subscribe",
            ClientMessage::PresenceUnsubscribe {} => "presence.unsubscribe",
        }
    }
}

/// Why a text frame could not be read, with the `id` when it was readable.
#[derive(Debug, Clone, PartialEq)]
pub struct BadFrame {
    /// The client's `id`, to echo as `reply_to`.
    pub id: Option<String>,
    /// What was wrong (no input echoed).
    pub problem: String,
}

/// Parses a text frame into its `id` and message.
pub fn parse(text: &str) -> Result<(Option<String>, ClientMessage), BadFrame> {
    let bad = |id: Option<String>, problem: &str| BadFrame { id, problem: problem.to_owned() };
    let mut value: Value = serde_json::from_str(text).map_err(|_| bad(None, "frame is not valid JSON"))?;
    let object = value.as_object_mut().ok_or_else(|| bad(None, "frame must be a JSON object"))?;
    let id = match object.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if id.chars().count() <= MAX_ID_CHARS => Some(id),
        Some(_) => return Err(bad(None, "id must be a string of at most 64 characters")),
    };
    if !object.get("type").is_some_and(Value::is_string) {
        return Err(bad(id, "type must be a string"));
    }
    match serde_json::from_value::<ClientMessage>(value) {
        Ok(message) => Ok((id, message)),
        Err(e) => {
            let text = e.to_string();
            let problem = if text.starts_with("unknown variant") {
                "unknown message type".to_owned()
            } else {
                // serde's text names fields and expected types; it echoes no string values
                // except unknown variant names, handled above.
                text.split(" at line").next().unwrap_or("bad field").to_owned()
            };
            Err(BadFrame { id, problem })
        }
    }
}

/// A user as the `hello` frame shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HelloUser {
    /// User id.
    pub id: String,
    /// Email.
    pub email: String,
    /// `user` or `admin`.
    pub role: Role,
}

/// What paid work costs, as the `hello` frame shows it (so a page can show a price before sending).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PricesView {
    /// Credits per chat message.
    pub chat: i64,
    /// Credits per image.
    pub image: i64,
}

/// A chat as frames show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChatView {
    /// Opaque id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    /// Time of the last message.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: time::OffsetDateTime,
}

/// A chat message as frames show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    /// Opaque id.
    pub id: String,
    /// Its chat.
    pub chat_id: String,
    /// `user` or `assistant`.
    pub role: MessageRole,
    /// Text.
    pub content: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
}

/// An image as frames and REST show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImageView {
    /// Opaque id.
    pub id: String,
    /// The prompt.
    pub prompt: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Where the PNG is.
    pub url: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
}

/// One user in presence frames.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PresenceUserView {
    /// User id.
    pub user_id: String,
    /// Email.
    pub email: String,
    /// Open sessions.
    pub sessions: usize,
    /// Start of the oldest open session.
    #[serde(with = "time::serde::rfc3339")]
    pub connected_since: time::OffsetDateTime,
}

/// Who is online (`presence.snapshot`, and `GET /api/admin/presence`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PresenceSnapshotView {
    /// Users online, oldest connection first.
    pub users: Vec<PresenceUserView>,
    /// Distinct users online.
    pub active_users: usize,
    /// Open WebSocket sessions.
    pub sessions: usize,
}

impl From<&Chat> for ChatView {
    fn from(chat: &Chat) -> ChatView {
        ChatView {
            id: chat.id.clone(),
            title: chat.title.clone(),
            created_at: chat.created_at,
            updated_at: chat.updated_at,
        }
    }
}

impl From<&ChatMessage> for MessageView {
    fn from(m: &ChatMessage) -> MessageView {
        MessageView {
            id: m.id.clone(),
            chat_id: m.chat_id.clone(),
            role: m.role,
            content: m.content.clone(),
            created_at: m.created_at,
        }
    }
}

impl From<&Image> for ImageView {
    fn from(image: &Image) -> ImageView {
        ImageView {
            id: image.id.clone(),
            prompt: image.prompt.clone(),
            width: image.width,
            height: image.height,
            url: format!("/api/images/{}/content", image.id),
            created_at: image.created_at,
        }
    }
}

impl From<&UserPresence> for PresenceUserView {
    fn from(user: &UserPresence) -> PresenceUserView {
        PresenceUserView {
            user_id: user.user_id.to_string(),
            email: user.email.to_string(),
            sessions: user.sessions,
            connected_since: time::OffsetDateTime::from(user.connected_since),
        }
    }
}

impl From<&Snapshot> for PresenceSnapshotView {
    fn from(s: &Snapshot) -> PresenceSnapshotView {
        PresenceSnapshotView {
            users: s.users.iter().map(PresenceUserView::from).collect(),
            active_users: s.active_users,
            sessions: s.sessions,
        }
    }
}

/// A frame from the server.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type")]
pub enum ServerMessage {
    /// First frame of every connection.
    #[serde(rename = "hello")]
    Hello {
        /// This connection's id.
        session_id: String,
        /// The server node this connection reached.
        node: String,
        /// Who is connected.
        user: HelloUser,
        /// Balance now.
        credits: i64,
        /// Server ping interval.
        heartbeat_ms: u64,
        /// Largest accepted frame.
        max_message_bytes: usize,
        /// What `chat.send` and `image.generate` cost.
        prices: PricesView,
    },
    /// Answer to `ping`.
    #[serde(rename = "pong")]
    Pong,
    /// Answer to `credits.get`.
    #[serde(rename = "credits")]
    Credits {
        /// Balance now.
        credits: i64,
    },
    /// A chat was created.
    #[serde(rename = "chat.created")]
    ChatCreated {
        /// The chat.
        chat: ChatView,
    },
    /// The user's chats.
    #[serde(rename = "chat.list")]
    ChatList {
        /// Most recently active first.
        chats: Vec<ChatView>,
        /// Pass as `before` for the next page; null on the last page.
        next_before: Option<String>,
    },
    /// Messages of a chat.
    #[serde(rename = "chat.history")]
    ChatHistory {
        /// Which chat.
        chat_id: String,
        /// Oldest first.
        messages: Vec<MessageView>,
    },
    /// The user's message was stored.
    #[serde(rename = "chat.message")]
    ChatMessage {
        /// Which chat.
        chat_id: String,
        /// The message.
        message: MessageView,
    },
    /// A piece of the assistant's reply.
    #[serde(rename = "chat.delta")]
    ChatDelta {
        /// Which chat.
        chat_id: String,
        /// The reply's message id.
        message_id: String,
        /// The next piece of text.
        delta: String,
    },
    /// The assistant's reply is complete and stored.
    #[serde(rename = "chat.done")]
    ChatDone {
        /// Which chat.
        chat_id: String,
        /// The reply.
        message: MessageView,
        /// Balance now.
        credits: i64,
    },
    /// An image was generated.
    #[serde(rename = "image.created")]
    ImageCreated {
        /// The image.
        image: ImageView,
        /// Balance now.
        credits: i64,
    },
    /// Who is online (answer to `presence.subscribe`).
    #[serde(rename = "presence.snapshot")]
    PresenceSnapshot(PresenceSnapshotView),
    /// A user opened their first session.
    #[serde(rename = "presence.joined")]
    PresenceJoined(PresenceUserView),
    /// A user closed their last session.
    #[serde(rename = "presence.left")]
    PresenceLeft {
        /// Who.
        user_id: String,
        /// Their email.
        email: String,
        /// `closed`, `timeout`, `revoked`, `slow`, `shutdown` or (several nodes) `node_lost`.
        reason: &'static str,
    },
    /// A user's session count changed.
    #[serde(rename = "presence.sessions")]
    PresenceSessions {
        /// Who.
        user_id: String,
        /// Open sessions now.
        sessions: usize,
    },
    /// Answer to `presence.unsubscribe`.
    #[serde(rename = "presence.unsubscribed")]
    PresenceUnsubscribed,
    /// The balance changed.
    #[serde(rename = "credits.updated")]
    CreditsUpdated {
        /// Balance now.
        credits: i64,
    },
    /// The session's credential was revoked; close 4001 follows.
    #[serde(rename = "session.revoked")]
    SessionRevoked {
        /// Why.
        reason: String,
    },
    /// Something went wrong with a request.
    #[serde(rename = "error")]
    Error {
        /// Machine code.
        code: ErrorCode,
        /// Sentence for people.
        message: String,
        /// For `rate_limited`: when to retry.
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

impl From<Event> for ServerMessage {
    fn from(event: Event) -> ServerMessage {
        match event {
            Event::CreditsUpdated { credits } => ServerMessage::CreditsUpdated { credits },
            Event::ChatMessage { chat_id, message } => {
                ServerMessage::ChatMessage { chat_id, message: MessageView::from(&message) }
            }
            Event::ChatDelta { chat_id, message_id, delta } => {
                ServerMessage::ChatDelta { chat_id, message_id, delta }
            }
            Event::ChatDone { chat_id, message, credits } => {
                ServerMessage::ChatDone { chat_id, message: MessageView::from(&message), credits }
            }
            Event::ImageCreated { image, credits } => {
                ServerMessage::ImageCreated { image: ImageView::from(&image), credits }
            }
        }
    }
}

impl From<PresenceEvent> for ServerMessage {
    fn from(event: PresenceEvent) -> ServerMessage {
        match event {
            PresenceEvent::Joined(user) => ServerMessage::PresenceJoined(PresenceUserView::from(&user)),
            PresenceEvent::Left { user_id, email, reason } => ServerMessage::PresenceLeft {
                user_id: user_id.to_string(),
                email: email.to_string(),
                reason: reason.as_str(),
            },
            PresenceEvent::Sessions { user_id, sessions } => {
                ServerMessage::PresenceSessions { user_id: user_id.to_string(), sessions }
            }
        }
    }
}

impl ServerMessage {
    /// An error frame.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerMessage {
        ServerMessage::Error { code, message: message.into(), retry_after_ms: None }
    }

    /// The `type` as a static label (for metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            ServerMessage::Hello { .. } => "hello",
            ServerMessage::Pong => "pong",
            ServerMessage::Credits { .. } => "credits",
            ServerMessage::ChatCreated { .. } => "chat.created",
            ServerMessage::ChatList { .. } => "chat.list",
            ServerMessage::ChatHistory { .. } => "chat.history",
            ServerMessage::ChatMessage { .. } => "chat.message",
            ServerMessage::ChatDelta { .. } => "chat.delta",
            ServerMessage::ChatDone { .. } => "chat.done",
            ServerMessage::ImageCreated { .. } => "image.created",
            ServerMessage::PresenceSnapshot(_) => "presence.snapshot",
            ServerMessage::PresenceJoined(_) => "presence.joined",
            ServerMessage::PresenceLeft { .. } => "presence.left",
            ServerMessage::PresenceSessions { .. } => "presence.sessions",
            ServerMessage::PresenceUnsubscribed => "presence.unsubscribed",
            ServerMessage::CreditsUpdated { .. } => "credits.updated",
            ServerMessage::SessionRevoked { .. } => "session.revoked",
            ServerMessage::Error { .. } => "error",
        }
    }

    /// The JSON text of this frame, with `reply_to` when the frame answers a request with an id.
    pub fn encode(&self, reply_to: Option<&str>) -> String {
        #[derive(Serialize)]
        struct Envelope<'a> {
            #[serde(flatten)]
            message: &'a ServerMessage,
            #[serde(skip_serializing_if = "Option::is_none")]
            reply_to: Option<&'a str>,
        }
        // Plain structs of strings and numbers always serialise.
        serde_json::to_string(&Envelope { message: self, reply_to }).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_with_and_without_id() {
        let (id, msg) = parse(r#"{"type":"chat.send","id":"a1","chat_id":"c","content":"hi"}"#).unwrap();
        assert_eq!(id.as_deref(), Some("a1"));
        assert_eq!(
            msg,
            ClientMessage::ChatSend { chat_id: "c".into(), content: "hi".into(), idempotency_key: None }
        );
        assert_eq!(parse(r#"{"type":"ping"}"#).unwrap(), (None, ClientMessage::Ping {}));
    }

    #[test]
    fn bad_frames_are_described_and_keep_their_id() {
        let cases = [
            ("not JSON", "{", None),
            ("array", "[]", None),
            ("unknown type", r#"{"type":"nope","id":"x"}"#, Some("x")),
            ("missing field", r#"{"type":"chat.send","id":"y","chat_id":"c"}"#, Some("y")),
            ("wrong type", r#"{"type":"chat.send","chat_id":5,"content":"a"}"#, None),
            ("unknown field", r#"{"type":"chat.list","id":"z","admin":true}"#, Some("z")),
            ("long id", &format!(r#"{{"type":"ping","id":"{}"}}"#, "i".repeat(65)), None),
            ("operator object", r#"{"type":"chat.history","chat_id":{"$gt":""}}"#, None),
        ];
        for (case, text, id) in cases {
            let err = parse(text).expect_err(case);
            assert_eq!(err.id.as_deref(), id, "{case}");
            assert!(!err.problem.is_empty(), "{case}");
        }
    }

    #[test]
    fn server_frames_carry_type_and_reply_to() {
        let text = ServerMessage::Credits { credits: 7 }.encode(Some("r1"));
        assert_eq!(text, r#"{"type":"credits","credits":7,"reply_to":"r1"}"#);
        let text = ServerMessage::error(ErrorCode::RateLimited, "slow down").encode(None);
        assert_eq!(text, r#"{"type":"error","code":"rate_limited","message":"slow down"}"#);
    }
}
