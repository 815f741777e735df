//! Mercure 1.0 subscriptions over real TCP: `match` / `match_exact` (byte-exact, never a
//! template), `match_urlpattern` (absolute or relative to the hub URL), the reserved `match`
//! prefix, value rules, and `last_event_id`.

mod common;

use common::{Events, TestHub, client, publisher_1_0, start_1_0, start_with};
use ssehub_hub::Hub;

async fn publish(hub: &TestHub, topic: &str, data: &str) -> String {
    let token = publisher_1_0(hub);
    let res = client()
        .post(hub.hub_url())
        .bearer_auth(token)
        .form(&[("topic", topic), ("data", data)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "publish {topic}");
    res.text().await.unwrap()
}

async fn open(hub: &TestHub, query: &[(&str, &str)]) -> Events {
    Events::open(client().get(hub.hub_url()).query(query)).await
}

#[tokio::test]
async fn exact_and_url_pattern_matchers() {
    let hub = start_1_0().await;
    let relative = hub.url("/books/7");
    let mut exact = open(&hub, &[("match", "https://x.example/{id}")]).await;
    let mut explicit = open(&hub, &[("match_exact", "urn:a")]).await;
    let mut pattern = open(&hub, &[("match_urlpattern", "https://x.example/books/:id")]).await;
    let mut rel = open(&hub, &[("match_urlpattern", "/books/:id")]).await;
    let mut both = open(
        &hub,
        &[
            ("match", "urn:a"),
            ("match_urlpattern", "https://x.example/books/:id"),
        ],
    )
    .await;

    // A template-looking exact matcher is byte-exact: never a template.
    publish(&hub, "https://x.example/1", "not for exact").await;
    publish(&hub, "https://x.example/{id}", "for exact").await;
    publish(&hub, "https://x.example/books/1/reviews", "for nobody").await;
    publish(&hub, "https://x.example/books/1", "for the patterns").await;
    publish(&hub, "urn:a", "for explicit and both").await;
    publish(&hub, &relative, "relative, absolute topic").await;
    publish(&hub, "/books/8", "relative, relative topic").await;

    assert_eq!(exact.event().await.data, "for exact");
    assert_eq!(explicit.event().await.data, "for explicit and both");
    assert_eq!(pattern.event().await.data, "for the patterns");
    assert_eq!(both.event().await.data, "for the patterns");
    assert_eq!(both.event().await.data, "for explicit and both");
    assert_eq!(rel.event().await.data, "relative, absolute topic");
    assert_eq!(rel.event().await.data, "relative, relative topic");
}

#[tokio::test]
async fn bad_matcher_parameters_are_400_with_a_reason() {
    let hub = start_1_0().await;
    for (query, reason) in [
        (
            vec![("match_regex", "a")],
            "unknown matcher parameter \"match_regex\"",
        ),
        (vec![("MATCH", "a")], "unknown matcher parameter \"MATCH\""),
        (
            vec![("Match_exact", "a")],
            "unknown matcher parameter \"Match_exact\"",
        ),
        (
            vec![("matchx", "a")],
            "unknown matcher parameter \"matchx\"",
        ),
        (
            vec![("match_urlPattern", "a")],
            "unknown matcher parameter \"match_urlPattern\"",
        ),
        (
            vec![("match", "a\u{200B}")],
            "a matcher contains U+200B, a control or format character",
        ),
        (vec![("match", "a\u{0}")], "a matcher contains U+0000"),
        (
            vec![("match_urlpattern", "https://x.example/(")],
            "invalid match_urlpattern value: invalid URL pattern",
        ),
        (
            vec![("match", "")],
            "invalid match value: selector is empty",
        ),
        (
            vec![("last_event_id", "earliest")],
            "missing match parameter",
        ),
    ] {
        let res = client()
            .get(hub.hub_url())
            .query(&query)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{query:?}");
        let body = res.text().await.unwrap();
        assert!(body.starts_with(reason), "{query:?}: {body:?}");
        assert_eq!(body.matches('\n').count(), 1);
    }
    let many: Vec<(&str, String)> = (0..129).map(|i| ("match", format!("urn:{i}"))).collect();
    let res = client()
        .get(hub.hub_url())
        .query(&many)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.text().await.unwrap(),
        "too many matcher parameters (at most 128)\n"
    );
}

#[tokio::test]
async fn last_event_id_parameter_and_header() {
    let hub = start_1_0().await;
    let first = publish(&hub, "urn:t", "one").await;
    let second = publish(&hub, "urn:t", "two").await;
    publish(&hub, "urn:t", "three").await;
    let mut from_param = open(
        &hub,
        &[("match", "urn:t"), ("last_event_id", first.as_str())],
    )
    .await;
    assert_eq!(from_param.event().await.data, "two");
    let mut earliest = open(&hub, &[("match", "urn:t"), ("last_event_id", "earliest")]).await;
    assert_eq!(earliest.event().await.data, "one");
    // The header wins over the parameter.
    let mut header = Events::open(
        client()
            .get(hub.hub_url())
            .query(&[("match", "urn:t"), ("last_event_id", first.as_str())])
            .header("Last-Event-ID", &second),
    )
    .await;
    assert_eq!(header.event().await.data, "three");

    // Mercure-Last-Event-ID: the event before the first one sent, or earliest; only when the
    // request asked to resume; the 0.x Last-Event-ID response header is gone.
    let cursor = |e: &Events| {
        e.response
            .headers()
            .get("mercure-last-event-id")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(cursor(&from_param).as_deref(), Some(first.as_str()));
    assert_eq!(cursor(&earliest).as_deref(), Some("earliest"));
    assert_eq!(cursor(&header).as_deref(), Some(second.as_str()));
    let unknown = open(&hub, &[("match", "urn:t"), ("last_event_id", "no-such-id")]).await;
    assert_eq!(cursor(&unknown).as_deref(), Some("earliest"));
    let live = open(&hub, &[("match", "urn:t")]).await;
    assert_eq!(cursor(&live), None);
    assert!(live.response.headers().get("last-event-id").is_none());
    // A legacy hub keeps the 0.x header: the newest retained id.
    let legacy = start_with(Hub::builder().heartbeat(None).build(), |_| {}).await;
    let id = common::publish(&legacy, &[("topic", "t"), ("data", "x")])
        .await
        .text()
        .await
        .unwrap();
    let old = open(&legacy, &[("topic", "t")]).await;
    assert_eq!(old.response.headers()["last-event-id"], id.as_str());
    assert!(
        old.response
            .headers()
            .get("mercure-last-event-id")
            .is_none()
    );
}

#[tokio::test]
async fn query_method_merges_its_form_body_with_the_query_string() {
    let hub = start_1_0().await;
    let first = publish(&hub, "urn:body", "one").await;
    let query = reqwest::Method::from_bytes(b"QUERY").unwrap();
    // Matchers from both; the query's last_event_id wins over the body's.
    let mut events = Events::open(
        client()
            .request(query.clone(), hub.url("/.well-known/mercure?match=urn:url"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(
                "match=urn%3Abody&last_event_id=earliest&match_urlpattern=https%3A%2F%2Fx.example%2F%3Aid",
            )
            .query(&[("last_event_id", first.as_str())]),
    )
    .await;
    publish(&hub, "urn:body", "two").await;
    publish(&hub, "urn:url", "three").await;
    publish(&hub, "https://x.example/4", "four").await;
    for want in ["two", "three", "four"] {
        assert_eq!(events.event().await.data, want);
    }

    let res = client()
        .request(query.clone(), hub.hub_url())
        .header("Content-Type", "text/plain")
        .body("match=a")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    let res = client()
        .request(query.clone(), hub.hub_url())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("match={}", "a".repeat(20 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let res = client()
        .request(query, hub.hub_url())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("match_bogus=a")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = client().put(hub.hub_url()).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET, QUERY, POST");
    assert!(
        res.text()
            .await
            .unwrap()
            .starts_with("method PUT is not allowed here")
    );
}

#[tokio::test]
async fn topic_is_the_legacy_parameter() {
    let hub = start_1_0().await;
    let res = client()
        .get(hub.hub_url())
        .query(&[("topic", "urn:a")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(
        res.text()
            .await
            .unwrap()
            .starts_with("topic= is the pre-1.0 subscribe parameter")
    );
    // A legacy hub takes both, templates included.
    let legacy = start_with(Hub::builder().heartbeat(None).build(), |_| {}).await;
    let mut events = open(
        &legacy,
        &[("topic", "https://x.example/{id}"), ("match", "urn:b")],
    )
    .await;
    for topic in ["https://x.example/1", "urn:b"] {
        let res = common::publish(&legacy, &[("topic", topic), ("data", topic)]).await;
        assert_eq!(res.status(), 200);
        assert_eq!(events.event().await.data, topic);
    }
}
