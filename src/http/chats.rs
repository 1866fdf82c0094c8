//! The signed-in user's chats and their messages over REST (the WebSocket is where they are made).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::ToSchema;
use validator::Validate;

use crate::http::error::{ApiError, ErrorBody};
use crate::input::credentials::CurrentUser;
use crate::input::json::ValidJson;
use crate::input::paging::{ChatPageQuery, PageQuery, Paging};
use crate::services::text::ChatTitle;
use crate::state::AppState;
use crate::views::{ChatView, MessageView};

/// Body of `PATCH /api/chats/{id}`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameChatRequest {
    /// The new title: 1 to 200 characters once trimmed, no control characters.
    pub title: ChatTitle,
}

/// The user's chats, most recently active first, a page at a time: when there may be more, the
/// `Link` header names the next page (`rel="next"`, its `before` is an opaque cursor).
#[utoipa::path(get, path = "/api/chats", tag = "chats", params(ChatPageQuery),
    responses((status = 200, body = [ChatView], headers(("Link" = String, description = "the next page, rel=\"next\""))),
        (status = 401, body = ErrorBody)))]
pub async fn list_chats(
    state: web::Data<AppState>,
    current: CurrentUser,
    page: Paging,
) -> Result<HttpResponse, ApiError> {
    let chats = state.conversation.chats(&current.user.id, page.before.as_deref(), page.limit).await?;
    let mut response = HttpResponse::Ok();
    if let Some(next) = &chats.next_before {
        // Cursors are digits, a dot and a UUID: nothing to escape in a query string.
        response.insert_header((
            "Link",
            format!("</api/chats?limit={}&before={next}>; rel=\"next\"", page.limit.get()),
        ));
    }
    Ok(response.json(chats.items.iter().map(ChatView::from).collect::<Vec<_>>()))
}

/// Messages of one of the user's chats, oldest first (`before`: a message id); other users'
/// chats are 404.
#[utoipa::path(get, path = "/api/chats/{id}/messages", tag = "chats", params(("id" = String, Path, description = "chat id"), PageQuery),
    responses((status = 200, body = [MessageView]), (status = 404, body = ErrorBody)))]
pub async fn chat_messages(
    state: web::Data<AppState>,
    current: CurrentUser,
    path: web::Path<String>,
    page: Paging,
) -> Result<HttpResponse, ApiError> {
    let messages =
        state.conversation.history(&current.user.id, &path, page.before.as_deref(), page.limit).await?;
    let views: Vec<MessageView> = messages
        .iter()
        .map(|(message, seq)| MessageView { seq: *seq, ..MessageView::from(message) })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

/// Renames one of the user's chats (its place in the list stays); others' chats are 404.
#[utoipa::path(patch, path = "/api/chats/{id}", tag = "chats", params(("id" = String, Path, description = "chat id")),
    request_body = RenameChatRequest,
    responses((status = 200, body = ChatView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn rename_chat(
    state: web::Data<AppState>,
    current: CurrentUser,
    path: web::Path<String>,
    ValidJson(body): ValidJson<RenameChatRequest>,
) -> Result<HttpResponse, ApiError> {
    let chat = state.conversation.rename_chat(&current.user.id, &path, &body.title).await?;
    Ok(HttpResponse::Ok().json(ChatView::from(&chat)))
}

/// Deletes one of the user's chats with its messages, freeing a place under the chat cap;
/// others' chats are 404.
#[utoipa::path(delete, path = "/api/chats/{id}", tag = "chats", params(("id" = String, Path, description = "chat id")),
    responses((status = 204, description = "the chat and its messages are gone"), (status = 404, body = ErrorBody)))]
pub async fn delete_chat(
    state: web::Data<AppState>,
    current: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.conversation.delete_chat(&current.user.id, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}
