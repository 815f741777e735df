//! [`Log`]: the durable, append-only event log in a data directory, on redb.
//!
//! One redb file (`log.redb`) holds four tables:
//!
//! - `log`: seq (u64) -> encoded [`Record`]. Seqs are consecutive from 1 and never reused, so
//!   "replay after seq N" is a B-tree seek, and "keep the last N" is arithmetic.
//! - `meta`: format version, the store's `epoch` (unix ms when the directory was created, so
//!   hub ids `#{epoch}-{seq}` stay valid across restarts), `next_seq` (kept even when retention
//!   empties the log, so seqs never go back), and the retained byte count.
//! - `by_publisher_id`: publisher id -> seq, for `Last-Event-ID` replay from a publisher's id;
//!   trimmed together with its record.
//! - `latest_per_topic`: topic -> (seq, a copy of the record). The retained state of a topic is
//!   served from here with one lookup, and it outlives log retention on purpose: a topic's
//!   current value should not vanish because older history was trimmed.
//!
//! Every append is one redb write transaction whose records are first written, as one synced
//! group, to the journal next to the file ([`crate::journal`], `log.journal`); the redb commit
//! that follows is an in-memory one. When the journal is full, that append's commit is a
//! durable one instead (a *checkpoint*: fdatasync, redb's checksummed commit slots make one torn
//! by a crash invisible) and the journal starts over; retention's commits are checkpoints too.
//! On open, redb comes back at its last checkpoint and the journal's records since then are
//! replayed into it in one durable commit. All of a transaction's rows (log, indexes, meta)
//! land together or not at all, so the indexes never point at a missing or half record.
//!
//! A failed write (disk full, I/O error) leaves redb refusing all I/O until it is reopened, so
//! the log marks itself broken and reopens the file before the next operation; until space
//! returns that reopen fails with the same typed error, and afterwards the log simply works.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::backend::{Backend, FaultInjector};
use crate::error::engine;
use crate::journal::Journal;
use crate::record::now_ms;
use crate::{Record, StoreError, StoredRecord};

const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const BY_PUBLISHER: TableDefinition<'_, &str, u64> = TableDefinition::new("by_publisher_id");
const LATEST: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("latest_per_topic");

/// The data file inside the data directory.
pub const DATA_FILE: &str = "log.redb";
const FORMAT: u64 = 1;

/// When an append counts as done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Each append's journal write is synced before it returns: acknowledged means durable.
    /// The default.
    #[default]
    Fsync,
    /// Journal writes reach the OS but are not synced: a process crash loses nothing, a power
    /// loss or kernel crash may lose the latest appends (never half of one). For benchmarks and
    /// throwaway hubs.
    Buffered,
}

/// How [`Log::open`] sets up the log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// See [`Durability`]; default [`Durability::Fsync`].
    pub durability: Durability,
    /// redb page cache in bytes; `None` keeps redb's default.
    pub cache_bytes: Option<usize>,
    /// Records deleted per retention transaction (default 1,024): small enough that an append
    /// waiting behind a trim batch waits about a millisecond.
    pub trim_batch: usize,
    /// Makes writes fail on demand (tests of the full-disk path).
    pub fault_injector: Option<FaultInjector>,
    /// Size of the preallocated journal (default 8 MiB). A checkpoint (one durable B-tree
    /// commit, which holds up appends while it syncs what the in-memory commits wrote: about
    /// 12-16 ms at 8 MiB on the bench machine, 25-55 ms at 32 MiB) runs each time it fills,
    /// and a crash replays at most this much on open.
    pub journal_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            durability: Durability::Fsync,
            cache_bytes: None,
            trim_batch: 1024,
            fault_injector: None,
            journal_bytes: 8 << 20,
        }
    }
}

/// What to keep; a record goes when any limit says so. All `None` keeps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetainPolicy {
    /// Keep at most this many newest records.
    pub count: Option<u64>,
    /// Drop records published longer ago than this.
    pub age: Option<Duration>,
    /// Keep the newest records whose encoded sizes sum to at most this.
    pub bytes: Option<u64>,
}

/// What a [`Log::trim`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrimReport {
    /// Records deleted.
    pub removed: u64,
    /// Write transactions used (each short, so appends interleave).
    pub batches: u32,
    /// The oldest retained seq afterwards.
    pub first_seq: u64,
}

/// The durable event log. Cheap to clone (an `Arc`); reads run concurrently with writes.
#[derive(Debug, Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    options: LogOptions,
    /// `None` only while a broken engine is being reopened (or its reopen failed).
    db: RwLock<Option<Arc<Database>>>,
    /// A write failed: the engine must be reopened before it is used again.
    broken: AtomicBool,
    reopen: Mutex<()>,
    /// The journal, held for a whole write transaction plus the counter update after it, so
    /// the journal's order is the log's and the in-memory counters always match the last commit
    /// (redb serialises writers too, but releases its lock at commit, before we could update
    /// the counters). Lock order: `reopen`, `db`, then this.
    writer: Mutex<Journal>,
    counters: Mutex<Counters>,
    epoch: u64,
}

#[derive(Debug, Clone, Copy)]
struct Counters {
    next_seq: u64,
    first_seq: u64,
    bytes: u64,
}

/// One append of a batch: a ready record, or one built once its seq is known (the hub puts the
/// seq into the frame's `id:` line).
pub(crate) enum Item {
    Ready(Record),
    Make(Box<dyn FnOnce(u64) -> Record + Send>),
}

impl Log {
    /// Opens the log in `dir`, creating the directory and an empty log (with a new epoch) if
    /// needed. A commit torn by a crash is dropped here; damage the engine cannot repair is a
    /// [`StoreError::Corrupt`], never a panic.
    pub fn open(dir: impl AsRef<Path>, options: LogOptions) -> Result<Log, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::io("creating the data directory", &e))?;
        let db = open_db(&dir, &options)?;
        let (epoch, counters) = init(&db)?;
        let mut journal = Journal::open(
            &dir,
            options.journal_bytes,
            options.durability,
            options.fault_injector.clone().unwrap_or_default(),
        )?;
        let counters = replay_journal(&db, &mut journal, counters)?;
        Ok(Log {
            inner: Arc::new(Inner {
                dir,
                options,
                db: RwLock::new(Some(Arc::new(db))),
                broken: AtomicBool::new(false),
                reopen: Mutex::new(()),
                writer: Mutex::new(journal),
                counters: Mutex::new(counters),
                epoch,
            }),
        })
    }

    /// The store id, fixed when the data directory was created (unix ms). Hub-assigned ids are
    /// `#{epoch}-{seq}`.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Whether appends wait for synced writes ([`Durability::Fsync`]).
    pub(crate) fn syncs(&self) -> bool {
        self.inner.options.durability == Durability::Fsync
    }

    /// The oldest retained seq (== [`Log::next_seq`] when nothing is retained).
    pub fn first_seq(&self) -> u64 {
        self.inner.counters.lock().first_seq
    }

    /// The seq the next append gets.
    pub fn next_seq(&self) -> u64 {
        self.inner.counters.lock().next_seq
    }

    /// Records retained.
    pub fn len(&self) -> u64 {
        let c = self.inner.counters.lock();
        c.next_seq - c.first_seq
    }

    /// Whether nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sum of the encoded sizes of the retained records (what byte retention limits).
    pub fn retained_bytes(&self) -> u64 {
        self.inner.counters.lock().bytes
    }

    /// Appends records as one transaction and returns their seqs, in order. Durable on return
    /// with [`Durability::Fsync`]. All or nothing: a publisher id that is already retained (or
    /// repeated in the batch) fails the whole batch with [`StoreError::DuplicatePublisherId`].
    pub fn append_batch(&self, records: &[Record]) -> Result<Vec<u64>, StoreError> {
        let items = records.iter().cloned().map(Item::Ready).collect();
        let outcomes = self.write_items(items, true)?;
        outcomes.into_iter().map(|o| o.map(|r| r.seq)).collect()
    }

    /// Appends one record (one transaction, one fsync); prefer [`crate::GroupCommitter`] when
    /// many tasks append.
    pub fn append(&self, record: Record) -> Result<u64, StoreError> {
        let mut seqs = self.append_batch(std::slice::from_ref(&record))?;
        seqs.pop().ok_or(StoreError::Closed)
    }

    /// Writes `items` in one transaction. Per-item refusals (duplicate publisher id, too large)
    /// come back per item; with `all_or_nothing` the first one aborts the batch instead.
    pub(crate) fn write_items(
        &self,
        items: Vec<Item>,
        all_or_nothing: bool,
    ) -> Result<Vec<Result<StoredRecord, StoreError>>, StoreError> {
        let db = self.db()?;
        let mut journal = self.inner.writer.lock();
        let start = *self.inner.counters.lock();
        let res = write_txn(
            &db,
            start,
            items,
            all_or_nothing,
            Commit::Journaled(&mut journal),
        );
        match res {
            Ok((out, next_seq, bytes, engine_failed)) => {
                let mut c = self.inner.counters.lock();
                c.next_seq = next_seq;
                c.bytes = bytes;
                if let Some(e) = engine_failed {
                    // The group is durable in the journal (so it is acknowledged), but the
                    // B-tree did not take it: reopening replays it from the journal.
                    tracing::warn!(error = %e, "log commit failed after the journal write; reopening before the next use");
                    self.inner.broken.store(true, Ordering::SeqCst);
                }
                Ok(out)
            }
            Err(e) => {
                if e.needs_reopen() {
                    tracing::warn!(error = %e, "log write failed; reopening before the next use");
                    self.inner.broken.store(true, Ordering::SeqCst);
                }
                Err(e)
            }
        }
    }

    /// Up to `limit` records with `seq >= from`, oldest first: a B-tree seek, then a forward
    /// scan. Starts at [`Log::first_seq`] when `from` is older than what is retained (check it
    /// to tell the subscriber about the gap).
    pub fn read_from(&self, from: u64, limit: usize) -> Result<Vec<StoredRecord>, StoreError> {
        let db = self.db()?;
        let ctx = "reading the log";
        let tx = db.begin_read().map_err(|e| engine(ctx, e))?;
        let t = tx.open_table(LOG).map_err(|e| engine(ctx, e))?;
        let mut out = Vec::with_capacity(limit.min(4096));
        for kv in t.range(from..).map_err(|e| engine(ctx, e))?.take(limit) {
            let (k, v) = kv.map_err(|e| engine(ctx, e))?;
            let seq = k.value();
            out.push(StoredRecord {
                seq,
                record: Record::decode(seq, v.value())?,
            });
        }
        Ok(out)
    }

    /// The record at `seq`, if retained.
    pub fn get(&self, seq: u64) -> Result<Option<StoredRecord>, StoreError> {
        Ok(self.read_from(seq, 1)?.pop().filter(|r| r.seq == seq))
    }

    /// The seq of the retained record with this publisher id (an index lookup).
    pub fn seq_of_publisher_id(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let db = self.db()?;
        let ctx = "reading the publisher id index";
        let tx = db.begin_read().map_err(|e| engine(ctx, e))?;
        let t = tx.open_table(BY_PUBLISHER).map_err(|e| engine(ctx, e))?;
        Ok(t.get(id).map_err(|e| engine(ctx, e))?.map(|v| v.value()))
    }

    /// The latest record published to `topic` (one index lookup), even if the log itself no
    /// longer retains it.
    pub fn latest_for_topic(&self, topic: &str) -> Result<Option<StoredRecord>, StoreError> {
        let db = self.db()?;
        let ctx = "reading the latest-per-topic index";
        let tx = db.begin_read().map_err(|e| engine(ctx, e))?;
        let t = tx.open_table(LATEST).map_err(|e| engine(ctx, e))?;
        let Some(v) = t.get(topic).map_err(|e| engine(ctx, e))? else {
            return Ok(None);
        };
        decode_latest(v.value()).map(Some)
    }

    /// The latest record of every topic `matches` accepts, each record once (a multi-topic
    /// record may be the latest of several), oldest first. Walks the topic index, not the log:
    /// for URI-template and `*` selectors; exact topics are cheaper with
    /// [`Log::latest_for_topic`].
    pub fn latest_matching(
        &self,
        mut matches: impl FnMut(&str) -> bool,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let db = self.db()?;
        let ctx = "reading the latest-per-topic index";
        let tx = db.begin_read().map_err(|e| engine(ctx, e))?;
        let t = tx.open_table(LATEST).map_err(|e| engine(ctx, e))?;
        let mut found = BTreeMap::new();
        for kv in t.iter().map_err(|e| engine(ctx, e))? {
            let (k, v) = kv.map_err(|e| engine(ctx, e))?;
            if matches(k.value()) {
                let r = decode_latest(v.value())?;
                found.entry(r.seq).or_insert(r);
            }
        }
        Ok(found.into_values().collect())
    }

    /// Deletes the oldest records beyond `policy`, in transactions of
    /// [`LogOptions::trim_batch`] records, releasing the writer between them so appends
    /// interleave. Returns once nothing more is due.
    pub fn trim(&self, policy: &RetainPolicy) -> Result<TrimReport, StoreError> {
        self.trim_at(policy, now_ms())
    }

    /// [`Log::trim`] with an explicit clock (unix ms), for tests and replays.
    pub fn trim_at(&self, policy: &RetainPolicy, now_ms: u64) -> Result<TrimReport, StoreError> {
        let mut report = TrimReport {
            first_seq: self.first_seq(),
            ..TrimReport::default()
        };
        if policy.count.is_none() && policy.age.is_none() && policy.bytes.is_none() {
            return Ok(report);
        }
        let min_ms = policy
            .age
            .map(|a| now_ms.saturating_sub(a.as_millis() as u64));
        let batch = self.inner.options.trim_batch.max(1);
        loop {
            let removed = {
                let db = self.db()?;
                let mut journal = self.inner.writer.lock();
                let start = *self.inner.counters.lock();
                match trim_txn(
                    &db,
                    self.inner.options.durability,
                    start,
                    policy,
                    min_ms,
                    batch,
                ) {
                    Ok((removed, first_seq, bytes)) => {
                        let mut c = self.inner.counters.lock();
                        c.first_seq = first_seq;
                        c.bytes = bytes;
                        if removed > 0 && self.inner.options.durability == Durability::Fsync {
                            // A durable commit holds every append before it: a checkpoint.
                            journal.reset();
                        }
                        removed
                    }
                    Err(e) => {
                        if e.needs_reopen() {
                            self.inner.broken.store(true, Ordering::SeqCst);
                        }
                        return Err(e);
                    }
                }
            };
            if removed == 0 {
                break;
            }
            report.removed += removed;
            report.batches += 1;
            if removed < batch as u64 {
                break;
            }
        }
        report.first_seq = self.first_seq();
        Ok(report)
    }

    /// Makes everything appended so far durable in the B-tree itself (one durable commit) and
    /// starts the journal over, so that the next open has nothing to replay. The group
    /// committer does this when it shuts down.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let ctx = "checkpointing the log";
        let db = self.db()?;
        let mut journal = self.inner.writer.lock();
        let res = db
            .begin_write()
            .map_err(|e| engine(ctx, e))
            .and_then(|tx| tx.commit().map_err(|e| engine(ctx, e)));
        match res {
            Ok(()) => {
                journal.reset();
                Ok(())
            }
            Err(e) => {
                if e.needs_reopen() {
                    self.inner.broken.store(true, Ordering::SeqCst);
                }
                Err(e)
            }
        }
    }

    /// The engine handle, reopening it first if a write failed.
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        if self.inner.broken.load(Ordering::SeqCst) {
            self.reopen()?;
        }
        self.inner
            .db
            .read()
            .clone()
            .ok_or_else(|| StoreError::Unavailable("the data file is being reopened".into()))
    }

    fn reopen(&self) -> Result<(), StoreError> {
        let _one = self.inner.reopen.lock();
        if !self.inner.broken.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut slot = self.inner.db.write();
        if let Some(mut old) = slot.take() {
            // redb holds a file lock until the old handle is dropped; readers keep a clone only
            // for the duration of one read, so wait for them briefly.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still_shared) if Instant::now() < deadline => {
                        old = still_shared;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(still_shared) => {
                        *slot = Some(still_shared);
                        return Err(StoreError::Unavailable(
                            "readers still hold the failed data file".into(),
                        ));
                    }
                }
            }
        }
        let db = open_db(&self.inner.dir, &self.inner.options)?;
        let (_, counters) = init(&db)?;
        let counters = replay_journal(&db, &mut self.inner.writer.lock(), counters)?;
        *self.inner.counters.lock() = counters;
        *slot = Some(Arc::new(db));
        self.inner.broken.store(false, Ordering::SeqCst);
        tracing::info!("log reopened after a failed write");
        Ok(())
    }
}

fn open_db(dir: &Path, options: &LogOptions) -> Result<Database, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(DATA_FILE))
        .map_err(|e| StoreError::io("opening the data file", &e))?;
    let backend = Backend::new(file, options.fault_injector.clone().unwrap_or_default())
        .map_err(|e| engine("opening the data file", e))?;
    let mut builder = redb::Builder::new();
    if let Some(bytes) = options.cache_bytes {
        builder.set_cache_size(bytes);
    }
    // redb documents that opening an altered file "may panic"; a panic must not take the hub
    // down, so it becomes a typed error. Nothing is shared across the boundary but the builder.
    match catch_unwind(AssertUnwindSafe(|| builder.create_with_backend(backend))) {
        Ok(res) => res.map_err(|e| engine("opening the data file", e)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the engine panicked".into());
            Err(StoreError::Corrupt(format!("while opening: {msg}")))
        }
    }
}

/// Creates the tables and meta rows of a new log, checks the format of an existing one, and
/// reads back the epoch and counters.
/// Durable in every mode: the epoch must never change under ids already handed out.
fn init(db: &Database) -> Result<(u64, Counters), StoreError> {
    let ctx = "initialising the log";
    let tx = db.begin_write().map_err(|e| engine(ctx, e))?;
    let (epoch, counters) = {
        let mut meta = tx.open_table(META).map_err(|e| engine(ctx, e))?;
        let log = tx.open_table(LOG).map_err(|e| engine(ctx, e))?;
        tx.open_table(BY_PUBLISHER).map_err(|e| engine(ctx, e))?;
        tx.open_table(LATEST).map_err(|e| engine(ctx, e))?;
        let get = |meta: &redb::Table<'_, &str, u64>, k: &str| -> Result<Option<u64>, StoreError> {
            Ok(meta.get(k).map_err(|e| engine(ctx, e))?.map(|v| v.value()))
        };
        match get(&meta, "format")? {
            None => {
                for (k, v) in [
                    ("format", FORMAT),
                    ("epoch", now_ms()),
                    ("next_seq", 1),
                    ("bytes", 0),
                ] {
                    meta.insert(k, v).map_err(|e| engine(ctx, e))?;
                }
            }
            Some(FORMAT) => {}
            Some(other) => return Err(StoreError::Format(format!("log format {other}"))),
        }
        let missing = || StoreError::Corrupt("a meta row is missing".into());
        let epoch = get(&meta, "epoch")?.ok_or_else(missing)?;
        let next_seq = get(&meta, "next_seq")?.ok_or_else(missing)?;
        let bytes = get(&meta, "bytes")?.ok_or_else(missing)?;
        let first_seq = log
            .first()
            .map_err(|e| engine(ctx, e))?
            .map_or(next_seq, |(k, _)| k.value());
        (
            epoch,
            Counters {
                next_seq,
                first_seq,
                bytes,
            },
        )
    };
    tx.commit().map_err(|e| engine(ctx, e))?;
    Ok((epoch, counters))
}

/// Per record its outcome; then the next seq and the retained bytes after the commit; then an
/// error if the B-tree commit failed after the journal had made the group durable.
type Written = (
    Vec<Result<StoredRecord, StoreError>>,
    u64,
    u64,
    Option<StoreError>,
);

/// How [`write_txn`] makes its records durable.
enum Commit<'a> {
    /// Appends: one journal write, then an in-memory B-tree commit; a durable one (a
    /// checkpoint, after which the journal starts over) when the group does not fit.
    Journaled(&'a mut Journal),
    /// The journal's records at open: nothing is refused (they were accepted once, in this
    /// order), one durable commit.
    Replay,
}

fn write_txn(
    db: &Database,
    start: Counters,
    items: Vec<Item>,
    all_or_nothing: bool,
    mut commit: Commit<'_>,
) -> Result<Written, StoreError> {
    let ctx = "appending to the log";
    let replay = matches!(commit, Commit::Replay);
    let tx = db.begin_write().map_err(|e| engine(ctx, e))?;
    let mut frames: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut next = start.next_seq;
    let mut bytes = start.bytes;
    let mut out = Vec::with_capacity(items.len());
    {
        let mut log = tx.open_table(LOG).map_err(|e| engine(ctx, e))?;
        let mut meta = tx.open_table(META).map_err(|e| engine(ctx, e))?;
        let mut by_pub = tx.open_table(BY_PUBLISHER).map_err(|e| engine(ctx, e))?;
        let mut latest = tx.open_table(LATEST).map_err(|e| engine(ctx, e))?;
        let mut latest_val = Vec::new();
        for item in items {
            let record = match item {
                Item::Ready(r) => r,
                Item::Make(make) => make(next),
            };
            // A refused record takes no seq: the next one gets `next`, so seqs stay consecutive.
            let refusal = match &record.publisher_id {
                // The index reads this transaction's own inserts, so duplicates inside the batch
                // are caught too.
                Some(pid)
                    if !replay
                        && by_pub
                            .get(pid.as_str())
                            .map_err(|e| engine(ctx, e))?
                            .is_some() =>
                {
                    Some(StoreError::DuplicatePublisherId(pid.clone()))
                }
                _ => None,
            };
            let encoded = match refusal {
                Some(e) => Err(e),
                None => record.encode(),
            };
            let encoded = match encoded {
                Ok(v) => v,
                Err(e) if all_or_nothing => return Err(e),
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            log.insert(next, encoded.as_slice())
                .map_err(|e| engine(ctx, e))?;
            if let Some(pid) = &record.publisher_id {
                by_pub
                    .insert(pid.as_str(), next)
                    .map_err(|e| engine(ctx, e))?;
            }
            latest_val.clear();
            latest_val.extend_from_slice(&next.to_le_bytes());
            latest_val.extend_from_slice(&encoded);
            for topic in &record.topics {
                latest
                    .insert(topic.as_str(), latest_val.as_slice())
                    .map_err(|e| engine(ctx, e))?;
            }
            bytes += encoded.len() as u64;
            out.push(Ok(StoredRecord { seq: next, record }));
            if !replay {
                frames.push((next, encoded));
            }
            next += 1;
        }
        meta.insert("next_seq", next).map_err(|e| engine(ctx, e))?;
        meta.insert("bytes", bytes).map_err(|e| engine(ctx, e))?;
    }
    if next == start.next_seq {
        // Nothing accepted: no reason to pay for a commit.
        tx.abort().map_err(|e| engine(ctx, e))?;
        return Ok((out, next, bytes, None));
    }
    let journal = match &mut commit {
        Commit::Replay => None,
        Commit::Journaled(journal) => {
            let group = Journal::group_bytes(frames.iter().map(|(_, p)| p.len()));
            journal.fits(group).then_some(journal)
        }
    };
    let Some(journal) = journal else {
        // Replay, or a full journal: this commit is the checkpoint.
        tx.commit().map_err(|e| engine(ctx, e))?;
        if let Commit::Journaled(journal) = commit {
            journal.reset();
        }
        return Ok((out, next, bytes, None));
    };
    if let Err(e) = journal.append(frames.iter().map(|(s, p)| (*s, p.as_slice()))) {
        // Nothing of the group is kept: the transaction goes, the journal region is cleared.
        let _ = tx.abort();
        return Err(e);
    }
    let mut tx = tx;
    let engine_failed = tx
        .set_durability(redb::Durability::None)
        .map_err(|e| engine(ctx, e))
        .and_then(|()| tx.commit().map_err(|e| engine(ctx, e)))
        .err();
    Ok((out, next, bytes, engine_failed))
}

/// Brings `db` (opened at its last checkpoint, whose counters are `counters`) up to date with
/// the journal: its records since that checkpoint go in with one durable commit, and the
/// journal starts over.
fn replay_journal(
    db: &Database,
    journal: &mut Journal,
    counters: Counters,
) -> Result<Counters, StoreError> {
    // A failed write's frames (it may have reached the disk although it reported failure, and
    // its seqs were handed out again) must not come back.
    journal.zero_failed_region()?;
    let frames = journal.recover(counters.next_seq)?;
    if frames.is_empty() {
        journal.reset();
        return Ok(counters);
    }
    let n = frames.len();
    let items = frames
        .into_iter()
        .map(|(seq, payload)| Record::decode(seq, &payload).map(Item::Ready))
        .collect::<Result<Vec<_>, _>>()?;
    let (out, next_seq, bytes, _) = write_txn(db, counters, items, true, Commit::Replay)?;
    debug_assert_eq!(out.len(), n);
    journal.reset();
    tracing::info!(
        records = n,
        next_seq,
        "log replayed the journal's records since the last checkpoint"
    );
    Ok(Counters {
        next_seq,
        bytes,
        ..counters
    })
}

/// One retention batch: deletes up to `batch` of the oldest records that `policy` no longer
/// keeps. Returns (removed, new first seq, retained bytes).
fn trim_txn(
    db: &Database,
    durability: Durability,
    start: Counters,
    policy: &RetainPolicy,
    min_ms: Option<u64>,
    batch: usize,
) -> Result<(u64, u64, u64), StoreError> {
    let ctx = "trimming the log";
    let mut tx = db.begin_write().map_err(|e| engine(ctx, e))?;
    if durability == Durability::Buffered {
        tx.set_durability(redb::Durability::None)
            .map_err(|e| engine(ctx, e))?;
    }
    let mut bytes = start.bytes;
    let mut cut = start.first_seq;
    {
        let mut log = tx.open_table(LOG).map_err(|e| engine(ctx, e))?;
        let mut by_pub = tx.open_table(BY_PUBLISHER).map_err(|e| engine(ctx, e))?;
        let mut meta = tx.open_table(META).map_err(|e| engine(ctx, e))?;
        let mut dead_ids = Vec::new();
        for kv in log
            .range(start.first_seq..)
            .map_err(|e| engine(ctx, e))?
            .take(batch)
        {
            let (k, v) = kv.map_err(|e| engine(ctx, e))?;
            let seq = k.value();
            let value = v.value();
            let (pid, published_ms) = Record::peek(seq, value)?;
            let over_count = policy
                .count
                .is_some_and(|n| start.next_seq.saturating_sub(seq) > n);
            let too_old = min_ms.is_some_and(|min| published_ms < min);
            let too_big = policy.bytes.is_some_and(|max| bytes > max);
            // Records are in publish order, so the first one every limit keeps ends the prefix.
            if !(over_count || too_old || too_big) {
                break;
            }
            if let Some(pid) = pid {
                dead_ids.push((pid.to_owned(), seq));
            }
            bytes -= (value.len() as u64).min(bytes);
            cut = seq + 1;
        }
        if cut == start.first_seq {
            drop((log, by_pub, meta));
            tx.abort().map_err(|e| engine(ctx, e))?;
            return Ok((0, start.first_seq, start.bytes));
        }
        for (pid, seq) in dead_ids {
            // Only if the index still points at this record (ids may be reused after trim).
            let current = by_pub
                .get(pid.as_str())
                .map_err(|e| engine(ctx, e))?
                .map(|v| v.value());
            if current == Some(seq) {
                by_pub.remove(pid.as_str()).map_err(|e| engine(ctx, e))?;
            }
        }
        log.retain_in(start.first_seq..cut, |_, _| false)
            .map_err(|e| engine(ctx, e))?;
        meta.insert("bytes", bytes).map_err(|e| engine(ctx, e))?;
    }
    tx.commit().map_err(|e| engine(ctx, e))?;
    Ok((cut - start.first_seq, cut, bytes))
}

fn decode_latest(v: &[u8]) -> Result<StoredRecord, StoreError> {
    let (seq, rest) = v.split_at_checked(8).ok_or(StoreError::Decode {
        seq: 0,
        reason: "truncated latest-per-topic entry",
    })?;
    let seq = u64::from_le_bytes(seq.try_into().map_err(|_| StoreError::Decode {
        seq: 0,
        reason: "truncated latest-per-topic entry",
    })?);
    Ok(StoredRecord {
        seq,
        record: Record::decode(seq, rest)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u64) -> Record {
        Record::new(vec!["t".into()], format!("data: {n}\n\n"))
    }

    #[test]
    fn a_reopen_never_replays_a_failed_write_that_reached_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let fault = FaultInjector::new();
        let options = LogOptions {
            fault_injector: Some(fault.clone()),
            ..LogOptions::default()
        };
        let log = Log::open(dir.path(), options).unwrap();
        assert_eq!(log.append_batch(&[rec(1), rec(2)]).unwrap(), vec![1, 2]);
        // Seq 3's group as it would be if its write reached the disk although it reported
        // failure: put there by a second handle at the journal's current position.
        let pos = log.inner.writer.lock().pos();
        let frame = rec(3).encode().unwrap();
        Journal::open(dir.path(), 8 << 20, Durability::Fsync, FaultInjector::new())
            .unwrap()
            .append_at(pos, [(3u64, frame.as_slice())].into_iter())
            .unwrap();
        // The log's own write of it fails, and so does zeroing the region (still full), so the
        // log reopens before its next use, with the frame on disk.
        fault.fail_writes();
        assert!(log.append(rec(3)).is_err());
        fault.heal();
        // The reopen clears the region before it replays: 3 is handed out again, to a new
        // record, and the old one never appears.
        assert_eq!(log.append(rec(33)).unwrap(), 3);
        let all = log.read_from(1, 10).unwrap();
        let frames: Vec<&[u8]> = all.iter().map(|r| &r.record.frame[..]).collect();
        assert_eq!(
            frames,
            vec![&b"data: 1\n\n"[..], b"data: 2\n\n", b"data: 33\n\n"]
        );
    }
}
