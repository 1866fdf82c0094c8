//! Generated images over REST: the owner's list, one image, and its PNG (admins see any image).

use actix_web::{HttpResponse, web};

use crate::http::error::{ApiError, ErrorBody};
use crate::input::credentials::CurrentUser;
use crate::input::paging::{PageQuery, Paging};
use crate::security::client_ip::ClientIp;
use crate::state::AppState;
use crate::store::{Image, Role};
use crate::views::ImageView;

/// The user's images, newest first (`before`: an image id).
#[utoipa::path(get, path = "/api/images", tag = "images", params(PageQuery), responses((status = 200, body = [ImageView]), (status = 401, body = ErrorBody)))]
pub async fn list_images(
    state: web::Data<AppState>,
    current: CurrentUser,
    page: Paging,
) -> Result<HttpResponse, ApiError> {
    let images = state.conversation.images(&current.user.id, page.before.as_deref(), page.limit).await?;
    Ok(HttpResponse::Ok().json(images.iter().map(ImageView::from).collect::<Vec<_>>()))
}

/// One image (the owner's, or any for admins; else 404).
#[utoipa::path(get, path = "/api/images/{id}", tag = "images", params(("id" = String, Path, description = "image id")),
    responses((status = 200, body = ImageView), (status = 404, body = ErrorBody)))]
pub async fn get_image(
    state: web::Data<AppState>,
    current: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let image = visible_image(&state, &current, &path).await?;
    Ok(HttpResponse::Ok().json(ImageView::from(&image)))
}

/// The PNG of an image.
#[utoipa::path(get, path = "/api/images/{id}/content", tag = "images", params(("id" = String, Path, description = "image id")),
    responses((status = 200, content_type = "image/png", description = "the PNG"), (status = 404, body = ErrorBody)))]
pub async fn image_content(
    state: web::Data<AppState>,
    current: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let image = visible_image(&state, &current, &path).await?;
    let png = state.conversation.image_png(&image).await?;
    Ok(HttpResponse::Ok()
        .content_type("image/png")
        .insert_header(("Cache-Control", "private, max-age=86400, immutable"))
        .body(png))
}

/// Deletes an image and its PNG: the owner's, or any for admins (who moderate; logged as
/// `admin_image_deleted`); else 404.
#[utoipa::path(delete, path = "/api/images/{id}", tag = "images", params(("id" = String, Path, description = "image id")),
    responses((status = 204, description = "the image and its PNG are gone"), (status = 404, body = ErrorBody)))]
pub async fn delete_image(
    state: web::Data<AppState>,
    current: CurrentUser,
    ip: ClientIp,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let admin = current.user.role == Role::Admin;
    let image = state.conversation.delete_image(&current.user.id, admin, &path).await?;
    if image.user_id != current.user.id {
        tracing::info!(event = "admin_image_deleted", admin_id = %current.user.id, user_id = %image.user_id,
            image_id = %image.id, client_ip = %ip, "admin deleted a user's image");
    }
    Ok(HttpResponse::NoContent().finish())
}

async fn visible_image(state: &AppState, current: &CurrentUser, id: &str) -> Result<Image, ApiError> {
    Ok(state.conversation.image(&current.user.id, current.user.role == Role::Admin, id).await?)
}
