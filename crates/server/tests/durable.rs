//! The Mercure endpoint on a hub with a durable log: a full disk answers `POST` with `503` and
//! the reason while subscribers stay connected, and publishing works again once space returns;
//! `retained=latest` sends each matching topic's latest update first; a duplicate publisher id
//! is `409`.

mod common;

use common::{Events, client, publish, start_with};
use ssehub_hub::Hub;
use ssehub_store::{DurableHub, FaultInjector, Log, LogOptions};

fn durable_hub(dir: &std::path::Path, fault: Option<FaultInjector>) -> Hub {
    let log = Log::open(
        dir,
        LogOptions {
            fault_injector: fault,
            ..LogOptions::default()
        },
    )
    .unwrap();
    Hub::builder().heartbeat(None).durable(log).build()
}

#[tokio::test]
async fn full_disk_gives_503_with_the_reason_subscribers_stay_and_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultInjector::new();
    let hub = start_with(durable_hub(dir.path(), Some(fault.clone())), |_| {}).await;
    let mut events = Events::open(client().get(hub.url("/.well-known/mercure?topic=t"))).await;
    assert_eq!(
        publish(&hub, &[("topic", "t"), ("data", "one")])
            .await
            .status(),
        200
    );
    assert_eq!(events.event().await.data, "one");

    fault.fail_writes();
    let res = publish(&hub, &[("topic", "t"), ("data", "lost")]).await;
    assert_eq!(res.status(), 503);
    let reason = res.text().await.unwrap();
    assert!(reason.contains("storage is full"), "{reason}");
    assert_eq!(hub.hub.subscriber_count(), 1);

    fault.heal();
    assert_eq!(
        publish(&hub, &[("topic", "t"), ("data", "two")])
            .await
            .status(),
        200
    );
    // The same connection goes on: the refused update never reached it.
    assert_eq!(events.event().await.data, "two");
}

#[tokio::test]
async fn retained_latest_and_duplicate_publisher_ids() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_with(durable_hub(dir.path(), None), |_| {}).await;
    for (topic, data) in [("a", "a1"), ("b", "b1"), ("a", "a2")] {
        assert_eq!(
            publish(&hub, &[("topic", topic), ("data", data)])
                .await
                .status(),
            200
        );
    }
    let mut events =
        Events::open(client().get(hub.url("/.well-known/mercure?topic=a&topic=b&retained=latest")))
            .await;
    assert_eq!(events.event().await.data, "b1");
    assert_eq!(events.event().await.data, "a2");

    let bad = client()
        .get(hub.url("/.well-known/mercure?topic=a&retained=all"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    assert_eq!(
        publish(&hub, &[("topic", "a"), ("id", "x1")])
            .await
            .status(),
        200
    );
    assert_eq!(
        publish(&hub, &[("topic", "a"), ("id", "x1")])
            .await
            .status(),
        409
    );
}
