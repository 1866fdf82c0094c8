//! Chats, their messages and images, as both edges show them: REST answers and WebSocket frames
//! carry the same views.

use serde::Serialize;

use crate::store::{Chat, ChatMessage, Image, MessageRole, MessageStatus, TokenUsage};

/// A chat as clients see it.
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

/// A chat message as clients see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    /// Opaque id.
    pub id: String,
    /// Its chat.
    pub chat_id: String,
    /// `user` or `assistant`.
    pub role: MessageRole,
    /// Text (of a running reply: what was written so far).
    pub content: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    /// `streaming`, `complete`, `stopped`, `failed` or `interrupted` (a user's message: `complete`).
    pub status: MessageStatus,
    /// An assistant reply's model.
    pub model: Option<String>,
    /// Credits an ended reply was charged.
    pub charged: Option<i64>,
    /// The tokens an ended reply used.
    pub usage: Option<UsageView>,
    /// A running reply: the `seq` of the last delta `content` includes (`chat.resume` from it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// The tokens a chat turn used.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct UsageView {
    /// Tokens read.
    pub input_tokens: u64,
    /// Tokens written.
    pub output_tokens: u64,
    /// Counted by the server because the upstream reported none.
    pub estimated: bool,
}

impl From<TokenUsage> for UsageView {
    fn from(u: TokenUsage) -> UsageView {
        UsageView { input_tokens: u.input_tokens, output_tokens: u.output_tokens, estimated: u.estimated }
    }
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
    /// The image model that made it.
    pub model: Option<String>,
    /// Credits it was charged.
    pub charged: Option<i64>,
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
            status: m.status,
            model: m.model.clone(),
            charged: m.charged,
            usage: m.usage.map(UsageView::from),
            seq: None,
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
            model: image.model.clone(),
            charged: image.charged,
        }
    }
}
