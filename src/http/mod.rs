//! The REST API: the route table, JSON bodies, paging, views, and the OpenAPI document.

pub mod admin;
pub mod auth;
pub mod chats;
pub mod health;
pub mod images;
pub mod metrics;
pub mod openapi;
pub mod profile;
pub mod views;

use actix_web::dev::Handler;
use actix_web::http::{Method, header};
use actix_web::{FromRequest, HttpResponse, Resource, Responder, web};

use crate::error::ApiError;

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
    let mut t = RouteTable::default();
    t.resource("/healthz").get(health::healthz).add();
    t.resource("/readyz").get(health::readyz).add();
    t.resource(metrics::METRICS_PATH).get(metrics::metrics_endpoint).add();
    t.resource("/api/openapi.json").get(openapi::openapi_json).add();
    t.resource("/api/register").post(auth::register).add();
    t.resource("/api/login").post(auth::login).add();
    t.resource("/api/token/refresh").post(auth::refresh).add();
    t.resource("/api/logout").post(auth::logout).add();
    t.resource("/api/password/forgot").post(auth::forgot_password).add();
    t.resource("/api/password/reset").post(auth::reset_password).add();
    t.resource("/api/ws-ticket").post(auth::ws_ticket).add();
    t.resource("/api/me").get(profile::get_me).put(profile::update_me).add();
    t.resource("/api/me/stats").get(profile::stats).add();
    t.resource("/api/me/usage").get(profile::usage).add();
    t.resource("/api/me/api-key").post(profile::regenerate_api_key).add();
    t.resource("/api/me/password").post(profile::change_password).add();
    t.resource("/api/chats").get(chats::list_chats).add();
    t.resource("/api/chats/{id}/messages").get(chats::chat_messages).add();
    t.resource("/api/images").get(images::list_images).add();
    t.resource("/api/images/{id}").get(images::get_image).add();
    t.resource("/api/images/{id}/content").get(images::image_content).add();
    t.resource("/api/admin/users").get(admin::list_users).add();
    t.resource("/api/admin/users/{id}").get(admin::get_user).patch(admin::update_user).add();
    t.resource("/api/admin/users/{id}/credits").post(admin::grant_credits).add();
    t.resource("/api/admin/users/{id}/usage").get(admin::user_usage).add();
    t.resource("/api/admin/presence").get(admin::presence).add();
    t.resource("/ws").get(crate::ws::upgrade::upgrade).add();
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
    fn get<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.method(Method::GET, handler)
    }

    fn post<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.method(Method::POST, handler)
    }

    fn put<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.method(Method::PUT, handler)
    }

    fn patch<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.method(Method::PATCH, handler)
    }

    fn method<F, Args>(mut self, method: Method, handler: F) -> Self
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
