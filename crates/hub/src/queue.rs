//! A subscriber's bounded outbound queue, shared by the publishers (producers) and the
//! subscriber's writer task (the consumer), and the lag policy that bounds it.
//!
//! Producers push refcounted clones of frames that were encoded once. The writer drains the whole
//! queue per wake-up into one buffer, so a busy subscriber costs one write per wake-up, not one
//! per event. When a push would exceed the bounds the subscriber turns `Lagged`: producers stop
//! pushing to it, and its writer later catches up from the history ring or the log (see `replay.rs`). If the
//! history no longer holds what it missed, it is closed with a final event saying why.

use std::collections::VecDeque;
use std::task::Waker;

use bytes::{Bytes, BytesMut};

use crate::metrics::CloseReason;
use crate::storage::Position;

/// A writer never takes more than this in one batch, so one wake-up cannot build a huge buffer.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// An empty queue keeps at most this many slots (16 x 32 bytes).
const SHRINK_ABOVE: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Producers push frames.
    Live,
    /// The queue overflowed; the writer must catch up from history starting at this seq.
    Lagged { resume_from: u64 },
    /// The writer is reading the log beyond the ring; producers skip it until it joins.
    Fetching,
    /// No more pushes; the writer sends what is queued, then ends the stream.
    Closing,
}

#[derive(Debug)]
pub(crate) struct Queue {
    frames: VecDeque<Bytes>,
    bytes: usize,
    max_frames: usize,
    max_bytes: usize,
    waker: Option<Waker>,
    pub(crate) mode: Mode,
    /// Something was queued since the last heartbeat tick, so no heartbeat is needed.
    pub(crate) active: bool,
    /// The log position of the update the queue turned `Lagged` at, so catch-up can read it
    /// from the log when the ring no longer holds it ([`Position::ZERO`]: no log).
    pub(crate) lagged_pos: Position,
    /// The publish stamp (`Metrics::stamp`) of the oldest live update queued since the last
    /// batch was taken; 0 when none. Set by the first offer after a take: one compare per
    /// delivery, no clock read.
    stamp: u64,
    /// The last batch taken and not yet reported written: its length and stamp. The writer
    /// comes back for the next batch only once it has written this one, so the next take
    /// reports it (see `SubscriberStream::poll_next`).
    taken: Option<(u64, u64)>,
    /// Why the queue was closed, for the close's metrics and log line.
    pub(crate) closed_for: Option<CloseReason>,
}

impl Queue {
    pub(crate) fn new(max_frames: usize, max_bytes: usize) -> Self {
        Queue {
            frames: VecDeque::new(),
            bytes: 0,
            max_frames,
            max_bytes,
            waker: None,
            mode: Mode::Live,
            active: false,
            lagged_pos: Position::ZERO,
            stamp: 0,
            taken: None,
            closed_for: None,
        }
    }

    /// Whether `len` more bytes fit. An empty queue takes any one frame, so an update larger
    /// than the byte bound still makes progress instead of lagging forever.
    pub(crate) fn has_room(&self, len: usize) -> bool {
        self.frames.is_empty()
            || (self.frames.len() < self.max_frames && self.bytes + len <= self.max_bytes)
    }

    /// Queues a frame regardless of bounds (small control frames), and wakes the writer.
    pub(crate) fn push_unbounded(&mut self, frame: Bytes) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
        self.active = true;
        self.wake();
    }

    /// Queues an update frame of sequence `seq` for a live subscriber, or turns it `Lagged` at
    /// `seq` when it does not fit. Returns whether it was queued.
    #[cfg(test)]
    pub(crate) fn offer(&mut self, seq: u64, frame: &Bytes) -> bool {
        self.offer_at(seq, Position::ZERO, frame, 0)
    }

    /// [`Queue::offer`] of an update at log position `pos` ([`Position::ZERO`] without a log)
    /// and publish stamp `stamp` (0: not sampled, e.g. replay on connect).
    pub(crate) fn offer_at(&mut self, seq: u64, pos: Position, frame: &Bytes, stamp: u64) -> bool {
        if self.mode != Mode::Live {
            return false;
        }
        if self.has_room(frame.len()) {
            self.push_unbounded(frame.clone());
            if self.stamp == 0 {
                self.stamp = stamp;
            }
            true
        } else {
            self.mode = Mode::Lagged { resume_from: seq };
            self.lagged_pos = pos;
            self.wake();
            false
        }
    }

    /// Ends the queue: what is queued is still sent, then the stream ends.
    pub(crate) fn close(&mut self, reason: CloseReason) {
        self.mode = Mode::Closing;
        self.closed_for.get_or_insert(reason);
        self.wake();
    }

    /// The batch taken last, `(bytes, stamp)`, once: the writer is back, so it was written.
    pub(crate) fn settle(&mut self) -> Option<(u64, u64)> {
        self.taken.take()
    }

    /// The publish stamp of the queue's only frame, when it holds exactly one live update.
    pub(crate) fn lone_stamp(&self) -> Option<u64> {
        (self.frames.len() == 1 && self.stamp != 0).then_some(self.stamp)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    pub(crate) fn register(&mut self, waker: &Waker) {
        match &self.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => self.waker = Some(waker.clone()),
        }
    }

    /// Takes everything queued (up to [`MAX_BATCH_BYTES`], at least one frame) as one buffer,
    /// remembered as taken (see [`Queue::settle`]).
    pub(crate) fn take_batch(&mut self) -> Option<Bytes> {
        let batch = self.take_frames()?;
        // When frames are left (a batch over the byte cap), they keep the stamp: newer than
        // it, so their sample can only read high, never hide a delay.
        let stamp = if self.frames.is_empty() {
            std::mem::take(&mut self.stamp)
        } else {
            self.stamp
        };
        self.taken = Some((batch.len() as u64, stamp));
        Some(batch)
    }

    fn take_frames(&mut self) -> Option<Bytes> {
        let first = self.frames.pop_front()?;
        self.bytes -= first.len();
        if self.frames.is_empty() || first.len() >= MAX_BATCH_BYTES {
            return Some(first);
        }
        let mut total = first.len();
        let mut n = 0;
        for f in &self.frames {
            if total + f.len() > MAX_BATCH_BYTES {
                break;
            }
            total += f.len();
            n += 1;
        }
        let mut buf = BytesMut::with_capacity(total);
        buf.extend_from_slice(&first);
        for f in self.frames.drain(..n) {
            self.bytes -= f.len();
            buf.extend_from_slice(&f);
        }
        // Give back a large ring's memory after a burst (idle subscribers should cost almost
        // nothing), but leave a small one alone: shrinking on every drain would reallocate on
        // every batch of a busy subscriber.
        if self.frames.is_empty() && self.frames.capacity() > SHRINK_ABOVE {
            self.frames.shrink_to(SHRINK_ABOVE);
        }
        Some(buf.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_everything_queued_into_one_buffer() {
        let mut q = Queue::new(10, 1000);
        for i in 0..3 {
            assert!(q.offer(i, &Bytes::from(format!("data: {i}\n\n"))));
        }
        assert_eq!(
            q.take_batch().unwrap(),
            &b"data: 0\n\ndata: 1\n\ndata: 2\n\n"[..]
        );
        assert!(q.take_batch().is_none());
    }

    #[test]
    fn overflow_turns_lagged_at_the_first_frame_that_did_not_fit() {
        let mut q = Queue::new(2, 1000);
        let f = Bytes::from_static(b"data: x\n\n");
        assert!(q.offer(1, &f));
        assert!(q.offer(2, &f));
        assert!(!q.offer(3, &f));
        assert_eq!(q.mode, Mode::Lagged { resume_from: 3 });
        assert!(
            !q.offer(4, &f),
            "a lagged queue takes nothing until it caught up"
        );
        assert_eq!(q.mode, Mode::Lagged { resume_from: 3 });
    }

    #[test]
    fn a_batch_carries_the_stamp_of_its_oldest_live_update() {
        let mut q = Queue::new(10, 1000);
        q.push_unbounded(Bytes::from_static(b":\n"));
        assert!(q.offer_at(1, Position::ZERO, &Bytes::from_static(b"data: a\n\n"), 7));
        assert!(q.offer_at(2, Position::ZERO, &Bytes::from_static(b"data: b\n\n"), 9));
        assert_eq!(q.settle(), None);
        assert_eq!(q.take_batch().unwrap().len(), 20);
        assert_eq!(q.settle(), Some((20, 7)));
        assert_eq!(q.settle(), None, "reported once");
        assert!(q.offer_at(3, Position::ZERO, &Bytes::from_static(b"data: c\n\n"), 0));
        q.take_batch().unwrap();
        assert_eq!(q.settle(), Some((9, 0)), "replayed frames are not sampled");
    }

    #[test]
    fn byte_bound_applies() {
        let mut q = Queue::new(100, 10);
        assert!(q.offer(1, &Bytes::from_static(b"0123456789")));
        assert!(!q.offer(2, &Bytes::from_static(b"x")));
    }
}
