//! `login`: a POST /api/login storm. Each loop logs in one of the load users after another, as
//! fast as the answers come; argon2id hashing makes this the most CPU-costly request the server
//! has, so this is its bound on logins per second. Failures are counted by HTTP status.

use std::sync::Arc;
use std::time::Instant;

use reqwest::Client;
use serde_json::json;

use super::{Window, collect, report_for};
use crate::cli::Settings;
use crate::report::Report;
use crate::session::{PASSWORD, Target, register_users};
use crate::tally::Tally;

/// Runs `settings.sessions` login loops over `settings.users` users.
pub async fn run(settings: &Settings) -> Result<Report, String> {
    let target = Target::new(&settings.url, "/ws", 1, 1)?;
    let users = register_users(&target.base_url, settings.users).await?;
    let emails: Arc<Vec<String>> = Arc::new(users.into_iter().map(|user| user.email).collect());
    let client = Client::builder().pool_max_idle_per_host(1024).build().map_err(|error| error.to_string())?;
    let window = Window::open("login", settings.seconds, settings.server_pid);
    let tasks: Vec<_> = (0..settings.sessions)
        .map(|n| {
            let url = format!("{}/api/login", target.base_url);
            login_loop(client.clone(), url, emails.clone(), n, window.tally(), window.deadline)
        })
        .collect();
    let total = collect(tasks).await;
    let (seconds, usage) = window.close();
    let mut report = report_for("login", &target.base_url, settings);
    report.operation("logins (POST /api/login)", seconds, total);
    report.usage = Some(usage);
    Ok(report)
}

/// One loop of logins until `deadline`, starting at user `n`.
pub fn login_loop(
    client: Client,
    url: String,
    emails: Arc<Vec<String>>,
    n: usize,
    mut tally: Tally,
    deadline: Instant,
) -> tokio::task::JoinHandle<Tally> {
    tokio::spawn(async move {
        let mut round = n;
        while Instant::now() < deadline {
            let email = &emails[round % emails.len()];
            round += 1;
            let started = Instant::now();
            let body = json!({"email": email, "password": PASSWORD});
            match client.post(&url).json(&body).send().await {
                Ok(answer) if answer.status().is_success() => {
                    // Read the body so the connection goes back to the pool.
                    let _ = answer.bytes().await;
                    tally.success(started.elapsed().as_micros() as u64);
                }
                Ok(answer) => tally.error(answer.status().as_str()),
                Err(_) => tally.error("connect"),
            }
        }
        tally
    })
}
