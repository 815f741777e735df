//! The hub on a durable log (`Durable`, this crate's hub storage): ids and replay across restarts, replay and
//! catch-up older than the ring, retention and the gap notice, retained state per topic, and a
//! full disk.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use ssehub_codec::{Frame, MessageEvent, Parser};
use ssehub_hub::{
    HISTORY_GAP_EVENT, Hub, HubBuilder, PublishError, Selector, SubscriberStream, Subscription,
    Update,
};
use ssehub_store::{Durable, DurableHub, FaultInjector, Log, LogOptions, RetainPolicy, StoreError};

fn builder(dir: &Path) -> HubBuilder {
    Hub::builder()
        .heartbeat(None)
        .durable(open(dir, LogOptions::default()))
}

/// A durable hub on `dir` whose log retains what `policy` says, trimmed every `every`.
fn retaining(dir: &Path, policy: RetainPolicy, every: Duration) -> HubBuilder {
    Hub::builder()
        .heartbeat(None)
        .storage(Durable::new(open(dir, LogOptions::default())).retention(policy, every))
}

/// Opens the log, waiting for a dropped hub's writer thread to let go of it.
fn open(dir: &Path, options: LogOptions) -> Log {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match Log::open(dir, options.clone()) {
            Ok(log) => return log,
            Err(StoreError::AlreadyOpen) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn sub(topic: &str) -> Subscription {
    Subscription::new().topic(topic).unwrap()
}

/// Reads events until `n` arrived (fails after 5 s).
async fn take(stream: &mut SubscriberStream, parser: &mut Parser, n: usize) -> Vec<MessageEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        let bytes = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("timed out waiting for events")
            .expect("stream ended");
        parser.feed(&bytes);
        while let Some(f) = parser.next_frame() {
            if let Frame::Event(e) = f {
                out.push(e);
            }
        }
    }
    out
}

/// Asserts nothing more arrives within a short while.
async fn quiet(stream: &mut SubscriberStream) {
    if let Ok(Some(b)) = tokio::time::timeout(Duration::from_millis(100), stream.next()).await {
        panic!("unexpected bytes: {b:?}");
    }
}

fn datas(events: &[MessageEvent]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

#[tokio::test]
async fn ids_continue_and_last_event_id_replays_exactly_the_missed_ones_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (seen, epoch) = {
        let hub = builder(dir.path()).build();
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(
                hub.publish(Update::new("t", format!("u{i}")))
                    .await
                    .unwrap(),
            );
        }
        hub.publish(Update::new("t", "mine").id("pub-1"))
            .await
            .unwrap();
        let epoch = ids[0].split_once('-').unwrap().0.to_owned();
        (ids[2].clone(), epoch)
    };
    let hub = builder(dir.path()).build();
    assert_eq!(hub.last_event_id().as_deref(), Some("pub-1"));
    let next = hub.publish(Update::new("t", "u6")).await.unwrap();
    assert_eq!(
        next,
        format!("{epoch}-7"),
        "ids keep increasing across restarts"
    );

    let mut p = Parser::new();
    let mut s = hub.subscribe(sub("t").last_event_id(&seen)).unwrap();
    let ev = take(&mut s, &mut p, 4).await;
    assert_eq!(datas(&ev), ["u3", "u4", "mine", "u6"]);
    quiet(&mut s).await;

    // A publisher id from before the restart works for replay, and stays unique.
    let mut p = Parser::new();
    let mut s = hub.subscribe(sub("t").last_event_id("pub-1")).unwrap();
    assert_eq!(datas(&take(&mut s, &mut p, 1).await), ["u6"]);
    assert_eq!(
        hub.publish(Update::new("t", "again").id("pub-1")).await,
        Err(PublishError::DuplicateId)
    );
    assert_eq!(
        hub.publish(Update::new("t", "x").id(format!("{epoch}-99")))
            .await,
        Err(PublishError::ReservedId)
    );
    assert_eq!(
        hub.publish_now(Update::new("t", "sync")),
        Err(PublishError::NeedsAwait)
    );
}

#[tokio::test]
async fn replay_and_catch_up_older_than_the_ring_come_from_the_log_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // A ring of 8 and queues of 16 frames: replay of 300 must page through the log.
    let hub = builder(dir.path())
        .history_size(8)
        .max_queued(16, 1 << 20)
        .build();
    for i in 0..300 {
        hub.publish(Update::new("t", format!("{i}"))).await.unwrap();
    }
    let mut p = Parser::new();
    let mut s = hub.subscribe(sub("t").last_event_id("earliest")).unwrap();
    // Publishes while the subscriber catches up join exactly after the replay.
    let h2 = hub.clone();
    let more = tokio::spawn(async move {
        for i in 300..340 {
            h2.publish(Update::new("t", format!("{i}"))).await.unwrap();
        }
    });
    let ev = take(&mut s, &mut p, 340).await;
    more.await.unwrap();
    let want: Vec<String> = (0..340).map(|i| i.to_string()).collect();
    assert_eq!(datas(&ev), want);
    quiet(&mut s).await;
}

#[tokio::test]
async fn retention_trims_and_an_expired_id_gets_the_gap_then_the_oldest_retained() {
    let dir = tempfile::tempdir().unwrap();
    let hub = retaining(
        dir.path(),
        RetainPolicy {
            count: Some(5),
            ..RetainPolicy::default()
        },
        Duration::from_millis(20),
    )
    .history_size(2)
    .build();
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(hub.publish(Update::new("t", format!("{i}"))).await.unwrap());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while hub.stats().retained > 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention did not run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut p = Parser::new();
    let mut s = hub.subscribe(sub("t").last_event_id(&ids[3])).unwrap();
    let ev = take(&mut s, &mut p, 6).await;
    assert_eq!(ev[0].event_type, HISTORY_GAP_EVENT);
    let gap: serde_json::Value = serde_json::from_str(&ev[0].data).unwrap();
    assert_eq!(gap["reason"], "expired");
    assert_eq!(gap["oldest"], ids[15].as_str());
    assert_eq!(datas(&ev[1..]), ["15", "16", "17", "18", "19"]);
    hub.publish(Update::new("t", "live")).await.unwrap();
    assert_eq!(datas(&take(&mut s, &mut p, 1).await), ["live"]);
}

// Multi-threaded so the dropped hub's aborted retention task is dropped (letting go of the log)
// while the test waits to reopen it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_state_sends_the_latest_of_each_matching_topic_first() {
    let dir = tempfile::tempdir().unwrap();
    {
        let hub = retaining(
            dir.path(),
            RetainPolicy {
                count: Some(1),
                ..RetainPolicy::default()
            },
            Duration::from_millis(10),
        )
        .build();
        for (topic, data) in [
            ("https://ex/nests/1", "n1 v1"),
            ("https://ex/nests/2", "n2 v1"),
            ("https://ex/nests/1", "n1 v2"),
            ("https://ex/other", "o"),
        ] {
            hub.publish(Update::new(topic, data)).await.unwrap();
        }
        hub.publish(Update::new("https://ex/nests/3", "secret").private(true))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // After a restart, and although retention kept only one update of the log.
    let hub = builder(dir.path()).build();
    let nests = || Subscription::new().topic("https://ex/nests/{id}").unwrap();
    let mut p = Parser::new();
    let mut s = hub.subscribe(nests().retained_state(true)).unwrap();
    assert_eq!(datas(&take(&mut s, &mut p, 2).await), ["n2 v1", "n1 v2"]);
    quiet(&mut s).await;
    hub.publish(Update::new("https://ex/nests/2", "n2 v2"))
        .await
        .unwrap();
    assert_eq!(datas(&take(&mut s, &mut p, 1).await), ["n2 v2"]);

    // The private rule applies: an authorized subscriber also gets the private one.
    let allowed = vec![Selector::parse("https://ex/nests/{id}").unwrap()];
    let mut p = Parser::new();
    let mut s = hub
        .subscribe(nests().retained_state(true).authorized(allowed))
        .unwrap();
    assert_eq!(
        datas(&take(&mut s, &mut p, 3).await),
        ["n1 v2", "secret", "n2 v2"]
    );
}

#[tokio::test]
async fn retained_state_on_a_memory_hub_comes_from_the_ring() {
    let hub = Hub::builder().heartbeat(None).build();
    for (topic, data) in [("a", "a1"), ("b", "b1"), ("a", "a2")] {
        hub.publish(Update::new(topic, data)).await.unwrap();
    }
    let mut p = Parser::new();
    let mut s = hub
        .subscribe(Subscription::new().topic("*").unwrap().retained_state(true))
        .unwrap();
    assert_eq!(datas(&take(&mut s, &mut p, 2).await), ["b1", "a2"]);
}

#[tokio::test]
async fn a_full_disk_refuses_publishes_with_the_reason_and_the_hub_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultInjector::new();
    let log = Log::open(
        dir.path(),
        LogOptions {
            fault_injector: Some(fault.clone()),
            ..LogOptions::default()
        },
    )
    .unwrap();
    let hub = Hub::builder().heartbeat(None).durable(log).build();
    let mut p = Parser::new();
    let mut s = hub.subscribe(sub("t")).unwrap();
    let first = hub.publish(Update::new("t", "before")).await.unwrap();
    assert_eq!(datas(&take(&mut s, &mut p, 1).await), ["before"]);

    fault.fail_writes();
    let err = hub.publish(Update::new("t", "lost")).await.unwrap_err();
    assert!(
        matches!(&err, PublishError::Unavailable(r) if r.contains("full")),
        "{err:?}"
    );
    assert_eq!(hub.stats().subscribers, 1, "subscribers stay connected");
    quiet(&mut s).await;

    fault.heal();
    let after = hub.publish(Update::new("t", "after")).await.unwrap();
    assert_eq!(datas(&take(&mut s, &mut p, 1).await), ["after"]);
    let seq = |id: &str| id.split_once('-').unwrap().1.parse::<u64>().unwrap();
    assert_eq!(
        seq(&after),
        seq(&first) + 1,
        "no seq was used by the failure"
    );
}

/// Mercure 1.0: a hub-generated id is an IRI or a fragment. Ours are `#{epoch}-{seq}` on the
/// durable log as on the ring (a seek on replay, not a scan), and the bare form earlier
/// versions issued still resumes after an upgrade.
#[tokio::test]
async fn hub_ids_are_fragments_and_the_older_bare_form_still_resumes() {
    for durable in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let hub = if durable {
            builder(dir.path()).build()
        } else {
            Hub::builder().heartbeat(None).build()
        };
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(
                hub.publish(Update::new("t", format!("u{i}")))
                    .await
                    .unwrap(),
            );
        }
        for id in &ids {
            let (epoch, seq) = id.strip_prefix('#').unwrap().split_once('-').unwrap();
            assert!(
                epoch.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok(),
                "{id}"
            );
        }
        let mut parser = Parser::new();
        let mut s = hub
            .subscribe(sub("t").last_event_id(ids[0].clone()))
            .unwrap();
        // Mercure-Last-Event-ID: the id asked for when retained, else `earliest`.
        assert_eq!(s.cursor(), Some(ids[0].as_str()));
        for (asked, cursor) in [("earliest", "earliest"), ("no-such-id", "earliest")] {
            let other = hub.subscribe(sub("t").last_event_id(asked)).unwrap();
            assert_eq!(other.cursor(), Some(cursor), "{asked}");
        }
        // Live: the newest retained update comes before the first one sent.
        assert_eq!(
            hub.subscribe(sub("t")).unwrap().cursor(),
            ids.last().map(String::as_str)
        );
        let got = take(&mut s, &mut parser, 2).await;
        assert_eq!(datas(&got), ["u1", "u2"], "durable: {durable}");
        assert_eq!(got[0].last_event_id, ids[1]);
        let bare = ids[1].trim_start_matches('#').to_owned();
        let mut s = hub.subscribe(sub("t").last_event_id(bare)).unwrap();
        assert_eq!(datas(&take(&mut s, &mut Parser::new(), 1).await), ["u2"]);
        // A publisher may not take an id shaped like ours, with or without the `#`.
        let ours = format!("#{}", ids[2].trim_start_matches('#').replace("-3", "-9"));
        assert!(hub.publish(Update::new("t", "x").id(ours)).await.is_err());
    }
}
