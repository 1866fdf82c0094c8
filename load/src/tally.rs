//! Counting requests and their latencies (HdrHistogram, microseconds).

use hdrhistogram::Histogram;

/// Requests done, failures and latencies of one kind of request in one phase.
pub struct Tally {
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub failed: u64,
    /// Latencies of the successful ones, microseconds.
    pub latency_us: Histogram<u64>,
}

impl Tally {
    /// An empty tally.
    pub fn new() -> Tally {
        Tally { ok: 0, failed: 0, latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds") }
    }

    /// Records one success taking `micros`.
    pub fn success(&mut self, micros: u64) {
        self.ok += 1;
        self.latency_us.saturating_record(micros.max(1));
    }

    /// Adds another tally.
    pub fn merge(&mut self, other: &Tally) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.latency_us.add(&other.latency_us).expect("same bounds");
    }

    /// Latency at quantile `q`, milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    /// One line of figures.
    pub fn line(&self, label: &str, seconds: f64) -> String {
        format!(
            "{label:<36} {:>9.0}/s  p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  ok {} failed {}",
            self.ok as f64 / seconds,
            self.ms(0.5),
            self.ms(0.99),
            self.latency_us.max() as f64 / 1000.0,
            self.ok,
            self.failed
        )
    }
}
