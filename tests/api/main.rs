//! Black-box tests: each starts the real server on a free port and talks HTTP to it.
//! One test binary keeps link time down.

mod auth;
mod helpers;
mod hostile;
mod metrics;
mod process;
mod profile;
mod store_chat_contract;
mod store_contract;
mod ws_helpers;
mod ws_protocol;
mod ws_realtime;
