//! [`GroupCommitter`]: many concurrent appenders, one transaction and one fsync per group.
//!
//! Appenders send their record through a bounded channel (a full channel makes `append` wait:
//! backpressure, not an unbounded queue) to one writer thread. The writer takes everything that
//! is waiting (up to [`CommitterOptions::max_batch`]), writes it as one transaction, and only
//! after the commit (fsync) returns does it answer each appender with its seq. So an
//! acknowledged record is durable, and while one fsync runs the next group gathers: the busier
//! the log, the more records share each fsync.
//!
//! The writer is a plain thread, not a Tokio task, because commit blocks in fsync; it needs no
//! runtime and exits when the committer is dropped or shut down.
//!
//! An optional hook sees each committed group, in seq order, before anyone is acknowledged:
//! the hub fans out from there, so subscribers only ever see durable updates, in log order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::log::Item;
use crate::{Log, Record, StoreError, StoredRecord};

/// Sizing of a [`GroupCommitter`].
#[derive(Debug, Clone, Copy)]
pub struct CommitterOptions {
    /// Most records in one transaction (default 1,024). 1 gives one fsync per record.
    pub max_batch: usize,
    /// Appends that may wait for the writer before `append` itself waits (default 8,192).
    pub queue: usize,
}

impl Default for CommitterOptions {
    fn default() -> Self {
        CommitterOptions {
            max_batch: 1024,
            queue: 8192,
        }
    }
}

/// Counters of a [`GroupCommitter`] since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitStats {
    /// Transactions committed (each one fsync with [`crate::Durability::Fsync`]).
    pub commits: u64,
    /// Records acknowledged.
    pub records: u64,
    /// Transactions that failed (every record in them got the error).
    pub failed_commits: u64,
    /// Most records in one transaction.
    pub largest_batch: u64,
}

#[derive(Debug, Default)]
struct Stats {
    commits: AtomicU64,
    records: AtomicU64,
    failed_commits: AtomicU64,
    largest_batch: AtomicU64,
}

struct Request {
    item: Item,
    reply: oneshot::Sender<Result<u64, StoreError>>,
}

type Hook = Box<dyn FnMut(&[StoredRecord]) + Send>;

/// Group commit in front of a [`Log`]. Share it with `Arc`; drop it (or
/// [`GroupCommitter::shutdown`]) to stop the writer after what is queued.
#[derive(Debug)]
pub struct GroupCommitter {
    tx: mpsc::Sender<Request>,
    stats: Arc<Stats>,
    done: oneshot::Receiver<()>,
}

impl GroupCommitter {
    /// Starts the writer thread for `log`.
    pub fn new(log: Log, options: CommitterOptions) -> Result<Self, StoreError> {
        Self::start(log, options, None)
    }

    /// Like [`GroupCommitter::new`], and calls `hook` with each committed group (in seq order,
    /// on the writer thread) before the appenders are answered.
    pub fn with_hook(
        log: Log,
        options: CommitterOptions,
        hook: impl FnMut(&[StoredRecord]) + Send + 'static,
    ) -> Result<Self, StoreError> {
        Self::start(log, options, Some(Box::new(hook)))
    }

    fn start(log: Log, options: CommitterOptions, hook: Option<Hook>) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let (done_tx, done) = oneshot::channel();
        let stats = Arc::new(Stats::default());
        let writer = Writer {
            log,
            rx,
            max_batch: options.max_batch.max(1),
            stats: stats.clone(),
            hook,
        };
        std::thread::Builder::new()
            .name("ssehub-store-writer".into())
            .spawn(move || {
                writer.run();
                let _ = done_tx.send(());
            })
            .map_err(|e| StoreError::io("starting the writer thread", &e))?;
        Ok(GroupCommitter { tx, stats, done })
    }

    /// Appends `record`; returns its seq once it is committed (durable with
    /// [`crate::Durability::Fsync`]).
    pub async fn append(&self, record: Record) -> Result<u64, StoreError> {
        self.submit(Item::Ready(record)).await
    }

    /// Appends the record `make` builds from the seq it gets (for frames that carry their own
    /// id). `make` runs on the writer thread, inside the transaction: keep it short.
    pub async fn append_with(
        &self,
        make: impl FnOnce(u64) -> Record + Send + 'static,
    ) -> Result<u64, StoreError> {
        self.submit(Item::Make(Box::new(make))).await
    }

    async fn submit(&self, item: Item) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request { item, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Counters since start.
    pub fn stats(&self) -> CommitStats {
        CommitStats {
            commits: self.stats.commits.load(Ordering::Relaxed),
            records: self.stats.records.load(Ordering::Relaxed),
            failed_commits: self.stats.failed_commits.load(Ordering::Relaxed),
            largest_batch: self.stats.largest_batch.load(Ordering::Relaxed),
        }
    }

    /// Stops taking appends, lets the writer commit what is queued, and waits for it to exit.
    pub async fn shutdown(self) {
        let GroupCommitter { tx, done, .. } = self;
        drop(tx);
        let _ = done.await;
    }
}

struct Writer {
    log: Log,
    rx: mpsc::Receiver<Request>,
    max_batch: usize,
    stats: Arc<Stats>,
    hook: Option<Hook>,
}

impl Writer {
    fn run(mut self) {
        let mut group = Vec::with_capacity(self.max_batch);
        while let Some(first) = self.rx.blocking_recv() {
            group.push(first);
            // Everything that arrived while the previous commit was syncing shares this one.
            while group.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            self.commit(&mut group);
        }
    }

    fn commit(&mut self, group: &mut Vec<Request>) {
        let (items, replies): (Vec<_>, Vec<_>) = group.drain(..).map(|r| (r.item, r.reply)).unzip();
        match self.log.write_items(items, false) {
            Ok(outcomes) => {
                let mut committed = Vec::with_capacity(outcomes.len());
                let mut answers = Vec::with_capacity(outcomes.len());
                for o in outcomes {
                    answers.push(o.as_ref().map(|r| r.seq).map_err(Clone::clone));
                    if let Ok(r) = o {
                        committed.push(r);
                    }
                }
                if !committed.is_empty() {
                    let n = committed.len() as u64;
                    self.stats.commits.fetch_add(1, Ordering::Relaxed);
                    self.stats.records.fetch_add(n, Ordering::Relaxed);
                    self.stats.largest_batch.fetch_max(n, Ordering::Relaxed);
                    if let Some(hook) = &mut self.hook {
                        hook(&committed);
                    }
                }
                for (reply, answer) in replies.into_iter().zip(answers) {
                    // The appender may have given up (its future dropped); nothing to do then.
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                self.stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
