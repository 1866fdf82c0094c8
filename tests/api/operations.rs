//! What operators deploy beside the server (`deploy/`): the Prometheus alert rules pass
//! `promtool check rules`, and the Grafana dashboard charts every metric of docs/API.md §6.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// Every metric name of docs/API.md §6 (fixed by the contract; dashboards and alerts depend on them).
const CONTRACT_METRICS: [&str; 18] = [
    "active_users",
    "ws_sessions",
    "credit_usage_total",
    "http_requests_total",
    "http_request_duration_seconds",
    "ws_messages_total",
    "rate_limited_total",
    "auth_logins_total",
    "credits_insufficient_total",
    "ws_connects_total",
    "cluster_messages_total",
    "ledger_write_batch_size",
    "ws_outbound_dropped_total",
    "tokens_total",
    "credits_charged_total",
    "generations_total",
    "generations_running",
    "credits_held",
];

/// Where the Debian package `prometheus` installs `promtool`.
const PROMTOOL: &str = "/usr/bin/promtool";

fn deploy(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy").join(path)
}

#[test]
fn the_alert_rules_pass_promtool_and_cover_what_operators_are_paged_for() {
    let rules = deploy("prometheus/alerts.yml");
    assert!(
        std::path::Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: install the Debian package `prometheus` to run this test"
    );
    let output = Command::new(PROMTOOL).args(["check", "rules"]).arg(&rules).output().expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool check rules failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&rules).unwrap();
    for (what, alert) in [
        ("an instance is down", "SwitchboardInstanceDown"),
        ("the 5xx ratio", "SwitchboardHigh5xxRatio"),
        ("p99 latency", "SwitchboardSlowRequests"),
        ("storage unavailable", "SwitchboardStorageUnavailable"),
        ("credit failures", "SwitchboardCreditChargesRefused"),
        ("slow-consumer closes", "SwitchboardSlowConsumerCloses"),
    ] {
        assert!(text.contains(&format!("alert: {alert}")), "an alert for {what} ({alert})");
    }
}

#[test]
fn the_dashboard_charts_every_metric_of_the_contract_from_the_provisioned_datasource() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/dashboards/switchboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    let mut uids = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().expect("a PromQL expression").to_owned());
        }
        if let Some(uid) = panel["datasource"]["uid"].as_str() {
            uids.push(uid.to_owned());
        }
    }
    for name in CONTRACT_METRICS {
        assert!(exprs.iter().any(|e| e.contains(name)), "a panel charts {name}");
    }
    let provisioned =
        std::fs::read_to_string(deploy("grafana/provisioning/datasources/prometheus.yml")).unwrap();
    for uid in uids {
        assert!(provisioned.contains(&format!("uid: {uid}")), "the datasource {uid} is provisioned");
    }
    let provider =
        std::fs::read_to_string(deploy("grafana/provisioning/dashboards/switchboard.yml")).unwrap();
    let compose =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docker-compose.yml"))
            .unwrap();
    assert!(provider.contains("path: /var/lib/grafana/dashboards"), "the provider reads the mounted folder");
    assert!(compose.contains("./deploy/grafana/dashboards:/var/lib/grafana/dashboards"), "compose mounts it");
}
