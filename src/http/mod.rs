//! The REST API: routes, JSON bodies, views, and the OpenAPI document.

pub mod auth;
pub mod health;
pub mod json;
pub mod openapi;
pub mod profile;
pub mod validate;
pub mod views;

use actix_web::{HttpResponse, Resource, web};

use crate::error::ApiError;

/// Registers every REST route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|e, _| {
        ApiError::field("query", e.to_string().split(':').next().unwrap_or("invalid query")).into()
    }))
    .app_data(web::PayloadConfig::new(json::MAX_BODY_BYTES))
    .service(resource("/healthz").route(web::get().to(health::healthz)))
    .service(resource("/readyz").route(web::get().to(health::readyz)))
    .service(resource("/api/openapi.json").route(web::get().to(openapi::openapi_json)))
    .service(resource("/api/register").route(web::post().to(auth::register)))
    .service(resource("/api/login").route(web::post().to(auth::login)))
    .service(resource("/api/token/refresh").route(web::post().to(auth::refresh)))
    .service(resource("/api/logout").route(web::post().to(auth::logout)))
    .service(resource("/api/password/forgot").route(web::post().to(auth::forgot_password)))
    .service(resource("/api/password/reset").route(web::post().to(auth::reset_password)))
    .service(resource("/api/ws-ticket").route(web::post().to(auth::ws_ticket)))
    .service(resource("/api/me").route(web::get().to(profile::get_me)).route(web::put().to(profile::update_me)))
    .service(resource("/api/me/stats").route(web::get().to(profile::stats)))
    .service(resource("/api/me/usage").route(web::get().to(profile::usage)))
    .service(resource("/api/me/api-key").route(web::post().to(profile::regenerate_api_key)))
    .service(resource("/api/me/password").route(web::post().to(profile::change_password)));
}

/// A resource that answers 405 in the JSON error shape for methods it has no route for.
fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(|| async { HttpResponse::from_error(ApiError::MethodNotAllowed) }))
}

/// The answer for unknown routes.
pub async fn not_found() -> HttpResponse {
    HttpResponse::from_error(ApiError::NotFound)
}
