//! [`Sid`]: a Redis stream id `{ms}-{seq}`, ordered like the stream; the hub sees it as the
//! [`Position`] `(ms, seq)` and subscribers as the event id `#{ms}-{seq}`.

use ssehub_hub::storage::{Position, hub_id};

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

impl From<Sid> for Position {
    fn from(s: Sid) -> Position {
        Position::new(s.ms, s.seq)
    }
}

impl From<Position> for Sid {
    fn from(p: Position) -> Sid {
        Sid {
            ms: p.major,
            seq: p.minor,
        }
    }
}

/// The Redis wire form, `{ms}-{seq}` (for XRANGE and friends; subscribers see
/// [`Sid::event_id`]).
impl std::fmt::Display for Sid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(Position::from(sid("5-10")) > Position::from(sid("5-9")));
        assert_eq!(Sid::from(Position::from(sid("7-3"))), sid("7-3"));
    }
}
