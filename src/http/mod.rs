//! The REST API: routes, JSON bodies, views, and the OpenAPI document.

pub mod admin;
pub mod auth;
pub mod chats;
pub mod health;
pub mod images;
pub mod json;
pub mod openapi;
pub mod profile;
pub mod query;
pub mod validate;
pub mod views;

use actix_web::http::header;
use actix_web::{HttpResponse, Resource, web};

use crate::error::ApiError;

/// Registers every REST route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(json::MAX_BODY_BYTES))
        .service(resource("/healthz", "GET").route(web::get().to(health::healthz)))
        .service(resource("/readyz", "GET").route(web::get().to(health::readyz)))
        .service(
            resource(crate::metrics::METRICS_PATH, "GET")
                .route(web::get().to(crate::metrics::metrics_endpoint)),
        )
        .service(resource("/api/openapi.json", "GET").route(web::get().to(openapi::openapi_json)))
        .service(resource("/api/register", "POST").route(web::post().to(auth::register)))
        .service(resource("/api/login", "POST").route(web::post().to(auth::login)))
        .service(resource("/api/token/refresh", "POST").route(web::post().to(auth::refresh)))
        .service(resource("/api/logout", "POST").route(web::post().to(auth::logout)))
        .service(resource("/api/password/forgot", "POST").route(web::post().to(auth::forgot_password)))
        .service(resource("/api/password/reset", "POST").route(web::post().to(auth::reset_password)))
        .service(resource("/api/ws-ticket", "POST").route(web::post().to(auth::ws_ticket)))
        .service(
            resource("/api/me", "GET, PUT")
                .route(web::get().to(profile::get_me))
                .route(web::put().to(profile::update_me)),
        )
        .service(resource("/api/me/stats", "GET").route(web::get().to(profile::stats)))
        .service(resource("/api/me/usage", "GET").route(web::get().to(profile::usage)))
        .service(resource("/api/me/api-key", "POST").route(web::post().to(profile::regenerate_api_key)))
        .service(resource("/api/me/password", "POST").route(web::post().to(profile::change_password)))
        .service(resource("/api/chats", "GET").route(web::get().to(chats::list_chats)))
        .service(resource("/api/chats/{id}/messages", "GET").route(web::get().to(chats::chat_messages)))
        .service(resource("/api/images", "GET").route(web::get().to(images::list_images)))
        .service(resource("/api/images/{id}", "GET").route(web::get().to(images::get_image)))
        .service(resource("/api/images/{id}/content", "GET").route(web::get().to(images::image_content)))
        .service(resource("/api/admin/users", "GET").route(web::get().to(admin::list_users)))
        .service(
            resource("/api/admin/users/{id}", "GET, PATCH")
                .route(web::get().to(admin::get_user))
                .route(web::patch().to(admin::update_user)),
        )
        .service(
            resource("/api/admin/users/{id}/credits", "POST").route(web::post().to(admin::grant_credits)),
        )
        .service(resource("/api/admin/users/{id}/usage", "GET").route(web::get().to(admin::user_usage)))
        .service(resource("/api/admin/presence", "GET").route(web::get().to(admin::presence)))
        .service(resource("/ws", "GET").route(web::get().to(crate::ws::upgrade::upgrade)));
}

/// A resource that answers 405 in the JSON error shape, with `Allow`, for other methods.
fn resource(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move || async move {
        let mut response = HttpResponse::from_error(ApiError::MethodNotAllowed);
        response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static(allow));
        response
    }))
}

/// The answer for unknown routes.
pub async fn not_found() -> HttpResponse {
    HttpResponse::from_error(ApiError::NotFound)
}
