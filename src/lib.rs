//! Switchboard: the account, credit and realtime layer of an AI chat and image service. What
//! clients may rely on is `docs/API.md`; the layers and what each may import are in
//! `ARCHITECTURE.md`.
//!
//! Edges (parse, authorise, call one service, answer):
//! - [`http`]: the REST API: the route table, one file per resource, the views, the OpenAPI
//!   document, and the request metrics middleware with `/metrics`.
//! - [`ws`]: the realtime gateway: `/ws` upgrade with its per-IP and per-user caps, session
//!   actors, the JSON protocol, the outbound queue.
//! - [`input`]: reading requests: JSON bodies, query strings and list paging, answering 400, 408,
//!   413, 415 or 422.
//! - [`security`]: client IP, REST rate limit, origin checks, security headers, CORS.
//! - [`pages`]: the browser pages and their assets, embedded from `web/`.
//!
//! Services and seams:
//! - [`services`]: the domain (accounts, credits, conversation, idempotency keys, the admin
//!   overview, `check-ledger`), free of HTTP and WebSocket types.
//! - [`seams`]: what several nodes share (bus, presence, limits, throttles, the session cap), each
//!   a trait with an in-process implementation over the actors and a Redis one for `REDIS_URL`.
//!
//! Engines:
//! - [`store`]: the storage traits with their SQLite (`store/sqlite/`) and MongoDB (`store/mongo/`)
//!   implementations, and the credit ledger.
//! - [`auth`]: argon2id password hashing, JWTs and random tokens; its `extract` module, the
//!   `CurrentUser`/`Admin` extractors with the CSRF check, is an edge.
//! - [`assistant`]: the chat assistant: built-in echo and an OpenAI-compatible streaming client.
//! - [`images`]: the image generator: the built-in PNG drawer and an OpenAI-compatible client.
//! - [`mail`]: outgoing mail: SMTP (`SMTP_URL`) or `.eml` files in `<data-dir>/outbox/`.
//! - [`metrics`]: Prometheus metric names, the recorder and recording helpers.
//! - [`error`]: `ApiError`, the one place that maps failures to HTTP answers.
//!
//! Wiring:
//! - [`config`]: every setting from flags and environment, and the `check-ledger` command.
//! - [`startup`]: builds the [`startup::Application`] (storage, secrets, seams, services,
//!   middleware, routes), runs it and stops it gracefully; only `main.rs` imports it.
//! - [`state`]: `AppState`, what the edges share.
//! - [`telemetry`]: logging setup.

pub mod assistant;
pub mod auth;
pub mod catalogue;
pub mod config;
pub mod http;
pub mod images;
pub mod input;
pub mod mail;
pub mod metrics;
pub mod openai;
pub mod pages;
pub mod seams;
pub mod security;
pub mod services;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tokenizer;
// The black-box harness's request reader, shared with the unit tests of the OpenAI-compatible
// client (`openai`), which serve fake upstreams too: one copy, in `tests/api/support/`.
#[cfg(test)]
#[path = "../tests/api/support/request_reader.rs"]
mod test_support;
pub mod views;
pub mod ws;
