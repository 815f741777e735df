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

/// One retained update, already encoded.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) seq: u64,
    pub(crate) id: Arc<str>,
    pub(crate) topics: Box<[String]>,
    pub(crate) private: bool,
    pub(crate) frame: Bytes,
    /// The Redis stream id of the update (a Redis-backed hub), [`Sid::ZERO`] otherwise.
    pub(crate) sid: Sid,
    /// When it entered the hub's order (`Metrics::stamp`), for lag catch-up's latency sample.
    pub(crate) stamp: u64,
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
    next_seq: u64,
    epoch: u64,
    /// Publisher-chosen id -> seq, only for retained entries.
    by_id: HashMap<Arc<str>, u64>,
    /// The id of the newest update before this run (durable hubs after a restart), for
    /// [`History::last_id`] while the ring is still empty.
    last_before: Option<Arc<str>>,
    /// Redis-backed hubs: the ring holds every stream entry after `sid_base` up to `sid_head`
    /// (the last one this node's reader delivered), so a stream id in that range is a seek in
    /// the ring and anything older must be read from Redis.
    sid_base: Sid,
    sid_head: Sid,
}

impl History {
    pub(crate) fn new(capacity: usize, epoch: u64) -> Self {
        History {
            entries: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
            next_seq: 1,
            epoch,
            by_id: HashMap::new(),
            last_before: None,
            sid_base: Sid::ZERO,
            sid_head: Sid::ZERO,
        }
    }

    /// A ring that follows a Redis stream from `after` (its last entry when the node started;
    /// `last_id` is that entry's id).
    pub(crate) fn follow_stream(&mut self, after: Sid, last_id: Option<Arc<str>>) {
        self.sid_base = after;
        self.sid_head = after;
        self.last_before = last_id;
    }

    /// See `sid_base`.
    pub(crate) fn sid_base(&self) -> Sid {
        self.sid_base
    }

    /// The stream id of the last entry this node delivered (or started after).
    pub(crate) fn sid_head(&self) -> Sid {
        self.sid_head
    }

    /// The seq of the first ring entry whose stream id is after `sid` (`next_seq` if none).
    /// Only meaningful for `sid >= sid_base`.
    pub(crate) fn seq_after_sid(&self, sid: Sid) -> u64 {
        let i = self.entries.partition_point(|e| e.sid <= sid);
        self.entries.get(i).map_or(self.next_seq, |e| e.seq)
    }

    /// The seq of the retained update with this publisher-chosen id.
    pub(crate) fn seq_of_publisher_id(&self, id: &str) -> Option<u64> {
        self.by_id.get(id).copied()
    }

    /// A ring that continues a durable log: the next update gets `next_seq`, and `last_id` is
    /// the id of the newest update already in the log.
    pub(crate) fn resume(&mut self, next_seq: u64, last_id: Option<Arc<str>>) {
        self.next_seq = next_seq;
        self.last_before = last_id;
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
        // A durable log assigns seqs itself; the ring follows it.
        self.next_seq = self.next_seq.max(entry.seq + 1);
        if entry.sid != Sid::ZERO {
            self.sid_head = entry.sid;
        }
        if self.capacity == 0 {
            self.sid_base = self.sid_head;
            return;
        }
        if self.entries.len() == self.capacity {
            self.evict_oldest();
        }
        if publisher_id {
            self.by_id.insert(entry.id.clone(), entry.seq);
        }
        self.entries.push_back(entry);
    }

    fn evict_oldest(&mut self) {
        let Some(old) = self.entries.pop_front() else {
            return;
        };
        if old.sid != Sid::ZERO {
            self.sid_base = old.sid;
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

/// A Redis stream id `{ms}-{seq}`: ordered like the stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Sid {
    pub(crate) ms: u64,
    pub(crate) seq: u64,
}

impl Sid {
    /// `0-0`: before every entry (Redis never gives it to an entry).
    pub(crate) const ZERO: Sid = Sid { ms: 0, seq: 0 };

    /// Parses exactly `DIGITS-DIGITS` (what Redis generates), nothing looser: a text that
    /// parses is treated as a position in the stream, so publisher ids of this shape are refused.
    pub(crate) fn parse(s: &str) -> Option<Sid> {
        let (ms, seq) = s.split_once('-')?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return None;
        }
        Some(Sid {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl Sid {
    /// The event id subscribers see for this stream entry: `#{ms}-{seq}`.
    pub(crate) fn event_id(self) -> String {
        hub_id(self.ms, self.seq)
    }

    /// The stream position an event id names (`#{ms}-{seq}`, or the bare form hubs issued
    /// before ids became fragments).
    pub(crate) fn from_event_id(id: &str) -> Option<Sid> {
        Sid::parse(id.strip_prefix('#').unwrap_or(id))
    }
}

/// The Redis wire form, `{ms}-{seq}` (for XRANGE and friends; subscribers see
/// [`Sid::event_id`]).
impl std::fmt::Display for Sid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A hub-generated id: the fragment `#{a}-{b}`.
pub(crate) fn hub_id(a: u64, b: u64) -> String {
    format!("#{a}-{b}")
}

/// The seq of a hub-assigned id `#{epoch}-{seq}` (or the older `{epoch}-{seq}`) of this epoch.
pub(crate) fn parse_hub_id(epoch: u64, id: &str) -> Option<u64> {
    let id = id.strip_prefix('#').unwrap_or(id);
    let (e, seq) = id.split_once('-')?;
    if e.parse::<u64>().ok()? != epoch {
        return None;
    }
    // Reject "+5" and similar that `parse` would accept: ids are compared as text by clients.
    if !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    seq.parse().ok()
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
            sid: Sid::ZERO,
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
    fn stream_ids_parse_strictly_and_order_like_redis() {
        let sid = |s: &str| Sid::parse(s).unwrap();
        assert_eq!(
            sid("1700000000000-0"),
            Sid {
                ms: 1_700_000_000_000,
                seq: 0
            }
        );
        assert!(sid("5-10") > sid("5-9"), "numeric, not text order");
        assert!(sid("6-0") > sid("5-99"));
        for bad in [
            "", "-", "5", "5-", "-5", "+5-1", "5-+1", "a-1", "5-1-2", "5 -1", "earliest",
        ] {
            assert_eq!(Sid::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            sid("18446744073709551615-3").to_string(),
            "18446744073709551615-3"
        );
        assert_eq!(Sid::parse("18446744073709551616-0"), None, "overflow");
    }

    #[test]
    fn a_ring_following_a_stream_knows_its_range() {
        let mut h = History::new(2, 0);
        h.follow_stream(Sid { ms: 10, seq: 0 }, None);
        assert_eq!(
            (h.sid_base(), h.sid_head()),
            (Sid { ms: 10, seq: 0 }, Sid { ms: 10, seq: 0 })
        );
        assert_eq!(h.seq_after_sid(Sid { ms: 10, seq: 0 }), 1, "next to come");
        for (seq, ms) in [(1, 11), (2, 12), (3, 13)] {
            let e = Entry {
                seq,
                id: Arc::from(format!("{ms}-0")),
                topics: Box::new(["t".to_owned()]),
                private: false,
                frame: Bytes::new(),
                sid: Sid { ms, seq: 0 },
                stamp: 0,
            };
            h.push(e, false);
        }
        // Holds 12 and 13; 11 was evicted, so the ring covers everything after 11.
        assert_eq!(h.sid_base(), Sid { ms: 11, seq: 0 });
        assert_eq!(h.sid_head(), Sid { ms: 13, seq: 0 });
        assert_eq!(h.seq_after_sid(Sid { ms: 11, seq: 0 }), 2);
        assert_eq!(
            h.seq_after_sid(Sid { ms: 12, seq: 5 }),
            3,
            "between entries"
        );
        assert_eq!(h.seq_after_sid(Sid { ms: 13, seq: 0 }), 4);
        assert_eq!(h.last_id(), Some("13-0"));
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
