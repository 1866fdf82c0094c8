//! `GET /api/models`: the model catalogue as the caller's role may use it.

use actix_web::{HttpResponse, web};

use crate::http::error::{ApiError, ErrorBody};
use crate::input::credentials::CurrentUser;
use crate::state::AppState;
use crate::views::ModelsView;

/// The chat and image models the caller may use, with their prices (docs/API.md §8).
#[utoipa::path(get, path = "/api/models", tag = "models",
    responses((status = 200, body = ModelsView), (status = 401, body = ErrorBody)))]
pub async fn list_models(state: web::Data<AppState>, current: CurrentUser) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ModelsView::for_role(state.conversation.catalogue(), current.user.role)))
}
