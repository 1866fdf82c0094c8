//! Prometheus metrics (docs/API.md §6): the one place that names them, the global recorder and its
//! upkeep, and small recording helpers. The request-tracking middleware and the `/metrics`
//! endpoint are edges, in `http/metrics.rs`.
//!
//! Labels stay low-cardinality by construction: the helpers take `&'static str` values from short
//! fixed lists (see [`labels`]), and HTTP requests are labelled by their route pattern, never by the
//! raw path, so no user id, email or other request data can become a time series.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Every metric name of docs/API.md §6 (fixed: dashboards and alerts depend on them).
pub mod names {
    pub use switchboard_actors::presence::{ACTIVE_USERS, NODE_ACTIVE_USERS, NODE_WS_SESSIONS, WS_SESSIONS};

    /// Counter `{service_type}`: credits spent.
    pub const CREDIT_USAGE_TOTAL: &str = "credit_usage_total";
    /// Counter `{method, route, status}`: HTTP requests answered.
    pub const HTTP_REQUESTS_TOTAL: &str = "http_requests_total";
    /// Histogram `{method, route}`: time until the response head was ready.
    pub const HTTP_REQUEST_DURATION_SECONDS: &str = "http_request_duration_seconds";
    /// Counter `{direction, type}`: WebSocket frames, `in` from clients and `out` to them.
    pub const WS_MESSAGES_TOTAL: &str = "ws_messages_total";
    /// Counter `{scope}`: requests or messages refused by a rate limit.
    pub const RATE_LIMITED_TOTAL: &str = "rate_limited_total";
    /// Counter `{result}`: login attempts by outcome.
    pub const AUTH_LOGINS_TOTAL: &str = "auth_logins_total";
    /// Counter `{service_type}`: charges refused for lack of credits.
    pub const CREDITS_INSUFFICIENT_TOTAL: &str = "credits_insufficient_total";
    /// Histogram: writes committed together by the embedded store's group-commit writer.
    pub const LEDGER_WRITE_BATCH_SIZE: &str = "ledger_write_batch_size";
    /// Counter `{direction}`: messages between nodes through Redis (`published`, `received`, and
    /// `dropped` when this node fell behind). Only with Redis.
    pub const CLUSTER_MESSAGES_TOTAL: &str = "cluster_messages_total";
    /// Gauge: 1 while this node reaches Redis, 0 during an outage. Only with Redis.
    pub const CLUSTER_REDIS_UP: &str = "cluster_redis_up";
    /// Gauge: 1 while this node's subscription to the cluster's channels (revocations, other
    /// nodes' frames) is up, 0 while it is down. Only with Redis.
    pub const CLUSTER_PUBSUB_UP: &str = "cluster_pubsub_up";
    /// Gauge: nodes listed in Redis at this node's last heartbeat. Only with Redis.
    pub const CLUSTER_NODES: &str = "cluster_nodes";
    /// Counter `{result}`: WebSocket upgrade requests by outcome.
    pub const WS_CONNECTS_TOTAL: &str = "ws_connects_total";
    /// Counter `{reason}`: frames for a client that were never sent.
    pub const WS_OUTBOUND_DROPPED_TOTAL: &str = "ws_outbound_dropped_total";
    /// Gauge: generations running on this node.
    pub const GENERATIONS_RUNNING: &str = "generations_running";
    /// Gauge: credits held by the generations running on this node.
    pub const CREDITS_HELD: &str = "credits_held";
    /// Counter `{model, direction}`: tokens of chat turns, `input` and `output`.
    pub const TOKENS_TOTAL: &str = "tokens_total";
    /// Counter `{model}`: credits charged for generations when they were settled.
    pub const CREDITS_CHARGED_TOTAL: &str = "credits_charged_total";
    /// Counter `{kind, status}`: generations that ended, by kind (`chat`, `image`) and how.
    pub const GENERATIONS_TOTAL: &str = "generations_total";
}

/// Label values known up front. Each is registered at zero by [`install`], so a scrape shows
/// the series before their first use and `rate()` sees the first increment.
pub mod labels {
    /// `service_type` of paid work.
    pub const SERVICE_TYPES: [&str; 2] = ["chat", "image"];
    /// `result` of `auth_logins_total`.
    pub const LOGIN_RESULTS: [&str; 4] = ["success", "failure", "disabled", "throttled"];
    /// `scope` of `rate_limited_total`: REST requests, paid WebSocket messages, free WebSocket
    /// requests that touch storage, upgrades past the per-user session cap, and the account
    /// throttles (`services/accounts/throttles.rs`).
    /// Upgrades per IP per minute and open sockets per IP are `ws_upgrades` and `ws_per_ip`;
    /// open plain HTTP connections per IP, `http_per_ip`.
    pub const RATE_LIMIT_SCOPES: [&str; 13] = [
        "rest",
        "ws",
        "ws_free",
        "ws_sessions",
        "ws_upgrades",
        "ws_per_ip",
        "http_per_ip",
        "login_account",
        "login_ip",
        "reset_ip",
        "forgot_email",
        "forgot_ip",
        "register_ip",
    ];
    /// `result` of `ws_connects_total`: a session opened; no valid credential (401); a foreign
    /// origin or a disabled account (403); a session cap or per-IP limit (429); anything else
    /// (not a handshake, storage unreachable).
    pub const WS_CONNECT_RESULTS: [&str; 5] = ["accepted", "unauthorized", "forbidden", "capped", "failed"];
    /// `reason` of `ws_outbound_dropped_total`: the client's backlog passed
    /// `SWITCHBOARD_WS_OUTBOUND_BYTES` (the frame refused, or skipped on the way to the 4002
    /// close), or the client took no frame for the send timeout (the connection is dropped).
    pub const WS_DROP_REASONS: [&str; 2] = ["slow_consumer", "send_timeout"];
    /// `kind` of `generations_total`.
    pub const GENERATION_KINDS: [&str; 2] = ["chat", "image"];
    /// `status` of `generations_total`: how a generation ended.
    pub const GENERATION_STATUSES: [&str; 4] = ["complete", "stopped", "failed", "interrupted"];
    /// `direction` of `ws_messages_total`.
    pub const WS_DIRECTIONS: [&str; 2] = ["in", "out"];
    /// `route` of requests that matched no route (the raw path would explode cardinality).
    pub const UNMATCHED_ROUTE: &str = "unmatched";
    /// `method` of a request with a non-standard method.
    pub const OTHER_METHOD: &str = "other";
    /// The route of the scrape endpoint itself.
    pub const METRICS_ROUTE: &str = "/metrics";
}

/// Upper bounds (seconds) of the buckets of every `_seconds` histogram.
const DURATION_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Upper bounds of the buckets of `ledger_write_batch_size` (writes per group).
const GROUP_BUCKETS: [f64; 11] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder (once per process; later calls return the same handle), so tests
/// that start many servers in one process share it. Also describes every metric, registers the
/// known series at zero and starts the upkeep thread.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &DURATION_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(names::LEDGER_WRITE_BATCH_SIZE.into()), &GROUP_BUCKETS))
                .expect("the bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if let Err(e) = ::metrics::set_global_recorder(recorder) {
                tracing::warn!(error = %e, "another metrics recorder is installed; /metrics will not see updates");
            }
            describe();
            register_known_series();
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// HELP lines for every metric.
fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    use names::*;
    describe_gauge!(ACTIVE_USERS, "Distinct users with at least one open WebSocket, on every node.");
    describe_gauge!(WS_SESSIONS, "Open WebSocket sessions, on every node.");
    describe_gauge!(NODE_ACTIVE_USERS, "Distinct users with at least one open WebSocket on this node.");
    describe_gauge!(NODE_WS_SESSIONS, "Open WebSocket sessions on this node.");
    describe_counter!(
        CLUSTER_MESSAGES_TOTAL,
        "Messages between nodes through Redis, by direction (published, received, dropped)."
    );
    describe_gauge!(CLUSTER_REDIS_UP, "1 while this node reaches Redis, 0 during an outage.");
    describe_gauge!(CLUSTER_NODES, "Nodes listed in Redis at this node's last heartbeat.");
    describe_counter!(CREDIT_USAGE_TOTAL, "Credits spent, by service type.");
    describe_counter!(HTTP_REQUESTS_TOTAL, "HTTP requests answered, by method, route pattern and status.");
    describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time until the HTTP response head was ready, by method and route pattern."
    );
    describe_counter!(WS_MESSAGES_TOTAL, "WebSocket frames, by direction (in, out) and frame type.");
    describe_counter!(WS_CONNECTS_TOTAL, "WebSocket upgrade requests, by result.");
    describe_counter!(
        WS_OUTBOUND_DROPPED_TOTAL,
        "Frames for a WebSocket client that were never sent, by reason (slow_consumer, send_timeout)."
    );
    describe_counter!(RATE_LIMITED_TOTAL, "Requests or messages refused by a rate limit, by scope.");
    describe_counter!(
        AUTH_LOGINS_TOTAL,
        "Login attempts, by result (success, failure, disabled, throttled)."
    );
    describe_counter!(CREDITS_INSUFFICIENT_TOTAL, "Charges refused for lack of credits, by service type.");
    describe_histogram!(
        LEDGER_WRITE_BATCH_SIZE,
        "Writes (ledger entries, messages, chat updates, balances) committed in one group."
    );
    describe_gauge!(GENERATIONS_RUNNING, "Generations (chat replies, images) running on this node.");
    describe_gauge!(CREDITS_HELD, "Credits held by the generations running on this node.");
    describe_counter!(TOKENS_TOTAL, "Tokens of chat turns, by model and direction (input, output).");
    describe_counter!(CREDITS_CHARGED_TOTAL, "Credits charged for generations, by model, when settled.");
    describe_counter!(
        GENERATIONS_TOTAL,
        "Generations that ended, by kind (chat, image) and status (complete, stopped, failed, interrupted)."
    );
}

/// Creates every series whose labels are known up front, without changing any value.
fn register_known_series() {
    use ::metrics::{counter, gauge, histogram};
    use names::*;
    // Registering is enough: a handle that was never touched renders as 0. The gauges are only
    // registered, never set, because presence may already have set them.
    let _ = gauge!(ACTIVE_USERS);
    let _ = gauge!(WS_SESSIONS);
    let _ = gauge!(NODE_ACTIVE_USERS);
    let _ = gauge!(NODE_WS_SESSIONS);
    for service_type in labels::SERVICE_TYPES {
        let _ = counter!(CREDIT_USAGE_TOTAL, "service_type" => service_type);
        let _ = counter!(CREDITS_INSUFFICIENT_TOTAL, "service_type" => service_type);
    }
    for result in labels::LOGIN_RESULTS {
        let _ = counter!(AUTH_LOGINS_TOTAL, "result" => result);
    }
    for scope in labels::RATE_LIMIT_SCOPES {
        let _ = counter!(RATE_LIMITED_TOTAL, "scope" => scope);
    }
    for result in labels::WS_CONNECT_RESULTS {
        let _ = counter!(WS_CONNECTS_TOTAL, "result" => result);
    }
    for reason in labels::WS_DROP_REASONS {
        let _ = counter!(WS_OUTBOUND_DROPPED_TOTAL, "reason" => reason);
    }
    for direction in labels::WS_DIRECTIONS {
        let _ = counter!(WS_MESSAGES_TOTAL, "direction" => direction, "type" => "ping");
    }
    // The first scrape is itself a request, recorded only after it is rendered.
    let _ =
        counter!(HTTP_REQUESTS_TOTAL, "method" => "GET", "route" => labels::METRICS_ROUTE, "status" => "200");
    let _ = histogram!(HTTP_REQUEST_DURATION_SECONDS, "method" => "GET", "route" => labels::METRICS_ROUTE);
    let _ = histogram!(LEDGER_WRITE_BATCH_SIZE);
    let _ = gauge!(GENERATIONS_RUNNING);
    let _ = gauge!(CREDITS_HELD);
    for kind in labels::GENERATION_KINDS {
        for status in labels::GENERATION_STATUSES {
            let _ = counter!(GENERATIONS_TOTAL, "kind" => kind, "status" => status);
        }
    }
}

/// Folds histogram samples into buckets every few seconds, so their buffers stay small between
/// scrapes. A plain thread, not a task: `install` may first run inside any of several actix
/// systems (tests start many), and the loop must outlive all of them.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
        loop {
            std::thread::sleep(UPKEEP_EVERY);
            handle.run_upkeep();
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the metrics upkeep thread; histograms fold only on scrape");
    }
}

/// Records the size of one group of writes committed together.
pub fn record_write_group(writes: usize) {
    ::metrics::histogram!(names::LEDGER_WRITE_BATCH_SIZE).record(writes as f64);
}

/// Counts one WebSocket upgrade request by its `result` (one of [`labels::WS_CONNECT_RESULTS`]).
pub fn record_ws_connect(result: &'static str) {
    ::metrics::counter!(names::WS_CONNECTS_TOTAL, "result" => result).increment(1);
}

/// Counts a frame for a client that was never sent (`reason` of [`labels::WS_DROP_REASONS`]).
pub fn record_ws_outbound_dropped(reason: &'static str) {
    ::metrics::counter!(names::WS_OUTBOUND_DROPPED_TOTAL, "reason" => reason).increment(1);
}

/// Counts one WebSocket frame. `kind` must be a frame type from the protocol (or a fixed word
/// such as `"unknown"`), never text taken from the client.
pub fn record_ws_message(direction: &'static str, kind: &'static str) {
    ::metrics::counter!(names::WS_MESSAGES_TOTAL, "direction" => direction, "type" => kind).increment(1);
}

/// Adds `amount` credits spent on `service_type` (`chat`, `image`).
pub fn record_credit_usage(service_type: &'static str, amount: u64) {
    ::metrics::counter!(names::CREDIT_USAGE_TOTAL, "service_type" => service_type).increment(amount);
}

/// Counts a charge refused for lack of credits.
pub fn record_insufficient(service_type: &'static str) {
    ::metrics::counter!(names::CREDITS_INSUFFICIENT_TOTAL, "service_type" => service_type).increment(1);
}

/// Counts a request or message refused by the rate limit of `scope` (`rest`, `ws`).
pub fn record_rate_limited(scope: &'static str) {
    ::metrics::counter!(names::RATE_LIMITED_TOTAL, "scope" => scope).increment(1);
}

/// Counts a login attempt by `result` (`success`, `failure`, `disabled`, `throttled`).
pub fn record_login(result: &'static str) {
    ::metrics::counter!(names::AUTH_LOGINS_TOTAL, "result" => result).increment(1);
}

/// Adds `credits` charged for a generation of `model` (a catalogue id: a short, fixed list).
pub fn record_generation_charge(model: &str, credits: u64) {
    ::metrics::counter!(names::CREDITS_CHARGED_TOTAL, "model" => model.to_owned()).increment(credits);
}

/// Adds the tokens a chat turn of `model` read and wrote.
pub fn record_tokens(model: &str, input: u64, output: u64) {
    ::metrics::counter!(names::TOKENS_TOTAL, "model" => model.to_owned(), "direction" => "input")
        .increment(input);
    ::metrics::counter!(names::TOKENS_TOTAL, "model" => model.to_owned(), "direction" => "output")
        .increment(output);
}

/// Counts a generation of `kind` (`chat`, `image`) that ended with `status` (one of
/// [`labels::GENERATION_STATUSES`]).
pub fn record_generation_end(kind: &'static str, status: &'static str) {
    ::metrics::counter!(names::GENERATIONS_TOTAL, "kind" => kind, "status" => status).increment(1);
}

/// Sets this node's running generations and the credits they hold.
pub fn set_generations_running(running: usize, held: i64) {
    ::metrics::gauge!(names::GENERATIONS_RUNNING).set(running as f64);
    ::metrics::gauge!(names::CREDITS_HELD).set(held as f64);
}
