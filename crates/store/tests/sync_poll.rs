//! The writer's sync poller (committer.rs, "Polling while a write syncs"): on a durable log it
//! is one thread at `SCHED_IDLE`, it uses no CPU while nothing is being committed, and it exists
//! neither for a buffered log nor when turned off. One test in its own process, so that no
//! other test's threads are counted.
#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use ssehub_store::{CommitterOptions, Durability, GroupCommitter, Log, LogOptions, Record};

const NAME: &str = "ssehub-syncpoll";

/// Task ids of this process's threads named [`NAME`].
fn pollers() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| {
            let tid = e.ok()?.file_name().into_string().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
            (comm.trim() == NAME).then_some(tid)
        })
        .collect()
}

/// Scheduling policy number of a thread (5 is SCHED_IDLE).
fn policy(tid: &str) -> u32 {
    let sched = std::fs::read_to_string(format!("/proc/self/task/{tid}/sched")).unwrap();
    sched
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "policy").then(|| v.trim().parse().unwrap())
        })
        .unwrap()
}

/// CPU time of a thread in clock ticks (utime + stime).
fn cpu_ticks(tid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses: state is field 3, utime 14.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

async fn wait_for_no_poller() {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pollers().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the poller outlived its committer"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A committer with these options takes an append without starting a poller.
async fn assert_no_poller(log: LogOptions, committer: CommitterOptions, when: &str) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), log).unwrap();
    let committer = GroupCommitter::new(log, committer).unwrap();
    committer
        .append(Record::new(vec!["t".into()], "data: x\n\n"))
        .await
        .unwrap();
    assert!(pollers().is_empty(), "no poller {when}");
    committer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idle_class_poller_per_durable_committer_and_no_cpu_while_idle() {
    assert!(pollers().is_empty());

    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let committer = GroupCommitter::new(log.clone(), CommitterOptions::default()).unwrap();
    for n in 0..200 {
        committer
            .append(Record::new(vec!["t".into()], format!("data: {n}\n\n")))
            .await
            .unwrap();
    }
    let found = pollers();
    assert_eq!(found.len(), 1, "one poller for a durable log");
    let tid = &found[0];
    assert_eq!(policy(tid), 5, "the poller runs at SCHED_IDLE");
    // Nothing is being committed: it sleeps (a spinning thread would use ~100 ticks a second).
    let before = cpu_ticks(tid);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let used = cpu_ticks(tid) - before;
    assert!(used <= 2, "the idle poller used {used} ticks in 0.5 s");
    committer.shutdown().await;
    wait_for_no_poller().await;

    // A buffered log waits for no sync, and the option turns polling off.
    let buffered = LogOptions {
        durability: Durability::Buffered,
        ..LogOptions::default()
    };
    assert_no_poller(buffered, CommitterOptions::default(), "for a buffered log").await;
    let off = CommitterOptions {
        poll_while_syncing: false,
        ..CommitterOptions::default()
    };
    assert_no_poller(LogOptions::default(), off, "when turned off").await;
}
