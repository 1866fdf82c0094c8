//! Black-box tests: each starts the real server on a free port and talks HTTP to it.
//! One test binary keeps link time down.

mod auth;
mod helpers;
mod hostile;
mod process;
mod profile;
mod store_contract;
