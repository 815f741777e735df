//! [`Journal`]: the log's write-ahead journal. A group of appends is made durable by one
//! sequential write to a preallocated file instead of a durable B-tree commit.
//!
//! Why: a durable redb commit writes every page the transaction touched (the log, its indexes,
//! redb's own allocator tables) to scattered places, then its header, then syncs. On the
//! machine the figures in `docs/storage.md` come from, that is ~400 µs of wall time and ~200 µs
//! of CPU per commit whatever the group size, and the hub's publish path waits for it. The same
//! records as one write of contiguous blocks, synced by the write itself, take about half of
//! that, and the B-tree commit that follows is an in-memory one (redb `Durability::None`).
//! Every so often the log makes one durable redb commit (a *checkpoint*), after which the
//! journal starts over from its beginning.
//!
//! **Format.** The file (`log.journal`) is preallocated with zeros (so a write never allocates
//! blocks or changes the file size, and needs no metadata sync). It holds frames:
//! `len: u32 LE | crc32: u32 LE | seq: u64 LE | payload (len bytes)`, the CRC covering the
//! length, the seq and the payload. A group is written at a 4 KiB boundary and padded with
//! zeros to the next one, so that it can go straight to the device (`O_DIRECT`) in one write.
//!
//! **Recovery.** After a crash redb opens at its last durable commit, whose next seq is `N`.
//! The journal is read from offset 0 as one chain: frames are taken while each one is whole (its
//! CRC verifies) and carries the seq after the one before. The first may be older than `N`:
//! redb makes its pending in-memory commits durable when a handle is closed (the log reopens
//! its file after a failed write), so the data file may already hold the chain's beginning;
//! those frames are skipped. A zero length inside a block is padding (skip to the next block);
//! at a block start it is the end. A frame torn by the crash ends the chain, and so does a
//! frame of an earlier cycle: every seq in it is older than any the current cycle wrote, so it
//! never carries the next one. What recovery returns is exactly the records written since `N`,
//! in order, never half of one. A chain that starts after `N` (a data file restored from an
//! older copy) is not replayed: there would be a gap.
//!
//! **A failed write** (disk full, I/O error) may have put some of its frames on disk, and their
//! seqs will be handed out again. So the region is overwritten with zeros at once, and if that
//! fails too, before the next write; until it succeeds, writes fail.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::backend::FaultInjector;
use crate::{Durability, StoreError};

/// The journal file inside the data directory.
pub const JOURNAL_FILE: &str = "log.journal";
/// Writes start at, and are padded to, this alignment (what `O_DIRECT` asks of offset, length
/// and buffer on every Linux block device).
const BLOCK: usize = 4096;
const HEADER: usize = 16;

#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    file: File,
    /// Each write must be followed by `fdatasync` (a durable journal where the platform has no
    /// `O_DSYNC`).
    sync_after_write: bool,
    /// Where the next group goes; a multiple of [`BLOCK`].
    pos: u64,
    /// The preallocated size; a group that does not fit makes the log checkpoint instead.
    capacity: u64,
    /// A failed write's region that still has to be zeroed: (offset, length).
    to_zero: Option<(u64, usize)>,
    /// Holds one block more than a group needs, so an aligned slice always fits in it.
    scratch: Vec<u8>,
    fault: FaultInjector,
}

impl Journal {
    /// Opens (creating and preallocating if needed) the journal of `dir`. Nothing is read here:
    /// [`Journal::recover`] does that.
    pub(crate) fn open(
        dir: &Path,
        capacity: u64,
        durability: Durability,
        fault: FaultInjector,
    ) -> Result<Journal, StoreError> {
        let path = dir.join(JOURNAL_FILE);
        let capacity = capacity.max(BLOCK as u64).next_multiple_of(BLOCK as u64);
        preallocate(&path, dir, capacity, &fault)?;
        let (file, sync_after_write) = open_for_writes(&path, durability)
            .map_err(|e| StoreError::io("opening the journal", &e))?;
        Ok(Journal {
            path,
            file,
            sync_after_write,
            pos: 0,
            capacity,
            to_zero: None,
            scratch: Vec::new(),
            fault,
        })
    }

    /// The records written since the last checkpoint, whose next seq was `first_seq`:
    /// `(seq, payload)` in seq order (see the module docs, "Recovery").
    pub(crate) fn recover(&self, first_seq: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let data =
            std::fs::read(&self.path).map_err(|e| StoreError::io("reading the journal", &e))?;
        let frames = frames_from(&data, first_seq);
        if frames.is_empty()
            && let Some(seq) = first_frame_seq(&data)
            && seq > first_seq
        {
            // Whole frames newer than the data file: the data file went back in time (restored
            // from a copy?) while the journal did not. They cannot be replayed without a gap.
            tracing::warn!(
                journal_starts_at = seq,
                log_next_seq = first_seq,
                "the journal holds records newer than the data file, after a gap; they are ignored"
            );
        }
        Ok(frames)
    }

    /// Bytes a group of payloads of these sizes takes, padding included.
    pub(crate) fn group_bytes(payload_lens: impl Iterator<Item = usize>) -> usize {
        payload_lens
            .map(|n| HEADER + n)
            .sum::<usize>()
            .next_multiple_of(BLOCK)
    }

    /// Whether a group of `bytes` ([`Journal::group_bytes`]) fits before the end of the file.
    pub(crate) fn fits(&self, bytes: usize) -> bool {
        self.pos + bytes as u64 <= self.capacity
    }

    /// Writes one group of `(seq, payload)` frames at the current position; durable on return
    /// when the journal was opened with [`Durability::Fsync`]. The caller checked
    /// [`Journal::fits`].
    pub(crate) fn append<'a>(
        &mut self,
        frames: impl Iterator<Item = (u64, &'a [u8])> + Clone,
    ) -> Result<(), StoreError> {
        self.zero_failed_region()?;
        let bytes = Self::group_bytes(frames.clone().map(|(_, p)| p.len()));
        let buf = aligned(&mut self.scratch, bytes);
        let mut at = 0;
        for (seq, payload) in frames {
            let len = u32::try_from(payload.len())
                .map_err(|_| StoreError::TooLarge("a record over 4 GiB"))?;
            buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
            buf[at + 4..at + 8].copy_from_slice(&checksum(len, seq, payload).to_le_bytes());
            buf[at + 8..at + 16].copy_from_slice(&seq.to_le_bytes());
            buf[at + HEADER..at + HEADER + payload.len()].copy_from_slice(payload);
            at += HEADER + payload.len();
        }
        buf[at..].fill(0);
        let pos = self.pos;
        if let Err(e) = write_at(&self.file, &self.fault, buf, pos, self.sync_after_write) {
            // Part of it may be on disk, with seqs that will be handed out again.
            self.to_zero = Some((pos, bytes));
            let _ = self.zero_failed_region();
            return Err(StoreError::io("writing the journal", &e));
        }
        self.pos += bytes as u64;
        Ok(())
    }

    /// Where the next group goes (tests).
    #[cfg(test)]
    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    /// [`Journal::append`] at `pos` (tests: a write that landed although it was reported
    /// failed).
    #[cfg(test)]
    pub(crate) fn append_at<'a>(
        &mut self,
        pos: u64,
        frames: impl Iterator<Item = (u64, &'a [u8])> + Clone,
    ) -> Result<(), StoreError> {
        self.pos = pos;
        self.append(frames)
    }

    /// After a checkpoint: everything in the file is in the durable B-tree, start over.
    pub(crate) fn reset(&mut self) {
        self.pos = 0;
    }

    /// Zeroes a failed write's region if that is still to be done: neither the next write nor
    /// a replay may see frames of it.
    pub(crate) fn zero_failed_region(&mut self) -> Result<(), StoreError> {
        let Some((pos, bytes)) = self.to_zero else {
            return Ok(());
        };
        let buf = aligned(&mut self.scratch, bytes);
        buf.fill(0);
        write_at(&self.file, &self.fault, buf, pos, self.sync_after_write)
            .map_err(|e| StoreError::io("clearing a failed journal write", &e))?;
        self.to_zero = None;
        Ok(())
    }
}

/// The chain of frames from the start of `data`, each whole and carrying the seq after the one
/// before, from seq `first_seq` on (module docs, "Recovery"). A chain that starts after
/// `first_seq` gives nothing.
fn frames_from(data: &[u8], first_seq: u64) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    // The first frame may be older than `first_seq` (records the data file already holds).
    let mut expect: Option<u64> = None;
    while let Some(head) = data.get(at..at + HEADER) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if len == 0 {
            if at.is_multiple_of(BLOCK) {
                break;
            }
            at = at.next_multiple_of(BLOCK);
            continue;
        }
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&head[8..16]);
        let seq = u64::from_le_bytes(seq_bytes);
        let Some(payload) = data.get(at + HEADER..at + HEADER + len as usize) else {
            break;
        };
        let in_chain = match expect {
            None => seq <= first_seq,
            Some(e) => seq == e,
        };
        if !in_chain || checksum(len, seq, payload) != crc {
            break;
        }
        if seq >= first_seq {
            out.push((seq, payload.to_vec()));
        }
        expect = Some(seq + 1);
        at += HEADER + len as usize;
    }
    out
}

/// The seq of the frame at offset 0, if a whole one is there.
fn first_frame_seq(data: &[u8]) -> Option<u64> {
    let head = data.get(..HEADER)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let seq = u64::from_le_bytes(head[8..16].try_into().ok()?);
    // Only that frame: the scan stops at the end of the slice.
    let first = data.get(..HEADER + len as usize)?;
    (len > 0 && !frames_from(first, seq).is_empty()).then_some(seq)
}

fn checksum(len: u32, seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// A `len`-byte slice of `scratch` that starts at a [`BLOCK`]-aligned address (growing
/// `scratch` if needed), for `O_DIRECT` writes.
fn aligned(scratch: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if scratch.len() < len + BLOCK {
        *scratch = vec![0; (len + BLOCK).next_power_of_two()];
    }
    let off = scratch.as_ptr().align_offset(BLOCK);
    &mut scratch[off..off + len]
}

fn write_at(
    file: &File,
    fault: &FaultInjector,
    buf: &[u8],
    pos: u64,
    sync: bool,
) -> io::Result<()> {
    fault.check()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.write_all_at(buf, pos)?;
    }
    #[cfg(not(unix))]
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = file;
        f.seek(SeekFrom::Start(pos))?;
        f.write_all(buf)?;
    }
    if sync {
        file.sync_data()?;
    }
    Ok(())
}

/// Makes the file `capacity` bytes of written zeros (not a sparse hole: overwriting allocated
/// blocks needs no block allocation and no size change, so the synced write is one I/O).
fn preallocate(
    path: &Path,
    dir: &Path,
    capacity: u64,
    fault: &FaultInjector,
) -> Result<(), StoreError> {
    let ctx = "preallocating the journal";
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StoreError::io(ctx, &e))?;
    let len = file.metadata().map_err(|e| StoreError::io(ctx, &e))?.len();
    if len >= capacity {
        return Ok(());
    }
    fault.check().map_err(|e| StoreError::io(ctx, &e))?;
    let chunk = vec![0u8; 1 << 20];
    let mut at = len;
    {
        use std::io::{Seek, SeekFrom, Write};
        file.seek(SeekFrom::Start(at))
            .map_err(|e| StoreError::io(ctx, &e))?;
        while at < capacity {
            let n = chunk.len().min((capacity - at) as usize);
            file.write_all(&chunk[..n])
                .map_err(|e| StoreError::io(ctx, &e))?;
            at += n as u64;
        }
    }
    file.sync_all().map_err(|e| StoreError::io(ctx, &e))?;
    // The new file's directory entry must be durable too before anything relies on the file.
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(ctx, &e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The write handle, and whether each write needs an `fdatasync` after it. With
/// [`Durability::Fsync`] on Linux every write is synced by itself (`O_DSYNC`) and goes straight to
/// the device (`O_DIRECT`) where the file system supports it (tmpfs does not); elsewhere each
/// write is followed by `fdatasync`. With [`Durability::Buffered`] writes go to the page cache.
fn open_for_writes(path: &Path, durability: Durability) -> io::Result<(File, bool)> {
    let durable = durability == Durability::Fsync;
    #[cfg(target_os = "linux")]
    if durable {
        use std::os::unix::fs::OpenOptionsExt;
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DSYNC | libc::O_DIRECT)
            .open(path);
        return match direct {
            Ok(f) => Ok((f, false)),
            // EINVAL: tmpfs and others without direct I/O; EOPNOTSUPP: some FUSE file systems.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP)) => {
                OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_DSYNC)
                    .open(path)
                    .map(|f| (f, false))
            }
            Err(e) => Err(e),
        };
    }
    let file = OpenOptions::new().write(true).open(path)?;
    Ok((file, durable))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(dir: &Path, capacity: u64) -> Journal {
        Journal::open(dir, capacity, Durability::Fsync, FaultInjector::new()).unwrap()
    }

    fn payload(n: u64) -> Vec<u8> {
        format!("record {n} {}", "x".repeat((n % 300) as usize)).into_bytes()
    }

    fn write(j: &mut Journal, seqs: std::ops::Range<u64>) {
        let ps: Vec<(u64, Vec<u8>)> = seqs.map(|s| (s, payload(s))).collect();
        j.append(ps.iter().map(|(s, p)| (*s, p.as_slice())))
            .unwrap();
    }

    fn seqs(frames: &[(u64, Vec<u8>)]) -> Vec<u64> {
        frames.iter().map(|(s, _)| *s).collect()
    }

    #[test]
    fn groups_come_back_in_order_from_the_checkpoint_seq() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = journal(dir.path(), 1 << 20);
        write(&mut j, 1..4);
        write(&mut j, 4..5);
        write(&mut j, 5..40);
        let back = j.recover(1).unwrap();
        assert_eq!(seqs(&back), (1..40).collect::<Vec<_>>());
        for (s, p) in &back {
            assert_eq!(p, &payload(*s));
        }
        // A checkpoint at 40 makes all of it stale.
        assert!(j.recover(40).unwrap().is_empty());
        // A data file that already holds the chain's beginning (redb made its in-memory
        // commits durable when its handle closed) gets the rest.
        assert_eq!(seqs(&j.recover(7).unwrap()), (7..40).collect::<Vec<_>>());
    }

    #[test]
    fn after_a_reset_the_old_cycle_is_never_read_as_new() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = journal(dir.path(), 1 << 20);
        write(&mut j, 1..200);
        j.reset();
        write(&mut j, 200..203);
        // The first cycle's frames behind the new group carry older seqs: recovery stops there.
        assert_eq!(seqs(&j.recover(200).unwrap()), vec![200, 201, 202]);
    }

    #[test]
    fn frames_newer_than_the_data_file_after_a_gap_are_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = journal(dir.path(), 1 << 20);
        write(&mut j, 50..60);
        // The data file says the next seq is 40: 40..49 are missing, so nothing can be replayed
        // (the open logs a warning naming both seqs).
        assert!(j.recover(40).unwrap().is_empty());
        let data = std::fs::read(dir.path().join(JOURNAL_FILE)).unwrap();
        assert_eq!(first_frame_seq(&data), Some(50));
        assert_eq!(first_frame_seq(&vec![0u8; BLOCK]), None);
    }

    #[test]
    fn a_torn_or_damaged_frame_ends_recovery_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = journal(dir.path(), 1 << 20);
        write(&mut j, 1..10);
        let data = std::fs::read(dir.path().join(JOURNAL_FILE)).unwrap();
        let ends: Vec<usize> = {
            let mut at = 0;
            (1..10u64)
                .map(|s| {
                    at += HEADER + payload(s).len();
                    at
                })
                .collect()
        };
        // Cut the last frame anywhere inside it (zeros after the cut: a torn write).
        for cut in [ends[7] + 1, ends[7] + HEADER, ends[8] - 1] {
            let mut torn = data.clone();
            torn[cut..].fill(0);
            assert_eq!(seqs(&frames_from(&torn, 1)), (1..9).collect::<Vec<_>>());
        }
        // One flipped bit in the fifth frame's payload: the first four only.
        let mut bad = data.clone();
        bad[ends[3] + HEADER + 2] ^= 0x10;
        assert_eq!(seqs(&frames_from(&bad, 1)), vec![1, 2, 3, 4]);
    }

    #[test]
    fn groups_are_block_aligned_and_fits_says_when_to_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = journal(dir.path(), 3 * BLOCK as u64);
        write(&mut j, 1..2);
        assert_eq!(j.pos, BLOCK as u64);
        let big = Journal::group_bytes([BLOCK].into_iter());
        assert_eq!(big, 2 * BLOCK);
        assert!(j.fits(big));
        assert!(!j.fits(big + BLOCK));
        // The file keeps its preallocated size.
        let len = std::fs::metadata(dir.path().join(JOURNAL_FILE))
            .unwrap()
            .len();
        assert_eq!(len, 3 * BLOCK as u64);
    }

    #[test]
    fn a_failed_write_is_zeroed_so_its_seqs_can_be_reused() {
        let dir = tempfile::tempdir().unwrap();
        let fault = FaultInjector::new();
        let mut j = Journal::open(dir.path(), 1 << 20, Durability::Fsync, fault.clone()).unwrap();
        write(&mut j, 1..3);
        let at = j.pos as usize;
        // A write that reached the disk although it reported failure: the group 3..100 (two
        // blocks) is put there by a second handle, then the journal's own write of it fails.
        let mut ghost = journal(dir.path(), 1 << 20);
        ghost.pos = j.pos;
        write(&mut ghost, 3..100);
        assert_eq!(j.recover(1).unwrap().len(), 99);
        let group: Vec<(u64, Vec<u8>)> = (3..100).map(|s| (s, payload(s))).collect();
        let frames = || group.iter().map(|(s, p)| (*s, p.as_slice()));
        let bytes = Journal::group_bytes(frames().map(|(_, p)| p.len()));
        assert!(bytes > BLOCK);
        fault.fail_writes();
        assert!(j.append(frames()).is_err());
        // Zeroing failed too (still full): no write goes ahead until it is done.
        assert!(j.append(frames()).is_err());
        fault.heal();
        // Seq 3 again, now a one-block group: the rest of the failed region is zeros.
        write(&mut j, 3..4);
        assert_eq!(seqs(&j.recover(1).unwrap()), vec![1, 2, 3]);
        let data = std::fs::read(dir.path().join(JOURNAL_FILE)).unwrap();
        assert!(data[at + BLOCK..at + bytes].iter().all(|&b| b == 0));
    }
}
