//! The one harness of the black-box tests; the test files beside it are named by feature.
//!
//! - `app`: `spawn_app()`, the real server in this process on port 0, and `TestApp` with one
//!   method per endpoint; users are made through the API. `spawn_app_process()` runs the same
//!   server as a process of its own, for tests that read exact metric changes.
//! - `ws`: `WsClient`, a WebSocket client speaking the JSON protocol.
//! - `process`: the real binary as a child process (`ServerProcess`), killed by its PID.
//! - `store`: the store under test (`SWITCHBOARD_TEST_STORE`), opened here or named to a process.
//! - `ferret`, `redis`: a FerretDB and a Redis of a test's own, to kill and restart.
//! - `upstream`, `request_reader`: fake OpenAI-compatible services; `scripted_upstream`, one that
//!   streams at a chosen pace, reports usage or not, fails or holds on demand, and records calls.
//! - `metrics`: reading `/metrics`, and how counters are kept apart between tests.
//! - `smtp`: a real SMTP server (aiosmtpd) that keeps what it receives.
//! - `mount`: a tmpfs of a test's own, to fill up or make read-only.

pub mod app;
pub mod ferret;
pub mod metrics;
pub mod mount;
pub mod process;
pub mod redis;
pub mod request_reader;
pub mod scripted_upstream;
pub mod smtp;
pub mod store;
pub mod upstream;
pub mod ws;

use std::ffi::OsStr;
use std::net::TcpListener;
use std::process::{Command, Stdio};

/// A port that was free a moment ago (a listener on port 0 would not tell us the address).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a probe listener");
    listener.local_addr().expect("probe address").port()
}

/// A reqwest client builder for the tests' own HTTP calls. reqwest is built with
/// `rustls-no-provider` (the server picks ring), so the provider goes in before any client.
pub fn http_client() -> reqwest::ClientBuilder {
    switchboard::openai::install_tls_provider();
    reqwest::Client::builder()
}

/// A command with an empty environment except PATH, so the developer's settings cannot leak in.
pub fn clean_command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.stdin(Stdio::null());
    command
}
