//! [`Record`] and [`StoredRecord`], and their on-disk encoding.
//!
//! The log does not interpret the SSE frame: it stores the bytes the hub encoded once, next to
//! what the hub needs to route a record without decoding the frame (topics, private flag,
//! publisher id) and to apply age retention (publish time).
//!
//! Encoding (little-endian), version 1:
//! `version u8 | flags u8 | published_ms u64 | topic count u16 | (len u32, bytes)* |
//! [publisher id: len u32, bytes] | frame (the rest)`.
//! Decoding checks every length, so a damaged value is a [`StoreError::Decode`], never a panic.

use bytes::Bytes;

use crate::StoreError;

const VERSION: u8 = 1;
const FLAG_PRIVATE: u8 = 1;
const FLAG_PUBLISHER_ID: u8 = 2;

/// One update to append: already encoded, plus its routing data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Topics, canonical first (at least one for the hub; the log does not require it).
    pub topics: Vec<String>,
    /// Whether only authorized subscribers may receive it.
    pub private: bool,
    /// The publisher-chosen id, indexed for replay (`Last-Event-ID`) while retained.
    pub publisher_id: Option<String>,
    /// The encoded `text/event-stream` frame, opaque to the log.
    pub frame: Bytes,
    /// Publish time in unix milliseconds; age retention compares it with the clock.
    pub published_ms: u64,
}

/// A record read back from the log, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Position in the log's total order; consecutive, starting at 1, never reused.
    pub seq: u64,
    /// The record as appended.
    pub record: Record,
}

impl Record {
    /// A record of `frame` for `topics`, published now.
    pub fn new(topics: Vec<String>, frame: impl Into<Bytes>) -> Self {
        Record {
            topics,
            frame: frame.into(),
            published_ms: now_ms(),
            ..Record::default()
        }
    }

    /// Size of the encoded value: what byte retention counts.
    pub fn encoded_len(&self) -> usize {
        12 + self.topics.iter().map(|t| 4 + t.len()).sum::<usize>()
            + self.publisher_id.as_ref().map_or(0, |p| 4 + p.len())
            + self.frame.len()
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let n_topics = u16::try_from(self.topics.len())
            .map_err(|_| StoreError::TooLarge("more than 65535 topics"))?;
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(VERSION);
        let mut flags = 0;
        if self.private {
            flags |= FLAG_PRIVATE;
        }
        if self.publisher_id.is_some() {
            flags |= FLAG_PUBLISHER_ID;
        }
        out.push(flags);
        out.extend_from_slice(&self.published_ms.to_le_bytes());
        out.extend_from_slice(&n_topics.to_le_bytes());
        let mut put = |s: &str| -> Result<(), StoreError> {
            let len = u32::try_from(s.len())
                .map_err(|_| StoreError::TooLarge("a topic or id > 4 GiB"))?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(s.as_bytes());
            Ok(())
        };
        for t in &self.topics {
            put(t)?;
        }
        if let Some(p) = &self.publisher_id {
            put(p)?;
        }
        out.extend_from_slice(&self.frame);
        Ok(out)
    }

    pub(crate) fn decode(seq: u64, buf: &[u8]) -> Result<Record, StoreError> {
        let err = |reason| StoreError::Decode { seq, reason };
        let mut r = Reader { buf };
        if r.take(1).ok_or(err("empty"))?[0] != VERSION {
            return Err(err("unknown record version"));
        }
        let flags = r.take(1).ok_or(err("truncated flags"))?[0];
        let published_ms = u64::from_le_bytes(r.array().ok_or(err("truncated time"))?);
        let n = u16::from_le_bytes(r.array().ok_or(err("truncated topic count"))?);
        let mut topics = Vec::with_capacity(n as usize);
        for _ in 0..n {
            topics.push(r.string().ok_or(err("truncated or non-UTF-8 topic"))?);
        }
        let publisher_id = if flags & FLAG_PUBLISHER_ID != 0 {
            Some(
                r.string()
                    .ok_or(err("truncated or non-UTF-8 publisher id"))?,
            )
        } else {
            None
        };
        Ok(Record {
            topics,
            private: flags & FLAG_PRIVATE != 0,
            publisher_id,
            frame: Bytes::copy_from_slice(r.buf),
            published_ms,
        })
    }

    /// Reads only the publisher id and time of an encoded record: what trimming needs, without
    /// copying the frame.
    pub(crate) fn peek(seq: u64, buf: &[u8]) -> Result<(Option<&str>, u64), StoreError> {
        let err = |reason| StoreError::Decode { seq, reason };
        let mut r = Reader { buf };
        if r.take(1).ok_or(err("empty"))?[0] != VERSION {
            return Err(err("unknown record version"));
        }
        let flags = r.take(1).ok_or(err("truncated flags"))?[0];
        let published_ms = u64::from_le_bytes(r.array().ok_or(err("truncated time"))?);
        let n = u16::from_le_bytes(r.array().ok_or(err("truncated topic count"))?);
        for _ in 0..n {
            r.str().ok_or(err("truncated topic"))?;
        }
        let pid = if flags & FLAG_PUBLISHER_ID != 0 {
            Some(r.str().ok_or(err("truncated publisher id"))?)
        } else {
            None
        };
        Ok((pid, published_ms))
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        std::str::from_utf8(self.take(len)?).ok()
    }

    fn string(&mut self) -> Option<String> {
        self.str().map(str::to_owned)
    }
}

/// The wall clock in unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_truncation() {
        let r = Record {
            topics: vec!["a".into(), "https://x/{y}".into()],
            private: true,
            publisher_id: Some("p-1".into()),
            frame: Bytes::from_static(b"id: 1\ndata: x\n\n"),
            published_ms: 42,
        };
        let enc = r.encode().unwrap();
        assert_eq!(enc.len(), r.encoded_len());
        assert_eq!(Record::decode(7, &enc).unwrap(), r);
        assert_eq!(Record::peek(7, &enc).unwrap(), (Some("p-1"), 42));
        // Every strict prefix that cuts into the header, topics or id fails cleanly.
        let header_end = enc.len() - r.frame.len();
        for cut in 0..header_end {
            assert!(Record::decode(7, &enc[..cut]).is_err(), "cut at {cut}");
        }
        let plain = Record::new(vec!["t".into()], "data: y\n\n");
        assert_eq!(Record::decode(1, &plain.encode().unwrap()).unwrap(), plain);
    }
}
