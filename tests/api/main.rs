//! Black-box tests: each starts the real server on a free port and talks HTTP and WebSocket to it.
//! One test binary keeps link time down. Every file is one feature; the harness they share is
//! `support/`.

mod admin;
mod api_key;
mod auth;
mod caps;
mod chats_and_images;
mod cluster;
mod crash;
mod daily_usage;
mod idempotency;
mod lifecycle;
mod mail;
mod malformed_requests;
mod metering;
mod metrics;
mod mongo_store;
mod openapi;
mod operations;
mod outage;
mod passwords;
mod profile;
mod seam_contract;
mod security;
mod sessions;
mod store_contract;
mod support;
mod ws_protocol;
mod ws_realtime;
