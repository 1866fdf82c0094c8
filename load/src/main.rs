//! `switchboard-load`: the load generator for Switchboard (load/README.md). Each subcommand is
//! one scenario in `scenarios/` (plus the Centrifugo client in `centrifugo.rs` for compare.sh);
//! they share the session opener (`session.rs`), the counting (`tally.rs`), the progress line
//! (`progress.rs`), the server's memory and CPU (`usage.rs`) and the report (`report.rs`).

mod centrifugo;
mod cli;
mod progress;
mod report;
mod scenarios;
mod session;
mod tally;
mod usage;

use clap::Parser;

use cli::{Cli, Command};
use scenarios::{chat, connect, fanout, guard, idle, image, login, mixed, ping, presence, rest_auth, slow};

fn main() {
    let command = Cli::parse().command;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let code = runtime.block_on(run(command));
    // Leave at once: thousands of held sockets need no orderly drop at the end of a run.
    std::process::exit(code);
}

/// Runs one scenario, prints its report, and gives the exit code.
async fn run(command: Command) -> i32 {
    let as_json = command.wants_json();
    let mut guard_failed = false;
    let result = match command {
        Command::RestAuth { url, logins, readers, seconds, server_pid, .. } => {
            rest_auth::run(&rest_auth::RestAuth { url, logins, readers, seconds, server_pid }).await
        }
        Command::Idle { common, raw } => idle::run(&common.settings(10_000, Some(20), 10), raw).await,
        Command::Connect { common, raw } => connect::run(&common.settings(50, Some(10), 10), raw).await,
        Command::Ping { common, interval_ms, raw, flood } => {
            ping::run(&common.settings(1000, Some(20), 10), interval_ms, raw, flood).await
        }
        Command::Chat { common, interval_ms, resend } => {
            chat::run(&common.settings(1000, None, 10), interval_ms, resend).await
        }
        Command::Image { common, interval_ms, size } => {
            image::run(&common.settings(100, None, 10), interval_ms, size).await
        }
        Command::Fanout {
            common, presence: true, interval_ms, hold_ms, admin_email, admin_password, ..
        } => {
            let admin = presence::Admin { email: admin_email, password: admin_password };
            presence::run(&common.settings(100, Some(100), 10), &admin, hold_ms, interval_ms).await
        }
        Command::Fanout { common, in_flight, interval_ms, .. } => {
            fanout::run(&common.settings(1000, Some(1), 10), in_flight, interval_ms).await
        }
        Command::Login { common } => login::run(&common.settings(16, Some(10), 10)).await,
        Command::Mixed { common, interval_ms, chat_percent, idle_percent, chat_interval_ms, logins } => {
            let blend = mixed::Blend {
                ping_interval_ms: interval_ms,
                chat_percent,
                idle_percent,
                chat_interval_ms,
                logins,
            };
            mixed::run(&common.settings(1000, Some(50), 10), &blend).await
        }
        Command::SlowReaders { common, messages, words } => {
            slow::run(&common.settings(1000, Some(100), 15), messages, words).await
        }
        Command::Guard { common, min_ratio } => {
            guard::run(&common.settings(200, Some(20), 5), min_ratio).await.map(|(report, passed)| {
                guard_failed = !passed;
                report
            })
        }
        Command::CentrifugoConnect { centrifugo } => centrifugo::connects(&centrifugo).await,
        Command::CentrifugoPing { centrifugo } => centrifugo::round_trips(&centrifugo).await,
        Command::CentrifugoIdle { centrifugo } => centrifugo::idle(&centrifugo).await,
    };
    match result {
        Ok(report) => {
            report.print(as_json);
            if guard_failed { 1 } else { 0 }
        }
        Err(message) => {
            eprintln!("switchboard-load: {message}");
            2
        }
    }
}
