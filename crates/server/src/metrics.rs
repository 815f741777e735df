//! `GET /metrics`: the hub's and the HTTP API's counters in the Prometheus text format
//! (version 0.0.4), and the server-side counters themselves.
//!
//! The text is rendered by hand from atomics rather than through a metrics registry: every
//! value already lives in a relaxed `AtomicU64` (here, or in the hub: [`Hub::stats`],
//! [`Hub::latency`]), so a scrape only reads them, and recording stays one atomic add with no
//! registry lookup. Label sets are fixed and small (statuses, reasons, limits), except the
//! per-selector subscriber gauge, which is bounded to the `N` selectors with the most
//! subscribers ([`crate::MercureConfig::metrics_selectors`]). Every metric is listed in
//! `docs/metrics.md`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ssehub_hub::{HistogramSnapshot, Hub};

use crate::mercure::MercureState;
use crate::{ApiError, MercureConfig};

/// Who may read `/metrics` (see `docs/metrics.md`).
#[derive(Clone, Default, PartialEq, Eq)]
pub enum MetricsAccess {
    /// No `/metrics` route (404): the default, since the per-selector gauge names topics.
    #[default]
    Off,
    /// Anyone who can reach the hub (keep it behind a proxy that blocks `/metrics`).
    Open,
    /// Only requests with `Authorization: Bearer <this token>` (401 otherwise).
    Bearer(String),
}

impl std::fmt::Debug for MetricsAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsAccess::Off => f.write_str("Off"),
            MetricsAccess::Open => f.write_str("Open"),
            MetricsAccess::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// Which endpoint an authentication failure happened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Publish,
    Subscribe,
    Metrics,
}

/// Why a request was refused for its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// 401: no token where one is needed.
    MissingToken,
    /// 401: a token that does not verify (signature, expiry, algorithm, shape).
    InvalidToken,
    /// 403: a valid token whose selectors do not cover the update's topics.
    Forbidden,
    /// 403: a cookie-authenticated publish from an origin that is not allowed.
    CookieOrigin,
}

/// A limit that refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// 429: `--max-subscribers-per-ip`.
    SubscribersPerIp,
    /// 503: `--max-subscribers`.
    Subscribers,
    /// 429: `--publish-rate`.
    PublishRate,
    /// 413: `--max-body`.
    Body,
    /// 431: `--max-head` (subscribe heads read by the connection layer).
    Head,
    /// 408: `--body-timeout`.
    BodyTimeout,
}

/// What a refusal counts as, beyond its status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Cause {
    #[default]
    Other,
    Auth(AuthFailure),
    Limit(Limit),
}

impl AuthFailure {
    const ALL: [AuthFailure; 4] = [
        AuthFailure::MissingToken,
        AuthFailure::InvalidToken,
        AuthFailure::Forbidden,
        AuthFailure::CookieOrigin,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AuthFailure::MissingToken => "missing_token",
            AuthFailure::InvalidToken => "invalid_token",
            AuthFailure::Forbidden => "forbidden",
            AuthFailure::CookieOrigin => "cookie_origin",
        }
    }
}

impl Limit {
    const ALL: [Limit; 6] = [
        Limit::SubscribersPerIp,
        Limit::Subscribers,
        Limit::PublishRate,
        Limit::Body,
        Limit::Head,
        Limit::BodyTimeout,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Limit::SubscribersPerIp => "subscribers_per_ip",
            Limit::Subscribers => "subscribers",
            Limit::PublishRate => "publish_rate",
            Limit::Body => "body",
            Limit::Head => "head",
            Limit::BodyTimeout => "body_timeout",
        }
    }
}

impl Cause {
    /// The log field of a refusal.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Cause::Other => "other",
            Cause::Auth(a) => a.as_str(),
            Cause::Limit(l) => l.as_str(),
        }
    }
}

/// The statuses the Mercure endpoint answers with; anything else counts as `other`.
const STATUSES: [u16; 11] = [200, 400, 401, 403, 408, 409, 413, 415, 429, 431, 503];

fn status_index(status: StatusCode) -> usize {
    STATUSES
        .iter()
        .position(|&s| s == status.as_u16())
        .unwrap_or(STATUSES.len())
}

/// The HTTP API's counters, shared by the handlers and the connection layer.
#[derive(Debug, Default)]
pub(crate) struct ServerMetrics {
    /// Publish requests answered, by status (the last slot: any other status).
    publishes: [AtomicU64; STATUSES.len() + 1],
    /// Subscribe requests refused, by status.
    subscribe_refusals: [AtomicU64; STATUSES.len() + 1],
    /// By endpoint (publish, subscribe, metrics) and reason.
    auth: [[AtomicU64; 4]; 3],
    limits: [AtomicU64; Limit::ALL.len()],
}

impl ServerMetrics {
    pub(crate) fn publish_answered(&self, status: StatusCode) {
        self.publishes[status_index(status)].fetch_add(1, Relaxed);
    }

    pub(crate) fn subscribe_refused(&self, status: StatusCode) {
        self.subscribe_refusals[status_index(status)].fetch_add(1, Relaxed);
    }

    /// Counts a refusal's cause (its status is counted by the caller).
    pub(crate) fn refused(&self, endpoint: Endpoint, cause: Cause) {
        let counter = match cause {
            Cause::Other => return,
            Cause::Auth(a) => &self.auth[endpoint as usize][a as usize],
            Cause::Limit(l) => &self.limits[l as usize],
        };
        counter.fetch_add(1, Relaxed);
    }
}

/// The `/metrics` handler.
pub(crate) async fn metrics(State(state): State<MercureState>, headers: HeaderMap) -> Response {
    if let MetricsAccess::Bearer(token) = &state.config.metrics
        && let Err(cause) = check_bearer(&headers, token)
    {
        state.metrics.refused(Endpoint::Metrics, Cause::Auth(cause));
        let reason = match cause {
            AuthFailure::MissingToken => "a metrics token is required",
            _ => "invalid metrics token",
        };
        return ApiError::unauthorized(reason).into_response();
    }
    let body = render(&state.hub, &state.metrics, &state.config);
    let mut res = body.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

fn check_bearer(headers: &HeaderMap, token: &str) -> Result<(), AuthFailure> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .ok_or(AuthFailure::MissingToken)?;
    if constant_time_eq(given.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(AuthFailure::InvalidToken)
    }
}

/// Compares without stopping at the first difference, so the time taken does not tell how
/// much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The Prometheus text of everything.
pub(crate) fn render(hub: &Hub, server: &ServerMetrics, config: &MercureConfig) -> String {
    let mut text = String::with_capacity(4096);
    let out = &mut text;
    let stats = hub.stats();
    counter_or_gauge(
        out,
        "ssehub_subscribers",
        "gauge",
        "Subscribers connected to this node now.",
        stats.subscribers as u64,
    );
    header(
        out,
        "ssehub_selector_subscribers",
        "gauge",
        "Subscribers per topic selector, for the selectors with the most subscribers only \
         (--metrics-selectors); with Redis, summed over the live nodes.",
    );
    if config.metrics_selectors > 0 {
        for (selector, count) in hub.top_selectors(config.metrics_selectors) {
            let _ = writeln!(
                out,
                "ssehub_selector_subscribers{{selector=\"{}\"}} {count}",
                escape_label(&selector)
            );
        }
    }
    counter_or_gauge(
        out,
        "ssehub_retained_updates",
        "gauge",
        "Updates retained for replay now (the ring, or the durable log).",
        stats.retained as u64,
    );
    counter_or_gauge(
        out,
        "ssehub_cache_bytes",
        "gauge",
        "Bytes the in-memory ring of newest updates holds now (with a log, bounded by \
         --cache-size; older updates are read from the log).",
        stats.cached_bytes as u64,
    );
    counter_or_gauge(
        out,
        "ssehub_publishes_total",
        "counter",
        "Updates delivered in the hub's order (Redis: every stream entry this node delivered, \
         whichever node published it).",
        stats.publishes,
    );
    counter_or_gauge(
        out,
        "ssehub_deliveries_total",
        "counter",
        "Update frames queued to subscribers, live and lag catch-up (not replay on connect).",
        stats.deliveries,
    );
    counter_or_gauge(
        out,
        "ssehub_replayed_total",
        "counter",
        "Update frames replayed to subscribers when they connected (Last-Event-ID, \
         retained=latest).",
        stats.replayed,
    );
    counter_or_gauge(
        out,
        "ssehub_lagged_total",
        "counter",
        "Times a subscriber's queue overflowed and it went to catch up from history.",
        stats.lagged,
    );
    counter_or_gauge(
        out,
        "ssehub_lag_closes_total",
        "counter",
        "Subscribers closed by the lag policy (ssehub.lagged), including storage failures \
         during catch-up.",
        stats.lag_closes,
    );
    counter_or_gauge(
        out,
        "ssehub_bytes_out_total",
        "counter",
        "Event-stream bytes written to subscribers (SSE body bytes, without HTTP heads or \
         chunk framing).",
        stats.bytes_out,
    );
    header(
        out,
        "ssehub_subscriber_closes_total",
        "counter",
        "Subscriber streams ended, by reason.",
    );
    let c = stats.closes;
    for (reason, n) in [
        ("client_gone", c.client_gone),
        ("lagged", c.lagged),
        ("storage", c.storage),
        ("shutdown", c.shutdown),
        ("deadline", c.deadline),
    ] {
        let _ = writeln!(
            out,
            "ssehub_subscriber_closes_total{{reason=\"{reason}\"}} {n}"
        );
    }
    header(
        out,
        "ssehub_publish_requests_total",
        "counter",
        "Publish requests answered, by HTTP status (200: accepted).",
    );
    statuses(
        out,
        "ssehub_publish_requests_total",
        &server.publishes,
        true,
    );
    header(
        out,
        "ssehub_subscribe_refusals_total",
        "counter",
        "Subscribe requests refused, by HTTP status.",
    );
    statuses(
        out,
        "ssehub_subscribe_refusals_total",
        &server.subscribe_refusals,
        false,
    );
    header(
        out,
        "ssehub_auth_failures_total",
        "counter",
        "Requests refused for their credentials (401, 403), by endpoint and reason.",
    );
    for (e, endpoint) in ["publish", "subscribe", "metrics"].iter().enumerate() {
        for a in AuthFailure::ALL {
            let applies = match e {
                0 => true,
                _ => matches!(a, AuthFailure::MissingToken | AuthFailure::InvalidToken),
            };
            if applies {
                let n = server.auth[e][a as usize].load(Relaxed);
                let _ = writeln!(
                    out,
                    "ssehub_auth_failures_total{{endpoint=\"{endpoint}\",reason=\"{}\"}} {n}",
                    a.as_str()
                );
            }
        }
    }
    header(
        out,
        "ssehub_limit_hits_total",
        "counter",
        "Requests refused by a limit (429, 503, 413, 431, 408), by limit (docs/limits.md).",
    );
    for l in Limit::ALL {
        let n = server.limits[l as usize].load(Relaxed);
        let _ = writeln!(
            out,
            "ssehub_limit_hits_total{{limit=\"{}\"}} {n}",
            l.as_str()
        );
    }
    let latency = hub.latency();
    histogram(
        out,
        "ssehub_storage_latency_seconds",
        "Time the storage took to take one update: durable log commit (append to fsync) or \
         Redis publish (XADD script round trip).",
        &latency.storage,
    );
    histogram(
        out,
        "ssehub_publish_to_flush_seconds",
        "From an update entering the hub's order to a subscriber's writer finishing the batch \
         that carried it; one sample per written batch, with its oldest update.",
        &latency.publish_to_flush,
    );
    text
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter_or_gauge(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

fn statuses(out: &mut String, name: &str, counts: &[AtomicU64], with_ok: bool) {
    for (i, n) in counts.iter().enumerate() {
        let status = match STATUSES.get(i) {
            Some(200) if !with_ok => continue,
            Some(s) => s.to_string(),
            None => "other".to_owned(),
        };
        let _ = writeln!(out, "{name}{{status=\"{status}\"}} {}", n.load(Relaxed));
    }
}

fn histogram(out: &mut String, name: &str, help: &str, h: &HistogramSnapshot) {
    header(out, name, "histogram", help);
    for (bound, n) in &h.buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {n}", bound.as_secs_f64());
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}", h.sum.as_secs_f64());
    let _ = writeln!(out, "{name}_count {}", h.count);
}

/// A label value as the text format wants it: `\`, `"` and line feeds escaped.
fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn bearer_checks() {
        let mut h = HeaderMap::new();
        assert_eq!(check_bearer(&h, "s3cret"), Err(AuthFailure::MissingToken));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic s3cret"),
        );
        assert_eq!(check_bearer(&h, "s3cret"), Err(AuthFailure::MissingToken));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3creT"),
        );
        assert_eq!(check_bearer(&h, "s3cret"), Err(AuthFailure::InvalidToken));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer s3cret"),
        );
        assert_eq!(check_bearer(&h, "s3cret"), Ok(()));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    /// Every line is a `# HELP`/`# TYPE` comment or `name{labels} value`; every sample belongs
    /// to the family declared before it; histograms are cumulative with `+Inf` = `_count`.
    #[tokio::test]
    async fn the_exposition_parses() {
        let mut config = MercureConfig::for_tests();
        config.metrics_selectors = 2;
        let hub = Hub::builder().heartbeat(None).build();
        let subs: Vec<_> = ["a", "a", "b", "c\"\\q", "c\"\\q", "c\"\\q"]
            .into_iter()
            .map(|t| {
                hub.subscribe(ssehub_hub::Subscription::new().topic(t).unwrap())
                    .unwrap()
            })
            .collect();
        hub.publish(ssehub_hub::Update::new("a", "x"))
            .await
            .unwrap();
        let server = ServerMetrics::default();
        server.publish_answered(StatusCode::OK);
        server.publish_answered(StatusCode::IM_A_TEAPOT);
        server.refused(Endpoint::Publish, Cause::Auth(AuthFailure::Forbidden));
        server.refused(Endpoint::Subscribe, Cause::Limit(Limit::SubscribersPerIp));
        let text = render(&hub, &server, &config);
        let samples = parse(&text);
        let get = |k: &str| samples.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        assert_eq!(get("ssehub_subscribers"), Some(6.0));
        assert_eq!(get("ssehub_deliveries_total"), Some(2.0));
        assert_eq!(
            get("ssehub_selector_subscribers{selector=\"c\\\"\\\\q\"}"),
            Some(3.0)
        );
        assert_eq!(
            get("ssehub_selector_subscribers{selector=\"a\"}"),
            Some(2.0)
        );
        assert_eq!(
            get("ssehub_selector_subscribers{selector=\"b\"}"),
            None,
            "only the top 2"
        );
        assert_eq!(
            get("ssehub_publish_requests_total{status=\"200\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("ssehub_publish_requests_total{status=\"other\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("ssehub_auth_failures_total{endpoint=\"publish\",reason=\"forbidden\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("ssehub_limit_hits_total{limit=\"subscribers_per_ip\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("ssehub_storage_latency_seconds_bucket{le=\"+Inf\"}"),
            Some(0.0)
        );
        drop(subs);
    }

    /// A strict reader of the text format: returns `(name{labels}, value)` of every sample.
    pub(crate) fn parse(text: &str) -> Vec<(String, f64)> {
        let mut family = String::new();
        let mut kind = String::new();
        let mut samples = Vec::new();
        let mut last_bucket = 0.0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP without text");
                assert!(!help.is_empty());
                family = name.to_owned();
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, k) = rest.split_once(' ').expect("TYPE without type");
                assert_eq!(name, family, "TYPE after another family's HELP");
                assert!(["counter", "gauge", "histogram"].contains(&k), "{line}");
                if k == "counter" {
                    assert!(name.ends_with("_total"), "counter {name} without _total");
                }
                kind = k.to_owned();
                last_bucket = 0.0;
                continue;
            }
            assert!(!line.starts_with('#'), "stray comment {line:?}");
            let (key, value) = line.rsplit_once(' ').expect("sample without value");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("value of {line:?}"));
            let name_end = key.find('{').unwrap_or(key.len());
            let name = &key[..name_end];
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{name:?}"
            );
            if name_end < key.len() {
                let labels = &key[name_end..];
                assert!(labels.ends_with('}'), "{line:?}");
                check_labels(&labels[1..labels.len() - 1]);
            }
            if kind == "histogram" {
                let suffix = name
                    .strip_prefix(family.as_str())
                    .expect("sample of another family");
                assert!(["_bucket", "_sum", "_count"].contains(&suffix), "{line}");
                if suffix == "_bucket" {
                    assert!(value >= last_bucket, "buckets not cumulative: {line}");
                    last_bucket = value;
                }
                if suffix == "_count" {
                    assert_eq!(value, last_bucket, "+Inf bucket != count");
                }
            } else {
                assert_eq!(name, family, "sample {line:?} outside its family");
            }
            samples.push((key.to_owned(), value));
        }
        samples
    }

    fn check_labels(mut s: &str) {
        while !s.is_empty() {
            let eq = s.find("=\"").expect("label without =\"");
            let name = &s[..eq];
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "label name {name:?}"
            );
            let mut rest = s[eq + 2..].char_indices();
            let end = loop {
                match rest.next().expect("unterminated label value") {
                    (_, '\\') => {
                        let (_, c) = rest.next().expect("dangling escape");
                        assert!(matches!(c, '\\' | '"' | 'n'), "bad escape \\{c}");
                    }
                    (i, '"') => break eq + 2 + i + 1,
                    (_, '\n') => panic!("raw line feed in a label"),
                    _ => {}
                }
            };
            s = &s[end..];
            s = s.strip_prefix(',').unwrap_or(s);
        }
    }
}
