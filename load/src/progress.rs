//! The progress line: once a second, on stderr, how long a phase has run, how much it has done,
//! at what rate over the last second, and how many failures, so a long run can be watched (and
//! stopped early) without waiting for the final report on stdout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::usage::UsageMonitor;

/// Counters that the workers of one phase bump as they go.
pub struct Progress {
    label: String,
    done: AtomicU64,
    failures: AtomicU64,
}

impl Progress {
    /// Counters for a phase called `label` (shown in brackets on each line).
    pub fn new(label: &str) -> Arc<Progress> {
        Arc::new(Progress { label: label.to_owned(), done: AtomicU64::new(0), failures: AtomicU64::new(0) })
    }

    /// Counts `n` finished operations.
    pub fn done(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one failure.
    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Operations finished so far.
    pub fn total_done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

/// The task printing the line; it stops when dropped.
pub struct Ticker {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts printing `progress` once a second; `monitor` adds the server's memory to the line.
pub fn show(progress: &Arc<Progress>, monitor: Option<Arc<UsageMonitor>>) -> Ticker {
    let progress = progress.clone();
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        ticks.tick().await;
        let mut done_before = 0;
        loop {
            ticks.tick().await;
            let done = progress.total_done();
            let failures = progress.failures.load(Ordering::Relaxed);
            let memory = match monitor.as_ref().and_then(|monitor| monitor.sample()) {
                Some(kib) => format!(", server RSS {:.1} MiB", kib as f64 / 1024.0),
                None => String::new(),
            };
            eprintln!(
                "[{}] {:>4.0} s: {} done, {}/s, {} failed{memory}",
                progress.label,
                started.elapsed().as_secs_f64(),
                done,
                done - done_before,
                failures,
            );
            done_before = done;
        }
    });
    Ticker { task }
}
