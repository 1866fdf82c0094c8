//! Switchboard: the account, credit and realtime layer of an AI chat and image service.
//!
//! - [`config`]: settings from flags and environment.
//! - [`startup`]: builds the [`startup::Application`] (storage, secrets, routes) and runs it.
//! - [`http`]: the REST API, one file per resource, and the OpenAPI document.
//! - [`auth`]: password hashing, JWTs, random tokens, and the `CurrentUser`/`Admin` extractors.
//! - [`store`]: the storage interface with its SQLite and MongoDB implementations and the credit ledger.
//! - [`error`]: `ApiError`, the one place that maps failures to HTTP answers.
//! - [`mail`]: outgoing mail (outbox files for now).
//! - [`telemetry`]: logging.

pub mod auth;
pub mod config;
pub mod error;
pub mod http;
pub mod mail;
pub mod startup;
pub mod store;
pub mod telemetry;
