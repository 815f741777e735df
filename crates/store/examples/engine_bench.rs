//! redb vs fjall on the event log's access pattern; the figures behind the choice in
//! `docs/storage.md`.
//!
//! Usage: `engine_bench <redb|redb-quick|fjall> <dir>` runs every scenario once and prints one
//! `name value unit` line each; `docs/storage.md` gives the exact commands and how the medians
//! were taken. `engine_bench <engine> <dir> crash-child` is the helper process the bench kills
//! with SIGKILL to measure reopen after a crash.
//!
//! The pattern: small records (100-300 bytes) under a monotonically increasing big-endian u64
//! key, committed in groups of 1, 16 or 256 with fdatasync durability; seek by key and scan
//! forward; delete a prefix in batches; reopen with 1M records, after a clean close and after
//! `kill -9`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LOADED: u64 = 1_000_000;

/// Deterministic record of 100-300 bytes: not all zero, so fjall's LZ4 cannot cheat much.
fn value(seq: u64) -> Vec<u8> {
    let len = 100 + (seq.wrapping_mul(2_654_435_761) % 201) as usize;
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly printable JSON-ish bytes, like an SSE frame.
            b' ' + (x % 95) as u8
        })
        .collect()
}

trait Engine {
    fn open(dir: &Path) -> Self;
    fn append(&mut self, first: u64, n: u64, sync: bool);
    /// Seeks to `from`, reads `n` records, returns the bytes read (so nothing is optimised out).
    fn scan(&self, from: u64, n: usize) -> usize;
    /// Deletes `[from, to)` in one transaction.
    fn delete_range(&mut self, from: u64, to: u64);
    fn last(&self) -> Option<u64>;
    fn disk_bytes(dir: &Path) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(rd) = std::fs::read_dir(p) else {
                return 0;
            };
            rd.flatten()
                .map(|e| {
                    let m = e.metadata().unwrap();
                    if m.is_dir() { walk(&e.path()) } else { m.len() }
                })
                .sum()
        }
        walk(dir)
    }
}

const TABLE: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("log");

struct Redb {
    db: redb::Database,
    quick_repair: bool,
}

impl Redb {
    fn open_with(dir: &Path, quick_repair: bool) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let db = redb::Database::create(dir.join("log.redb")).unwrap();
        let mut r = Redb { db, quick_repair };
        // Make sure the table exists so read transactions never fail.
        r.append(0, 0, true);
        r
    }
}

impl Engine for Redb {
    fn open(dir: &Path) -> Self {
        Redb::open_with(dir, false)
    }
    fn append(&mut self, first: u64, n: u64, sync: bool) {
        let mut tx = self.db.begin_write().unwrap();
        tx.set_quick_repair(self.quick_repair);
        if !sync {
            tx.set_durability(redb::Durability::None).unwrap();
        }
        {
            let mut t = tx.open_table(TABLE).unwrap();
            for seq in first..first + n {
                t.insert(seq, value(seq).as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn scan(&self, from: u64, n: usize) -> usize {
        use redb::ReadableDatabase;
        let tx = self.db.begin_read().unwrap();
        let t = tx.open_table(TABLE).unwrap();
        t.range(from..)
            .unwrap()
            .take(n)
            .map(|kv| kv.unwrap().1.value().len())
            .sum()
    }
    fn delete_range(&mut self, from: u64, to: u64) {
        let mut tx = self.db.begin_write().unwrap();
        tx.set_quick_repair(self.quick_repair);
        {
            let mut t = tx.open_table(TABLE).unwrap();
            t.retain_in(from..to, |_, _| false).unwrap();
        }
        tx.commit().unwrap();
    }
    fn last(&self) -> Option<u64> {
        use redb::{ReadableDatabase, ReadableTable};
        let tx = self.db.begin_read().unwrap();
        let t = tx.open_table(TABLE).unwrap();
        t.last().unwrap().map(|(k, _)| k.value())
    }
}

struct RedbQuick(Redb);

impl Engine for RedbQuick {
    fn open(dir: &Path) -> Self {
        RedbQuick(Redb::open_with(dir, true))
    }
    fn append(&mut self, first: u64, n: u64, sync: bool) {
        self.0.append(first, n, sync)
    }
    fn scan(&self, from: u64, n: usize) -> usize {
        self.0.scan(from, n)
    }
    fn delete_range(&mut self, from: u64, to: u64) {
        self.0.delete_range(from, to)
    }
    fn last(&self) -> Option<u64> {
        self.0.last()
    }
}

struct Fjall {
    db: fjall::Database,
    ks: fjall::Keyspace,
}

impl Engine for Fjall {
    fn open(dir: &Path) -> Self {
        let db = fjall::Database::builder(dir).open().unwrap();
        let ks = db
            .keyspace("log", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        Fjall { db, ks }
    }
    fn append(&mut self, first: u64, n: u64, sync: bool) {
        let mode = if sync {
            Some(fjall::PersistMode::SyncData)
        } else {
            None
        };
        let mut b = self.db.batch().durability(mode);
        for seq in first..first + n {
            b.insert(&self.ks, seq.to_be_bytes(), value(seq));
        }
        b.commit().unwrap();
    }
    fn scan(&self, from: u64, n: usize) -> usize {
        self.ks
            .range(from.to_be_bytes()..)
            .take(n)
            .map(|g| g.into_inner().unwrap().1.len())
            .sum()
    }
    fn delete_range(&mut self, from: u64, to: u64) {
        let mut b = self
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncData));
        for seq in from..to {
            // Keys are written once and never overwritten, so a single-delete tombstone is
            // enough and compacts away sooner.
            b.remove_weak(&self.ks, seq.to_be_bytes());
        }
        b.commit().unwrap();
    }
    fn last(&self) -> Option<u64> {
        self.ks.last_key_value().map(|g| {
            let k = g.key().unwrap();
            u64::from_be_bytes(k.as_ref().try_into().unwrap())
        })
    }
}

fn report(name: &str, value: f64, unit: &str) {
    println!("{name} {value:.1} {unit}");
}

fn run<E: Engine>(dir: &Path, engine: &str) {
    let _ = std::fs::remove_dir_all(dir);
    // 1. Group commits with fdatasync, on an empty store.
    {
        let mut e = E::open(&dir.join("g"));
        let mut seq = 1;
        for (group, commits) in [(1u64, 2000u64), (16, 1000), (256, 300)] {
            let t = Instant::now();
            for _ in 0..commits {
                e.append(seq, group, true);
                seq += group;
            }
            let s = t.elapsed().as_secs_f64();
            report(
                &format!("append_g{group}"),
                (group * commits) as f64 / s,
                "rec/s",
            );
            report(&format!("commit_g{group}"), commits as f64 / s, "commits/s");
        }
    }
    // 2. Load 1M records (groups of 256, fsync only at the end, as a fast fill).
    let big = dir.join("big");
    {
        let mut e = E::open(&big);
        let t = Instant::now();
        let mut seq = 1;
        while seq <= LOADED {
            let n = 256.min(LOADED + 1 - seq);
            e.append(seq, n, seq + n > LOADED);
            seq += n;
        }
        report("load_1m", t.elapsed().as_secs_f64(), "s");
        report("disk_1m", E::disk_bytes(&big) as f64 / 1e6, "MB");
        // 3. Seek + scan 100 forward, 10k random positions.
        let mut x = 12345u64;
        let t = Instant::now();
        let mut bytes = 0;
        for _ in 0..10_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            bytes += e.scan(1 + (x >> 11) % (LOADED - 100), 100);
        }
        report(
            "seek_scan100",
            t.elapsed().as_secs_f64() * 1e6 / 10_000.0,
            "us",
        );
        assert!(bytes > 0);
        // 4. Replay: scan 100k forward from the middle.
        let t = Instant::now();
        let b = e.scan(LOADED / 2, 100_000);
        report("scan_100k", t.elapsed().as_secs_f64() * 1e3, "ms");
        assert!(b > 100_000 * 100);
        // 5. Trim the first 200k in batches of 10k, then check appends and seeks still run.
        let t = Instant::now();
        for from in (1..200_001).step_by(10_000) {
            e.delete_range(from, from + 10_000);
        }
        report(
            "trim_10k_batch",
            t.elapsed().as_secs_f64() * 1e3 / 20.0,
            "ms",
        );
        let t = Instant::now();
        let b = e.scan(200_001, 100);
        report("seek_after_trim", t.elapsed().as_secs_f64() * 1e6, "us");
        assert!(b > 0);
        let t = Instant::now();
        for i in 0..100 {
            e.append(LOADED + 1 + i * 16, 16, true);
        }
        report(
            "append_g16_after_trim",
            1600.0 / t.elapsed().as_secs_f64(),
            "rec/s",
        );
    }
    // 6. Reopen after a clean close.
    let t = Instant::now();
    let e = E::open(&big);
    let last = e.last();
    report("reopen_clean", t.elapsed().as_secs_f64() * 1e3, "ms");
    assert_eq!(last, Some(LOADED + 1600));
    drop(e);
    // 7. Reopen after kill -9 of a process that was committing.
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([engine, big.to_str().unwrap(), "crash-child"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    let t = Instant::now();
    let e = E::open(&big);
    let last = e.last();
    report("reopen_after_kill", t.elapsed().as_secs_f64() * 1e3, "ms");
    assert!(last.unwrap() > LOADED + 1600);
    drop(e);
    let _ = std::fs::remove_dir_all(dir);
}

fn crash_child<E: Engine>(dir: &Path) {
    let mut e = E::open(dir);
    let mut seq = e.last().unwrap() + 1;
    let mut said = false;
    loop {
        e.append(seq, 16, true);
        seq += 16;
        if !said {
            println!("ready");
            std::io::stdout().flush().unwrap();
            said = true;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(engine), Some(dir)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: engine_bench <redb|redb-quick|fjall> <dir> [crash-child]");
        std::process::exit(2);
    };
    let dir = PathBuf::from(dir);
    let child = args.get(3).is_some_and(|a| a == "crash-child");
    match (engine.as_str(), child) {
        ("redb", false) => run::<Redb>(&dir, engine),
        ("redb", true) => crash_child::<Redb>(&dir),
        ("redb-quick", false) => run::<RedbQuick>(&dir, engine),
        ("redb-quick", true) => crash_child::<RedbQuick>(&dir),
        ("fjall", false) => run::<Fjall>(&dir, engine),
        ("fjall", true) => crash_child::<Fjall>(&dir),
        _ => {
            eprintln!("unknown engine {engine}");
            std::process::exit(2);
        }
    }
}
