//! Black-box tests: each starts the real server on a free port and talks HTTP to it.
//! One test binary keeps link time down.

mod admin;
mod audit;
mod auth;
mod caps;
mod crash;
mod helpers;
mod hostile;
mod idempotency;
mod mail;
mod metrics;
mod outage;
mod process;
mod profile;
mod security;
mod store_contract;
mod support;
mod ws_helpers;
mod ws_protocol;
mod ws_realtime;
