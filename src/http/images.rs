//! Generated images over REST: the owner's list, one image, and its PNG (admins see any image).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::query::Query;
use crate::auth::extract::CurrentUser;
use crate::error::{ApiError, ErrorBody};
use crate::startup::AppState;
use crate::store::{Image, Role};
use crate::ws::protocol::ImageView;
use crate::ws::work::image_view;

/// Paging of images.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImagesQuery {
    /// Images per page, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Only images before this image id.
    pub before: Option<String>,
}

/// The user's images, newest first.
#[utoipa::path(get, path = "/api/images", tag = "images", params(ImagesQuery), responses((status = 200, body = [ImageView]), (status = 401, body = ErrorBody)))]
pub async fn list_images(
    state: web::Data<AppState>,
    current: CurrentUser,
    query: Query<ImagesQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::field("limit", "must be 1 to 100"));
    }
    let images = state.store.images_of(&current.user.id, query.before.as_deref(), limit).await?;
    Ok(HttpResponse::Ok().json(images.iter().map(image_view).collect::<Vec<_>>()))
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
    Ok(HttpResponse::Ok().json(image_view(&image)))
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
    let png = state.store.image_png(&image.id).await?.ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type("image/png")
        .insert_header(("Cache-Control", "private, max-age=86400, immutable"))
        .body(png))
}

async fn visible_image(state: &AppState, current: &CurrentUser, id: &str) -> Result<Image, ApiError> {
    let image = state.store.image(id).await?.ok_or(ApiError::NotFound)?;
    if image.user_id == current.user.id || current.user.role == Role::Admin {
        Ok(image)
    } else {
        Err(ApiError::NotFound)
    }
}
