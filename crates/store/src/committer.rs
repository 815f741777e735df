//! [`GroupCommitter`]: many concurrent appenders, one transaction and one synced write per group.
//!
//! Appenders send their record through a bounded channel (a full channel makes `append` wait:
//! backpressure, not an unbounded queue) to one writer thread. The writer takes everything that
//! is waiting (up to [`CommitterOptions::max_batch`]), writes it as one transaction (one synced
//! journal write, see [`crate::Log`]), and only after that returns does it answer each appender
//! with its seq. So an acknowledged record is durable, and while one write syncs the next group
//! gathers: the busier the log, the more records share each sync.
//!
//! The writer is a plain thread, not a Tokio task, because commit blocks in fsync; it needs no
//! runtime and exits when the committer is dropped or shut down.
//!
//! **Linger.** Answering a whole group at once makes its appenders come back together, but not
//! at the same instant: the first of them reaches an idle writer alone, and without care the
//! load splits into a small group and a large one, each paying a full commit (measured with 16
//! HTTP publishers: 6.2 records per commit on average). Every commit costs the same CPU and
//! fsync whatever its size, so the writer waits briefly for the rest when the group it holds is
//! much smaller than the groups it has seen lately (the way PostgreSQL's `commit_delay` waits
//! for `commit_siblings`). The wait ends as soon as enough have arrived, and never lasts longer
//! than a recent commit took or [`CommitterOptions::max_linger`], so a lone appender does not
//! wait at all (its groups are all of size one) and added latency stays under one commit.
//!
//! **Polling while a write syncs.** While a group's synced write is in flight, the publishers
//! in it wait and the hub often has nothing else to do, so its core goes idle; on a virtual
//! machine an idle vCPU halts, and waking it when the write completes (and then the runtime,
//! to answer) costs more than the write's own CPU. Measured on the bench machine, a KVM guest
//! with `guest_halt_poll_ns` = 0 (docs/storage.md, "The write path"): 16 durable publishers
//! went from ~21,000 to ~30,000 publishes/s when the core was kept awake. So, on Linux, a
//! poller thread at `SCHED_IDLE` (it runs only when nothing else on the core wants to) spins
//! while a commit is in flight, at most [`SyncPoller::MAX_SPIN`] per commit, and sleeps
//! otherwise: it spends only time the core would have spent halted, and none when no durable
//! publish is waiting. It is not started under a CPU quota (a container with a CPU limit), where
//! spinning is charged to the quota whatever its priority. [`CommitterOptions::poll_while_syncing`]
//! turns it off.
//!
//! An optional hook sees each committed group, in seq order, before anyone is acknowledged:
//! the hub fans out from there, so subscribers only ever see durable updates, in log order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::log::Item;
use crate::{Log, Record, StoreError, StoredRecord};

/// Sizing of a [`GroupCommitter`].
#[derive(Debug, Clone, Copy)]
pub struct CommitterOptions {
    /// Most records in one transaction (default 1,024). 1 gives one fsync per record.
    pub max_batch: usize,
    /// Appends that may wait for the writer before `append` itself waits (default 8,192).
    pub queue: usize,
    /// Longest the writer waits for more appenders to join a group that is small compared with
    /// recent ones (see the module docs, "Linger"; default 1 ms, zero turns lingering off). The
    /// wait is also capped by how long a recent commit took.
    pub max_linger: Duration,
    /// Keep the core awake while a synced write is in flight (module docs, "Polling while a
    /// write syncs"; default on). Only for [`crate::Durability::Fsync`] logs, only on Linux.
    pub poll_while_syncing: bool,
}

impl Default for CommitterOptions {
    fn default() -> Self {
        CommitterOptions {
            max_batch: 1024,
            queue: 8192,
            max_linger: Duration::from_millis(1),
            poll_while_syncing: true,
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
    /// Times the writer waited for more appenders before committing (see "Linger").
    pub lingers: u64,
}

#[derive(Debug, Default)]
struct Stats {
    commits: AtomicU64,
    records: AtomicU64,
    failed_commits: AtomicU64,
    largest_batch: AtomicU64,
    lingers: AtomicU64,
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
    tx: flume::Sender<Request>,
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
        let (tx, rx) = flume::bounded(options.queue.max(1));
        let (done_tx, done) = oneshot::channel();
        let stats = Arc::new(Stats::default());
        let poller = if options.poll_while_syncing && log.syncs() {
            SyncPoller::start()
        } else {
            None
        };
        let writer = Writer {
            poller,
            log,
            rx,
            max_batch: options.max_batch.max(1),
            stats: stats.clone(),
            hook,
            linger: Linger::new(options.max_linger),
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
            .send_async(Request { item, reply })
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
            lingers: self.stats.lingers.load(Ordering::Relaxed),
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
    poller: Option<SyncPoller>,
    log: Log,
    rx: flume::Receiver<Request>,
    max_batch: usize,
    stats: Arc<Stats>,
    hook: Option<Hook>,
    linger: Linger,
}

impl Writer {
    fn run(mut self) {
        let mut group = Vec::with_capacity(self.max_batch);
        while let Ok(first) = self.rx.recv() {
            group.push(first);
            // Everything that arrived while the previous commit was syncing shares this one.
            self.take_waiting(&mut group);
            let want = self.linger.expected().min(self.max_batch);
            if group.len() < want {
                self.stats.lingers.fetch_add(1, Ordering::Relaxed);
                let deadline = Instant::now() + self.linger.max_wait();
                while group.len() < want {
                    match self.rx.recv_deadline(deadline) {
                        Ok(r) => {
                            group.push(r);
                            self.take_waiting(&mut group);
                        }
                        // Timed out, or every sender is gone: commit what there is.
                        Err(_) => break,
                    }
                }
            }
            let size = group.len();
            let started = Instant::now();
            if let Some(p) = &self.poller {
                p.begin();
            }
            self.commit(&mut group);
            if let Some(p) = &self.poller {
                p.end();
            }
            self.linger.committed(size, started.elapsed());
        }
        // A clean stop leaves nothing for the next open to replay.
        if let Err(e) = self.log.checkpoint() {
            tracing::warn!(error = %e, "log checkpoint at shutdown failed; the next open replays the journal");
        }
        let s = &self.stats;
        tracing::info!(
            commits = s.commits.load(Ordering::Relaxed),
            records = s.records.load(Ordering::Relaxed),
            largest = s.largest_batch.load(Ordering::Relaxed),
            lingers = s.lingers.load(Ordering::Relaxed),
            "log writer stopped"
        );
    }

    fn take_waiting(&self, group: &mut Vec<Request>) {
        while group.len() < self.max_batch {
            match self.rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
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

/// A thread at the lowest scheduling class that spins while a commit is in flight (module
/// docs, "Polling while a write syncs").
struct SyncPoller {
    state: Arc<PollState>,
    thread: std::thread::Thread,
}

#[derive(Default)]
struct PollState {
    /// Incremented when a commit starts and when it ends: odd while one is in flight, and a
    /// value names that commit.
    commits: AtomicU64,
    stop: AtomicBool,
}

impl SyncPoller {
    /// The longest one commit keeps the poller spinning: a synced 4 KiB write takes ~0.2 ms
    /// on the bench machine; a checkpoint or a slow disk should not keep a core busy.
    const MAX_SPIN: Duration = Duration::from_millis(2);

    /// Starts the poller; `None` where the thread cannot run at idle priority (spinning at a
    /// normal one would take CPU from the hub).
    fn start() -> Option<SyncPoller> {
        #[cfg(target_os = "linux")]
        {
            if cpu_quota(&|path| std::fs::read_to_string(path).ok()) {
                tracing::info!(
                    "the process has a CPU quota: the log writer does not poll while syncing"
                );
                return None;
            }
            let state = Arc::new(PollState::default());
            let (ready_tx, ready) = std::sync::mpsc::channel();
            let st = state.clone();
            let handle = std::thread::Builder::new()
                .name("ssehub-syncpoll".into())
                .spawn(move || {
                    use thread_priority::{
                        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
                        set_thread_priority_and_policy, thread_native_id,
                    };
                    let idle = set_thread_priority_and_policy(
                        thread_native_id(),
                        ThreadPriority::Min,
                        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
                    );
                    let ok = idle.is_ok();
                    let _ = ready_tx.send(idle.map_err(|e| format!("{e:?}")));
                    if ok {
                        poll(&st);
                    }
                })
                .ok()?;
            match ready.recv() {
                Ok(Ok(())) => Some(SyncPoller {
                    state,
                    thread: handle.thread().clone(),
                }),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "no SCHED_IDLE: the log writer does not poll while syncing");
                    None
                }
                Err(_) => None,
            }
        }
        #[cfg(not(target_os = "linux"))]
        None
    }

    fn begin(&self) {
        self.state.commits.fetch_add(1, Ordering::AcqRel);
        self.thread.unpark();
    }

    fn end(&self) {
        self.state.commits.fetch_add(1, Ordering::AcqRel);
    }
}

impl Drop for SyncPoller {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Whether a CFS CPU quota applies to this process (cgroup v2 `cpu.max`, v1
/// `cpu.cfs_quota_us`, on its cgroup or an ancestor), as in a container with a CPU limit: time
/// spent spinning counts against the quota even at `SCHED_IDLE`, and would be taken from the
/// hub's own work later in the period. `read` returns a file's contents.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn cpu_quota(read: &dyn Fn(&str) -> Option<String>) -> bool {
    let Some(cgroups) = read("/proc/self/cgroup") else {
        return false;
    };
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        // (mount point, file) pairs where this line's CPU limit would be.
        let places: Vec<(String, &str)> = if controllers.is_empty() {
            vec![("/sys/fs/cgroup".into(), "cpu.max")]
        } else if controllers.split(',').any(|c| c == "cpu") {
            vec![
                (format!("/sys/fs/cgroup/{controllers}"), "cpu.cfs_quota_us"),
                ("/sys/fs/cgroup/cpu".into(), "cpu.cfs_quota_us"),
            ]
        } else {
            continue;
        };
        for (mount, file) in places {
            // The cgroup itself, then each ancestor up to the root.
            let mut dir = path.trim_end_matches('/').to_string();
            loop {
                if let Some(v) = read(&format!("{mount}{dir}/{file}")) {
                    let v = v.trim();
                    let limited = match file {
                        "cpu.max" => v.split_whitespace().next().is_some_and(|q| q != "max"),
                        _ => v.parse::<i64>().is_ok_and(|q| q > 0),
                    };
                    if limited {
                        return true;
                    }
                }
                match dir.rfind('/') {
                    Some(i) => dir.truncate(i),
                    None => break,
                }
            }
        }
    }
    false
}

#[cfg(target_os = "linux")]
fn poll(state: &PollState) {
    // The commit this thread last spun for: once it has, it sleeps until the next one.
    let mut spun_for = 0;
    while !state.stop.load(Ordering::Acquire) {
        let commit = state.commits.load(Ordering::Acquire);
        if commit.is_multiple_of(2) || commit == spun_for {
            std::thread::park();
            continue;
        }
        spun_for = commit;
        let until = Instant::now() + SyncPoller::MAX_SPIN;
        while state.commits.load(Ordering::Acquire) == commit && Instant::now() < until {
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
    }
}

/// The writer's estimate of how many appenders publish together and how long a commit takes,
/// which decide whether and how long it lingers (see the module docs).
#[derive(Debug)]
struct Linger {
    max: Duration,
    /// The largest recent group, decaying by [`Linger::DECAY`] per commit so that the estimate
    /// follows the load down within a few dozen commits.
    peak: f64,
    /// Moving average of commit durations, in seconds.
    commit_secs: f64,
}

impl Linger {
    const DECAY: f64 = 0.9;
    /// The share of the recent peak worth waiting for: the stragglers past it would cost more
    /// waiting than a commit of their own.
    const SHARE: f64 = 0.75;

    fn new(max: Duration) -> Self {
        Linger {
            max,
            peak: 1.0,
            commit_secs: 0.0,
        }
    }

    /// How many records a group should hold before it commits without waiting.
    fn expected(&self) -> usize {
        if self.max.is_zero() {
            return 1;
        }
        ((self.peak * Self::SHARE) as usize).max(1)
    }

    /// The longest the writer waits for the group to fill.
    fn max_wait(&self) -> Duration {
        Duration::from_secs_f64(self.commit_secs).min(self.max)
    }

    fn committed(&mut self, size: usize, took: Duration) {
        self.peak = (self.peak * Self::DECAY).max(size as f64);
        let took = took.as_secs_f64();
        self.commit_secs = if self.commit_secs == 0.0 {
            took
        } else {
            0.8 * self.commit_secs + 0.2 * took
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_appender_never_waits() {
        let mut l = Linger::new(Duration::from_millis(1));
        for _ in 0..100 {
            assert_eq!(l.expected(), 1);
            l.committed(1, Duration::from_micros(300));
        }
    }

    #[test]
    fn waits_for_most_of_a_recent_peak_and_follows_the_load_down() {
        let mut l = Linger::new(Duration::from_millis(1));
        l.committed(16, Duration::from_micros(300));
        assert_eq!(l.expected(), 12);
        assert_eq!(l.max_wait(), Duration::from_micros(300));
        // The load drops to one appender: within a few dozen commits it stops waiting.
        let mut commits = 0;
        while l.expected() > 1 {
            l.committed(1, Duration::from_micros(300));
            commits += 1;
            assert!(
                commits < 30,
                "still waiting for {} after {commits}",
                l.expected()
            );
        }
    }

    fn files(map: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: Vec<(String, String)> = map
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |path: &str| map.iter().find(|(k, _)| k == path).map(|(_, v)| v.clone())
    }

    #[test]
    fn a_cpu_quota_on_the_cgroup_or_an_ancestor_is_found() {
        let v2 = "0::/kubepods/pod1/ctr\n";
        // cgroup v2: a quota on the container, on an ancestor, or none ("max").
        assert!(cpu_quota(&files(&[
            ("/proc/self/cgroup", v2),
            ("/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "50000 100000\n"),
        ])));
        assert!(cpu_quota(&files(&[
            ("/proc/self/cgroup", v2),
            ("/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "max 100000\n"),
            ("/sys/fs/cgroup/kubepods/pod1/cpu.max", "200000 100000\n"),
        ])));
        assert!(!cpu_quota(&files(&[
            ("/proc/self/cgroup", v2),
            ("/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "max 100000\n"),
        ])));
        // Inside a container's namespace the cgroup is "/" and its files are at the top.
        assert!(cpu_quota(&files(&[
            ("/proc/self/cgroup", "0::/\n"),
            ("/sys/fs/cgroup/cpu.max", "100000 100000\n"),
        ])));
        // cgroup v1 (this bench machine: no quota), with the cpu controller mounted alone or
        // together with cpuacct.
        let v1 = "4:memory:/x\n2:cpuacct:/\n1:cpu:/\n0::/\n";
        assert!(!cpu_quota(&files(&[
            ("/proc/self/cgroup", v1),
            ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n"),
        ])));
        assert!(cpu_quota(&files(&[
            ("/proc/self/cgroup", "3:cpu,cpuacct:/docker/abc\n"),
            (
                "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us",
                "150000\n"
            ),
        ])));
        // Nothing readable: no quota known.
        assert!(!cpu_quota(&files(&[])));
    }

    #[test]
    fn the_wait_is_capped_by_max_linger_and_off_at_zero() {
        let mut l = Linger::new(Duration::from_micros(200));
        l.committed(50, Duration::from_millis(5));
        assert_eq!(l.max_wait(), Duration::from_micros(200));
        let mut off = Linger::new(Duration::ZERO);
        off.committed(50, Duration::from_millis(5));
        assert_eq!(off.expected(), 1);
    }
}
