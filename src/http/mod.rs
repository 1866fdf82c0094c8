//! The REST API: the route table (one place for every path and method), one file per resource,
//! `ApiError` (the one place that maps failures to HTTP answers) and the OpenAPI document. The
//! views it answers with are `crate::views`, shared with the WebSocket edge.

pub mod admin;
pub mod auth;
pub mod chats;
pub mod error;
pub mod health;
pub mod images;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod profile;
pub mod sessions;

use actix_web::dev::Handler;
use actix_web::http::Method;
use actix_web::http::header;
use actix_web::{FromRequest, HttpResponse, Resource, Responder, web};

use crate::http::error::ApiError;

/// Registers every route of the API (REST, `/ws`, `/metrics`, the probes).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(crate::input::json::MAX_BODY_BYTES));
    for resource in route_table().resources {
        cfg.service(resource);
    }
}

/// Every path of the API with the methods it answers, read from the same table [`routes`]
/// registers, so the OpenAPI test can hold the document against the router itself.
pub fn route_list() -> Vec<(&'static str, Vec<Method>)> {
    route_table().paths
}

fn route_table() -> RouteTable {
    use Method as M;
    let mut t = RouteTable::default();
    t.resource("/healthz").to(M::GET, health::healthz).add();
    t.resource("/readyz").to(M::GET, health::readyz).add();
    t.resource(metrics::METRICS_PATH).to(M::GET, metrics::metrics_endpoint).add();
    t.resource("/api/openapi.json").to(M::GET, openapi::openapi_json).add();
    t.resource("/api/register").to(M::POST, auth::register).add();
    t.resource("/api/login").to(M::POST, auth::login).add();
    t.resource("/api/token/refresh").to(M::POST, auth::refresh).add();
    t.resource("/api/logout").to(M::POST, auth::logout).add();
    t.resource("/api/password/forgot").to(M::POST, auth::forgot_password).add();
    t.resource("/api/password/reset").to(M::POST, auth::reset_password).add();
    t.resource("/api/ws-ticket").to(M::POST, auth::ws_ticket).add();
    t.resource("/api/me").to(M::GET, profile::get_me).to(M::PUT, profile::update_me).add();
    t.resource("/api/models").to(M::GET, models::list_models).add();
    t.resource("/api/me/stats").to(M::GET, profile::stats).add();
    t.resource("/api/me/usage").to(M::GET, profile::usage).add();
    t.resource("/api/me/usage/daily").to(M::GET, profile::daily_usage).add();
    t.resource("/api/me/sessions").to(M::GET, sessions::my_sessions).add();
    // Before `/api/me/sessions/{id}`, which would otherwise take "revoke-others" for an id.
    t.resource("/api/me/sessions/revoke-others").to(M::POST, sessions::end_other_sessions).add();
    t.resource("/api/me/sessions/{id}").to(M::DELETE, sessions::end_my_session).add();
    t.resource("/api/me/api-key").to(M::POST, profile::regenerate_api_key).add();
    t.resource("/api/me/password").to(M::POST, profile::change_password).add();
    t.resource("/api/chats").to(M::GET, chats::list_chats).add();
    t.resource("/api/chats/{id}").to(M::PATCH, chats::rename_chat).to(M::DELETE, chats::delete_chat).add();
    t.resource("/api/chats/{id}/messages").to(M::GET, chats::chat_messages).add();
    t.resource("/api/images").to(M::GET, images::list_images).add();
    t.resource("/api/images/{id}").to(M::GET, images::get_image).to(M::DELETE, images::delete_image).add();
    t.resource("/api/images/{id}/content").to(M::GET, images::image_content).add();
    t.resource("/api/admin/users").to(M::GET, admin::list_users).add();
    t.resource("/api/admin/users/{id}").to(M::GET, admin::get_user).to(M::PATCH, admin::update_user).add();
    t.resource("/api/admin/users/{id}/credits").to(M::POST, admin::grant_credits).add();
    t.resource("/api/admin/users/{id}/usage").to(M::GET, admin::user_usage).add();
    t.resource("/api/admin/presence").to(M::GET, admin::presence).add();
    t.resource("/api/admin/overview").to(M::GET, admin::overview).add();
    t.resource("/api/admin/users/{id}/sessions").to(M::GET, sessions::user_sessions).add();
    t.resource("/api/admin/users/{id}/sessions/{sid}").to(M::DELETE, sessions::end_user_session).add();
    t.resource("/ws").to(M::GET, crate::ws::upgrade::upgrade).add();
    t
}

/// The routes being built: actix resources, and their paths and methods.
#[derive(Default)]
struct RouteTable {
    resources: Vec<Resource>,
    paths: Vec<(&'static str, Vec<Method>)>,
}

impl RouteTable {
    fn resource(&mut self, path: &'static str) -> ResourceBuilder<'_> {
        ResourceBuilder { table: self, path, resource: web::resource(path), methods: Vec::new() }
    }
}

/// One resource: a handler per method; every other method answers 405 with `Allow`.
struct ResourceBuilder<'a> {
    table: &'a mut RouteTable,
    path: &'static str,
    resource: Resource,
    methods: Vec<Method>,
}

impl ResourceBuilder<'_> {
    fn to<F, Args>(mut self, method: Method, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.resource = self.resource.route(web::route().method(method.clone()).to(handler));
        self.methods.push(method);
        self
    }

    fn add(self) {
        let allow = self.methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
        let resource = self.resource.default_service(web::to(move || {
            let allow = allow.clone();
            async move {
                let mut response = HttpResponse::from_error(ApiError::MethodNotAllowed);
                if let Ok(value) = header::HeaderValue::from_str(&allow) {
                    response.headers_mut().insert(header::ALLOW, value);
                }
                response
            }
        }));
        self.table.resources.push(resource);
        self.table.paths.push((self.path, self.methods));
    }
}

/// The answer for unknown routes.
pub async fn not_found() -> HttpResponse {
    HttpResponse::from_error(ApiError::NotFound)
}
