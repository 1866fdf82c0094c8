//! The harness the black-box tests share for everything outside the in-process server: free
//! ports, clean commands, the real binary as a process, FerretDB, and the store under test.

pub mod assistant;
pub mod ferret;
pub mod process;
pub mod redis;
pub mod store;
pub mod upstream;

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
