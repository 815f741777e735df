//! Mercure 1.0 publication rules over real TCP: what no publisher may send whatever its token
//! grants (reserved namespace, `*`, reserved ids and types, control and format characters),
//! `400` or `413` with a one-line reason, nothing dispatched.

mod common;

use common::{TestHub, client, publisher_1_0, start_1_0};

async fn post(hub: &TestHub, form: &[(&str, String)]) -> (u16, String) {
    let res = client()
        .post(hub.hub_url())
        .bearer_auth(publisher_1_0(hub))
        .form(form)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn topics_in_the_reserved_namespace_are_refused_in_every_spelling() {
    let hub = start_1_0().await;
    let authority = hub.addr.to_string();
    let topics = [
        "/.well-known/mercure".to_owned(),
        "/.well-known/mercure/subscriptions/exact/a/urn%3Auuid%3A1".to_owned(),
        format!("http://{authority}/.well-known/mercure/subscriptions/x"),
        "https://elsewhere.example/.well-known/mercure/x".to_owned(),
        "/.well-known/%6Dercure/subscriptions/x".to_owned(),
        "/.well-known/%6dercure".to_owned(),
        "/.well-known/x/../mercure/x".to_owned(),
        "/.well-known/mercure/../mercure/x".to_owned(),
        "/.well-known/x/%2E%2E/mercure/x".to_owned(),
        "../../.well-known/mercure/x".to_owned(),
        "mercure/subscriptions".to_owned(),
    ];
    for topic in &topics {
        // As the canonical topic and as an alternate one.
        for form in [
            vec![("topic", topic.clone())],
            vec![
                ("topic", "https://example.com/ok".to_owned()),
                ("topic", topic.clone()),
            ],
        ] {
            let (status, body) = post(&hub, &form).await;
            assert_eq!(status, 400, "{topic}");
            assert_eq!(
                body,
                "a topic addresses the hub's reserved namespace (/.well-known/mercure/...)\n"
            );
        }
    }
    assert_eq!(hub.hub.last_event_id(), None, "nothing was dispatched");
    for fine in [
        "/.well-known/mercure-other",
        "https://example.com/.well-known/mercurex",
    ] {
        assert_eq!(
            post(&hub, &[("topic", fine.to_owned())]).await.0,
            200,
            "{fine}"
        );
    }
}

#[tokio::test]
async fn reserved_values_and_characters_are_refused() {
    let hub = start_1_0().await;
    let topic = || ("topic", "https://example.com/a".to_owned());
    let long = "x".repeat(ssehub_selector::MAX_SELECTOR_LEN + 1);
    type Form<'a> = Vec<(&'a str, String)>;
    let cases: Vec<(Form<'_>, u16, &str)> = vec![
        (
            vec![("topic", "*".into())],
            400,
            "the topic * is reserved for the wildcard matcher",
        ),
        (
            vec![topic(), ("id", "#1".into())],
            400,
            "an id may not start with # (the hub's own ids do)",
        ),
        (
            vec![topic(), ("id", "earliest".into())],
            400,
            "id is reserved by the hub",
        ),
        (
            vec![topic(), ("type", "mercure".into())],
            400,
            "the type mercure is reserved for events the hub generates",
        ),
        (
            vec![topic(), ("type", "ssehub.history-gap".into())],
            400,
            "the type ssehub.history-gap is reserved for events the hub generates",
        ),
        (
            vec![topic(), ("type", "ssehub.lagged".into())],
            400,
            "the type ssehub.lagged is reserved for events the hub generates",
        ),
        (
            vec![("topic", "a\u{200B}b".into())],
            400,
            "topic contains U+200B, a control or format character",
        ),
        (
            vec![("topic", "a\u{202E}b".into())],
            400,
            "topic contains U+202E, a control or format character",
        ),
        (
            vec![topic(), ("id", "a\u{9F}".into())],
            400,
            "id contains U+009F, a control or format character",
        ),
        (
            vec![topic(), ("type", "t\u{7F}".into())],
            400,
            "type contains U+007F, a control or format character",
        ),
        (
            vec![("topic", long.clone())],
            413,
            "topic is longer than 2048 bytes",
        ),
        (
            vec![topic(), ("id", long.clone())],
            413,
            "id is longer than 2048 bytes",
        ),
    ];
    for (form, status, reason) in cases {
        let (got, body) = post(&hub, &form).await;
        assert_eq!(
            (got, body.as_str()),
            (status, format!("{reason}\n").as_str()),
            "{form:?}"
        );
    }
    let many: Vec<(&str, String)> = (0..65).map(|i| ("topic", format!("urn:{i}"))).collect();
    let (status, body) = post(&hub, &many).await;
    assert_eq!(
        (status, body.as_str()),
        (413, "too many topics in one update (at most 64)\n")
    );
    assert_eq!(hub.hub.last_event_id(), None, "nothing was dispatched");
}
