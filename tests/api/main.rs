//! Black-box tests: each starts the real server on a free port and talks HTTP to it.
//! One test binary keeps link time down.

mod admin;
mod audit;
mod auth;
mod caps;
mod cluster;
mod crash;
mod daily_usage;
mod helpers;
mod hostile;
mod idempotency;
mod library;
mod mail;
mod metering;
mod metrics;
mod mongo_store;
mod operations;
mod outage;
mod process;
mod profile;
mod seam_contract;
mod security;
mod sessions;
mod store_contract;
mod support;
mod ws_helpers;
mod ws_protocol;
mod ws_realtime;
