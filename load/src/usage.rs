//! What a run cost: the server's resident memory (VmRSS from /proc/<pid>/status) and CPU time
//! (utime + stime from /proc/<pid>/stat), and the load tool's own CPU, which shares the machine.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Clock ticks per second in /proc/<pid>/stat. Linux reports these in USER_HZ, which is 100 on
/// every architecture it ships for, so the tool need not call sysconf (and stays free of unsafe).
const TICKS_PER_SECOND: f64 = 100.0;

/// The server's resident memory now, KiB; `None` when the process is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time used so far (user + system), in clock ticks, of `pid` ("self" for this process).
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses, so count fields from the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name come state (field 3), ..., utime (field 14) and stime (field 15).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// This process's soft limit on open files, from /proc/self/limits.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The server's memory and CPU over one measured window.
#[derive(Clone, Debug)]
pub struct ServerUsage {
    /// The server's process id.
    pub pid: u32,
    /// VmRSS when the window opened, KiB.
    pub rss_start_kib: u64,
    /// VmRSS when it closed, KiB.
    pub rss_end_kib: u64,
    /// The highest VmRSS seen by the once-a-second samples, KiB.
    pub rss_peak_kib: u64,
    /// CPU used in the window as a percentage of one core (200 means two cores busy).
    pub cpu_percent: f64,
}

/// Resource use over one measured window.
#[derive(Clone, Debug)]
pub struct Usage {
    /// The server's, when its pid was given.
    pub server: Option<ServerUsage>,
    /// The load tool's own CPU in the window, percent of one core.
    pub load_tool_cpu_percent: f64,
}

/// Watches the server (when a pid is given) and this process from `start` to `finish`.
pub struct UsageMonitor {
    server_pid: Option<u32>,
    started: Mutex<Instant>,
    server_ticks_at_start: AtomicU64,
    own_ticks_at_start: AtomicU64,
    rss_at_start: AtomicU64,
    rss_peak: AtomicU64,
}

impl UsageMonitor {
    /// Opens the window now.
    pub fn start(server_pid: Option<u32>) -> UsageMonitor {
        let monitor = UsageMonitor {
            server_pid,
            started: Mutex::new(Instant::now()),
            server_ticks_at_start: AtomicU64::new(0),
            own_ticks_at_start: AtomicU64::new(0),
            rss_at_start: AtomicU64::new(0),
            rss_peak: AtomicU64::new(0),
        };
        monitor.restart();
        monitor
    }

    /// Opens the window again from now, so set-up work (registrations, connecting) is left out.
    pub fn restart(&self) {
        *self.started.lock().expect("monitor lock") = Instant::now();
        self.own_ticks_at_start.store(cpu_ticks("self").unwrap_or(0), Ordering::Relaxed);
        if let Some(pid) = self.server_pid {
            self.server_ticks_at_start.store(cpu_ticks(&pid.to_string()).unwrap_or(0), Ordering::Relaxed);
            let rss = rss_kib(pid).unwrap_or(0);
            self.rss_at_start.store(rss, Ordering::Relaxed);
            self.rss_peak.store(rss, Ordering::Relaxed);
        }
    }

    /// Takes one memory sample for the peak (the progress line calls this once a second).
    pub fn sample(&self) -> Option<u64> {
        let rss = rss_kib(self.server_pid?)?;
        self.rss_peak.fetch_max(rss, Ordering::Relaxed);
        Some(rss)
    }

    /// Closes the window and says what it cost.
    pub fn finish(&self) -> Usage {
        let seconds = self.started.lock().expect("monitor lock").elapsed().as_secs_f64().max(1e-3);
        let percent = |ticks_now: u64, ticks_then: u64| {
            ticks_now.saturating_sub(ticks_then) as f64 / TICKS_PER_SECOND / seconds * 100.0
        };
        let own = percent(cpu_ticks("self").unwrap_or(0), self.own_ticks_at_start.load(Ordering::Relaxed));
        let server = self.server_pid.map(|pid| {
            let rss_end = self.sample().unwrap_or(0);
            ServerUsage {
                pid,
                rss_start_kib: self.rss_at_start.load(Ordering::Relaxed),
                rss_end_kib: rss_end,
                rss_peak_kib: self.rss_peak.load(Ordering::Relaxed),
                cpu_percent: percent(
                    cpu_ticks(&pid.to_string()).unwrap_or(0),
                    self.server_ticks_at_start.load(Ordering::Relaxed),
                ),
            }
        });
        Usage { server, load_tool_cpu_percent: own }
    }
}
