//! The signed-in user's chats and their messages over REST (the WebSocket is where they are made).

use actix_web::{HttpResponse, web};

use crate::auth::extract::CurrentUser;
use crate::error::{ApiError, ErrorBody};
use crate::input::paging::{PageQuery, Paging};
use crate::state::AppState;
use crate::ws::protocol::{ChatView, MessageView};

/// The user's chats, most recently active first, a page at a time: when there may be more, the
/// `Link` header names the next page (`rel="next"`, its `before` is an opaque cursor).
#[utoipa::path(get, path = "/api/chats", tag = "chats", params(PageQuery),
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
    Ok(HttpResponse::Ok().json(messages.iter().map(MessageView::from).collect::<Vec<_>>()))
}
