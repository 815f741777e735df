//! The PostgreSQL storage against a real PostgreSQL (127.0.0.1:5432, or
//! `SSEHUB_TEST_POSTGRES`), several hubs in one process on one schema: one order that is the
//! commit order (concurrent publishers on three nodes and in application transactions that
//! commit out of insert order: every subscriber sees every update once, in one order), the
//! in-transaction publish (delivered on commit, never on rollback), replay across nodes,
//! presence and subscriptions across nodes, migrations. Each test uses its own schema, dropped
//! afterwards. These tests fail, not skip, when PostgreSQL does not answer: run
//! `scripts/ensure-postgres` first.

use std::collections::HashMap;
use std::time::Duration;

use ssehub_conformance::{Ev, Reader};
use ssehub_hub::{EARLIEST, Hub, PublishError, Subscription, Update};
use ssehub_store_postgres::{PostgresBackend, PostgresStorageError};

mod common;

use common::{Cleanup, backend, client, options, pg_url, schema_name};

async fn hub(schema: &str, history: usize) -> Hub {
    hub_on(backend(options(schema)).await, history)
}

fn hub_on(backend: PostgresBackend, history: usize) -> Hub {
    Hub::builder()
        .history_size(history)
        .heartbeat(None)
        .storage(backend)
        .try_build()
        .unwrap()
}

fn sub(topic: &str) -> Subscription {
    Subscription::new().topic(topic).unwrap()
}

fn reader(hub: &Hub, s: Subscription) -> Reader {
    Reader::new(hub.subscribe(s).unwrap())
}

fn datas(events: &[Ev]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

/// The position in a hub id `#{epoch}-{pos}` of `epoch`.
fn pos_of(epoch: u64, id: &str) -> u64 {
    let (e, p) = id
        .strip_prefix('#')
        .and_then(|i| i.split_once('-'))
        .unwrap_or_else(|| panic!("not a hub id: {id}"));
    assert_eq!(e.parse::<u64>().unwrap(), epoch, "{id}");
    p.parse().unwrap()
}

/// A small deterministic spread of delays, so application transactions commit out of the
/// order they inserted in.
fn jitter(i: usize) -> Duration {
    Duration::from_millis(((i * 7919) % 23) as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_on_three_nodes_and_in_transactions_make_one_order() {
    const HUB_TASKS: usize = 3;
    const APP_TASKS: usize = 4;
    const EACH: usize = 25;
    let schema = schema_name("order");
    let _c = Cleanup(schema.clone());
    let backends = [
        backend(options(&schema)).await,
        backend(options(&schema)).await,
        backend(options(&schema)).await,
    ];
    let epoch = backends[0].epoch();
    assert!(backends.iter().all(|b| b.epoch() == epoch));
    let hubs: Vec<Hub> = backends.into_iter().map(|b| hub_on(b, 1000)).collect();
    let mut readers: Vec<Reader> = hubs.iter().map(|h| reader(h, sub("*"))).collect();

    // Hub publishers: three tasks per node, each waiting for its acknowledgement.
    let mut hub_tasks = Vec::new();
    for (n, hub) in hubs.iter().enumerate() {
        for t in 0..HUB_TASKS {
            let hub = hub.clone();
            hub_tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..EACH {
                    let data = format!("hub{n}-{t}-{i}");
                    let id = hub.publish(Update::new("t", data.clone())).await.unwrap();
                    acked.push((data, id));
                }
                acked
            }));
        }
    }
    // Application transactions: insert, wait a little, then commit (or roll back one in
    // five). Later inserts commit before earlier ones all the time.
    let mut app_tasks = Vec::new();
    for a in 0..APP_TASKS {
        let schema = schema.clone();
        app_tasks.push(tokio::spawn(async move {
            let mut app = client(&pg_url()).await;
            let mut committed = Vec::new();
            let mut rolled_back = Vec::new();
            for i in 0..EACH {
                let data = format!("app{a}-{i}");
                let tx = app.transaction().await.unwrap();
                tx.execute(
                    &format!("SELECT \"{schema}\".publish(ARRAY['t'], $1)"),
                    &[&data],
                )
                .await
                .unwrap();
                tokio::time::sleep(jitter(a * EACH + i)).await;
                if i % 5 == 4 {
                    tx.rollback().await.unwrap();
                    rolled_back.push(data);
                } else {
                    tx.commit().await.unwrap();
                    committed.push(data);
                }
            }
            (committed, rolled_back)
        }));
    }
    let mut acked: HashMap<String, String> = HashMap::new();
    for t in hub_tasks {
        acked.extend(t.await.unwrap());
    }
    let mut committed = Vec::new();
    let mut rolled_back = Vec::new();
    for t in app_tasks {
        let (c, r) = t.await.unwrap();
        committed.extend(c);
        rolled_back.extend(r);
    }
    let total = acked.len() + committed.len();
    assert_eq!(total, 3 * HUB_TASKS * EACH + APP_TASKS * EACH * 4 / 5);

    let mut first: Option<Vec<Ev>> = None;
    for r in &mut readers {
        let got = r.take(total).await;
        r.quiet().await;
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(&got, f, "every node: the same updates, order and ids"),
        }
    }
    let got = first.unwrap();
    // Every update exactly once.
    let mut seen: Vec<&str> = datas(&got);
    seen.sort_unstable();
    let mut want: Vec<&str> = acked
        .keys()
        .map(String::as_str)
        .chain(committed.iter().map(String::as_str))
        .collect();
    want.sort_unstable();
    assert_eq!(seen, want);
    for e in &got {
        assert!(!rolled_back.contains(&e.data), "{} was rolled back", e.data);
        if let Some(id) = acked.get(&e.data) {
            assert_eq!(&e.id, id, "the id its publish answered");
        }
    }
    // One order: positions 1, 2, 3, ... with no hole.
    let positions: Vec<u64> = got.iter().map(|e| pos_of(epoch, &e.id)).collect();
    assert_eq!(positions, (1..=total as u64).collect::<Vec<_>>());
    // And the run did make transactions commit out of insert order (what a sequence alone
    // would turn into skipped updates).
    let reordered: i64 = client(&pg_url())
        .await
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{schema}\".updates a JOIN \"{schema}\".updates b \
                 ON a.id < b.id AND a.pos > b.pos"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(reordered > 0, "no commit came out of insert order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_published_in_a_transaction_is_delivered_on_commit_and_never_on_rollback() {
    let schema = schema_name("intx");
    let _c = Cleanup(schema.clone());
    let hub = hub(&schema, 100).await;
    let mut r = reader(&hub, sub("books"));
    let mut app = client(&pg_url()).await;
    let publish = format!("SELECT \"{schema}\".publish(ARRAY['books'], $1)");

    // Committed: delivered once the transaction commits, not before.
    let tx = app.transaction().await.unwrap();
    let row: i64 = tx
        .query_one(&publish, &[&"committed"])
        .await
        .unwrap()
        .get(0);
    assert!(row > 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.quiet().await;
    tx.commit().await.unwrap();
    let got = r.take(1).await;
    assert_eq!(datas(&got), ["committed"]);
    assert!(got[0].id.starts_with('#'), "a hub id: {}", got[0].id);

    // Rolled back: never delivered; later updates still flow, in order.
    let tx = app.transaction().await.unwrap();
    tx.query_one(&publish, &[&"rolled back"]).await.unwrap();
    tx.rollback().await.unwrap();
    let tx = app.transaction().await.unwrap();
    tx.execute(
        &format!(
            "INSERT INTO \"{schema}\".updates (topics, data, event_id) VALUES (ARRAY['books'], 'first', 'app-1')"
        ),
        &[],
    )
    .await
    .unwrap();
    tx.execute(
        &format!(
            "SELECT \"{schema}\".publish(topics => ARRAY['books', 'shelf'], data => 'second', type => 'book', retry_ms => 2500)"
        ),
        &[],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let from_hub = hub
        .publish(Update::new("books", "from the hub"))
        .await
        .unwrap();
    let got = r.take(3).await;
    assert_eq!(datas(&got), ["first", "second", "from the hub"]);
    assert_eq!(got[0].id, "app-1");
    assert_eq!(got[1].event_type, "book");
    assert_eq!(got[2].id, from_hub);
    r.quiet().await;
    let mut all = reader(&hub, sub("books").last_event_id(EARLIEST));
    assert_eq!(
        datas(&all.take(4).await),
        ["committed", "first", "second", "from the hub"]
    );
    all.quiet().await;

    // A publisher id in use fails the application's statement (unique violation) and is
    // refused to hub publishers too.
    let err = app
        .execute(
            &format!("SELECT \"{schema}\".publish(ARRAY['books'], 'again', id => 'app-1')"),
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    );
    assert_eq!(
        hub.publish(Update::new("books", "x").id("app-1")).await,
        Err(PublishError::DuplicateId)
    );
    // The hub's namespace and event types, and updates no subscriber could read, are refused.
    for bad in [
        "SELECT {s}.publish(ARRAY['/.well-known/mercure/subscriptions/x'], 'd')",
        "SELECT {s}.publish(ARRAY['books'], 'd', type => 'ssehub.history-gap')",
        "SELECT {s}.publish(ARRAY['books'], 'd', type => 'two\nlines')",
        "SELECT {s}.publish(ARRAY['books'], 'd', id => '#1-2')",
        "SELECT {s}.publish(ARRAY[]::text[], 'd')",
        "SELECT {s}.publish(ARRAY[''], 'd')",
    ] {
        let err = app
            .execute(&bad.replace("{s}", &format!("\"{schema}\"")), &[])
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION),
            "{bad}: {err}"
        );
    }
    r.quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_across_nodes_from_ids_earliest_and_retained_state() {
    let schema = schema_name("replay");
    let _c = Cleanup(schema.clone());
    let a = hub(&schema, 100).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(a.publish(Update::new("t", format!("u{i}"))).await.unwrap());
    }
    ids.push(
        a.publish(Update::new("t", "u5").id("mine-5"))
            .await
            .unwrap(),
    );
    a.publish(Update::new("other", "o")).await.unwrap();
    // A node started afterwards holds none of it in memory: all from PostgreSQL.
    let b = hub(&schema, 100).await;
    let mut r = reader(&b, sub("t").last_event_id(&ids[1]));
    assert_eq!(datas(&r.take(4).await), ["u2", "u3", "u4", "u5"]);
    let mut p = reader(&b, sub("t").last_event_id("mine-5"));
    let mut e = reader(&b, sub("t").last_event_id(EARLIEST));
    assert_eq!(
        datas(&e.take(6).await),
        ["u0", "u1", "u2", "u3", "u4", "u5"]
    );
    let mut l = reader(&b, sub("t").retained_state(true));
    assert_eq!(datas(&l.take(1).await), ["u5"]);
    // Then live updates from the other node, on every one of them, once.
    let live = a.publish(Update::new("t", "live")).await.unwrap();
    for s in [&mut r, &mut p, &mut e, &mut l] {
        let got = s.take(1).await;
        assert_eq!(
            (got[0].id.as_str(), got[0].data.as_str()),
            (live.as_str(), "live")
        );
        s.quiet().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_state_outlives_retention() {
    let schema = schema_name("latest");
    let _c = Cleanup(schema.clone());
    let mut o = options(&schema);
    o.max_count = Some(2);
    let hub = hub_on(backend(o).await, 1);
    hub.publish(Update::new("x", "x1")).await.unwrap();
    for i in 0..5 {
        hub.publish(Update::new("y", format!("y{i}")))
            .await
            .unwrap();
    }
    let mut app = client(&pg_url()).await;
    let left: i64 = app
        .query_one(&format!("SELECT count(*) FROM \"{schema}\".updates"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 2, "retention by count is exact");
    let mut r = reader(&hub, sub("x").retained_state(true));
    assert_eq!(datas(&r.take(1).await), ["x1"]);
    r.quiet().await;
    drop(app.transaction().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_summed_over_live_nodes_and_a_dead_node_stops_counting() {
    let schema = schema_name("presence");
    let _c = Cleanup(schema.clone());
    let a = hub(&schema, 10).await;
    let b = hub(&schema, 10).await;
    let _sa = a.subscribe(sub("room")).unwrap();
    let sb1 = b.subscribe(sub("room")).unwrap();
    let sb2 = b.subscribe(sub("room/{id}")).unwrap();
    let wait_for = |hub: Hub, want: Vec<(String, usize)>, total: usize| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
        loop {
            if hub.presence() == want && hub.cluster_subscriber_count() == total {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "presence {:?} / {}, want {want:?} / {total}",
                hub.presence(),
                hub.cluster_subscriber_count()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let both = vec![("room".to_owned(), 2), ("room/{id}".to_owned(), 1)];
    wait_for(a.clone(), both.clone(), 3).await;
    wait_for(b.clone(), both, 3).await;
    assert_eq!(a.topic_subscribers("room"), 2);
    assert_eq!(a.subscriber_count(), 1, "local count stays local");
    // Node b dies (its tasks stop with it): within the TTL it no longer counts.
    drop((sb1, sb2));
    drop(b);
    wait_for(a.clone(), vec![("room".to_owned(), 1)], 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_listed_across_nodes_and_a_purged_list_is_written_again() {
    let schema = schema_name("subs");
    let _c = Cleanup(schema.clone());
    let a = hub(&schema, 100).await;
    let b = hub(&schema, 100).await;
    // Subscribers from before tracking started are listed too.
    let early = b.subscribe(sub("early")).unwrap();
    let announce = |c: &ssehub_hub::SubscriptionChange| {
        vec![Update::new(format!("subs/{}", c.info.subscriber), c.active.to_string()).private(true)]
    };
    assert!(a.track_subscriptions(announce));
    assert!(b.track_subscriptions(announce));
    let s = b
        .subscribe(sub("t").payload(serde_json::json!({"on": "b"})))
        .unwrap();
    let early_id = early.subscriber_id().unwrap();
    let s_id = s.subscriber_id().unwrap();
    let mut want = vec![early_id.clone(), s_id.clone()];
    want.sort();
    let listed = |hub: Hub| async move {
        let snap = hub.subscriptions().await.unwrap();
        let ids: Vec<String> = snap
            .subscribers
            .iter()
            .map(|i| i.subscriber.clone())
            .collect();
        (snap, ids)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    loop {
        let (snap, ids) = listed(a.clone()).await;
        // (A list rewritten before any announcement is ordered has no id yet.)
        if ids == want && snap.last_event_id.is_some() {
            let info = snap
                .subscribers
                .iter()
                .find(|i| i.subscriber == s_id)
                .unwrap();
            assert_eq!(info.topics, ["t"]);
            assert_eq!(info.payload, Some(serde_json::json!({"on": "b"})));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "a lists {ids:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // b's entry and list are purged (as another node does once b's entry expired): b's next
    // presence exchange notices and writes its list again.
    let app = client(&pg_url()).await;
    app.batch_execute(&format!(
        "DELETE FROM \"{schema}\".subscribers; DELETE FROM \"{schema}\".nodes"
    ))
    .await
    .unwrap();
    assert!(listed(a.clone()).await.1.is_empty());
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while listed(a.clone()).await.1 != want {
        assert!(std::time::Instant::now() < deadline, "not written again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A leave is recorded with its announcement.
    drop(s);
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while listed(a.clone()).await.1 != [early_id.clone()] {
        assert!(std::time::Instant::now() < deadline, "leave not recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(early);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let schema = schema_name("migrate");
    let _c = Cleanup(schema.clone());
    let connects: Vec<_> = (0..4)
        .map(|_| {
            let o = options(&schema);
            tokio::spawn(async move { backend(o).await.epoch() })
        })
        .collect();
    let mut epochs = Vec::new();
    for c in connects {
        epochs.push(c.await.unwrap());
    }
    epochs.dedup();
    assert_eq!(epochs.len(), 1, "one log: {epochs:?}");
    let app = client(&pg_url()).await;
    let versions: Vec<i32> = app
        .query(
            &format!("SELECT version FROM \"{schema}\".schema_version ORDER BY version"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1]);
    app.execute(
        &format!("INSERT INTO \"{schema}\".schema_version (version) VALUES (99)"),
        &[],
    )
    .await
    .unwrap();
    let err = PostgresBackend::connect(options(&schema))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("version 99, newer than this hub knows"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_schemas_and_an_unreachable_server_are_clear_errors() {
    let mut o = options("ok");
    o.url = "postgres://[broken".into();
    let err = PostgresBackend::connect(o).await.unwrap_err();
    assert!(matches!(err, PostgresStorageError::Url(_)), "{err}");
    let err = PostgresBackend::connect(options("Not-Valid"))
        .await
        .unwrap_err();
    assert!(matches!(err, PostgresStorageError::Schema(_)), "{err}");
    assert!(err.to_string().contains("Not-Valid"), "{err}");
    let mut o = options("ok");
    o.url = "postgres://postgres@127.0.0.1:1/postgres".into();
    o.timeout = Duration::from_secs(2);
    let started = std::time::Instant::now();
    let err = PostgresBackend::connect(o).await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(9), "fails fast");
    assert!(err.starts_with("postgres: "), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
}
