//! The signed-in user's chats and their messages over REST (the WebSocket is where they are made).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::query::Query;
use crate::auth::extract::CurrentUser;
use crate::error::{ApiError, ErrorBody};
use crate::startup::AppState;
use crate::ws::protocol::{ChatView, MessageView};
use crate::ws::work::{chat_view, message_view};

/// Paging of messages.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    /// Messages per page, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Only messages before this message id.
    pub before: Option<String>,
}

/// The user's chats, most recently active first.
#[utoipa::path(get, path = "/api/chats", tag = "chats", responses((status = 200, body = [ChatView]), (status = 401, body = ErrorBody)))]
pub async fn list_chats(state: web::Data<AppState>, current: CurrentUser) -> Result<HttpResponse, ApiError> {
    let chats = state.store.chats_of(&current.user.id, 100).await?;
    Ok(HttpResponse::Ok().json(chats.iter().map(chat_view).collect::<Vec<_>>()))
}

/// Messages of one of the user's chats, oldest first; other users' chats are 404.
#[utoipa::path(get, path = "/api/chats/{id}/messages", tag = "chats", params(("id" = String, Path, description = "chat id"), MessagesQuery),
    responses((status = 200, body = [MessageView]), (status = 404, body = ErrorBody)))]
pub async fn chat_messages(
    state: web::Data<AppState>,
    current: CurrentUser,
    path: web::Path<String>,
    query: Query<MessagesQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::field("limit", "must be 1 to 100"));
    }
    let chat =
        state.store.chat(&path).await?.filter(|c| c.user_id == current.user.id).ok_or(ApiError::NotFound)?;
    let messages = state.store.messages_page(&chat.id, query.before.as_deref(), limit).await?;
    Ok(HttpResponse::Ok().json(messages.iter().map(message_view).collect::<Vec<_>>()))
}
