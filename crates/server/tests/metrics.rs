//! `GET /metrics` over real TCP: known activity (subscribers, publishes, a replay, a lag close,
//! refusals of every kind counted), then a scrape whose values must be exactly that activity;
//! and who may scrape (off: 404; a token: 401 without it).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{client, publisher, start_with, token};
use futures_util::StreamExt;
use ssehub_hub::{Hub, Subscription};
use ssehub_server::MetricsAccess;

/// The samples of a scrape, `name{labels}` -> value, after checking every line's shape.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        assert!(!line.starts_with('#'), "stray comment {line:?}");
        let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line:?}"));
        assert!(out.insert(key.to_owned(), value).is_none(), "twice: {key}");
    }
    out
}

async fn scrape(url: &str, bearer: Option<&str>) -> reqwest::Response {
    let mut req = client().get(url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

/// An event stream read as raw body bytes.
struct Raw {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: Vec<u8>,
}

impl Raw {
    async fn open(req: reqwest::RequestBuilder) -> Raw {
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        Raw {
            stream: Box::pin(res.bytes_stream()),
            buf: Vec::new(),
        }
    }

    /// Reads until the body so far contains `needle` (fails after 5 s).
    async fn until(&mut self, needle: &str) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !String::from_utf8_lossy(&self.buf).contains(needle) {
                let chunk = self.stream.next().await.expect("ended").unwrap();
                self.buf.extend_from_slice(&chunk);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {needle:?} within 5 s"));
    }
}

fn histogram_is_consistent(m: &HashMap<String, f64>, name: &str) -> f64 {
    let mut last = 0.0;
    for bound in ssehub_hub::LATENCY_BUCKETS {
        let v = m[&format!("{name}_bucket{{le=\"{}\"}}", bound.as_secs_f64())];
        assert!(v >= last, "{name}: buckets not cumulative");
        last = v;
    }
    let inf = m[&format!("{name}_bucket{{le=\"+Inf\"}}")];
    assert!(inf >= last);
    assert_eq!(inf, m[&format!("{name}_count")], "{name}: +Inf != count");
    inf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_counts_exactly_the_activity() {
    let hub = Hub::builder()
        .heartbeat(None)
        .history_size(4)
        .max_queued(4, 1 << 20)
        .build();
    let server = start_with(hub.clone(), |c| {
        c.metrics = MetricsAccess::Open;
        c.max_subscribers_per_ip = 4;
        c.max_body = 1024;
    })
    .await;
    let url = server.hub_url();
    let sub_url = format!("{url}?topic=demo");

    // 3 subscribers, 5 publishes, each received by all before the next: one batch each.
    let mut subs = Vec::new();
    for _ in 0..3 {
        subs.push(Raw::open(client().get(&sub_url)).await);
    }
    let mut ids = Vec::new();
    for i in 0..5 {
        let res = common::publish(&server, &[("topic", "demo"), ("data", &format!("m{i}"))]).await;
        assert_eq!(res.status(), 200);
        ids.push(res.text().await.unwrap());
        for s in &mut subs {
            s.until(&format!("data: m{i}\n\n")).await;
        }
    }
    // A replay: after the 2nd update, 3 are replayed.
    let mut replay = Raw::open(client().get(&sub_url).header("Last-Event-ID", &ids[1])).await;
    replay.until("data: m4\n\n").await;
    // A 5th subscription from this address: 429.
    let refused = client().get(&sub_url).send().await.unwrap();
    assert_eq!(refused.status(), 429);

    // A lag close: a subscriber that reads nothing while 10 updates go by; its queue holds 4,
    // the ring 4, so what it missed is gone when it reads again.
    let mut lagging = hub
        .subscribe(Subscription::new().topic("lag").unwrap())
        .unwrap();
    for i in 0..10 {
        let res = common::publish(&server, &[("topic", "lag"), ("data", &format!("l{i}"))]).await;
        assert_eq!(res.status(), 200);
    }
    let mut lag_bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(b) = lagging.next().await {
            lag_bytes.extend_from_slice(&b);
        }
    })
    .await
    .expect("the lagging stream did not end");
    let lag_text = String::from_utf8_lossy(&lag_bytes).into_owned();
    assert!(lag_text.contains("data: l3\n\n") && !lag_text.contains("data: l4\n\n"));
    assert!(lag_text.contains("event: ssehub.lagged"), "{lag_text}");
    drop(lagging);

    // Refusals: no token (401), a token for other topics (403), a body over the limit (413).
    let form = [("topic", "demo"), ("data", "x")];
    let res = client().post(&url).form(&form).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = client()
        .post(&url)
        .bearer_auth(token(&["other"], &[]))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let big = "x".repeat(2000);
    let res = client()
        .post(&url)
        .bearer_auth(publisher())
        .form(&[("topic", "demo"), ("data", big.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);

    let stream_bytes: usize =
        subs.iter().map(|s| s.buf.len()).sum::<usize>() + replay.buf.len() + lag_bytes.len();
    let metrics_url = server.url("/metrics");
    // A written batch is counted when its writer comes back for the next one, which can be
    // a moment after the client read it: scrape until the byte count is in (bounded).
    let mut m = HashMap::new();
    for _ in 0..250 {
        let res = scrape(&metrics_url, None).await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        m = parse(&res.text().await.unwrap());
        if m["ssehub_bytes_out_total"] as usize == stream_bytes
            && m["ssehub_publish_to_flush_seconds_count"] == 16.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let expect = [
        ("ssehub_subscribers", 4.0),
        ("ssehub_selector_subscribers{selector=\"demo\"}", 4.0),
        ("ssehub_publishes_total", 15.0),
        // 3 x 5 demo updates, and the 4 the lagging subscriber's queue took.
        ("ssehub_deliveries_total", 19.0),
        ("ssehub_replayed_total", 3.0),
        ("ssehub_lagged_total", 1.0),
        ("ssehub_lag_closes_total", 1.0),
        ("ssehub_bytes_out_total", stream_bytes as f64),
        ("ssehub_subscriber_closes_total{reason=\"lagged\"}", 1.0),
        (
            "ssehub_subscriber_closes_total{reason=\"client_gone\"}",
            0.0,
        ),
        ("ssehub_subscriber_closes_total{reason=\"shutdown\"}", 0.0),
        ("ssehub_publish_requests_total{status=\"200\"}", 15.0),
        ("ssehub_publish_requests_total{status=\"401\"}", 1.0),
        ("ssehub_publish_requests_total{status=\"403\"}", 1.0),
        ("ssehub_publish_requests_total{status=\"413\"}", 1.0),
        ("ssehub_publish_requests_total{status=\"429\"}", 0.0),
        ("ssehub_subscribe_refusals_total{status=\"429\"}", 1.0),
        (
            "ssehub_auth_failures_total{endpoint=\"publish\",reason=\"missing_token\"}",
            1.0,
        ),
        (
            "ssehub_auth_failures_total{endpoint=\"publish\",reason=\"forbidden\"}",
            1.0,
        ),
        (
            "ssehub_auth_failures_total{endpoint=\"subscribe\",reason=\"invalid_token\"}",
            0.0,
        ),
        ("ssehub_limit_hits_total{limit=\"subscribers_per_ip\"}", 1.0),
        ("ssehub_limit_hits_total{limit=\"body\"}", 1.0),
        ("ssehub_limit_hits_total{limit=\"publish_rate\"}", 0.0),
        // A RAM-only hub has no storage to wait for.
        ("ssehub_storage_latency_seconds_count", 0.0),
        // One batch per demo update per subscriber (each read before the next publish), and
        // the lagging subscriber's one batch of 4; replay and the lag notice are not sampled.
        ("ssehub_publish_to_flush_seconds_count", 16.0),
    ];
    for (key, value) in expect {
        assert_eq!(m.get(key).copied(), Some(value), "{key}");
    }
    histogram_is_consistent(&m, "ssehub_storage_latency_seconds");
    histogram_is_consistent(&m, "ssehub_publish_to_flush_seconds");
    assert!(m["ssehub_publish_to_flush_seconds_sum"] > 0.0);

    // Clients leaving are counted as they go.
    drop(subs);
    drop(replay);
    for _ in 0..250 {
        m = parse(&scrape(&metrics_url, None).await.text().await.unwrap());
        if m["ssehub_subscriber_closes_total{reason=\"client_gone\"}"] == 4.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        m["ssehub_subscriber_closes_total{reason=\"client_gone\"}"],
        4.0
    );
    assert_eq!(m["ssehub_subscribers"], 0.0);
    assert!(!m.contains_key("ssehub_selector_subscribers{selector=\"demo\"}"));
}

#[tokio::test]
async fn metrics_are_off_by_default_and_a_token_protects_them() {
    let off = common::start().await;
    assert_eq!(scrape(&off.url("/metrics"), None).await.status(), 404);

    let hub = Hub::builder().heartbeat(None).build();
    let on = start_with(hub, |c| {
        c.metrics = MetricsAccess::Bearer("s3cret-scrape".into())
    })
    .await;
    let url = on.url("/metrics");
    let res = scrape(&url, None).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    assert_eq!(scrape(&url, Some("wrong")).await.status(), 401);
    let res = scrape(&url, Some("s3cret-scrape")).await;
    assert_eq!(res.status(), 200);
    let m = parse(&res.text().await.unwrap());
    assert_eq!(
        m["ssehub_auth_failures_total{endpoint=\"metrics\",reason=\"missing_token\"}"],
        1.0
    );
    assert_eq!(
        m["ssehub_auth_failures_total{endpoint=\"metrics\",reason=\"invalid_token\"}"],
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_hub_times_its_commits() {
    let dir = tempfile::tempdir().unwrap();
    let log = ssehub_store::Log::open(dir.path(), Default::default()).unwrap();
    let hub = Hub::builder()
        .heartbeat(None)
        .storage(ssehub_store::Durable::new(log))
        .build();
    let server = start_with(hub, |c| c.metrics = MetricsAccess::Open).await;
    let mut sub = Raw::open(client().get(format!("{}?topic=d", server.hub_url()))).await;
    for i in 0..3 {
        let res = common::publish(&server, &[("topic", "d"), ("data", &format!("d{i}"))]).await;
        assert_eq!(res.status(), 200);
        sub.until(&format!("data: d{i}\n\n")).await;
    }
    let mut m = HashMap::new();
    for _ in 0..250 {
        m = parse(
            &scrape(&server.url("/metrics"), None)
                .await
                .text()
                .await
                .unwrap(),
        );
        if m["ssehub_publish_to_flush_seconds_count"] == 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(m["ssehub_publishes_total"], 3.0);
    assert_eq!(m["ssehub_retained_updates"], 3.0);
    assert_eq!(
        histogram_is_consistent(&m, "ssehub_storage_latency_seconds"),
        3.0
    );
    assert!(m["ssehub_storage_latency_seconds_sum"] > 0.0);
    assert_eq!(
        histogram_is_consistent(&m, "ssehub_publish_to_flush_seconds"),
        3.0
    );
}
