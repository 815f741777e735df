//! The subscriber's byte-level reader: HTTP/1.1 chunked de-framing and a fast event counter.
//!
//! A full WHATWG parser per event would make the generator, not the server, the bottleneck at a
//! million deliveries per second. Every peer we measure writes LF line ends, so an event ends at
//! the first `\n\n`; we count those with `memchr` and look inside an event only for the publish
//! timestamp the generator itself put in the data (`~T` + 20 digits of nanoseconds). Blocks
//! without that marker (comments, heartbeats, `retry:`, the nests list sent on connect) are not
//! counted, so only the generator's own publishes are.

use std::sync::LazyLock;

use memchr::memmem;

/// Built once: constructing a SIMD searcher per read would cost more than the search.
static EVENT_END: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\n\n"));

/// Marks the publish timestamp inside an event's data: `~T` then [`TS_DIGITS`] decimal digits.
pub const TS_MARKER: &[u8] = b"~T";
/// Fixed width so every publish body has the same length (one `Content-Length` per run).
pub const TS_DIGITS: usize = 20;

/// Writes the marker and the zero-padded timestamp into `out`.
pub fn write_timestamp(out: &mut Vec<u8>, ts_ns: u64) {
    out.extend_from_slice(TS_MARKER);
    let mut digits = [b'0'; TS_DIGITS];
    let mut v = ts_ns;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&digits);
}

/// The timestamp of the first marker in `event`, if it has one with all its digits.
pub fn extract_timestamp(event: &[u8]) -> Option<u64> {
    // memchr for the rare `~` beats building a substring searcher per event.
    let at = memchr::memchr_iter(b'~', event).find(|&i| event.get(i + 1) == Some(&TS_MARKER[1]))?
        + TS_MARKER.len();
    let digits = event.get(at..at + TS_DIGITS)?;
    let mut v: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// State of the chunked-transfer decoder between reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex size; `usize` is the value so far.
    Size(usize),
    /// After the size: skipping chunk extensions up to the line's LF.
    SizeLine(usize),
    /// Inside chunk data, this many bytes left.
    Data(usize),
    /// After chunk data: skipping its CRLF.
    DataEnd,
    /// The last chunk (size 0) was seen: the body is over.
    Done,
}

/// Removes HTTP/1.1 chunked framing, handing out the payload in slices of the input. Identity
/// mode (no `Transfer-Encoding: chunked`) passes everything through.
#[derive(Debug)]
pub struct Dechunker {
    state: Option<Chunk>,
}

impl Dechunker {
    pub fn new(chunked: bool) -> Self {
        Self {
            state: chunked.then_some(Chunk::Size(0)),
        }
    }

    /// True once the terminating zero-size chunk has been read.
    pub fn is_done(&self) -> bool {
        self.state == Some(Chunk::Done)
    }

    /// Feeds `input`, calling `payload` with each run of body bytes in order. Errors on a
    /// malformed size line (the stream cannot be trusted after that).
    pub fn feed(
        &mut self,
        input: &[u8],
        mut payload: impl FnMut(&[u8]),
    ) -> Result<(), &'static str> {
        let Some(mut state) = self.state else {
            payload(input);
            return Ok(());
        };
        let mut i = 0;
        while i < input.len() {
            state = match state {
                Chunk::Data(left) => {
                    // The hot path: hand out as much chunk data as this read holds, in one slice.
                    let take = left.min(input.len() - i);
                    payload(&input[i..i + take]);
                    i += take;
                    if take == left {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - take)
                    }
                }
                Chunk::Size(acc) => {
                    let b = input[i];
                    i += 1;
                    match b {
                        b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                            let digit = (b as char).to_digit(16).unwrap_or(0) as usize;
                            Chunk::Size(
                                acc.checked_mul(16)
                                    .and_then(|v| v.checked_add(digit))
                                    .ok_or("chunk size overflows")?,
                            )
                        }
                        b'\n' => size_done(acc),
                        b'\r' | b';' | b' ' | b'\t' => Chunk::SizeLine(acc),
                        _ => return Err("bad chunk size"),
                    }
                }
                Chunk::SizeLine(acc) => {
                    // Extensions are rare; skip to the LF with memchr rather than byte by byte.
                    match memchr::memchr(b'\n', &input[i..]) {
                        Some(at) => {
                            i += at + 1;
                            size_done(acc)
                        }
                        None => {
                            i = input.len();
                            Chunk::SizeLine(acc)
                        }
                    }
                }
                Chunk::DataEnd => {
                    let b = input[i];
                    i += 1;
                    match b {
                        b'\r' => Chunk::DataEnd,
                        b'\n' => Chunk::Size(0),
                        _ => return Err("chunk data not followed by CRLF"),
                    }
                }
                Chunk::Done => {
                    // Trailers or garbage after the end: nothing of ours.
                    i = input.len();
                    Chunk::Done
                }
            };
        }
        self.state = Some(state);
        Ok(())
    }
}

fn size_done(size: usize) -> Chunk {
    if size == 0 {
        Chunk::Done
    } else {
        Chunk::Data(size)
    }
}

/// What one scan call found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Events carrying a generator timestamp.
    pub events: u64,
}

/// Counts events in a de-chunked SSE byte stream, keeping only the tail of an event that is
/// split across reads (so a timestamp cut in two is still read whole).
#[derive(Debug, Default)]
pub struct EventScanner {
    /// Bytes of the current, unfinished event (only when it spans reads).
    carry: Vec<u8>,
    /// The previous slice ended with `\n`: a leading `\n` now ends an event.
    prev_lf: bool,
}

/// Events longer than this are not kept whole across reads: only their first bytes, which is
/// where our marker sits in every peer's framing. Bounds the per-connection memory.
const CARRY_LIMIT: usize = 4096;

impl EventScanner {
    /// Scans `s`, calling `on_ts` with the timestamp of each complete event that has one.
    pub fn scan(&mut self, s: &[u8], mut on_ts: impl FnMut(u64)) -> Found {
        let mut found = Found::default();
        if s.is_empty() {
            return found;
        }
        let mut start = 0;
        if self.prev_lf && s[0] == b'\n' {
            // "\n" | "\n": the event ended exactly at the read boundary.
            self.finish(&[], &mut found, &mut on_ts);
            start = 1;
        }
        while let Some(at) = EVENT_END.find(&s[start..]) {
            let end = start + at;
            self.finish(&s[start..end], &mut found, &mut on_ts);
            start = end + 2;
        }
        let rest = &s[start..];
        if !rest.is_empty() && self.carry.len() < CARRY_LIMIT {
            let room = CARRY_LIMIT - self.carry.len();
            self.carry.extend_from_slice(&rest[..rest.len().min(room)]);
        }
        // Only an LF not already spent on a "\n\n" can pair with the next read's first byte.
        self.prev_lf = rest.last() == Some(&b'\n');
        found
    }

    fn finish(&mut self, tail: &[u8], found: &mut Found, on_ts: &mut impl FnMut(u64)) {
        let ts = if self.carry.is_empty() {
            extract_timestamp(tail)
        } else {
            let room = CARRY_LIMIT.saturating_sub(self.carry.len());
            self.carry.extend_from_slice(&tail[..tail.len().min(room)]);
            let ts = extract_timestamp(&self.carry);
            self.carry.clear();
            ts
        };
        if let Some(ts) = ts {
            found.events += 1;
            on_ts(ts);
        }
    }
}

/// A parsed HTTP/1.1 response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Length of the head including the blank line.
    pub len: usize,
    pub chunked: bool,
    pub content_length: Option<usize>,
}

/// Parses a response head if `buf` holds all of it. Only what the generator needs: status,
/// `Transfer-Encoding: chunked`, `Content-Length`.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, &'static str> {
    let Some(end) = memmem::find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = &buf[..end];
    if head.len() < 12 || !head.starts_with(b"HTTP/1.") {
        return Err("not an HTTP/1.x response");
    }
    let status = std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or("bad status code")?;
    let mut chunked = false;
    let mut content_length = None;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"content-length") {
            content_length = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
        }
    }
    Ok(Some(Head {
        status,
        len: end + 4,
        chunked,
        content_length,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ts: u64) -> Vec<u8> {
        let mut data = b"data: {\"momma\":\"".to_vec();
        write_timestamp(&mut data, ts);
        data.extend_from_slice(b"xxxxxxxx\"}\n\n");
        data
    }

    /// Scans `stream` cut at every given boundary, returning the timestamps seen.
    fn scan_split(stream: &[u8], cuts: &[usize]) -> Vec<u64> {
        let mut sc = EventScanner::default();
        let mut seen = Vec::new();
        let mut from = 0;
        for &c in cuts.iter().chain(std::iter::once(&stream.len())) {
            sc.scan(&stream[from..c], |ts| seen.push(ts));
            from = c;
        }
        seen
    }

    #[test]
    fn timestamp_round_trips() {
        let mut v = Vec::new();
        write_timestamp(&mut v, 1_234_567_890_123);
        assert_eq!(v, b"~T00000001234567890123");
        assert_eq!(extract_timestamp(&v), Some(1_234_567_890_123));
        assert_eq!(extract_timestamp(b"data: ~T123"), None, "too few digits");
        assert_eq!(extract_timestamp(b":\n"), None);
    }

    #[test]
    fn counts_only_marked_events() {
        // ssehub's first bytes and heartbeats are lines that join the next event's block;
        // other peers send comment and retry blocks of their own: neither is counted.
        let mut s = b"retry: 3000\n".to_vec();
        s.extend(event(7));
        s.extend_from_slice(b":\n");
        s.extend(event(8));
        s.extend_from_slice(b":\nretry: 3000\n\n:\n\n");
        s.extend(event(9));
        assert_eq!(scan_split(&s, &[]), vec![7, 8, 9]);
    }

    #[test]
    fn events_split_at_every_position() {
        let mut s = b"data: []\n\n".to_vec();
        for ts in 1..=3 {
            s.extend(event(ts));
        }
        for cut in 0..=s.len() {
            assert_eq!(scan_split(&s, &[cut]), vec![1, 2, 3], "cut at {cut}");
        }
        // Two cuts, including inside the timestamp and between the two LFs.
        for a in 0..s.len() {
            for b in a..=s.len() {
                assert_eq!(scan_split(&s, &[a, b]), vec![1, 2, 3], "cuts at {a},{b}");
            }
        }
    }

    #[test]
    fn byte_at_a_time() {
        let mut s = Vec::new();
        for ts in [10, 20, 30] {
            s.extend(event(ts));
        }
        let cuts: Vec<usize> = (1..s.len()).collect();
        assert_eq!(scan_split(&s, &cuts), vec![10, 20, 30]);
    }

    #[test]
    fn multi_line_event_with_id_and_type() {
        let mut s = b"id: 1-1\nevent: message\ndata: a\ndata: ".to_vec();
        write_timestamp(&mut s, 99);
        s.extend_from_slice(b"\n\n");
        assert_eq!(scan_split(&s, &[5, 30]), vec![99]);
    }

    fn chunked(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
            out.extend_from_slice(p);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    fn dechunk_split(wire: &[u8], cut: usize) -> (Vec<u8>, bool) {
        let mut d = Dechunker::new(true);
        let mut out = Vec::new();
        d.feed(&wire[..cut], |p| out.extend_from_slice(p)).unwrap();
        d.feed(&wire[cut..], |p| out.extend_from_slice(p)).unwrap();
        (out, d.is_done())
    }

    #[test]
    fn dechunks_split_anywhere() {
        // A chunk boundary in the middle of an event and of its timestamp, as hyper may write.
        let e = event(123_456);
        let (a, b) = e.split_at(20);
        let mut wire = chunked(&[b"retry: 3000\n", a, b]);
        wire.extend_from_slice(b"0\r\n\r\n");
        let mut want = b"retry: 3000\n".to_vec();
        want.extend_from_slice(&e);
        for cut in 0..=wire.len() {
            let (got, done) = dechunk_split(&wire, cut);
            assert_eq!(got, want, "cut at {cut}");
            assert!(done);
        }
    }

    #[test]
    fn dechunk_then_scan_split_timestamp() {
        let e = event(42);
        let (a, b) = e.split_at(25); // inside the digits
        let wire = chunked(&[a, b]);
        for cut in 0..=wire.len() {
            let mut d = Dechunker::new(true);
            let mut sc = EventScanner::default();
            let mut seen = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                d.feed(part, |p| {
                    sc.scan(p, |ts| seen.push(ts));
                })
                .unwrap();
            }
            assert_eq!(seen, vec![42], "cut at {cut}");
        }
    }

    #[test]
    fn chunk_extensions_and_bad_sizes() {
        let mut d = Dechunker::new(true);
        let mut out = Vec::new();
        d.feed(b"3;ext=1\r\nabc\r\n0\r\n\r\n", |p| out.extend_from_slice(p))
            .unwrap();
        assert_eq!(out, b"abc");
        assert!(d.is_done());
        assert!(Dechunker::new(true).feed(b"zz\r\n", |_| {}).is_err());
    }

    #[test]
    fn identity_passes_through() {
        let mut d = Dechunker::new(false);
        let mut out = Vec::new();
        d.feed(b"3\r\nabc", |p| out.extend_from_slice(p)).unwrap();
        assert_eq!(out, b"3\r\nabc");
    }

    #[test]
    fn parses_heads() {
        let h = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\ntransfer-encoding: Chunked\r\n\r\n:";
        assert_eq!(
            parse_head(h).unwrap(),
            Some(Head {
                status: 200,
                len: h.len() - 1,
                chunked: true,
                content_length: None
            })
        );
        let h = b"HTTP/1.1 201 Created\r\nContent-Length: 12\r\n\r\n";
        let head = parse_head(h).unwrap().unwrap();
        assert_eq!(
            (head.status, head.content_length, head.chunked),
            (201, Some(12), false)
        );
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n").unwrap(), None);
        assert!(parse_head(b"SSH-2.0\r\n\r\n").is_err());
    }
}
