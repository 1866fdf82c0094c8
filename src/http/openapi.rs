//! The OpenAPI 3 document, generated from the handlers' annotations by utoipa.

use actix_web::HttpResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, auth, chats, health, images, profile, views};
use crate::error::ErrorBody;

/// Every route of the REST API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard", description = "Accounts, credits and realtime presence for an AI chat and image service."),
    paths(
        auth::register, auth::login, auth::refresh, auth::logout, auth::forgot_password, auth::reset_password,
        auth::ws_ticket, profile::get_me, profile::update_me, profile::stats, profile::usage,
        profile::regenerate_api_key, profile::change_password, chats::list_chats, chats::chat_messages,
        images::list_images, images::get_image, images::image_content, admin::list_users, admin::get_user,
        admin::update_user, admin::grant_credits, admin::user_usage, admin::presence,
        crate::ws::upgrade::upgrade, crate::metrics::metrics_endpoint, health::healthz, health::readyz, openapi_json,
    ),
    components(schemas(ErrorBody, views::UserView, views::LedgerEntryView, views::UsagePage)),
    modifiers(&SecuritySchemes),
    security(("bearer" = []), ("api_key" = []), ("cookie" = [])),
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT or sk_ API key").build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("sb_access"))),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta", security(()), responses((status = 200, description = "OpenAPI 3 document")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
