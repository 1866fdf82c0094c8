//! The end of every scenario: throughput, latency percentiles and errors by code for each kind of
//! operation, the scenario's own figures (memory per session, ratios), and what the run cost the
//! server; printed as human lines, or with `--json` as one JSON object on stdout.

use serde_json::{Map, Value, json};

use crate::tally::Tally;
use crate::usage::Usage;

/// One kind of operation measured over a window.
pub struct Operation {
    /// What was counted, e.g. "ping round trips".
    pub name: String,
    /// Length of the measured window, seconds; the rate is count / seconds.
    pub seconds: f64,
    /// The counts, latencies and errors.
    pub tally: Tally,
}

impl Operation {
    /// Successes per second over the window.
    pub fn rate(&self) -> f64 {
        self.tally.ok as f64 / self.seconds.max(1e-9)
    }
}

/// Everything one scenario run found.
pub struct Report {
    /// The subcommand, e.g. "ping".
    pub scenario: String,
    /// Where the load went.
    pub target: String,
    /// The settings that shaped the run (sessions, users, seconds...), in the order given.
    pub settings: Vec<(String, Value)>,
    /// Each kind of operation measured.
    pub operations: Vec<Operation>,
    /// Single figures with their unit in the name, e.g. `server_rss_per_session_bytes`.
    pub figures: Vec<(String, Value)>,
    /// What the measured window cost.
    pub usage: Option<Usage>,
}

impl Report {
    /// An empty report of `scenario` against `target`.
    pub fn new(scenario: &str, target: &str) -> Report {
        Report {
            scenario: scenario.to_owned(),
            target: target.to_owned(),
            settings: Vec::new(),
            operations: Vec::new(),
            figures: Vec::new(),
            usage: None,
        }
    }

    /// Notes one setting of the run (a second note of the same name replaces the first).
    pub fn setting(&mut self, name: &str, value: impl Into<Value>) {
        upsert(&mut self.settings, name, value.into());
    }

    /// Adds a measured kind of operation.
    pub fn operation(&mut self, name: &str, seconds: f64, tally: Tally) {
        self.operations.push(Operation { name: name.to_owned(), seconds, tally });
    }

    /// Adds one figure; put its unit at the end of the name.
    pub fn figure(&mut self, name: &str, value: impl Into<Value>) {
        upsert(&mut self.figures, name, value.into());
    }

    /// The operation called `name`, if it was measured.
    pub fn find(&self, name: &str) -> Option<&Operation> {
        self.operations.iter().find(|operation| operation.name == name)
    }

    /// Prints the report on stdout, as JSON or as lines for people.
    pub fn print(&self, as_json: bool) {
        if as_json {
            println!("{}", self.to_json());
        } else {
            print!("{}", self.to_lines());
        }
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> Value {
        let round = |value: f64| (value * 1000.0).round() / 1000.0;
        let operations: Vec<Value> = self
            .operations
            .iter()
            .map(|operation| {
                let tally = &operation.tally;
                json!({
                    "name": operation.name,
                    "count": tally.ok,
                    "seconds": round(operation.seconds),
                    "rate_per_second": round(operation.rate()),
                    "latency_ms": {
                        "samples": tally.timed(),
                        "p50": tally.ms(0.5), "p90": tally.ms(0.9), "p99": tally.ms(0.99),
                        "p999": tally.ms(0.999), "max": tally.max_ms(),
                    },
                    "failed": tally.failed(),
                    "errors": tally.errors,
                })
            })
            .collect();
        let server = self.usage.as_ref().and_then(|usage| usage.server.as_ref()).map(|server| {
            json!({
                "pid": server.pid,
                "rss_start_kib": server.rss_start_kib,
                "rss_end_kib": server.rss_end_kib,
                "rss_peak_kib": server.rss_peak_kib,
                "cpu_percent_of_one_core": round(server.cpu_percent),
            })
        });
        json!({
            "scenario": self.scenario,
            "target": self.target,
            "settings": self.settings.iter().cloned().collect::<Map<String, Value>>(),
            "operations": operations,
            "figures": self.figures.iter().cloned().collect::<Map<String, Value>>(),
            "server": server,
            "load_tool_cpu_percent_of_one_core":
                self.usage.as_ref().map(|usage| round(usage.load_tool_cpu_percent)),
        })
    }

    /// The report as lines for people.
    pub fn to_lines(&self) -> String {
        let settings: Vec<String> =
            self.settings.iter().map(|(name, value)| format!("{name} {}", plain(value))).collect();
        let mut out = format!("{} against {} ({})\n", self.scenario, self.target, settings.join(", "));
        for operation in &self.operations {
            let tally = &operation.tally;
            out += &format!(
                "  {:<40} {:>10.1}/s  ({} in {:.2} s)\n",
                operation.name,
                operation.rate(),
                tally.ok,
                operation.seconds
            );
            if tally.timed() > 0 {
                out += &format!(
                    "      latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p999 {:.3}  max {:.3}  ({} timed)\n",
                    tally.ms(0.5),
                    tally.ms(0.9),
                    tally.ms(0.99),
                    tally.ms(0.999),
                    tally.max_ms(),
                    tally.timed()
                );
            }
            let errors: Vec<String> =
                tally.errors.iter().map(|(code, count)| format!("{code} {count}")).collect();
            let errors = if errors.is_empty() { "none".to_owned() } else { errors.join(", ") };
            out += &format!("      errors: {errors}\n");
        }
        for (name, value) in &self.figures {
            out += &format!("  {}: {}\n", name.replace('_', " "), plain(value));
        }
        if let Some(usage) = &self.usage {
            if let Some(server) = &usage.server {
                let mib = |kib: u64| kib as f64 / 1024.0;
                out += &format!(
                    "  server (pid {}): RSS {:.1} MiB -> {:.1} MiB (peak {:.1} MiB), CPU {:.0}% of one core\n",
                    server.pid,
                    mib(server.rss_start_kib),
                    mib(server.rss_end_kib),
                    mib(server.rss_peak_kib),
                    server.cpu_percent
                );
            }
            out += &format!("  load tool: CPU {:.0}% of one core\n", usage.load_tool_cpu_percent);
        }
        out
    }
}

/// A JSON value as a person would write it (strings without quotes).
fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Sets `name` in an ordered list of pairs, in place when it is already there.
fn upsert(pairs: &mut Vec<(String, Value)>, name: &str, value: Value) {
    match pairs.iter_mut().find(|(existing, _)| existing == name) {
        Some((_, slot)) => *slot = value,
        None => pairs.push((name.to_owned(), value)),
    }
}
