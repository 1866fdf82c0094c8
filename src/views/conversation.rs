//! Chats, their messages and images, as both edges show them: REST answers and WebSocket frames
//! carry the same views.

use serde::Serialize;

use crate::store::{Chat, ChatMessage, Image, MessageRole};

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
