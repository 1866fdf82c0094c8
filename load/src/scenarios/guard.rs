//! `guard`: a short CI check that the charged path has not fallen behind the free one. It runs
//! ping saturation and then charged chat with the same sessions and users, and fails when
//! chat/ping drops below `--min-ratio`. Only the ratio is judged, never an absolute time, so
//! the check holds on a slow or busy CI machine as well as on a fast one.

use std::sync::Arc;

use super::{chat, ping, report_for};
use crate::cli::Settings;
use crate::report::Report;
use crate::session::{Target, register_users, tokens_of};

/// Runs both phases; the report, and whether the ratio passed.
pub async fn run(settings: &Settings, min_ratio: f64) -> Result<(Report, bool), String> {
    let target = Arc::new(Target::new(&settings.url, "/ws", settings.source_addresses, settings.sessions)?);
    let tokens = tokens_of(&register_users(&target.base_url, settings.users).await?);
    let ping_report = ping::measure(settings, &target, &tokens, 0, false).await?;
    let chat_report = chat::measure(settings, &target, &tokens, 0, false).await?;
    let rate_of =
        |report: &Report, name: &str| report.find(name).map(|operation| operation.rate()).unwrap_or(0.0);
    let ping_rate = rate_of(&ping_report, "ping round trips");
    let chat_rate = rate_of(&chat_report, "chat round trips");
    let ratio = if ping_rate > 0.0 { chat_rate / ping_rate } else { 0.0 };
    let passed = ratio >= min_ratio;

    let mut report = report_for("guard", &target.ws_url, settings);
    report.setting("min_ratio", min_ratio);
    for (phase, mut phase_report) in [("ping", ping_report), ("chat", chat_report)] {
        if let Some(server) = phase_report.usage.as_ref().and_then(|usage| usage.server.as_ref()) {
            report.figure(&format!("server_cpu_percent_during_{phase}"), server.cpu_percent.round());
        }
        report.operations.append(&mut phase_report.operations);
    }
    report.figure("ping_per_second", ping_rate.round());
    report.figure("chat_per_second", chat_rate.round());
    report.figure("chat_to_ping_ratio", (ratio * 100_000.0).round() / 100_000.0);
    report.figure("verdict", if passed { "pass" } else { "FAIL: chat/ping below --min-ratio" });
    Ok((report, passed))
}
