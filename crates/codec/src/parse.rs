//! Incremental parsing of a `text/event-stream` body.
//!
//! This module owns the client side of the wire format: it follows WHATWG HTML, "Interpreting an
//! event stream" (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>),
//! step by step. [`Parser`] accepts bytes in chunks of any size and hands out [`Frame`]s as soon
//! as the lines that make them are complete; it never panics on any input.
//!
//! Where the specification speaks of an `EventSource`, the parser keeps what that object would:
//! the last event ID string, which outlives a single event and, through
//! [`Parser::reset_stream`], a single connection.

use std::borrow::Cow;
use std::mem;
use std::ops::Range;

/// An event as the specification dispatches it to `EventSource` listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEvent {
    /// The `event` field, or `"message"` when it was absent or empty.
    pub event_type: String,
    /// The `data` lines joined with LF.
    pub data: String,
    /// The last event ID string at dispatch time; it carries over from earlier events.
    pub last_event_id: String,
}

/// What the parser reports, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A dispatched event.
    Event(MessageEvent),
    /// A valid `retry` field: the new reconnection time in milliseconds. Reported as soon as the
    /// field is read, not at the end of the event, as the specification applies it at once.
    Retry(u64),
    /// A comment line: the text after the `:`, verbatim (no space stripped).
    Comment(String),
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// An incremental `text/event-stream` parser.
///
/// Feed it bytes with [`feed`](Self::feed) and take frames with
/// [`next_frame`](Self::next_frame) until it returns `None`; at end of stream, call
/// [`finish`](Self::finish) until it returns `None`.
///
/// Memory is what is buffered and not yet consumed: the current partial line, plus the data of
/// the event being assembled. Neither has a cap here; a caller that reads from an untrusted
/// peer should bound how much it feeds without getting a frame back.
#[derive(Debug, Default)]
pub struct Parser {
    lines: LineBuffer,
    state: EventState,
}

impl Parser {
    /// A parser at the start of a stream, with an empty last event ID.
    pub fn new() -> Self {
        Self::default()
    }

    /// Buffers `chunk`. Chunk boundaries may fall anywhere, including inside a UTF-8 character,
    /// the byte order mark, or a CRLF pair.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.lines.feed(chunk);
    }

    /// Processes buffered complete lines until one yields a frame, and returns it; `None` once
    /// every complete line is consumed (a partial line stays buffered for the next feed).
    pub fn next_frame(&mut self) -> Option<Frame> {
        while let Some(line) = self.lines.next_line() {
            if let Some(frame) = self.state.process_line(&self.lines.buf[line]) {
                return Some(frame);
            }
        }
        None
    }

    /// The last event ID string in force: set when an event is dispatched (a blank line ends
    /// it), whether or not the event carried data, and kept until a later `id` field replaces
    /// it.
    pub fn last_event_id(&self) -> &str {
        &self.state.last_event_id
    }

    /// Seeds the last event ID, as a client resuming from a known id does. It replaces any `id`
    /// already read for the event in progress.
    pub fn set_last_event_id(&mut self, id: &str) {
        self.state.last_event_id.clear();
        self.state.last_event_id.push_str(id);
        self.state.id_buffer.clear();
        self.state.id_buffer.push_str(id);
    }

    /// Prepares for a new connection: drops buffered bytes, the event in progress, and the
    /// "start of stream" state (so a new leading BOM is stripped again). The last event ID is
    /// kept, since a reconnecting client resumes from it; an `id` read for an event that was
    /// never dispatched is forgotten.
    pub fn reset_stream(&mut self) {
        self.lines = LineBuffer::default();
        self.state.reset_stream();
    }

    /// Signals end of stream. Each call returns the next frame left in complete buffered lines;
    /// once they are drained it returns `None`, drops the rest (a final line with no line end,
    /// and an event with no terminating blank line, is never dispatched) and leaves the parser
    /// as [`reset_stream`](Self::reset_stream) does, ready for a new stream.
    pub fn finish(&mut self) -> Option<Frame> {
        let frame = self.next_frame();
        if frame.is_none() {
            self.reset_stream();
        }
        frame
    }
}

/// Parses a whole stream at once: feeds `bytes`, collects every frame, then finishes.
pub fn parse_all(bytes: &[u8]) -> Vec<Frame> {
    let mut parser = Parser::new();
    parser.feed(bytes);
    let mut frames = Vec::new();
    while let Some(frame) = parser.next_frame() {
        frames.push(frame);
    }
    while let Some(frame) = parser.finish() {
        frames.push(frame);
    }
    frames
}

/// Raw bytes, cut into lines on CRLF, LF and CR.
///
/// Lines are cut on bytes before decoding. That is equivalent to decoding first: CR and LF are
/// ASCII, never part of a multi-byte UTF-8 sequence, and a UTF-8 decoder ends any incomplete
/// sequence at them with one U+FFFD, just as decoding the line alone at its end does. It also
/// means a character split across chunks is simply reassembled in the buffer.
#[derive(Debug, Default)]
struct LineBuffer {
    buf: Vec<u8>,
    /// Start of the bytes not yet handed out as lines.
    pos: usize,
    /// `buf[pos..scanned]` holds no CR or LF, so a long line fed in small chunks is scanned once.
    scanned: usize,
    /// The last line ended with a CR that was the last byte buffered; if the next byte is LF,
    /// it belongs to that line end and must not produce an extra empty line.
    skip_lf: bool,
    /// Whether the start of the stream has been checked for a byte order mark.
    bom_checked: bool,
}

/// Above this capacity an emptied buffer gives memory back, so one huge line does not pin
/// memory for the rest of a long-lived connection.
const RETAINED_CAPACITY: usize = 64 * 1024;

impl LineBuffer {
    fn feed(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        // Drop consumed bytes only when they are at least half the buffer, so the cost of the
        // move is amortised over the bytes consumed.
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.scanned -= self.pos;
            self.pos = 0;
            if self.buf.capacity() > RETAINED_CAPACITY
                && self.buf.len() + chunk.len() <= RETAINED_CAPACITY / 2
            {
                self.buf.shrink_to(RETAINED_CAPACITY / 2);
            }
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete line, without its line end, as a range of `buf`.
    fn next_line(&mut self) -> Option<Range<usize>> {
        if !self.bom_checked {
            let head = &self.buf[self.pos..];
            if head.starts_with(BOM) {
                self.pos += BOM.len();
                self.scanned = self.scanned.max(self.pos);
            } else if BOM.starts_with(head) {
                // Too few bytes to tell yet (an empty buffer included).
                return None;
            }
            self.bom_checked = true;
        }
        if self.skip_lf {
            let next = *self.buf.get(self.pos)?;
            if next == b'\n' {
                self.pos += 1;
                self.scanned = self.scanned.max(self.pos);
            }
            self.skip_lf = false;
        }
        let from = self.scanned;
        let Some(offset) = memchr::memchr2(b'\n', b'\r', &self.buf[from..]) else {
            self.scanned = self.buf.len();
            return None;
        };
        let start = self.pos;
        let end = from + offset;
        self.pos = end + 1;
        if self.buf[end] == b'\r' {
            match self.buf.get(end + 1) {
                Some(b'\n') => self.pos += 1,
                Some(_) => {}
                None => self.skip_lf = true,
            }
        }
        self.scanned = self.pos;
        Some(start..end)
    }
}

/// The buffers the specification attaches to a stream, plus the `EventSource`'s last event ID
/// string.
#[derive(Debug, Default)]
struct EventState {
    data: String,
    event_type: String,
    id_buffer: String,
    last_event_id: String,
}

impl EventState {
    fn reset_stream(&mut self) {
        self.data = String::new();
        self.event_type = String::new();
        // The specification starts each stream's buffer empty, which would make the first event
        // after a reconnect without an `id` field report "" instead of the id the client resumed
        // from. Browsers keep the id, and so do we.
        self.id_buffer.clone_from(&self.last_event_id);
    }

    fn process_line(&mut self, line: &[u8]) -> Option<Frame> {
        if line.is_empty() {
            return self.dispatch();
        }
        let line: Cow<'_, str> = String::from_utf8_lossy(line);
        if let Some(text) = line.strip_prefix(':') {
            return Some(Frame::Comment(text.to_owned()));
        }
        let (name, value) = match line.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        match name {
            "event" => {
                self.event_type.clear();
                self.event_type.push_str(value);
            }
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            // An id with NUL is ignored: it could not be sent back in a Last-Event-ID header.
            "id" if !value.contains('\0') => {
                self.id_buffer.clear();
                self.id_buffer.push_str(value);
            }
            // `u64::from_str` alone would also accept a leading `+`; the specification wants
            // ASCII digits only. With digits only, the one way to fail is overflow, which is
            // ignored like any other unusable value.
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                return value.parse().ok().map(Frame::Retry);
            }
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<Frame> {
        self.last_event_id.clone_from(&self.id_buffer);
        if self.data.is_empty() {
            self.event_type.clear();
            return None;
        }
        if self.data.ends_with('\n') {
            self.data.pop();
        }
        let event_type = if self.event_type.is_empty() {
            "message".to_owned()
        } else {
            mem::take(&mut self.event_type)
        };
        Some(Frame::Event(MessageEvent {
            event_type,
            data: mem::take(&mut self.data),
            last_event_id: self.last_event_id.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(event_type: &str, data: &str, last_event_id: &str) -> Frame {
        Frame::Event(MessageEvent {
            event_type: event_type.to_owned(),
            data: data.to_owned(),
            last_event_id: last_event_id.to_owned(),
        })
    }

    fn comment(text: &str) -> Frame {
        Frame::Comment(text.to_owned())
    }

    fn run(chunks: &[&[u8]]) -> Vec<Frame> {
        let mut parser = Parser::new();
        let mut frames = Vec::new();
        for chunk in chunks {
            parser.feed(chunk);
            while let Some(frame) = parser.next_frame() {
                frames.push(frame);
            }
        }
        while let Some(frame) = parser.finish() {
            frames.push(frame);
        }
        frames
    }

    /// Checks `input` parses to `expected` whole, byte by byte, in pairs and triples, split
    /// in two at every position, and in a few pseudo-random chunkings.
    #[track_caller]
    fn check(input: &[u8], expected: &[Frame]) {
        assert_eq!(parse_all(input), expected, "whole input {input:?}");
        for size in 1..=3 {
            let chunks: Vec<&[u8]> = input.chunks(size).collect();
            assert_eq!(run(&chunks), expected, "{size}-byte chunks of {input:?}");
        }
        for at in 0..=input.len() {
            let (a, b) = input.split_at(at);
            assert_eq!(run(&[a, b]), expected, "split at {at} of {input:?}");
        }
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        for _ in 0..8 {
            let mut chunks = Vec::new();
            let mut rest = input;
            while !rest.is_empty() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let take = (seed % 7) as usize % (rest.len() + 1);
                let (a, b) = rest.split_at(take);
                chunks.push(a);
                rest = b;
            }
            assert_eq!(run(&chunks), expected, "chunks {chunks:?}");
        }
    }

    #[test]
    fn simple_message() {
        check(b"data: hello\n\n", &[msg("message", "hello", "")]);
    }

    #[test]
    fn line_ends_lf_cr_crlf() {
        check(
            b"data: a\rdata: b\r\ndata: c\n\r\n",
            &[msg("message", "a\nb\nc", "")],
        );
        check(b"data: x\r\r", &[msg("message", "x", "")]);
        check(b"data: x\r\n\r\n", &[msg("message", "x", "")]);
    }

    #[test]
    fn cr_then_lf_in_next_chunk_is_one_line_end() {
        // A phantom empty line here would dispatch "a" early and then "b" separately.
        assert_eq!(
            run(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]),
            [msg("message", "a\nb", "")]
        );
    }

    #[test]
    fn cr_at_end_of_chunk_dispatches_without_waiting() {
        let mut parser = Parser::new();
        parser.feed(b"data: a\r\r");
        assert_eq!(parser.next_frame(), Some(msg("message", "a", "")));
        parser.feed(b"\n");
        assert_eq!(parser.next_frame(), None);
        parser.feed(b"data: b\n\n");
        assert_eq!(parser.next_frame(), Some(msg("message", "b", "")));
    }

    #[test]
    fn lf_cr_is_two_line_ends() {
        check(b"data: a\n\r", &[msg("message", "a", "")]);
    }

    #[test]
    fn comment_line() {
        check(
            b":hello\n: spaced\n:\ndata: x\n\n",
            &[
                comment("hello"),
                comment(" spaced"),
                comment(""),
                msg("message", "x", ""),
            ],
        );
    }

    #[test]
    fn comment_does_not_end_event() {
        check(
            b"data: a\n:c\ndata: b\n\n",
            &[comment("c"), msg("message", "a\nb", "")],
        );
    }

    #[test]
    fn field_without_colon_has_empty_value() {
        check(b"data\n\n", &[msg("message", "", "")]);
        check(b"data\ndata\n\n", &[msg("message", "\n", "")]);
        check(b"event\ndata: x\n\n", &[msg("message", "x", "")]);
    }

    #[test]
    fn one_leading_space_stripped() {
        check(b"data:x\n\n", &[msg("message", "x", "")]);
        check(b"data: x\n\n", &[msg("message", "x", "")]);
        check(b"data:  x\n\n", &[msg("message", " x", "")]);
        check(b"data: \n\n", &[msg("message", "", "")]);
        check(b"data:\tx\n\n", &[msg("message", "\tx", "")]);
    }

    #[test]
    fn only_first_colon_splits() {
        check(b"data: a: b:c\n\n", &[msg("message", "a: b:c", "")]);
    }

    #[test]
    fn data_lines_joined_with_lf_and_trailing_lf_removed() {
        check(
            b"data: a\ndata:\ndata: b\ndata:\n\n",
            &[msg("message", "a\n\nb\n", "")],
        );
    }

    #[test]
    fn empty_data_dispatches_empty_message() {
        check(b"data:\n\n", &[msg("message", "", "")]);
    }

    #[test]
    fn no_data_dispatches_nothing_and_resets_type() {
        check(b"event: ping\n\ndata: x\n\n", &[msg("message", "x", "")]);
        check(b"\n\n\n", &[]);
    }

    #[test]
    fn id_without_data_still_sets_last_event_id() {
        let mut parser = Parser::new();
        parser.feed(b"id: 5\n\n");
        assert_eq!(parser.next_frame(), None);
        assert_eq!(parser.last_event_id(), "5");
        check(b"id: 5\n\ndata: x\n\n", &[msg("message", "x", "5")]);
    }

    #[test]
    fn event_sets_type() {
        check(b"event: add\ndata: 1\n\n", &[msg("add", "1", "")]);
        check(b"event: a\nevent: b\ndata: 1\n\n", &[msg("b", "1", "")]);
    }

    #[test]
    fn empty_event_type_is_message() {
        check(b"event:\ndata: 1\n\n", &[msg("message", "1", "")]);
        check(b"event: \ndata: 1\n\n", &[msg("message", "1", "")]);
    }

    #[test]
    fn event_type_does_not_carry_over() {
        check(
            b"event: add\ndata: 1\n\ndata: 2\n\n",
            &[msg("add", "1", ""), msg("message", "2", "")],
        );
    }

    #[test]
    fn field_names_are_case_sensitive() {
        check(b"Data: x\nDATA: y\n\n", &[]);
        check(b"EVENT: a\ndata: x\n\n", &[msg("message", "x", "")]);
    }

    #[test]
    fn id_sets_last_event_id_and_persists() {
        check(
            b"id: 1\ndata: a\n\ndata: b\n\n",
            &[msg("message", "a", "1"), msg("message", "b", "1")],
        );
    }

    #[test]
    fn id_takes_effect_at_dispatch_not_when_read() {
        let mut parser = Parser::new();
        parser.feed(b"id: 1\ndata: a\n\nid: 2\n");
        assert_eq!(parser.next_frame(), Some(msg("message", "a", "1")));
        assert_eq!(parser.next_frame(), None);
        assert_eq!(parser.last_event_id(), "1");
        parser.feed(b"data: b\n\n");
        assert_eq!(parser.next_frame(), Some(msg("message", "b", "2")));
        assert_eq!(parser.last_event_id(), "2");
    }

    #[test]
    fn empty_id_resets_last_event_id() {
        check(
            b"id: 1\ndata: a\n\nid\ndata: b\n\nid:\ndata: c\n\n",
            &[
                msg("message", "a", "1"),
                msg("message", "b", ""),
                msg("message", "c", ""),
            ],
        );
    }

    #[test]
    fn id_with_nul_is_ignored() {
        check(
            b"id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n",
            &[msg("message", "a", "1"), msg("message", "b", "1")],
        );
    }

    #[test]
    fn id_keeps_spaces_after_the_first() {
        check(b"id:  7 \ndata: a\n\n", &[msg("message", "a", " 7 ")]);
    }

    #[test]
    fn retry_valid_is_reported_at_once() {
        let mut parser = Parser::new();
        parser.feed(b"retry: 1500\ndata: a\n");
        assert_eq!(parser.next_frame(), Some(Frame::Retry(1500)));
        assert_eq!(parser.next_frame(), None);
        check(
            b"retry: 1500\ndata: a\n\n",
            &[Frame::Retry(1500), msg("message", "a", "")],
        );
    }

    #[test]
    fn retry_alone_dispatches_no_event() {
        check(b"retry: 10\n\n", &[Frame::Retry(10)]);
    }

    #[test]
    fn retry_leading_zeros_ok() {
        check(b"retry: 007\n\n", &[Frame::Retry(7)]);
        check(b"retry:0\n\n", &[Frame::Retry(0)]);
    }

    #[test]
    fn retry_max_u64_ok() {
        check(b"retry: 18446744073709551615\n", &[Frame::Retry(u64::MAX)]);
    }

    #[test]
    fn retry_invalid_is_ignored() {
        for bad in [
            &b"retry:\n"[..],
            b"retry: \n",
            b"retry\n",
            b"retry: 1a\n",
            b"retry: -1\n",
            b"retry: +1\n",
            b"retry: 1.5\n",
            b"retry: 1 \n",
            b"retry:  1\n",
            b"retry: \xD9\xA1\n", // ARABIC-INDIC DIGIT ONE is not an ASCII digit
            b"retry: 18446744073709551616\n",
            b"retry: 99999999999999999999999\n",
        ] {
            check(bad, &[]);
        }
    }

    #[test]
    fn unknown_fields_ignored() {
        check(
            b"foo: bar\nDATA: no\nid : 3\ndata: x\n\n",
            &[msg("message", "x", "")],
        );
    }

    #[test]
    fn invalid_utf8_becomes_replacement_character() {
        check(
            b"data: a\xFFb\xC3\n\n",
            &[msg("message", "a\u{FFFD}b\u{FFFD}", "")],
        );
        // One U+FFFD per maximal ill-formed subpart, as a UTF-8 decoder produces.
        check(b"data: \xE2\x82\n\n", &[msg("message", "\u{FFFD}", "")]);
        check(
            b"data: \xF0\x80\x80\n\n",
            &[msg("message", "\u{FFFD}\u{FFFD}\u{FFFD}", "")],
        );
    }

    #[test]
    fn invalid_utf8_in_field_name_makes_it_unknown() {
        check(b"dat\xE1: x\ndata\xFF: y\n\n", &[]);
    }

    #[test]
    fn multibyte_char_split_across_chunks_is_valid() {
        let euro = "data: \u{20AC}\u{1F600}\n\n".as_bytes();
        for at in 0..euro.len() {
            let (a, b) = euro.split_at(at);
            assert_eq!(run(&[a, b]), [msg("message", "\u{20AC}\u{1F600}", "")]);
        }
        check(euro, &[msg("message", "\u{20AC}\u{1F600}", "")]);
    }

    #[test]
    fn leading_bom_stripped() {
        check(b"\xEF\xBB\xBFdata: a\n\n", &[msg("message", "a", "")]);
    }

    #[test]
    fn leading_bom_split_across_chunks_stripped() {
        assert_eq!(
            run(&[b"\xEF", b"\xBB", b"\xBF", b"data: a\n\n"]),
            [msg("message", "a", "")]
        );
        assert_eq!(
            run(&[b"\xEF\xBB", b"\xBFdata: a\n\n"]),
            [msg("message", "a", "")]
        );
    }

    #[test]
    fn second_bom_is_kept() {
        // After the first BOM, a second one starts the field name, which is then unknown.
        check(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\n", &[]);
        check(
            b"\xEF\xBB\xBFdata: \xEF\xBB\xBFa\n\n",
            &[msg("message", "\u{FEFF}a", "")],
        );
    }

    #[test]
    fn bom_not_at_start_is_kept() {
        check(b"\n\xEF\xBB\xBFdata: a\n\n", &[]);
        check(b"data: \xEF\xBB\xBF\n\n", &[msg("message", "\u{FEFF}", "")]);
    }

    #[test]
    fn partial_bom_prefix_is_ordinary_bytes() {
        check(
            b"\xEF\xBBdata: a\n\ndata: b\n\n",
            &[msg("message", "b", "")],
        );
        check(b"\xEFdata: a\n\n", &[]);
        check(b"\xEF\n\ndata: a\n\n", &[msg("message", "a", "")]);
    }

    #[test]
    fn unterminated_last_event_dropped_at_eof() {
        check(b"data: a\n\ndata: b\n", &[msg("message", "a", "")]);
        check(b"data: a\n\ndata: b", &[msg("message", "a", "")]);
        check(b"data: a", &[]);
    }

    #[test]
    fn unterminated_last_line_dropped_at_eof() {
        check(b"retry: 5", &[]);
        check(b":hi", &[]);
        check(b"retry: 5\r", &[Frame::Retry(5)]);
    }

    #[test]
    fn finish_drains_one_frame_per_call() {
        let mut parser = Parser::new();
        parser.feed(b"data: a\n\ndata: b\n\ndata: c");
        assert_eq!(parser.finish(), Some(msg("message", "a", "")));
        assert_eq!(parser.finish(), Some(msg("message", "b", "")));
        assert_eq!(parser.finish(), None);
        assert_eq!(parser.finish(), None);
    }

    #[test]
    fn finish_forgets_undispatched_id() {
        let mut parser = Parser::new();
        parser.feed(b"id: 1\ndata: a\n\nid: 2\ndata: b\n");
        assert_eq!(parser.next_frame(), Some(msg("message", "a", "1")));
        assert_eq!(parser.finish(), None);
        assert_eq!(parser.last_event_id(), "1");
        parser.feed(b"data: c\n\n");
        assert_eq!(parser.next_frame(), Some(msg("message", "c", "1")));
    }

    #[test]
    fn set_last_event_id_seeds_events() {
        let mut parser = Parser::new();
        parser.set_last_event_id("41");
        assert_eq!(parser.last_event_id(), "41");
        parser.feed(b"data: a\n\nid: 42\ndata: b\n\n");
        assert_eq!(parser.next_frame(), Some(msg("message", "a", "41")));
        assert_eq!(parser.next_frame(), Some(msg("message", "b", "42")));
    }

    #[test]
    fn reset_stream_keeps_last_event_id_and_drops_partial_state() {
        let mut parser = Parser::new();
        parser.feed(b"\xEF\xBB\xBFid: 1\ndata: a\n\nevent: x\nid: 2\ndata: partial\ndata: cut");
        assert_eq!(parser.next_frame(), Some(msg("message", "a", "1")));
        assert_eq!(parser.next_frame(), None);
        parser.reset_stream();
        assert_eq!(parser.last_event_id(), "1");
        // The new stream's leading BOM is stripped again.
        parser.feed(b"\xEF\xBB\xBFdata: b\n\n");
        assert_eq!(parser.next_frame(), Some(msg("message", "b", "1")));
        assert_eq!(parser.next_frame(), None);
    }

    #[test]
    fn reset_stream_forgets_pending_cr() {
        let mut parser = Parser::new();
        parser.feed(b"data: a\r");
        assert_eq!(parser.next_frame(), None);
        parser.reset_stream();
        // This LF is a line end of the new stream, so it is an (empty) line: nothing pending,
        // nothing dispatched, and the following event is intact.
        parser.feed(b"\ndata: b\n\n");
        assert_eq!(parser.next_frame(), Some(msg("message", "b", "")));
    }

    #[test]
    fn nul_in_data_and_event_kept() {
        check(b"event: a\0b\ndata: \0\n\n", &[msg("a\0b", "\0", "")]);
    }

    #[test]
    fn long_line_in_small_chunks() {
        let mut input = b"data: ".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100_000));
        input.extend_from_slice(b"\n\n");
        let mut parser = Parser::new();
        for chunk in input.chunks(7) {
            parser.feed(chunk);
            if let Some(frame) = parser.next_frame() {
                let Frame::Event(event) = frame else {
                    panic!("unexpected {frame:?}")
                };
                assert_eq!(event.data.len(), 100_000);
                return;
            }
        }
        panic!("no event");
    }

    #[test]
    fn consumed_bytes_are_released() {
        let mut parser = Parser::new();
        for _ in 0..10_000 {
            parser.feed(b"data: 0123456789\n\n");
            assert!(parser.next_frame().is_some());
        }
        assert!(
            parser.lines.buf.len() <= 64,
            "buffer grew to {}",
            parser.lines.buf.len()
        );
    }

    #[test]
    fn big_buffer_capacity_given_back() {
        let mut parser = Parser::new();
        let mut big = b"data: ".to_vec();
        big.extend(std::iter::repeat_n(b'y', 1 << 20));
        big.extend_from_slice(b"\n\n");
        parser.feed(&big);
        assert!(parser.next_frame().is_some());
        parser.feed(b"data: z\n\n");
        assert!(parser.next_frame().is_some());
        assert!(parser.lines.buf.capacity() <= RETAINED_CAPACITY);
    }
}
