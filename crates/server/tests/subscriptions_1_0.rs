//! Mercure 1.0 active subscriptions over real TCP: events on the
//! `/.well-known/mercure/subscriptions/{match_type}/{match}/{subscriber}` topics with SSE type
//! `mercure` and plain JSON documents, the API with its `{match_type}` segment, `application/json`
//! and the `Link` cursor, and its authorization. (tests/subscriptions.rs: the legacy shape.)

mod common;

use common::{Events, ISSUER, ISSUER_SECRET, TestHub, client, publisher_1_0, start_with};
use serde_json::{Value, json};
use ssehub_auth::{Algorithm, Authorizer, Issuer, KeyConfig, Matcher, TokenSpec};
use ssehub_hub::Hub;

const API: &str = "/.well-known/mercure/subscriptions";
/// A relative URL pattern over every subscription event topic.
const EVENTS: &str = "/.well-known/mercure/subscriptions/:type/:match/:subscriber";

async fn start() -> TestHub {
    start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.authorizer = Authorizer::builder()
            .issuer(Issuer::new(ISSUER).key(key()))
            .build()
            .unwrap();
        c.subscriptions = true;
    })
    .await
}

fn key() -> KeyConfig {
    KeyConfig::new(Algorithm::HS256, ISSUER_SECRET)
}

fn subscriber_token(hub: &TestHub, grants: &[Matcher], payload: Option<Value>) -> String {
    TokenSpec::new(ISSUER, hub.hub_url())
        .subscribe(grants.iter().cloned(), payload)
        .sign(&key())
        .unwrap()
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
        .replace("%2E", ".")
        .replace("%5F", "_")
        .replace("%7E", "~")
}

fn id(match_type: &str, matcher: &str, subscriber: &str) -> String {
    format!("{API}/{match_type}/{}/{}", enc(matcher), enc(subscriber))
}

async fn get(hub: &TestHub, path: &str, token: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let res = client()
        .get(hub.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.text().await.unwrap())
}

#[tokio::test]
async fn events_and_api_speak_1_0() {
    let hub = start().await;
    let watcher_token = subscriber_token(&hub, &[Matcher::urlpattern(EVENTS)], None);
    let mut watcher = Events::open(
        client()
            .get(hub.hub_url())
            .query(&[("match_urlpattern", EVENTS)])
            .bearer_auth(&watcher_token),
    )
    .await;
    let payload = json!({"tenant": "acme"});
    let member = subscriber_token(&hub, &[Matcher::any()], Some(payload.clone()));
    let joined = Events::open(
        client()
            .get(hub.hub_url())
            .query(&[
                ("match", "https://example.com/a"),
                ("match_urlpattern", "https://example.com/b/:id"),
                ("match", "https://example.com/a"),
            ])
            .bearer_auth(&member),
    )
    .await;

    // The watcher's own join, then the member's: one event per distinct matcher.
    let mut docs = Vec::new();
    while docs.len() < 3 {
        let e = watcher.event().await;
        assert_eq!(e.event_type, "mercure");
        let doc: Value = serde_json::from_str(&e.data).unwrap();
        assert!(e.last_event_id.starts_with("#"), "{}", e.last_event_id);
        docs.push(doc);
    }
    let member_id = docs[1]["subscriber"].as_str().unwrap().to_owned();
    assert!(member_id.starts_with("urn:uuid:"));
    assert_eq!(
        docs[1],
        json!({
            "id": id("exact", "https://example.com/a", &member_id),
            "type": "subscription",
            "match_type": "exact",
            "match": "https://example.com/a",
            "subscriber": member_id,
            "active": true,
            "payload": payload,
        })
    );
    assert_eq!(docs[2]["match_type"], "urlpattern");
    assert_eq!(
        docs[2]["id"],
        id("urlpattern", "https://example.com/b/:id", &member_id)
    );

    // The API: the collection, one matcher's, one subscription; JSON, and the Link cursor.
    let all = subscriber_token(&hub, &[Matcher::any()], None);
    let (status, headers, body) = get(&hub, API, &all).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    let link = headers["link"].to_str().unwrap();
    assert!(
        link.starts_with(&format!(
            "<{}>; rel=\"mercure\"; last-event-id=\"#",
            hub.hub_url()
        )),
        "{link}"
    );
    assert!(link.ends_with("; type=\"mercure\"; content-type=\"application/json\""));
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["id"], API);
    assert_eq!(list["type"], "subscriptions");
    assert_eq!(list["subscriptions"].as_array().unwrap().len(), 3);

    let per_matcher = format!("{API}/urlpattern/{}", enc("https://example.com/b/:id"));
    let (status, _, body) = get(&hub, &per_matcher, &all).await;
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["id"], per_matcher);
    assert_eq!(list["subscriptions"], json!([docs[2]]));

    let one = id("exact", "https://example.com/a", &member_id);
    let (status, _, body) = get(&hub, &one, &all).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (200, docs[1].clone())
    );
    let (status, _, body) = get(
        &hub,
        &id("urlpattern", "https://example.com/a", &member_id),
        &all,
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (404, "no such active subscription\n")
    );

    // A grant on the events' pattern covers the API URLs too; one elsewhere does not.
    assert_eq!(get(&hub, &one, &watcher_token).await.0, 200);
    let elsewhere = subscriber_token(&hub, &[Matcher::exact("https://example.com/a")], None);
    assert_eq!(get(&hub, &one, &elsewhere).await.0, 403);

    // Leaving: active false, for each matcher.
    drop(joined);
    for _ in 0..2 {
        let e = watcher.event().await;
        let doc: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(doc["subscriber"], member_id);
        assert_eq!(doc["active"], false);
    }
    // Publishers cannot forge them: the namespace and the type are the hub's.
    let res = client()
        .post(hub.hub_url())
        .bearer_auth(publisher_1_0(&hub))
        .form(&[
            ("topic", id("exact", "x", "urn:uuid:forged").as_str()),
            ("data", "{}"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}
