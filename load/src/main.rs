//! Load generator for Switchboard. `rest-auth` measures logins per second and whether a login
//! storm (argon2id on the blocking pool) starves ordinary requests: GET /api/me alone, logins
//! alone, then both at once. Every loop is bounded by `--seconds` and targets the given URL
//! (loopback only in this project's benchmarks).

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tally::Tally;

mod tally;
mod ws;

#[derive(Parser)]
#[command(about = "Switchboard load generator")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Login throughput and GET /api/me latency with and without a login storm.
    RestAuth {
        /// Base URL of a running server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Concurrent login loops.
        #[arg(long, default_value_t = 16)]
        logins: usize,
        /// Concurrent GET /api/me loops.
        #[arg(long, default_value_t = 16)]
        readers: usize,
        /// Seconds per phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Server memory per idle WebSocket session (reads the server's RSS from /proc).
    WsIdle {
        /// Base URL of a running server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Sessions to open.
        #[arg(long, default_value_t = 10_000)]
        sessions: usize,
        /// Users to spread them over (each needs --ws-max-sessions-per-user >= sessions/users).
        #[arg(long, default_value_t = 20)]
        users: usize,
        /// PID of the server process.
        #[arg(long)]
        server_pid: u32,
    },
    /// Ping round trips over many sessions.
    WsPing {
        /// Base URL of a running server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Sessions, each doing ping round trips in a loop.
        #[arg(long, default_value_t = 1_000)]
        sessions: usize,
        /// Users to spread them over.
        #[arg(long, default_value_t = 20)]
        users: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Pause of each session between pings (0: as fast as the replies come, a saturation test).
        #[arg(long, default_value_t = 0)]
        interval_ms: u64,
    },
    /// Charged chat round trips (chat.send until chat.done) over many sessions.
    WsChat {
        /// Base URL of a running server (start it with a high STARTING_CREDITS and WS rate limit).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Sessions, each sending chat messages in a loop.
        #[arg(long, default_value_t = 1_000)]
        sessions: usize,
        /// Users to spread them over.
        #[arg(long, default_value_t = 1_000)]
        users: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

/// Password of every load user.
pub const PASSWORD: &str = "violet-harbour-lantern-42";

#[tokio::main]
async fn main() {
    match Args::parse().command {
        Command::RestAuth { url, logins, readers, seconds } => {
            rest_auth(&url, logins, readers, seconds).await
        }
        Command::WsIdle { url, sessions, users, server_pid } => {
            ws::idle(&url, sessions, users, server_pid).await
        }
        Command::WsPing { url, sessions, users, seconds, interval_ms } => {
            ws::ping(&url, sessions, users, seconds, interval_ms).await
        }
        Command::WsChat { url, sessions, users, seconds } => ws::chat(&url, sessions, users, seconds).await,
    }
}

async fn rest_auth(url: &str, logins: usize, readers: usize, seconds: u64) {
    let client = Client::builder().pool_max_idle_per_host(256).build().expect("client");
    let (email, token) = register_and_login(&client, url).await;
    let duration = Duration::from_secs(seconds);
    println!("rest-auth against {url}: {logins} login loops, {readers} reader loops, {seconds} s per phase");

    let me_alone = run_loops(readers, duration, me_loop(&client, url, &token)).await;
    println!("{}", me_alone.line("GET /api/me alone", seconds as f64));
    let logins_alone = run_loops(logins, duration, login_loop(&client, url, &email)).await;
    println!("{}", logins_alone.line("POST /api/login alone", seconds as f64));
    let (me_storm, logins_storm) = tokio::join!(
        run_loops(readers, duration, me_loop(&client, url, &token)),
        run_loops(logins, duration, login_loop(&client, url, &email)),
    );
    println!("{}", me_storm.line("GET /api/me during login storm", seconds as f64));
    println!("{}", logins_storm.line("POST /api/login during the storm", seconds as f64));
    let ratio = |a: &Tally, b: &Tally| {
        a.latency_us.value_at_quantile(0.99) as f64 / b.latency_us.value_at_quantile(0.99).max(1) as f64
    };
    println!("GET /api/me p99 during storm / alone: {:.2}x", ratio(&me_storm, &me_alone));
}

/// Registers a fresh user and returns its email and an access token.
pub async fn register_and_login(client: &Client, url: &str) -> (String, String) {
    let email = format!("load-{}@example.com", uuid::Uuid::new_v4().simple());
    let registered = client
        .post(format!("{url}/api/register"))
        .json(&json!({"email": email, "password": PASSWORD, "first_name": "Load", "last_name": "Test"}))
        .send()
        .await
        .expect("server reachable");
    assert_eq!(registered.status(), StatusCode::CREATED, "registration");
    let login: Value = client
        .post(format!("{url}/api/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login body");
    (email, login["access_token"].as_str().expect("token").to_owned())
}

/// A request factory: each call makes one request and says whether it succeeded.
type Step = std::sync::Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> + Send + Sync,
>;

fn me_loop(client: &Client, url: &str, token: &str) -> Step {
    let (client, target, token) = (client.clone(), format!("{url}/api/me"), token.to_owned());
    std::sync::Arc::new(move || {
        let request = client.get(&target).bearer_auth(&token).send();
        Box::pin(async move { request.await.is_ok_and(|r| r.status() == StatusCode::OK) })
    })
}

fn login_loop(client: &Client, url: &str, email: &str) -> Step {
    let (client, target) = (client.clone(), format!("{url}/api/login"));
    let body = json!({"email": email, "password": PASSWORD});
    std::sync::Arc::new(move || {
        let request = client.post(&target).json(&body).send();
        Box::pin(async move { request.await.is_ok_and(|r| r.status() == StatusCode::OK) })
    })
}

async fn run_loops(concurrency: usize, duration: Duration, step: Step) -> Tally {
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let step = step.clone();
            tokio::spawn(async move {
                let mut tally = Tally::new();
                while Instant::now() < deadline {
                    let start = Instant::now();
                    let ok = step().await;
                    let micros = start.elapsed().as_micros() as u64;
                    if ok {
                        tally.ok += 1;
                        tally.latency_us.saturating_record(micros.max(1));
                    } else {
                        tally.failed += 1;
                    }
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::new();
    for task in tasks {
        total.merge(&task.await.expect("load task"));
    }
    total
}
