//! The file backend under redb, with a switch to make writes fail: [`FaultInjector`].
//!
//! A full disk is hard to produce on demand in a test (or in the hub's own `503` test), so every
//! log opens its file through this thin wrapper around redb's `FileBackend`. When the injector is
//! armed, writes, length changes and syncs fail with `ENOSPC` exactly as a full disk would make
//! them fail; reads keep working. Unarmed, it costs one relaxed atomic load per call.

use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::StorageBackend;
use redb::backends::FileBackend;

/// Makes the log's writes fail as if the disk were full, while armed. Clone it before passing a
/// copy in [`crate::LogOptions::fault_injector`]; all clones share one switch.
#[derive(Debug, Clone, Default)]
pub struct FaultInjector {
    armed: Arc<AtomicBool>,
}

impl FaultInjector {
    /// A disarmed injector.
    pub fn new() -> Self {
        FaultInjector::default()
    }

    /// From now on, writes fail with "no space left on device".
    pub fn fail_writes(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Writes work again ("space returned").
    pub fn heal(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }

    pub(crate) fn check(&self) -> io::Result<()> {
        if self.armed.load(Ordering::Relaxed) {
            // From a raw errno so the error reads exactly like the kernel's.
            Err(io::Error::from_raw_os_error(28))
        } else {
            Ok(())
        }
    }
}

#[derive(Debug)]
pub(crate) struct Backend {
    inner: FileBackend,
    fault: FaultInjector,
}

impl Backend {
    pub(crate) fn new(file: File, fault: FaultInjector) -> Result<Self, redb::DatabaseError> {
        Ok(Backend {
            inner: FileBackend::new(file)?,
            fault,
        })
    }
}

impl StorageBackend for Backend {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.fault.check()?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.fault.check()?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.fault.check()?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }

    // The lock calls are forwarded unchanged: the file lock is what keeps a second process
    // (or a second `Log`) from opening the same data directory.
    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
