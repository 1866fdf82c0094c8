//! A real SMTP server for the mail tests: `smtp_sink.py` (aiosmtpd) on a free port, which writes
//! every message it receives as JSON; a missing Python or aiosmtpd fails the test, never skips it.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tempfile::TempDir;

use super::free_port;
use super::process::ChildGuard;

const SINK_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/support/smtp_sink.py");
const INSTALL_HINT: &str = "these tests need a real SMTP server: Python 3 with aiosmtpd \
                            (install it with `python3 -m pip install aiosmtpd`)";

/// One message as the SMTP server received it.
#[derive(Debug, Deserialize)]
pub struct Delivered {
    /// The envelope sender (`MAIL FROM`).
    pub mail_from: String,
    /// The envelope recipients (`RCPT TO`).
    pub rcpt_tos: Vec<String>,
    /// The user name the client logged in with, if it did.
    pub auth_login: Option<String>,
    /// The raw message, headers and encoded body, exactly as sent.
    pub content: String,
    /// Header names and decoded values, in order.
    pub headers: Vec<(String, String)>,
    /// The decoded text/plain body.
    pub text: Option<String>,
}

impl Delivered {
    /// The decoded value of the first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The decoded text/plain body; panics when there is none.
    pub fn text(&self) -> &str {
        self.text.as_deref().unwrap_or_else(|| panic!("no text/plain body in:\n{}", self.content))
    }
}

/// A running aiosmtpd server, killed by its PID when dropped.
pub struct SmtpSink {
    process: ChildGuard,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    mail_dir: PathBuf,
    _dir: TempDir,
}

impl SmtpSink {
    /// A server that takes mail from anyone.
    pub fn start() -> SmtpSink {
        SmtpSink::start_with(None)
    }

    /// A server that takes mail only after AUTH with `user:password`.
    pub fn start_with(login: Option<&str>) -> SmtpSink {
        let dir = TempDir::new().expect("sink dir");
        let mail_dir = dir.path().join("mail");
        let port = free_port();
        let mut command = Command::new("python3");
        command
            .arg(SINK_SCRIPT)
            .arg(port.to_string())
            .arg(&mail_dir)
            .args(login)
            // The script exits when its stdin closes, so it cannot outlive this process.
            .stdin(Stdio::piped());
        let mut process = ChildGuard::try_spawn(command, dir.path(), "sink")
            .unwrap_or_else(|e| panic!("could not run python3 ({e}); {INSTALL_HINT}"));

        // The script prints "ready" as its first line once it accepts connections.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let exited = process.exit_status().is_some();
            let stdout = process.stdout();
            if stdout.contains('\n') || exited {
                let line = stdout.lines().next().unwrap_or_default();
                if line.trim() == "ready" {
                    return SmtpSink { process, port, mail_dir, _dir: dir };
                }
                panic!(
                    "the SMTP sink did not start (said {line:?}); {INSTALL_HINT}\nits stderr:\n{}",
                    process.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the SMTP sink was not ready after 30 s; {INSTALL_HINT}\nits stderr:\n{}",
                process.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server wrote to stderr.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// `smtp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<Delivered> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.mail_dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "json"));
        files.sort();
        files
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).expect("read a delivered message");
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            })
            .collect()
    }

    /// Waits (up to 10 s) until `count` messages arrived and returns them.
    pub async fn wait_for(&self, count: usize) -> Vec<Delivered> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            if Instant::now() >= deadline {
                panic!(
                    "expected {count} messages at the SMTP sink, got {}; sink stderr:\n{}",
                    messages.len(),
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
