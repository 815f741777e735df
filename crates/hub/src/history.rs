//! The in-memory history ring: the retained tail of the hub's total order, and id resolution.
//!
//! Every update gets a sequence number (`seq`) in publish order. Hub-assigned ids are
//! `#{epoch}-{seq}`, where `epoch` is fixed for the life of this history (the boot time in
//! milliseconds), so resolving a hub id is arithmetic and replay is an index into the ring, not a
//! scan. The `#` makes them URI fragments, which Mercure 1.0 requires of hub-generated ids (an
//! IRI or a fragment) and forbids to publishers, so no publisher id can collide with one; ids
//! without it, as hubs before that change issued them, are still understood. Ids from another epoch (an earlier run of a RAM-only hub) are unknown, never mistaken for
//! ours. Publisher-chosen ids are kept in a map for as long as their update is retained.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use crate::storage::{Position, hub_id, parse_hub_id};

/// One retained update, already encoded.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) seq: u64,
    pub(crate) id: Arc<str>,
    pub(crate) topics: Box<[String]>,
    pub(crate) private: bool,
    pub(crate) frame: Bytes,
    /// Its position in the backend's log ([`Position::ZERO`] in a RAM-only hub).
    pub(crate) pos: Position,
    /// When it entered the hub's order (`Metrics::stamp`), for lag catch-up's latency sample.
    pub(crate) stamp: u64,
}

impl Entry {
    /// What retaining the entry costs: its frame, id and topics, and the entry itself. The
    /// frame may be shared with subscriber queues; counting it here is the conservative side.
    fn cost(&self) -> usize {
        std::mem::size_of::<Entry>()
            + self.frame.len()
            + self.id.len()
            + self
                .topics
                .iter()
                .map(|t| t.len() + std::mem::size_of::<String>())
                .sum::<usize>()
    }
}

/// Where a replay starts for a given `Last-Event-ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// Replay every retained entry with `seq >= from`; nothing was missed before it.
    From(u64),
    /// The id is known to be ours but older than the oldest retained update.
    Expired,
    /// The id is not one this hub knows.
    Unknown,
}

#[derive(Debug)]
pub(crate) struct History {
    entries: VecDeque<Entry>,
    capacity: usize,
    /// The most the retained entries may cost ([`Entry::cost`]); `usize::MAX` for no limit.
    byte_limit: usize,
    /// What the retained entries cost now.
    bytes: usize,
    next_seq: u64,
    epoch: u64,
    /// Publisher-chosen id -> seq, only for retained entries.
    by_id: HashMap<Arc<str>, u64>,
    /// The id of the newest update before this run (durable hubs after a restart), for
    /// [`History::last_id`] while the ring is still empty.
    last_before: Option<Arc<str>>,
    /// Hubs with a log beyond the ring: the ring holds every update of the log after
    /// `pos_base` up to `pos_head` (the last one delivered), so a position in that range is a
    /// seek in the ring and anything older must be read from the log.
    pos_base: Position,
    pos_head: Position,
}

impl History {
    pub(crate) fn new(capacity: usize, epoch: u64) -> Self {
        History {
            entries: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
            byte_limit: usize::MAX,
            bytes: 0,
            next_seq: 1,
            epoch,
            by_id: HashMap::new(),
            last_before: None,
            pos_base: Position::ZERO,
            pos_head: Position::ZERO,
        }
    }

    /// Bounds the ring by what its entries cost as well as by count: with a log beyond the
    /// ring, the ring is only a cache, and a count alone lets large updates take any amount of
    /// memory (10,000 updates of 100 KiB are 1 GB).
    pub(crate) fn limit_bytes(&mut self, limit: usize) {
        self.byte_limit = limit;
        while self.bytes > self.byte_limit && !self.entries.is_empty() {
            self.evict_oldest();
        }
    }

    /// What the retained entries cost, as [`History::limit_bytes`] counts it.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// A ring that follows a log from `after` (its newest update when the hub started;
    /// `last_id` is that entry's id).
    pub(crate) fn follow(&mut self, after: Position, last_id: Option<Arc<str>>) {
        self.pos_base = after;
        self.pos_head = after;
        self.last_before = last_id;
    }

    /// See `pos_base`.
    pub(crate) fn pos_base(&self) -> Position {
        self.pos_base
    }

    /// The position of the last update delivered (or the hub started after).
    pub(crate) fn pos_head(&self) -> Position {
        self.pos_head
    }

    /// The seq of the first ring entry whose position is after `pos` (`next_seq` if none).
    /// Only meaningful for `pos >= pos_base`.
    pub(crate) fn seq_after(&self, pos: Position) -> u64 {
        let i = self.entries.partition_point(|e| e.pos <= pos);
        self.entries.get(i).map_or(self.next_seq, |e| e.seq)
    }

    /// The seq of the retained update with this publisher-chosen id.
    pub(crate) fn seq_of_publisher_id(&self, id: &str) -> Option<u64> {
        self.by_id.get(id).copied()
    }

    /// The seq the next update gets (one past the newest delivered).
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The seq of the oldest retained entry (== `next_seq` when nothing is retained).
    pub(crate) fn first_seq(&self) -> u64 {
        self.entries.front().map_or(self.next_seq, |e| e.seq)
    }

    /// Takes the next seq and returns it with the id the update will carry.
    pub(crate) fn allocate(&mut self, publisher_id: Option<&str>) -> (u64, Arc<str>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let id: Arc<str> = match publisher_id {
            Some(id) => Arc::from(id),
            None => Arc::from(hub_id(self.epoch, seq)),
        };
        (seq, id)
    }

    /// Whether a publisher-chosen id can be used: not retained already and not shaped like ours.
    pub(crate) fn check_publisher_id(&self, id: &str) -> Result<(), crate::PublishError> {
        if self.parse_hub_id(id).is_some() {
            return Err(crate::PublishError::ReservedId);
        }
        if self.by_id.contains_key(id) {
            return Err(crate::PublishError::DuplicateId);
        }
        Ok(())
    }

    /// Retains an entry (allocated by [`History::allocate`]), evicting the oldest beyond capacity.
    pub(crate) fn push(&mut self, entry: Entry, publisher_id: bool) {
        // Entries come from `allocate` or take `next_seq` (`Inner::deliver`).
        self.next_seq = self.next_seq.max(entry.seq + 1);
        if entry.pos != Position::ZERO {
            self.pos_head = entry.pos;
        }
        if self.capacity == 0 {
            self.pos_base = self.pos_head;
            return;
        }
        if self.entries.len() == self.capacity {
            self.evict_oldest();
        }
        // An entry costing more than the whole limit is still kept (alone): the newest update
        // is what the next replay most likely needs, and the body-size limit bounds it.
        let cost = entry.cost();
        while self.bytes + cost > self.byte_limit && !self.entries.is_empty() {
            self.evict_oldest();
        }
        self.bytes += cost;
        if publisher_id {
            self.by_id.insert(entry.id.clone(), entry.seq);
        }
        self.entries.push_back(entry);
    }

    fn evict_oldest(&mut self) {
        let Some(old) = self.entries.pop_front() else {
            return;
        };
        self.bytes -= old.cost();
        if old.pos != Position::ZERO {
            self.pos_base = old.pos;
        }
        if self.by_id.get(&old.id) == Some(&old.seq) {
            self.by_id.remove(&old.id);
        }
    }

    fn parse_hub_id(&self, id: &str) -> Option<u64> {
        parse_hub_id(self.epoch, id)
    }

    /// Where replay after `last_event_id` starts.
    pub(crate) fn resolve(&self, last_event_id: &str) -> Resolved {
        if last_event_id == crate::EARLIEST {
            return Resolved::From(self.first_seq());
        }
        if let Some(&seq) = self.by_id.get(last_event_id) {
            return Resolved::From(seq + 1);
        }
        match self.parse_hub_id(last_event_id) {
            Some(seq) if seq >= self.next_seq || seq == 0 => Resolved::Unknown,
            // The subscriber saw `seq`; it missed nothing if `seq + 1` is still retained (or is
            // the next one to be published).
            Some(seq) if seq + 1 >= self.first_seq() => Resolved::From(seq + 1),
            Some(_) => Resolved::Expired,
            None => Resolved::Unknown,
        }
    }

    /// Retained entries with `seq >= from`, oldest first. A seek, not a scan.
    pub(crate) fn range_from(&self, from: u64) -> impl Iterator<Item = &Entry> {
        let skip = from.saturating_sub(self.first_seq()) as usize;
        self.entries.range(skip.min(self.entries.len())..)
    }

    /// The id of the newest retained entry (or, before the first one of this run, of the
    /// newest in the durable log).
    pub(crate) fn last_id(&self) -> Option<&str> {
        self.entries
            .back()
            .map(|e| &*e.id)
            .or(self.last_before.as_deref())
    }

    /// Entries of the ring, oldest first.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &Entry> {
        self.entries.iter()
    }

    /// The id of the oldest retained entry.
    pub(crate) fn first_id(&self) -> Option<&str> {
        self.entries.front().map(|e| &*e.id)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(h: &mut History, pid: Option<&str>) -> u64 {
        let (seq, id) = h.allocate(pid);
        let e = Entry {
            seq,
            id,
            topics: Box::new(["t".to_owned()]),
            private: false,
            frame: Bytes::new(),
            pos: Position::ZERO,
            stamp: 0,
        };
        h.push(e, pid.is_some());
        seq
    }

    #[test]
    fn hub_ids_resolve_by_arithmetic() {
        let mut h = History::new(3, 7);
        for _ in 0..5 {
            entry(&mut h, None);
        }
        // Retained: seq 3, 4, 5.
        assert_eq!(h.first_seq(), 3);
        assert_eq!(h.resolve("7-5"), Resolved::From(6));
        assert_eq!(
            h.resolve("7-2"),
            Resolved::From(3),
            "seq 3 is retained, nothing missed"
        );
        assert_eq!(h.resolve("7-1"), Resolved::Expired);
        assert_eq!(h.resolve("7-6"), Resolved::Unknown, "from the future");
        assert_eq!(h.resolve("8-4"), Resolved::Unknown, "other epoch");
        assert_eq!(h.resolve("7-+4"), Resolved::Unknown);
        assert_eq!(h.resolve("earliest"), Resolved::From(3));
        let ids: Vec<_> = h.range_from(4).map(|e| e.seq).collect();
        assert_eq!(ids, [4, 5]);
        assert_eq!(h.range_from(1).count(), 3);
        assert_eq!(h.range_from(9).count(), 0);
    }

    #[test]
    fn publisher_ids_live_as_long_as_their_entry() {
        let mut h = History::new(2, 1);
        entry(&mut h, Some("a"));
        assert_eq!(
            h.check_publisher_id("a"),
            Err(crate::PublishError::DuplicateId)
        );
        assert_eq!(
            h.check_publisher_id("1-9"),
            Err(crate::PublishError::ReservedId)
        );
        assert_eq!(h.resolve("a"), Resolved::From(2));
        entry(&mut h, None);
        entry(&mut h, None);
        assert_eq!(h.resolve("a"), Resolved::Unknown);
        assert!(h.check_publisher_id("a").is_ok());
    }

    #[test]
    fn a_ring_following_a_log_knows_its_range() {
        let mut h = History::new(2, 0);
        h.follow(Position::new(10, 0), None);
        assert_eq!(
            (h.pos_base(), h.pos_head()),
            (Position::new(10, 0), Position::new(10, 0))
        );
        assert_eq!(h.seq_after(Position::new(10, 0)), 1, "next to come");
        for (seq, ms) in [(1, 11), (2, 12), (3, 13)] {
            let e = Entry {
                seq,
                id: Arc::from(format!("{ms}-0")),
                topics: Box::new(["t".to_owned()]),
                private: false,
                frame: Bytes::new(),
                pos: Position::new(ms, 0),
                stamp: 0,
            };
            h.push(e, false);
        }
        // Holds 12 and 13; 11 was evicted, so the ring covers everything after 11.
        assert_eq!(h.pos_base(), Position::new(11, 0));
        assert_eq!(h.pos_head(), Position::new(13, 0));
        assert_eq!(h.seq_after(Position::new(11, 0)), 2);
        assert_eq!(h.seq_after(Position::new(12, 5)), 3, "between entries");
        assert_eq!(h.seq_after(Position::new(13, 0)), 4);
        assert_eq!(h.last_id(), Some("13-0"));
    }

    fn sized(h: &mut History, len: usize) -> u64 {
        let (seq, id) = h.allocate(None);
        let e = Entry {
            seq,
            id,
            topics: Box::new(["t".to_owned()]),
            private: false,
            frame: Bytes::from(vec![b'x'; len]),
            pos: Position::new(seq, 0),
            stamp: 0,
        };
        h.push(e, false);
        seq
    }

    #[test]
    fn a_byte_limit_evicts_the_oldest_until_the_new_entry_fits() {
        let mut h = History::new(100, 1);
        sized(&mut h, 1000);
        let one = h.bytes();
        assert!(one > 1000, "the frame and the entry's own size: {one}");
        // Ids grow by a byte at seq 10 ("#1-10"): room for three entries, not four.
        let limit = 3 * one + 10;
        h.limit_bytes(limit);
        for _ in 0..10 {
            sized(&mut h, 1000);
        }
        assert_eq!(h.len(), 3, "three entries of ~{one} bytes fit in {limit}");
        assert!(h.bytes() <= limit && h.bytes() > 3 * one, "{}", h.bytes());
        assert_eq!(h.first_seq(), 9);
        // Replay from before the ring is expired, and the ring knows where the log must take over.
        assert_eq!(h.resolve("1-7"), Resolved::Expired);
        assert_eq!(h.resolve("1-8"), Resolved::From(9));
        assert_eq!(h.pos_base(), Position::new(8, 0));
    }

    #[test]
    fn an_entry_larger_than_the_limit_is_kept_alone() {
        let mut h = History::new(100, 1);
        h.limit_bytes(500);
        sized(&mut h, 10);
        sized(&mut h, 10);
        assert_eq!(h.len(), 2);
        sized(&mut h, 5000);
        assert_eq!(h.len(), 1, "the others made room; it stays, alone");
        assert_eq!(h.first_seq(), 3);
        sized(&mut h, 10);
        assert_eq!(h.len(), 1, "the large one goes first");
        assert_eq!(h.first_seq(), 4);
    }

    #[test]
    fn lowering_the_limit_evicts_at_once() {
        let mut h = History::new(100, 1);
        for _ in 0..10 {
            sized(&mut h, 100);
        }
        let each = h.bytes() / 10;
        // (Entry 10's id is a byte longer: a little room, not enough for a fifth entry.)
        h.limit_bytes(4 * each + 10);
        assert_eq!(h.len(), 4);
        assert_eq!(h.first_seq(), 7);
    }

    #[test]
    fn zero_capacity_retains_nothing() {
        let mut h = History::new(0, 1);
        entry(&mut h, None);
        assert_eq!(h.len(), 0);
        assert_eq!(h.resolve("1-1"), Resolved::From(2));
        assert_eq!(h.resolve("earliest"), Resolved::From(2));
    }
}
