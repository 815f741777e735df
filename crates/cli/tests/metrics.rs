//! `ssehub serve --metrics` / `--metrics-token` over the real binary: off by default (404),
//! open with `--metrics`, a bearer token with `--metrics-token` (also from the config file,
//! redacted by `--print-config`), and the log line of a refused publish.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{BIN, Served};

const KEY: &str = "metrics-test-secret-metrics-test-secret";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn metrics_url(hub: &str) -> String {
    hub.replace("/.well-known/mercure", "/metrics")
}

/// The value of the sample `key` (`name{labels}`) in a scrape.
fn sample(text: &str, key: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
}

#[tokio::test]
async fn metrics_are_off_unless_asked_for() {
    let served = Served::start(&["--memory", "--jwt-key", KEY], &[]);
    let url = metrics_url(&served.hub_url());
    let res = client().get(&url).send().await.unwrap();
    assert_eq!(res.status(), 404);

    let served = Served::start(&["--memory", "--jwt-key", KEY, "--metrics"], &[]);
    let hub = served.hub_url();
    let res = client().get(metrics_url(&hub)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("# TYPE ssehub_publishes_total counter")
    );
}

#[tokio::test]
async fn a_metrics_token_protects_the_scrape_and_counts_what_happened() {
    let served = Served::start(
        &[
            "--memory",
            "--jwt-key",
            KEY,
            "--metrics-token",
            "scrape-me-0123",
        ],
        &[],
    );
    let hub = served.hub_url();
    let url = metrics_url(&hub);
    let res = client().get(&url).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = client()
        .get(&url)
        .bearer_auth("scrape-me-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // A publish without a token: refused, counted, and logged once with its status and cause.
    let res = client()
        .post(&hub)
        .form(&[("topic", "t"), ("data", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let line = served.wait_line("publish refused");
    assert!(line.contains("status=401"), "{line}");
    assert!(
        line.contains("cause=\"missing_token\"") || line.contains("cause=missing_token"),
        "{line}"
    );

    let res = client()
        .get(&url)
        .bearer_auth("scrape-me-0123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert_eq!(
        sample(&text, "ssehub_publish_requests_total{status=\"401\"}"),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "ssehub_auth_failures_total{endpoint=\"publish\",reason=\"missing_token\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "ssehub_auth_failures_total{endpoint=\"metrics\",reason=\"missing_token\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "ssehub_auth_failures_total{endpoint=\"metrics\",reason=\"invalid_token\"}"
        ),
        1.0
    );
}

#[test]
fn the_metrics_token_comes_from_the_file_and_is_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.toml");
    std::fs::write(
        &file,
        "metrics-token = \"file-scrape-token-0123\"\nmetrics-selectors = 5\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--config",
            file.to_str().unwrap(),
            "--print-config",
        ])
        .env_remove("SSEHUB_METRICS_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(!printed.contains("file-scrape-token"), "{printed}");
    assert!(
        printed.contains("metrics-token = \"<redacted>\"  # file"),
        "{printed}"
    );
    assert!(
        printed.contains("metrics-selectors = 5  # file"),
        "{printed}"
    );
    assert!(printed.contains("metrics = false  # default"), "{printed}");

    let out = Command::new(BIN)
        .args(["serve", "--memory", "--metrics-token", ""])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "ssehub: --metrics-token must not be empty"
    );
}
