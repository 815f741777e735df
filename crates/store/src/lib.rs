//! ssehub's embedded durable event log: append-only, group commit, retention, and the two
//! indexes replay needs (publisher id -> seq, topic -> latest record). Built on redb with a
//! write-ahead journal in front of it; the measurements behind both are in `docs/storage.md`.
//!
//! ```
//! use ssehub_store::{GroupCommitter, CommitterOptions, Log, LogOptions, Record};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let log = Log::open(dir.path(), LogOptions::default())?;
//! let committer = GroupCommitter::new(log.clone(), CommitterOptions::default())?;
//! // Acknowledged means durable: the seq comes back after the fsync.
//! let seq = committer
//!     .append(Record::new(vec!["https://example.com/books/1".into()], "data: Dune\n\n"))
//!     .await?;
//! let replay = log.read_from(seq, 100)?;
//! assert_eq!(&replay[0].record.frame[..], b"data: Dune\n\n");
//! assert_eq!(log.latest_for_topic("https://example.com/books/1")?.unwrap().seq, seq);
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! - **Order and ids.** Seqs start at 1, are consecutive, and continue after a restart;
//!   [`Log::epoch`] is fixed when the data directory is created, so `#{epoch}-{seq}` ids stay
//!   valid across restarts.
//! - **Durability.** With [`Durability::Fsync`] (the default), [`Log::append_batch`] and
//!   [`GroupCommitter::append`] return only after the records' journal write is synced (or the
//!   checkpoint that took them instead).
//! - **Crash safety.** On open, redb comes back at its last checkpoint (a torn checkpoint is not
//!   visible: redb writes a transaction's pages, then a checksummed commit slot, and ignores a
//!   slot that does not verify), and the journal's whole, consecutive frames since then are
//!   replayed; a frame torn by the crash ends the replay. A record and its index rows are one
//!   commit.
//! - **Full disk.** A failed write returns [`StoreError::DiskFull`] (or another typed error);
//!   the log reopens its file before the next operation and works again once space returns.

#![deny(missing_docs)]

mod backend;
mod committer;
mod error;
mod hub_storage;
mod journal;
mod log;
mod record;
mod retention;

pub use backend::FaultInjector;
pub use committer::{CommitStats, CommitterOptions, GroupCommitter};
pub use error::StoreError;
pub use hub_storage::{Durable, DurableHub};
pub use journal::JOURNAL_FILE;
pub use log::{DATA_FILE, Durability, Log, LogOptions, RetainPolicy, TrimReport};
pub use record::{Record, StoredRecord, now_ms};
pub use retention::spawn_retention;
