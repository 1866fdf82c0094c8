//! Reading a server's `/metrics`: the scrape, and one sample's value by name and labels.
//!
//! Every in-process server of the test binary shares one Prometheus recorder (it is global to the
//! process), and tests run four at a time, so a counter read from `spawn_app()` moves with other
//! tests' traffic. A test that asserts how a counter changed starts its server with
//! `spawn_app_process()` instead: a process of its own has a recorder of its own, which only that
//! test's requests reach, so the changes it reads are exact.

use reqwest::{Method, StatusCode};

use super::app::TestApp;

/// One scrape of `/metrics`.
pub struct Scrape(pub String);

/// GET /metrics, optionally with a bearer token; asserts 200 and the exposition content type.
pub async fn scrape_with(app: &TestApp, token: Option<&str>) -> Scrape {
    let mut request = app.request(Method::GET, "/metrics");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    assert_eq!(response.status(), StatusCode::OK, "the scrape succeeds");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "exposition content type, got {content_type}"
    );
    Scrape(response.text().await.unwrap())
}

/// GET /metrics without a token.
pub async fn scrape(app: &TestApp) -> Scrape {
    scrape_with(app, None).await
}

impl Scrape {
    /// The sample lines of `name` whose labels include every `label="value"` of `labels`.
    pub fn samples(&self, name: &str, labels: &[&str]) -> Vec<&str> {
        self.0
            .lines()
            .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
            .filter(|line| labels.iter().all(|label| line.contains(label)))
            .collect()
    }

    /// The value of the one sample of `name` with `labels`.
    pub fn value(&self, name: &str, labels: &[&str]) -> f64 {
        let lines = self.samples(name, labels);
        assert_eq!(lines.len(), 1, "one {name} sample with {labels:?}, found {lines:?}");
        let number = lines[0].rsplit(' ').next().unwrap();
        number.parse().unwrap_or_else(|e| panic!("{name} value {number:?}: {e}"))
    }
}
