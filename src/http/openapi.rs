//! The OpenAPI 3 document, generated from the handlers' annotations by utoipa.

use actix_web::HttpResponse;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{AdditionalProperties, Schema};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{admin, auth, chats, health, images, metrics, models, profile, sessions};
use crate::http::error::ErrorBody;
use crate::views;

/// Every route of the REST API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard", description = "Accounts, credits and realtime presence for an AI chat and image service."),
    paths(
        auth::register, auth::login, auth::refresh, auth::logout, auth::forgot_password, auth::reset_password,
        auth::ws_ticket, models::list_models, profile::get_me, profile::update_me, profile::stats, profile::usage,
        profile::regenerate_api_key, profile::change_password, profile::daily_usage, sessions::my_sessions,
        sessions::end_my_session, sessions::end_other_sessions, chats::list_chats, chats::chat_messages,
        chats::rename_chat, chats::delete_chat, images::list_images, images::get_image, images::image_content,
        images::delete_image, admin::list_users, admin::get_user, admin::update_user, admin::grant_credits,
        admin::user_usage, admin::presence, admin::overview, sessions::user_sessions, sessions::end_user_session,
        crate::ws::upgrade::upgrade, metrics::metrics_endpoint, health::healthz, health::readyz, openapi_json,
    ),
    components(schemas(ErrorBody, views::UserView, views::LedgerEntryView, views::UsagePage)),
    modifiers(&SecuritySchemes, &CommonResponses),
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

/// Adds the answers every route of a kind can give, so that no status the server really sends is
/// missing from the document, and handlers only list what is particular to them:
///
/// | the operation… | may also answer |
/// |---|---|
/// | is under `/api/` (the REST limit counts it) | 429 |
/// | is under `/api/` and reads storage (all but this document) | 503 |
/// | takes a JSON body | 400 (malformed), 408 (body not in within 10 s), 413 (over 64 KiB), 415 (not JSON), 422 (invalid) |
/// | takes query parameters (unknown ones are refused too) | 422 |
/// | has an `{id}` in its path | 404 |
/// | needs a credential | 401 (none or invalid), 403 (disabled account, or a cookie write without its CSRF token) |
///
/// Request bodies also say `additionalProperties: false`, as every body type denies unknown fields.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let schemas = openapi.components.iter_mut().flat_map(|c| c.schemas.iter_mut());
        for (_, schema) in schemas.filter(|(name, _)| name.ends_with("Request")) {
            if let RefOr::T(Schema::Object(object)) = schema {
                object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
            }
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations =
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                add_common_responses(path, operation);
            }
        }
    }
}

fn add_common_responses(path: &str, operation: &mut Operation) {
    let api = path.starts_with("/api/");
    let public = operation.security.as_ref().is_some_and(|s| s.contains(&SecurityRequirement::default()));
    let has_query = operation.parameters.iter().flatten().any(|p| match p {
        RefOr::T(p) => p.parameter_in == ParameterIn::Query,
        RefOr::Ref(_) => false,
    });
    let rules: [(bool, &[(&str, &str)]); 6] = [
        (api, &[("429", "too many requests: the REST rate limit (RateLimit-* headers, Retry-After)")]),
        (api && path != "/api/openapi.json", &[("503", "storage is unreachable; retry later")]),
        (
            operation.request_body.is_some(),
            &[
                ("400", "the body is not valid JSON"),
                ("408", "the body did not arrive within 10 s"),
                ("413", "the body is larger than 64 KiB"),
                ("415", "the body is not application/json"),
                ("422", "a field is missing, unknown, of the wrong type or invalid (see `fields`)"),
            ],
        ),
        (has_query, &[("422", "a query parameter is unknown or invalid (see `fields`)")]),
        (path.contains("{id}"), &[("404", "no such resource, or not yours")]),
        (
            api && !public,
            &[
                ("401", "no credential, or an invalid, expired or revoked one"),
                ("403", "the account is disabled, or a cookie write lacks its CSRF token"),
            ],
        ),
    ];
    for (status, description) in
        rules.iter().filter(|(applies, _)| *applies).flat_map(|(_, list)| list.iter())
    {
        operation.responses.responses.entry((*status).to_owned()).or_insert_with(|| {
            let body = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
            RefOr::T(
                ResponseBuilder::new().description(*description).content("application/json", body).build(),
            )
        });
    }
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta", security(()), responses((status = 200, description = "OpenAPI 3 document")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
