//! `rest-auth`: logins per second, and whether a login storm (argon2id on the blocking pool)
//! starves ordinary requests: GET /api/me alone, logins alone, then both at once.

use std::sync::Arc;
use std::time::Instant;

use reqwest::{Client, StatusCode};

use super::login::login_loop;
use super::{Window, collect};
use crate::report::Report;
use crate::session::{Target, register_and_login};
use crate::tally::Tally;

/// The shape of a rest-auth run.
pub struct RestAuth {
    /// Server base URL.
    pub url: String,
    /// Concurrent login loops.
    pub logins: usize,
    /// Concurrent GET /api/me loops.
    pub readers: usize,
    /// Seconds per phase.
    pub seconds: u64,
    /// Server PID, for memory and CPU.
    pub server_pid: Option<u32>,
}

/// Runs the three phases.
pub async fn run(shape: &RestAuth) -> Result<Report, String> {
    let target = Target::new(&shape.url, "/ws", 1, 1)?;
    let base = target.base_url.clone();
    let client = Client::builder().pool_max_idle_per_host(256).build().map_err(|error| error.to_string())?;
    let user = register_and_login(&client, &base).await?;
    let emails = Arc::new(vec![user.email.clone()]);
    let me_loops = |window: &Window| -> Vec<_> {
        (0..shape.readers)
            .map(|_| me_loop(client.clone(), &base, &user.token, window.tally(), window.deadline))
            .collect()
    };
    let login_loops = |window: &Window| -> Vec<_> {
        (0..shape.logins)
            .map(|n| {
                login_loop(
                    client.clone(),
                    format!("{base}/api/login"),
                    emails.clone(),
                    n,
                    window.tally(),
                    window.deadline,
                )
            })
            .collect()
    };

    let mut report = Report::new("rest-auth", &base);
    report.setting("logins", shape.logins);
    report.setting("readers", shape.readers);
    report.setting("seconds_per_phase", shape.seconds);

    let window = Window::open("rest-auth: GET /api/me alone", shape.seconds, shape.server_pid);
    let tasks = me_loops(&window);
    let me_alone = collect(tasks).await;
    let (seconds, _) = window.close();
    let me_alone_p99 = me_alone.ms(0.99);
    report.operation("GET /api/me alone", seconds, me_alone);

    let window = Window::open("rest-auth: logins alone", shape.seconds, shape.server_pid);
    let tasks = login_loops(&window);
    let logins_alone = collect(tasks).await;
    let (seconds, _) = window.close();
    report.operation("POST /api/login alone", seconds, logins_alone);

    let window = Window::open("rest-auth: both", shape.seconds, shape.server_pid);
    let (readers, logins) = (me_loops(&window), login_loops(&window));
    let (me_storm, logins_storm) = (collect(readers).await, collect(logins).await);
    let (seconds, usage) = window.close();
    let me_storm_p99 = me_storm.ms(0.99);
    report.operation("GET /api/me during the login storm", seconds, me_storm);
    report.operation("POST /api/login during the storm", seconds, logins_storm);
    report
        .figure("me_p99_storm_over_alone", ((me_storm_p99 / me_alone_p99.max(1e-3)) * 100.0).round() / 100.0);
    report.usage = Some(usage);
    Ok(report)
}

/// One loop of GET /api/me until `deadline`.
fn me_loop(
    client: Client,
    base: &str,
    token: &str,
    mut tally: Tally,
    deadline: Instant,
) -> tokio::task::JoinHandle<Tally> {
    let (url, token) = (format!("{base}/api/me"), token.to_owned());
    tokio::spawn(async move {
        while Instant::now() < deadline {
            let started = Instant::now();
            match client.get(&url).bearer_auth(&token).send().await {
                Ok(answer) if answer.status() == StatusCode::OK => {
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
