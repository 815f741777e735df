//! [`StoreError`]: every way the log can fail, each with a one-line reason fit for an HTTP body
//! (the hub answers a failed publish with `503` and this text).
//!
//! The error is `Clone` because the group committer hands the same failure to every caller whose
//! record was in the failed transaction; engine and I/O errors are therefore kept as text.

use std::io;

use thiserror::Error;

/// Why a log operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The disk (or quota) is full. Nothing of the failed write is visible; the log reopens
    /// itself on the next write and works again once space returns.
    #[error("storage is full: {0}")]
    DiskFull(String),
    /// Any other I/O failure of the data directory or file.
    #[error("storage I/O error while {context}: {reason}")]
    Io {
        /// What the log was doing.
        context: &'static str,
        /// The operating system's message.
        reason: String,
    },
    /// The data file is damaged beyond what the engine's commit protocol repairs on open.
    #[error("data file is corrupt: {0}")]
    Corrupt(String),
    /// Another process (or another `Log` in this one) has the data directory open.
    #[error("data directory is already in use by another process")]
    AlreadyOpen,
    /// The data directory was written by an incompatible version of the log.
    #[error("data directory has an unsupported format: {0}")]
    Format(String),
    /// A stored record could not be decoded (it was written by a different format version, or
    /// the file was altered).
    #[error("record {seq} cannot be decoded: {reason}")]
    Decode {
        /// The record's sequence number.
        seq: u64,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// A record's publisher id is already used by a retained record.
    #[error("publisher id {0:?} is already used by a retained record")]
    DuplicatePublisherId(String),
    /// A record larger than the engine accepts, or with too many / too long topics.
    #[error("record too large: {0}")]
    TooLarge(&'static str),
    /// The storage engine reported an error not covered above.
    #[error("storage engine error: {0}")]
    Engine(String),
    /// A previous write failed and the log could not be reopened yet; retry later.
    #[error("storage unavailable after a failed write: {0}")]
    Unavailable(String),
    /// The group committer has stopped (its log was closed or its thread exited).
    #[error("the log writer has stopped")]
    Closed,
}

impl StoreError {
    pub(crate) fn io(context: &'static str, err: &io::Error) -> Self {
        if is_disk_full(err) {
            StoreError::DiskFull(err.to_string())
        } else {
            StoreError::Io {
                context,
                reason: err.to_string(),
            }
        }
    }

    /// Whether the failure came from the medium (full, I/O error) so the engine must be reopened
    /// before it is trusted again.
    pub(crate) fn needs_reopen(&self) -> bool {
        matches!(
            self,
            StoreError::DiskFull(_)
                | StoreError::Io { .. }
                | StoreError::Engine(_)
                | StoreError::Unavailable(_)
        )
    }
}

fn is_disk_full(err: &io::Error) -> bool {
    // ENOSPC = 28, EDQUOT = 122 on Linux: `ErrorKind::StorageFull`/`QuotaExceeded`, checked by
    // code as well in case an error was built from a raw errno without a kind.
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(err.raw_os_error(), Some(28 | 122))
}

/// Maps every redb error type onto ours, through `redb::Error` which they all convert into.
pub(crate) fn engine(context: &'static str, err: impl Into<redb::Error>) -> StoreError {
    match err.into() {
        redb::Error::Io(e) => StoreError::io(context, &e),
        redb::Error::Corrupted(s) => StoreError::Corrupt(s),
        redb::Error::DatabaseAlreadyOpen => StoreError::AlreadyOpen,
        redb::Error::UpgradeRequired(v) => {
            StoreError::Format(format!("redb file format {v} needs an upgrade"))
        }
        redb::Error::ValueTooLarge(_) => StoreError::TooLarge("value exceeds the engine's limit"),
        redb::Error::PreviousIo => StoreError::Unavailable(format!(
            "{context}: an earlier I/O error left the engine read-only until reopened"
        )),
        other => StoreError::Engine(format!("{context}: {other}")),
    }
}
