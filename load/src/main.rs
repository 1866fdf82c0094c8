//! Load generator for Switchboard. `rest-auth` measures logins per second and whether a login
//! storm (argon2id on the blocking pool) starves ordinary requests: GET /api/me alone, logins
//! alone, then both at once. Every loop is bounded by `--seconds` and targets the given URL
//! (loopback only in this project's benchmarks).

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

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
}

const PASSWORD: &str = "violet-harbour-lantern-42";

/// Requests done, failures and latencies of one kind of request in one phase.
struct Tally {
    ok: u64,
    failed: u64,
    latency_us: Histogram<u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally { ok: 0, failed: 0, latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds") }
    }

    fn merge(&mut self, other: &Tally) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.latency_us.add(&other.latency_us).expect("same bounds");
    }

    fn line(&self, label: &str, seconds: f64) -> String {
        let q = |p: f64| self.latency_us.value_at_quantile(p) as f64 / 1000.0;
        format!(
            "{label:<34} {:>9.0}/s  p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  ok {} failed {}",
            self.ok as f64 / seconds,
            q(0.5),
            q(0.99),
            self.latency_us.max() as f64 / 1000.0,
            self.ok,
            self.failed
        )
    }
}

#[tokio::main]
async fn main() {
    match Args::parse().command {
        Command::RestAuth { url, logins, readers, seconds } => rest_auth(&url, logins, readers, seconds).await,
    }
}

async fn rest_auth(url: &str, logins: usize, readers: usize, seconds: u64) {
    let client = Client::builder().pool_max_idle_per_host(256).build().expect("client");
    let email = format!("load-{}@example.com", uuid::Uuid::new_v4().simple());
    let registered = client
        .post(format!("{url}/api/register"))
        .json(&json!({"email": email, "password": PASSWORD, "first_name": "Load", "last_name": "Test"}))
        .send()
        .await
        .expect("server reachable");
    assert_eq!(registered.status(), StatusCode::CREATED, "registration");
    let login: Value =
        client.post(format!("{url}/api/login")).json(&json!({"email": email, "password": PASSWORD})).send().await.unwrap().json().await.unwrap();
    let token = login["access_token"].as_str().expect("token").to_owned();
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
    let ratio = |a: &Tally, b: &Tally| a.latency_us.value_at_quantile(0.99) as f64 / b.latency_us.value_at_quantile(0.99).max(1) as f64;
    println!("GET /api/me p99 during storm / alone: {:.2}x", ratio(&me_storm, &me_alone));
}

/// A request factory: each call makes one request and says whether it succeeded.
type Step = std::sync::Arc<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> + Send + Sync>;

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
