//! Switchboard: the account, credit and realtime layer of an AI chat and image service.
//!
//! - [`config`]: settings from flags and environment.
//! - [`startup`]: builds the [`startup::Application`] (storage, secrets, routes) and runs it.
//! - [`http`]: the REST API, one file per resource, and the OpenAPI document.
//! - [`auth`]: password hashing, JWTs, random tokens, and the `CurrentUser`/`Admin` extractors.
//! - [`store`]: the storage interface with its SQLite and MongoDB implementations and the credit ledger.
//! - [`error`]: `ApiError`, the one place that maps failures to HTTP answers.
//! - [`mail`]: outgoing mail (outbox files for now).
//! - [`assistant`]: the chat assistant interface: built-in echo and an OpenAI-compatible streaming client.
//! - [`images`]: the image generator interface: the built-in PNG drawer and an OpenAI-compatible client.
//! - [`metrics`]: Prometheus metric names, recording helpers, request middleware and `/metrics`.
//! - [`seams`]: interfaces to what several nodes share (limits, the session cap), in-process today.
//! - [`security`]: client IP, REST rate limit, brute-force throttles, origin checks, security headers, CORS.
//! - [`telemetry`]: logging setup.
//! - [`pages`]: the browser pages and their assets, embedded from `web/`.
//! - [`ws`]: the realtime gateway: `/ws` upgrade, session actors, the JSON protocol.

pub mod assistant;
pub mod auth;
pub mod config;
pub mod error;
pub mod http;
pub mod images;
pub mod input;
pub mod mail;
pub mod metrics;
pub mod pages;
pub mod seams;
pub mod security;
pub mod services;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
#[doc(hidden)]
pub mod test_support;
pub mod ws;
