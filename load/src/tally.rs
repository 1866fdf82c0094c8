//! Counting one kind of operation: how many succeeded, the latencies of those that were timed
//! (HdrHistogram, microseconds), and the failures grouped by their error code.

use std::collections::BTreeMap;
use std::sync::Arc;

use hdrhistogram::Histogram;

use crate::progress::Progress;

/// Operations done, their latencies and their failures by code, for one kind of operation.
#[derive(Clone)]
pub struct Tally {
    /// Successful operations.
    pub ok: u64,
    /// Failures by code: the `code` of an error frame, an HTTP status, or a transport word such
    /// as `closed` or `timeout`.
    pub errors: BTreeMap<String, u64>,
    /// Latencies of the timed successes, microseconds; made at the first one, because a
    /// histogram of this range takes about 300 KiB and an idle run keeps one tally per session.
    latency_us: Option<Histogram<u64>>,
    /// Where each success and failure is also counted as it happens, for the once-a-second
    /// progress line; merged tallies leave it out.
    progress: Option<Arc<Progress>>,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally::new()
    }
}

impl Tally {
    /// An empty tally that reports to no progress line.
    pub fn new() -> Tally {
        Tally { ok: 0, errors: BTreeMap::new(), latency_us: None, progress: None }
    }

    /// An empty tally whose successes and failures also count on `progress` as they happen.
    pub fn reporting_to(progress: &Arc<Progress>) -> Tally {
        Tally { progress: Some(progress.clone()), ..Tally::new() }
    }

    /// Records one success that took `micros`.
    pub fn success(&mut self, micros: u64) {
        self.time(micros);
        self.count(1);
    }

    /// Records one latency without counting an operation (a fan-out delivery is counted once per
    /// frame, but only the final frame of each message is timed).
    pub fn time(&mut self, micros: u64) {
        self.histogram().saturating_record(micros.max(1));
    }

    /// Records `n` successes that were not timed (deliveries counted without a matching send).
    pub fn count(&mut self, n: u64) {
        self.ok += n;
        if let Some(progress) = &self.progress {
            progress.done(n);
        }
    }

    /// Records one failure under `code`.
    pub fn error(&mut self, code: &str) {
        *self.errors.entry(code.to_owned()).or_default() += 1;
        if let Some(progress) = &self.progress {
            progress.failed();
        }
    }

    /// All failures, whatever their code.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Adds another tally into this one.
    pub fn merge(&mut self, other: &Tally) {
        self.ok += other.ok;
        for (code, count) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += count;
        }
        if let Some(latencies) = &other.latency_us {
            self.histogram().add(latencies).expect("same histogram bounds");
        }
    }

    /// How many latencies were recorded.
    pub fn timed(&self) -> u64 {
        self.latency_us.as_ref().map_or(0, Histogram::len)
    }

    /// Latency at quantile `q`, in milliseconds (0 when nothing was timed).
    pub fn ms(&self, q: f64) -> f64 {
        self.latency_us.as_ref().map_or(0.0, |latencies| latencies.value_at_quantile(q) as f64 / 1000.0)
    }

    /// The largest latency, in milliseconds (0 when nothing was timed).
    pub fn max_ms(&self) -> f64 {
        self.latency_us.as_ref().map_or(0.0, |latencies| latencies.max() as f64 / 1000.0)
    }

    /// The histogram, made on first use: 1 µs to 10 minutes, three significant digits.
    fn histogram(&mut self) -> &mut Histogram<u64> {
        self.latency_us
            .get_or_insert_with(|| Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds"))
    }
}
