//! Crash safety over real processes: a child appends from several tasks through the group
//! committer and prints each acknowledged seq; it is killed with SIGKILL at several points; after
//! each kill the log is reopened and every acknowledged record must be there exactly once, in
//! order, with nothing half-written. The child is this same test binary, re-run with an
//! environment variable (see `crash_child`), so no extra binary ships with the crate.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use ssehub_store::{CommitterOptions, DATA_FILE, GroupCommitter, Log, LogOptions, Record};

const DIR_VAR: &str = "SSEHUB_STORE_CRASH_DIR";
const ROUND_VAR: &str = "SSEHUB_STORE_CRASH_ROUND";
const CHECKPOINT_VAR: &str = "SSEHUB_STORE_CHECKPOINT_DIR";
const SKIP_CHECKPOINT_VAR: &str = "SSEHUB_STORE_SKIP_CHECKPOINT";
const TASKS: usize = 6;

fn frame(round: u32, task: usize, n: u64) -> String {
    // Long enough to span pages now and then, and self-describing so a half record shows.
    format!(
        "data: round {round} task {task} n {n} {}\n\n",
        "x".repeat(100 + (n % 150) as usize)
    )
}

/// Odd rounds run with a 64 KiB journal, so a round crosses many checkpoints (each group takes
/// at least one 4 KiB block): kills land before, during and after them. Even rounds use the
/// default size, where everything since the open is replayed from the journal.
fn journal_for(round: u32) -> LogOptions {
    let mut options = LogOptions::default();
    if round % 2 == 1 {
        options.journal_bytes = 64 << 10;
    }
    options
}

/// The child: a no-op unless run by `kill_9_at_several_points_loses_no_acknowledged_record`.
#[test]
fn crash_child() {
    let (Ok(dir), Ok(round)) = (std::env::var(DIR_VAR), std::env::var(ROUND_VAR)) else {
        return;
    };
    let round: u32 = round.parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let log = Log::open(&dir, journal_for(round)).unwrap();
        let c = std::sync::Arc::new(GroupCommitter::new(log, CommitterOptions::default()).unwrap());
        println!("READY");
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let c = c.clone();
                tokio::spawn(async move {
                    for n in 0.. {
                        let r = Record::new(vec![format!("t{task}")], frame(round, task, n));
                        let seq = c.append(r).await.unwrap();
                        // One line per ack, written whole: the parent reads what got out.
                        println!("ACK {seq} {round} {task} {n}");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn kill_9_at_several_points_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    // (seq -> (round, task, n)) for every acknowledged record so far.
    let mut acked: BTreeMap<u64, (u32, usize, u64)> = BTreeMap::new();
    for (round, kill_after_ms) in [5u64, 60, 150, 20, 300, 1].into_iter().enumerate() {
        let round = round as u32;
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(DIR_VAR, dir.path())
            .env(ROUND_VAR, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let reader = std::thread::spawn(move || {
            // println! writes each line with one write(2) of < PIPE_BUF bytes, so a kill
            // never leaves half a line in the pipe.
            out.lines().map_while(Result::ok).collect::<Vec<_>>()
        });
        // Give the child time to open the log (including redb's repair after the last kill),
        // then let it run `kill_after_ms`.
        std::thread::sleep(Duration::from_millis(300 + kill_after_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        let mut this_round = 0;
        for line in lines.iter().filter_map(|l| l.strip_prefix("ACK ")) {
            let p: Vec<&str> = line.split(' ').collect();
            let seq: u64 = p[0].parse().unwrap();
            let entry = (
                p[1].parse().unwrap(),
                p[2].parse().unwrap(),
                p[3].parse().unwrap(),
            );
            assert_eq!(
                acked.insert(seq, entry),
                None,
                "seq {seq} acknowledged twice"
            );
            this_round += 1;
        }
        assert!(
            lines.iter().any(|l| l.ends_with("READY")),
            "round {round}: child never started"
        );

        // Reopen in this process: every acknowledged record, exactly once, in order.
        let log = Log::open(dir.path(), journal_for(round)).unwrap();
        let all = log.read_from(1, usize::MAX).unwrap();
        assert_eq!(all.len() as u64, log.next_seq() - 1);
        let mut seen = HashSet::new();
        let mut last_n: BTreeMap<(u32, usize), u64> = BTreeMap::new();
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.seq, i as u64 + 1, "seqs are consecutive");
            let text = std::str::from_utf8(&r.record.frame).unwrap();
            // Parse the record back; a half record would not parse or not match its frame.
            let words: Vec<&str> = text.split(' ').collect();
            let (rd, task, n): (u32, usize, u64) = (
                words[2].parse().unwrap(),
                words[4].parse().unwrap(),
                words[6].parse().unwrap(),
            );
            assert_eq!(text, frame(rd, task, n), "seq {}: whole record", r.seq);
            assert_eq!(r.record.topics, [format!("t{task}")]);
            assert!(seen.insert((rd, task, n)), "record stored twice");
            // Each task appends sequentially, so its records are in its own order.
            if let Some(prev) = last_n.insert((rd, task), n) {
                assert_eq!(n, prev + 1, "task {task} round {rd}: out of order or gap");
            } else {
                assert_eq!(n, 0);
            }
            if let Some(&want) = acked.get(&r.seq) {
                assert_eq!((rd, task, n), want, "seq {} holds another record", r.seq);
            }
        }
        for seq in acked.keys() {
            assert!(*seq < log.next_seq(), "acknowledged seq {seq} lost");
        }
        eprintln!(
            "round {round}: killed after {kill_after_ms} ms, {this_round} acks seen, {} records stored",
            all.len()
        );
        drop(log);
    }
    assert!(!acked.is_empty(), "no round acknowledged anything");
}

/// The child of `a_checkpoint_is_durable_without_the_journal`.
#[test]
fn checkpoint_child() {
    let Ok(dir) = std::env::var(CHECKPOINT_VAR) else {
        return;
    };
    let log = Log::open(&dir, LogOptions::default()).unwrap();
    let records: Vec<_> = (0..50)
        .map(|n| Record::new(vec!["t".into()], frame(0, 0, n)))
        .collect();
    log.append_batch(&records).unwrap();
    if std::env::var_os(SKIP_CHECKPOINT_VAR).is_some() {
        println!("APPENDED");
    } else {
        log.checkpoint().unwrap();
        println!("CHECKPOINTED");
    }
    std::thread::sleep(Duration::from_secs(60));
}

/// Runs `checkpoint_child` in `dir` (checkpointing unless `skip_checkpoint`), waits until it
/// says it is done, and kills it with SIGKILL.
fn run_checkpoint_child_and_kill(dir: &std::path::Path, skip_checkpoint: bool) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "checkpoint_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHECKPOINT_VAR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if skip_checkpoint {
        command.env(SKIP_CHECKPOINT_VAR, "1");
    }
    let mut child = command.spawn().unwrap();
    let done = if skip_checkpoint {
        "APPENDED"
    } else {
        "CHECKPOINTED"
    };
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains(done) {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child ended early");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The child's 50 records, whole and in order, in the log of `dir`.
fn assert_child_records(dir: &std::path::Path) {
    let log = Log::open(dir, LogOptions::default()).unwrap();
    let all = log.read_from(1, usize::MAX).unwrap();
    assert_eq!(all.len(), 50);
    for (n, r) in all.iter().enumerate() {
        assert_eq!(r.seq, n as u64 + 1);
        assert_eq!(r.record.frame, frame(0, 0, n as u64).as_bytes());
    }
}

/// Appends go to the B-tree with in-memory commits and to the journal; a checkpoint must make
/// them durable in the B-tree itself. The child appends and checkpoints, is killed, and the
/// journal is wiped: all 50 records must still be there.
#[test]
fn a_checkpoint_is_durable_without_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    run_checkpoint_child_and_kill(dir.path(), false);
    let journal = dir.path().join(ssehub_store::JOURNAL_FILE);
    let len = std::fs::metadata(&journal).unwrap().len();
    std::fs::write(&journal, vec![0u8; len as usize]).unwrap();
    assert_child_records(dir.path());
}

/// Without a checkpoint the same records come back from the journal: the B-tree file alone,
/// opened without the journal, does not have them (its in-memory commits died with the
/// process), the data directory as a whole does.
#[test]
fn records_since_the_checkpoint_come_back_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    run_checkpoint_child_and_kill(dir.path(), true);
    let btree_only = dir.path().join("btree-only");
    std::fs::create_dir(&btree_only).unwrap();
    std::fs::copy(dir.path().join(DATA_FILE), btree_only.join(DATA_FILE)).unwrap();
    let log = Log::open(&btree_only, LogOptions::default()).unwrap();
    assert_eq!(log.read_from(1, usize::MAX).unwrap().len(), 0);
    drop(log);
    assert_child_records(dir.path());
}
