//! The group committer: concurrent appenders, batching, the commit hook, failures, and retention
//! running alongside.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use ssehub_store::{
    CommitterOptions, FaultInjector, GroupCommitter, Log, LogOptions, Record, RetainPolicy,
    StoreError, spawn_retention,
};

fn rec(task: usize, n: usize) -> Record {
    Record::new(
        vec![format!("task/{task}")],
        format!("data: {task} {n}\n\n"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_get_distinct_increasing_seqs_in_few_commits() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hook_seen = seen.clone();
    let committer = Arc::new(
        GroupCommitter::with_hook(log.clone(), CommitterOptions::default(), move |group| {
            hook_seen.lock().extend(group.iter().map(|r| r.seq));
        })
        .unwrap(),
    );
    const TASKS: usize = 64;
    const EACH: usize = 20;
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let c = committer.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for n in 0..EACH {
                    seqs.push(c.append(rec(t, n)).await.unwrap());
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for (t, task) in tasks.into_iter().enumerate() {
        let seqs = task.await.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "task {t}: {seqs:?}");
        for (n, &seq) in seqs.iter().enumerate() {
            all.push((seq, t, n));
        }
    }
    all.sort();
    let total = TASKS * EACH;
    assert_eq!(
        all.iter().map(|a| a.0).collect::<Vec<_>>(),
        (1..=total as u64).collect::<Vec<_>>(),
        "distinct and consecutive"
    );
    let stats = committer.stats();
    assert_eq!(stats.records, total as u64);
    // 64 appenders each waiting for their previous ack: groups form while a commit syncs.
    assert!(
        stats.commits < total as u64 / 4,
        "group commit did not batch: {stats:?}"
    );
    assert!(stats.largest_batch > 1);
    // The hook saw every group in seq order, before the acks.
    assert_eq!(*seen.lock(), (1..=total as u64).collect::<Vec<_>>());
    Arc::try_unwrap(committer).unwrap().shutdown().await;
    drop(log);

    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let stored = log.read_from(1, total + 1).unwrap();
    assert_eq!(stored.len(), total);
    for ((seq, t, n), r) in all.iter().zip(&stored) {
        assert_eq!(r.seq, *seq);
        assert_eq!(r.record.frame, Bytes::from(format!("data: {t} {n}\n\n")));
    }
}

#[tokio::test]
async fn append_with_builds_the_record_from_its_seq_and_refusals_are_per_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let c = GroupCommitter::new(log.clone(), CommitterOptions::default()).unwrap();
    let seq = c
        .append_with(|seq| Record::new(vec!["t".into()], format!("id: E-{seq}\ndata: x\n\n")))
        .await
        .unwrap();
    assert_eq!(
        &log.get(seq).unwrap().unwrap().record.frame[..],
        b"id: E-1\ndata: x\n\n"
    );
    let with_id = |id: &str| Record {
        publisher_id: Some(id.into()),
        ..rec(0, 0)
    };
    assert_eq!(c.append(with_id("a")).await.unwrap(), 2);
    // Concurrent: one duplicate among good records fails alone.
    let (x, y, z) = tokio::join!(
        c.append(with_id("a")),
        c.append(rec(1, 1)),
        c.append(with_id("b"))
    );
    assert_eq!(x.unwrap_err(), StoreError::DuplicatePublisherId("a".into()));
    let mut ok = [y.unwrap(), z.unwrap()];
    ok.sort();
    assert_eq!(ok, [3, 4], "a refused record takes no seq");
    c.shutdown().await;
}

#[tokio::test]
async fn failed_commit_fails_its_appenders_then_recovers() {
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
    let c = GroupCommitter::new(log.clone(), CommitterOptions::default()).unwrap();
    assert_eq!(c.append(rec(0, 0)).await.unwrap(), 1);
    fault.fail_writes();
    let err = c.append(rec(0, 1)).await.unwrap_err();
    assert!(matches!(err, StoreError::DiskFull(_)), "{err:?}");
    assert_eq!(c.stats().failed_commits, 1);
    fault.heal();
    assert_eq!(c.append(rec(0, 2)).await.unwrap(), 2);
    c.shutdown().await;
}

/// Retention trims 50k records in batches while appenders keep going; no append waits long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_retention_does_not_stall_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let bulk: Vec<_> = (0..50_000).map(|n| rec(0, n)).collect();
    for chunk in bulk.chunks(5_000) {
        log.append_batch(chunk).unwrap();
    }
    let c = Arc::new(GroupCommitter::new(log.clone(), CommitterOptions::default()).unwrap());
    let policy = RetainPolicy {
        count: Some(100),
        ..RetainPolicy::default()
    };
    let trimmer = spawn_retention(log.clone(), policy, Duration::from_millis(10));
    let mut worst = Duration::ZERO;
    let start = Instant::now();
    while log.first_seq() < 50_000 && start.elapsed() < Duration::from_secs(20) {
        let t = Instant::now();
        c.append(rec(1, 0)).await.unwrap();
        worst = worst.max(t.elapsed());
    }
    trimmer.abort();
    assert!(log.first_seq() >= 50_000, "retention did not finish");
    eprintln!("worst append latency while trimming: {worst:?}");
    // One trim batch (1,024 deletes) plus one fsync; generous for a shared machine.
    assert!(
        worst < Duration::from_millis(500),
        "append stalled {worst:?}"
    );
}
