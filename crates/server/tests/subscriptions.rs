//! Mercure active subscriptions over real TCP: the subscriptions API (collection, per topic,
//! per subscriber) and its authorization, subscription events on connect and disconnect, both
//! serving paths (the connection layer's fast subscribes and hyper), the switch being off, and
//! two nodes sharing a Redis stream (127.0.0.1:6379 or `SSEHUB_TEST_REDIS`; these tests fail,
//! not skip, when it does not answer: run `scripts/ensure-redis` first).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Events, SECRET, TestHub, client, get, start_with, token};
use serde_json::{Value, json};
use ssehub_hub::Hub;
use ssehub_store::DurableHub;
use ssehub_store_redis::{RedisBackend, RedisOptions};

const API: &str = "/.well-known/mercure/subscriptions";
/// Selects the collection, every per-topic collection and every subscription (RFC 6570 `{/x}`
/// expands to nothing when `x` is undefined).
const ALL: &str = "/.well-known/mercure/subscriptions{/topic,subscriber}";
/// The selector of subscription events the reference hub's docs use.
const EVENTS: &str = "/.well-known/mercure/subscriptions/{topic}/{subscriber}";

/// A HS256 token with these `mercure` claims (e.g. `subscribe` and `payload`).
fn token_with(mercure: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "mercure": mercure }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
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

fn sub_id(topic: &str, subscriber: &str) -> String {
    format!("{API}/{}/{}", enc(topic), enc(subscriber))
}

async fn start(hub: Hub) -> TestHub {
    start_with(hub, |c| c.subscriptions = true).await
}

/// `GET path` with a token allowed everywhere in the API: the JSON body.
async fn get_json(hub: &TestHub, path: &str) -> Value {
    let (status, ctype, body) = get(hub, path, Some(&token(&[], &[ALL]))).await;
    assert_eq!(status, 200, "{path}: {body}");
    assert_eq!(ctype, "application/ld+json");
    serde_json::from_str(&body).unwrap()
}

/// The next subscription event's data.
async fn next_change(events: &mut Events) -> Value {
    let e = events.event().await;
    serde_json::from_str(&e.data).unwrap()
}

/// A subscription document as the API and the events show it.
fn doc(topic: &str, subscriber: &str, active: bool, payload: Option<Value>) -> Value {
    let mut d = json!({
        "id": sub_id(topic, subscriber),
        "type": "Subscription",
        "topic": topic,
        "subscriber": subscriber,
        "active": active,
    });
    if let Some(p) = payload {
        d["payload"] = p;
    }
    d
}

fn with_context(mut d: Value) -> Value {
    d["@context"] = json!("https://mercure.rocks/");
    d
}

/// Subscribes the event watcher and checks that its own join is its first event.
async fn watch(hub: &TestHub) -> (Events, String) {
    let mut watcher = Events::open(
        client()
            .get(hub.hub_url())
            .query(&[("topic", EVENTS)])
            .bearer_auth(token(&[], &[EVENTS])),
    )
    .await;
    let me = next_change(&mut watcher).await;
    assert_eq!(me["topic"], EVENTS);
    assert_eq!(me["active"], true);
    let id = me["subscriber"].as_str().unwrap().to_owned();
    assert_eq!(me, with_context(doc(EVENTS, &id, true, None)));
    (watcher, id)
}

#[tokio::test]
async fn api_and_events_on_one_node() {
    let hub = start(Hub::builder().heartbeat(None).build()).await;
    let (mut watcher, watcher_id) = watch(&hub).await;

    // Anonymous, on the fast path.
    let anon = Events::open(
        client()
            .get(hub.hub_url())
            .query(&[("topic", "https://example.com/books/{id}")]),
    )
    .await;
    let join = next_change(&mut watcher).await;
    let anon_id = join["subscriber"].as_str().unwrap().to_owned();
    assert!(anon_id.starts_with("urn:uuid:"), "{anon_id}");
    assert_eq!(
        join,
        with_context(doc("https://example.com/books/{id}", &anon_id, true, None))
    );

    // With a payload, two selectors, served by hyper (`Connection: close` is not for the
    // fast path): the JWT's payload must reach the hub either way.
    let bob_payload = json!({"name": "bob", "n": 1});
    let bob = Events::open(
        client()
            .get(hub.hub_url())
            .query(&[("topic", "urn:b"), ("topic", "https://example.com/a")])
            .header("connection", "close")
            .bearer_auth(token_with(
                json!({"subscribe": ["urn:b"], "payload": bob_payload}),
            )),
    )
    .await;
    let mut joins = BTreeMap::new();
    for _ in 0..2 {
        let j = next_change(&mut watcher).await;
        joins.insert(j["topic"].as_str().unwrap().to_owned(), j);
    }
    let bob_id = joins["urn:b"]["subscriber"].as_str().unwrap().to_owned();
    assert_ne!(bob_id, anon_id);
    for t in ["urn:b", "https://example.com/a"] {
        assert_eq!(
            joins[t],
            with_context(doc(t, &bob_id, true, Some(bob_payload.clone())))
        );
    }

    // With a payload on the fast path.
    let carol_payload = json!({"name": "carol"});
    let carol = Events::open(
        client()
            .get(hub.hub_url())
            .query(&[("topic", "urn:b")])
            .bearer_auth(token_with(json!({"payload": carol_payload}))),
    )
    .await;
    let j = next_change(&mut watcher).await;
    let carol_id = j["subscriber"].as_str().unwrap().to_owned();
    assert_eq!(
        j,
        with_context(doc("urn:b", &carol_id, true, Some(carol_payload.clone())))
    );

    // The collection: every subscription, sorted by subscriber then topic.
    let last = hub.hub.last_event_id().unwrap();
    let mut all = vec![
        (
            anon_id.clone(),
            doc("https://example.com/books/{id}", &anon_id, true, None),
        ),
        (
            bob_id.clone(),
            doc(
                "https://example.com/a",
                &bob_id,
                true,
                Some(bob_payload.clone()),
            ),
        ),
        (
            bob_id.clone(),
            doc("urn:b", &bob_id, true, Some(bob_payload.clone())),
        ),
        (
            carol_id.clone(),
            doc("urn:b", &carol_id, true, Some(carol_payload.clone())),
        ),
        (watcher_id.clone(), doc(EVENTS, &watcher_id, true, None)),
    ];
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let all: Vec<Value> = all.into_iter().map(|(_, d)| d).collect();
    assert_eq!(
        get_json(&hub, API).await,
        json!({
            "@context": "https://mercure.rocks/",
            "id": API,
            "type": "Subscriptions",
            "lastEventID": last,
            "subscriptions": all,
        })
    );

    // Per topic: the topic is one path segment, percent-encoded.
    let by_topic: Vec<Value> = all
        .iter()
        .filter(|d| d["topic"] == "urn:b")
        .cloned()
        .collect();
    assert_eq!(by_topic.len(), 2);
    let path = format!("{API}/{}", enc("urn:b"));
    assert_eq!(
        get_json(&hub, &path).await,
        json!({
            "@context": "https://mercure.rocks/",
            "id": path,
            "type": "Subscriptions",
            "lastEventID": last,
            "subscriptions": by_topic,
        })
    );
    let none = format!("{API}/{}", enc("urn:nobody"));
    assert_eq!(get_json(&hub, &none).await["subscriptions"], json!([]));

    // One subscription: its document with the context and lastEventID; unknown ones are 404.
    let mut one = with_context(doc("urn:b", &bob_id, true, Some(bob_payload.clone())));
    one["lastEventID"] = json!(last);
    assert_eq!(get_json(&hub, &sub_id("urn:b", &bob_id)).await, one);
    let templ = sub_id("https://example.com/books/{id}", &anon_id);
    assert_eq!(
        get_json(&hub, &templ).await["topic"],
        "https://example.com/books/{id}"
    );
    let tok = token(&[], &[ALL]);
    let (status, _, _) = get(&hub, &sub_id("urn:b", &anon_id), Some(&tok)).await;
    assert_eq!(status, 404);
    let (status, _, _) = get(&hub, &sub_id("urn:b", "urn:uuid:nobody"), Some(&tok)).await;
    assert_eq!(status, 404);

    // Authorization: the requested URL must match a `mercure.subscribe` selector.
    let (status, _, body) = get(&hub, API, None).await;
    assert_eq!(
        (status, body.as_str()),
        (401, "the subscriptions API needs a subscriber token\n")
    );
    let (status, _, body) = get(&hub, API, Some(&token(&[], &["urn:other"]))).await;
    assert_eq!(status, 403, "{body}");
    let (status, _, _) = get(&hub, API, Some(&token(&["*"], &[]))).await;
    assert_eq!(
        status, 403,
        "a publisher-only token has no subscribe rights"
    );
    // Only the event selector: the collection is not covered, a subscription is.
    let (status, _, _) = get(&hub, API, Some(&token(&[], &[EVENTS]))).await;
    assert_eq!(status, 403);
    let (status, _, _) = get(
        &hub,
        &sub_id("urn:b", &bob_id),
        Some(&token(&[], &[EVENTS])),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = get(&hub, API, Some(&token(&[], &["*"]))).await;
    assert_eq!(status, 200);
    let (status, _, _) = get(&hub, API, Some("not-a-jwt")).await;
    assert_eq!(status, 401);

    // Disconnects: each subscription of the subscriber, inactive, with its payload.
    drop(bob);
    let mut leaves = BTreeMap::new();
    for _ in 0..2 {
        let l = next_change(&mut watcher).await;
        leaves.insert(l["topic"].as_str().unwrap().to_owned(), l);
    }
    for t in ["urn:b", "https://example.com/a"] {
        assert_eq!(
            leaves[t],
            with_context(doc(t, &bob_id, false, Some(bob_payload.clone())))
        );
    }
    drop(anon);
    assert_eq!(
        next_change(&mut watcher).await,
        with_context(doc("https://example.com/books/{id}", &anon_id, false, None))
    );
    assert_eq!(listed(&hub).await, sorted([&carol_id, &watcher_id]));
    assert_eq!(
        get(&hub, &sub_id("urn:b", &bob_id), Some(&tok)).await.0,
        404
    );
    drop(carol);
}

#[tokio::test]
async fn events_are_private_and_need_a_matching_subscribe_claim() {
    let hub = start(Hub::builder().heartbeat(None).build()).await;
    // Subscribed to the events' topics, but without a token: sees nothing of them.
    let mut anon = Events::open(client().get(hub.hub_url()).query(&[("topic", EVENTS)])).await;
    let (mut watcher, _) = watch(&hub).await;
    let s = Events::open(client().get(hub.hub_url()).query(&[("topic", "t")])).await;
    let join = next_change(&mut watcher).await;
    assert_eq!(join["topic"], "t");
    drop(s);
    assert_eq!(next_change(&mut watcher).await["active"], false);
    // A public update after them is the anonymous subscriber's first event.
    let res = common::publish(&hub, &[("topic", EVENTS), ("data", "public")]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(anon.event().await.data, "public");
}

#[tokio::test]
async fn off_by_default_404_and_no_events() {
    let hub = start_with(Hub::builder().heartbeat(None).build(), |_| {}).await;
    assert!(!hub.hub.tracks_subscriptions());
    for path in [
        API.to_owned(),
        format!("{API}/t"),
        sub_id("t", "urn:uuid:x"),
    ] {
        let (status, _, _) = get(&hub, &path, Some(&token(&[], &["*"]))).await;
        assert_eq!(status, 404, "{path}");
    }
    let mut watcher = Events::open(
        client()
            .get(hub.hub_url())
            .query(&[("topic", EVENTS)])
            .bearer_auth(token(&[], &[EVENTS])),
    )
    .await;
    let s = Events::open(client().get(hub.hub_url()).query(&[("topic", "t")])).await;
    drop(s);
    // Nothing was announced: the first event is this public update.
    let res = common::publish(&hub, &[("topic", EVENTS), ("data", "only")]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(watcher.event().await.data, "only");
}

#[tokio::test]
async fn a_durable_hub_announces_too() {
    let dir = tempfile::tempdir().unwrap();
    let log = ssehub_store::Log::open(dir.path(), Default::default()).unwrap();
    let hub = start(Hub::builder().heartbeat(None).durable(log).build()).await;
    let (mut watcher, _) = watch(&hub).await;
    let s = Events::open(client().get(hub.hub_url()).query(&[("topic", "t")])).await;
    let join = next_change(&mut watcher).await;
    assert_eq!(
        (join["topic"].as_str(), join["active"].as_bool()),
        (Some("t"), Some(true))
    );
    drop(s);
    let leave = next_change(&mut watcher).await;
    assert_eq!(leave["subscriber"], join["subscriber"]);
    assert_eq!(leave["active"], false);
    // lastEventID is the log's last id (the leave just published).
    assert_eq!(
        get_json(&hub, API).await["lastEventID"],
        json!(hub.hub.last_event_id().unwrap())
    );
}

// --- two nodes on one Redis stream ---

fn redis_url() -> String {
    std::env::var("SSEHUB_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn stream_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("ssehub-subs-test-{}-{nanos}", std::process::id())
}

/// Deletes a test stream's keys when dropped (the per-node ones expire by themselves).
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(client) = redis::Client::open(redis_url())
            && let Ok(mut c) = client.get_connection_with_timeout(Duration::from_secs(1))
        {
            let s = &self.0;
            let _: redis::RedisResult<()> = redis::cmd("DEL")
                .arg(s)
                .arg(format!("{s}:pubids"))
                .arg(format!("{s}:pubids:cursor"))
                .arg(format!("{s}:latest"))
                .arg(format!("{s}:nodes"))
                .query(&mut c);
        }
    }
}

async fn redis_node(stream: &str) -> TestHub {
    let backend = RedisBackend::connect(RedisOptions::new(redis_url(), stream))
        .await
        .unwrap_or_else(|e| panic!("Redis must be running (scripts/ensure-redis): {e}"));
    start(Hub::builder().heartbeat(None).storage(backend).build()).await
}

/// `ids` in order, as [`listed`] returns them.
fn sorted<const N: usize>(ids: [&String; N]) -> Vec<String> {
    let mut ids: Vec<String> = ids.into_iter().cloned().collect();
    ids.sort();
    ids
}

/// The subscriber id of the watcher's next subscription event.
async fn next_subscriber(watcher: &mut Events) -> String {
    next_change(watcher).await["subscriber"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The subscriber ids the API of `hub` lists.
async fn listed(hub: &TestHub) -> Vec<String> {
    get_json(hub, API).await["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["subscriber"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_redis_nodes_list_and_announce_each_others_subscriptions() {
    let stream = stream_name();
    let _cleanup = Cleanup(stream.clone());
    let a = redis_node(&stream).await;
    let b = redis_node(&stream).await;
    let (mut watcher, watcher_id) = watch(&a).await;

    // A subscriber on b: its join reaches the watcher on a through the stream...
    let payload = json!({"node": "b"});
    let on_b = Events::open(
        client()
            .get(b.hub_url())
            .query(&[("topic", "urn:on-b")])
            .bearer_auth(token_with(json!({"payload": payload}))),
    )
    .await;
    let e = watcher.event().await;
    let join: Value = serde_json::from_str(&e.data).unwrap();
    let b_id = join["subscriber"].as_str().unwrap().to_owned();
    assert_eq!(
        join,
        with_context(doc("urn:on-b", &b_id, true, Some(payload.clone())))
    );
    // ...and, recorded in the same script as that event, it is listed by a's API at once.
    let body = get_json(&a, API).await;
    let subs = body["subscriptions"].as_array().unwrap();
    assert!(
        subs.contains(&doc("urn:on-b", &b_id, true, Some(payload.clone()))),
        "{body}"
    );
    assert!(
        subs.contains(&doc(EVENTS, &watcher_id, true, None)),
        "{body}"
    );
    assert_eq!(subs.len(), 2, "{body}");
    // lastEventID is the stream's last id: b's join is the newest entry.
    assert_eq!(body["lastEventID"], json!(e.last_event_id));
    // b's API lists the same.
    let both = sorted([&b_id, &watcher_id]);
    assert_eq!(listed(&b).await, both);
    assert_eq!(listed(&a).await, both);

    // A subscriber on a too.
    let on_a = Events::open(client().get(a.hub_url()).query(&[("topic", "urn:on-a")])).await;
    let a_id = next_subscriber(&mut watcher).await;
    let three = sorted([&a_id, &b_id, &watcher_id]);
    assert_eq!(listed(&b).await, three);

    // b's subscriber disconnects: the watcher on a is told, and it is gone from both lists
    // (bounded wait: the client's disconnect takes a moment to be seen by b).
    drop(on_b);
    let leave = next_change(&mut watcher).await;
    assert_eq!(
        leave,
        with_context(doc("urn:on-b", &b_id, false, Some(payload.clone())))
    );
    let two = sorted([&a_id, &watcher_id]);
    assert_eq!(listed(&a).await, two);
    assert_eq!(listed(&b).await, two);

    // Node b goes away with a subscriber: within the presence TTL (3 s) a stops listing it.
    let on_b2 = Events::open(client().get(b.hub_url()).query(&[("topic", "urn:on-b2")])).await;
    let b2_id = next_subscriber(&mut watcher).await;
    assert!(listed(&a).await.contains(&b2_id));
    b.shutdown().await.unwrap();
    drop(on_b2);
    let deadline = Instant::now() + Duration::from_secs(6);
    while listed(&a).await.contains(&b2_id) {
        assert!(Instant::now() < deadline, "b's subscriber still listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed(&a).await, two);
    drop(on_a);
}
