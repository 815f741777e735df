//! Encoding events into `text/event-stream` frames.
//!
//! This module owns the server side of the wire format: the [`Event`] builder, the rules that
//! keep a frame well formed (field values that could break a line are rejected up front, data
//! and comment text is split into one line per source line), and the exact byte layout.
//!
//! A frame is laid out in this fixed order, every line ending in `\n`:
//!
//! 1. comment lines, `:` followed by the text with no added space,
//! 2. `event: NAME`,
//! 3. `id: ID`,
//! 4. `retry: MS`,
//! 5. one `data: LINE` line per line of the data,
//! 6. a blank line.
//!
//! A field whose value is empty is written without the space (`id:`, `data:`), since a parser
//! strips at most one space after the colon and an empty value needs none.
//!
//! Bytes that are not a message (keep-alives, the first bytes of a stream, reconnection advice)
//! are written as lines that end no frame: [`comment_line`] and [`retry_line`], with no blank
//! line after them. A WHATWG receiver dispatches nothing for a frame without data either, but
//! several popular clients dispatch a message at every blank line (`@microsoft/fetch-event-source`
//! always, `extended-eventsource` after its first blank line, `httpx-sse` once a `retry` or an id
//! was seen), and `reqwest-eventsource` applies a `retry` only when it comes with an event's
//! data: a lone line is ignored by all of them, and a `retry:` line is taken by the next event.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

/// Why an [`Event`] field was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The id contained CR, LF or NUL.
    #[error("id must not contain CR, LF or NUL")]
    InvalidId,
    /// The event name contained CR or LF.
    #[error("event name must not contain CR or LF")]
    InvalidEvent,
}

/// One Server-Sent Event, built field by field and encoded once.
///
/// Fields that are never set are not written. `Event::new().encode()` is a lone `\n`: a blank
/// line, which a WHATWG receiver treats as "dispatch nothing".
///
/// A frame always ends with its blank line, so a frame without data (only a comment, a `retry`
/// or an id) is a message to the clients that dispatch at every blank line: send a comment or
/// a reconnection time on its own with [`comment_line`] or [`retry_line`] instead.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    comment: Option<String>,
    event: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
    data: Option<String>,
}

impl Event {
    /// An event with no fields.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the data. Any text is accepted: CRLF, CR and LF inside it become separate `data:`
    /// lines, which a receiver joins back with LF.
    pub fn data(mut self, data: impl Into<String>) -> Self {
        self.data = Some(data.into());
        self
    }

    /// Sets the event name (the receiver's event type).
    ///
    /// # Errors
    ///
    /// [`EncodeError::InvalidEvent`] if `name` contains CR or LF.
    pub fn event(mut self, name: impl Into<String>) -> Result<Self, EncodeError> {
        let name = name.into();
        validate_event_name(&name)?;
        self.event = Some(name);
        Ok(self)
    }

    /// Sets the id. An empty id is meaningful: it resets the receiver's last event id.
    ///
    /// # Errors
    ///
    /// [`EncodeError::InvalidId`] if `id` contains CR, LF or NUL.
    pub fn id(mut self, id: impl Into<String>) -> Result<Self, EncodeError> {
        let id = id.into();
        validate_id(&id)?;
        self.id = Some(id);
        Ok(self)
    }

    /// Sets the reconnection time, written in whole milliseconds.
    ///
    /// Sub-millisecond parts are truncated; a duration longer than `u64::MAX` milliseconds is
    /// written as `u64::MAX`.
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = Some(u64::try_from(retry.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Sets a comment. It is split on CRLF, CR and LF, and each line is written as `:text`.
    pub fn comment(mut self, text: impl Into<String>) -> Self {
        self.comment = Some(text.into());
        self
    }

    /// Encodes the frame into a new buffer, allocated once at its exact size.
    pub fn encode(&self) -> Bytes {
        let len = self.encoded_len();
        let mut buf = BytesMut::with_capacity(len);
        self.encode_into(&mut buf);
        debug_assert_eq!(buf.len(), len, "encoded_len disagrees with encode_into");
        buf.freeze()
    }

    /// Appends the frame to `buf`, reserving room for it first.
    pub fn encode_into(&self, buf: &mut BytesMut) {
        buf.reserve(self.encoded_len());
        if let Some(comment) = &self.comment {
            put_comment_lines(buf, comment);
        }
        if let Some(event) = &self.event {
            put_field(buf, b"event", event.as_bytes());
        }
        if let Some(id) = &self.id {
            put_field(buf, b"id", id.as_bytes());
        }
        if let Some(retry) = self.retry {
            let mut digits = [0u8; MAX_U64_DIGITS];
            put_field(buf, b"retry", format_u64(retry, &mut digits));
        }
        if let Some(data) = &self.data {
            for line in Lines::new(data) {
                put_field(buf, b"data", line.as_bytes());
            }
        }
        buf.put_u8(b'\n');
    }

    /// The exact number of bytes [`encode`](Self::encode) produces.
    pub fn encoded_len(&self) -> usize {
        let mut len = 1; // the blank line that ends the frame
        if let Some(comment) = &self.comment {
            len += comment_lines_len(comment);
        }
        if let Some(event) = &self.event {
            len += field_len("event".len(), event.len());
        }
        if let Some(id) = &self.id {
            len += field_len("id".len(), id.len());
        }
        if let Some(retry) = self.retry {
            len += field_len("retry".len(), u64_digits(retry));
        }
        if let Some(data) = &self.data {
            len += Lines::new(data)
                .map(|line| field_len("data".len(), line.len()))
                .sum::<usize>();
        }
        len
    }
}

/// Checks that `id` can be sent as an `id:` field: no CR, LF or NUL.
///
/// NUL is refused because a receiver ignores an id containing it, which would silently leave
/// its last event id at the previous value.
///
/// # Errors
///
/// [`EncodeError::InvalidId`] if the id contains CR, LF or NUL.
pub fn validate_id(id: &str) -> Result<(), EncodeError> {
    if id.bytes().any(|b| matches!(b, b'\r' | b'\n' | b'\0')) {
        Err(EncodeError::InvalidId)
    } else {
        Ok(())
    }
}

/// Checks that `name` can be sent as an `event:` field: no CR or LF.
///
/// # Errors
///
/// [`EncodeError::InvalidEvent`] if the name contains CR or LF.
pub fn validate_event_name(name: &str) -> Result<(), EncodeError> {
    if name.bytes().any(|b| matches!(b, b'\r' | b'\n')) {
        Err(EncodeError::InvalidEvent)
    } else {
        Ok(())
    }
}

/// Comment lines that end no frame: `comment_line("hi") == b":hi\n"`,
/// `comment_line("") == b":\n"`; text with line breaks becomes one comment line per line.
///
/// Every receiver ignores a comment line, and as no blank line follows, even clients that
/// dispatch a message at every blank line see nothing (see the [module docs](self)): the
/// keep-alive. Sent between two frames, it becomes the first line of the next one.
pub fn comment_line(text: &str) -> Bytes {
    let len = comment_lines_len(text);
    let mut buf = BytesMut::with_capacity(len);
    put_comment_lines(&mut buf, text);
    debug_assert_eq!(buf.len(), len);
    buf.freeze()
}

/// A reconnection time as a line that ends no frame: `retry_line(3 s) == b"retry: 3000\n"`
/// (whole milliseconds, as [`Event::retry`]).
///
/// A WHATWG receiver applies it as soon as the line ends; clients that take a `retry` only
/// with an event (`reqwest-eventsource`) get it with the next frame, which it joins; no client
/// dispatches a message for it (see the [module docs](self)). The first bytes of a stream, and
/// the last ones of a stream the server ends.
pub fn retry_line(retry: Duration) -> Bytes {
    let ms = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX);
    let len = field_len("retry".len(), u64_digits(ms));
    let mut buf = BytesMut::with_capacity(len);
    let mut digits = [0u8; MAX_U64_DIGITS];
    put_field(&mut buf, b"retry", format_u64(ms, &mut digits));
    debug_assert_eq!(buf.len(), len);
    buf.freeze()
}

fn put_comment_lines(buf: &mut BytesMut, text: &str) {
    for line in Lines::new(text) {
        buf.put_u8(b':');
        buf.put_slice(line.as_bytes());
        buf.put_u8(b'\n');
    }
}

fn comment_lines_len(text: &str) -> usize {
    Lines::new(text).map(|line| line.len() + 2).sum()
}

fn put_field(buf: &mut BytesMut, name: &[u8], value: &[u8]) {
    buf.put_slice(name);
    if value.is_empty() {
        buf.put_u8(b':');
    } else {
        buf.put_slice(b": ");
        buf.put_slice(value);
    }
    buf.put_u8(b'\n');
}

fn field_len(name_len: usize, value_len: usize) -> usize {
    if value_len == 0 {
        name_len + 2 // "name:\n"
    } else {
        name_len + 3 + value_len // "name: value\n"
    }
}

const MAX_U64_DIGITS: usize = 20;

/// Writes `n` in decimal into the tail of `out` and returns the written part, so `retry`
/// encoding needs no heap allocation.
fn format_u64(mut n: u64, out: &mut [u8; MAX_U64_DIGITS]) -> &[u8] {
    let mut start = out.len();
    loop {
        start -= 1;
        out[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &out[start..]
}

fn u64_digits(mut n: u64) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

/// Splits text on CRLF, CR and LF, the three line ends a receiver accepts.
///
/// Unlike [`str::lines`], an empty string is one empty line and a trailing line end yields a
/// final empty line: both must survive the trip through a parser, which turns every `data:`
/// line into exactly one line of the reassembled data.
#[derive(Debug, Clone)]
struct Lines<'a> {
    rest: Option<&'a str>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Self { rest: Some(text) }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let text = self.rest?;
        let bytes = text.as_bytes();
        match memchr::memchr2(b'\r', b'\n', bytes) {
            Some(end) => {
                let skip = if bytes[end] == b'\r' && bytes.get(end + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                // CR and LF are ASCII, so both cut points are char boundaries.
                self.rest = Some(&text[end + skip..]);
                Some(&text[..end])
            }
            None => {
                self.rest = None;
                Some(text)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(event: &Event) -> Vec<u8> {
        let bytes = event.encode();
        assert_eq!(
            bytes.len(),
            event.encoded_len(),
            "encoded_len mismatch for {event:?}"
        );
        let mut appended = BytesMut::from(&b"prefix"[..]);
        event.encode_into(&mut appended);
        assert_eq!(&appended[..6], b"prefix");
        assert_eq!(
            &appended[6..],
            &bytes[..],
            "encode_into differs from encode"
        );
        bytes.to_vec()
    }

    #[track_caller]
    fn check(event: Event, expected: &[u8]) {
        let got = enc(&event);
        assert_eq!(
            got,
            expected,
            "\n got: {:?}\nwant: {:?}",
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected)
        );
    }

    #[test]
    fn empty_event_is_a_lone_blank_line() {
        check(Event::new(), b"\n");
    }

    #[test]
    fn data_single_line() {
        check(Event::new().data("hello"), b"data: hello\n\n");
    }

    #[test]
    fn data_split_on_crlf_cr_and_lf() {
        check(
            Event::new().data("a\r\nb\rc\nd"),
            b"data: a\ndata: b\ndata: c\ndata: d\n\n",
        );
    }

    #[test]
    fn data_lf_cr_is_two_line_ends() {
        check(Event::new().data("a\n\rb"), b"data: a\ndata:\ndata: b\n\n");
    }

    #[test]
    fn data_empty_has_no_trailing_space() {
        check(Event::new().data(""), b"data:\n\n");
    }

    #[test]
    fn data_empty_inner_lines_have_no_trailing_space() {
        check(Event::new().data("a\n\nb"), b"data: a\ndata:\ndata: b\n\n");
    }

    #[test]
    fn data_trailing_newline_yields_final_empty_line() {
        check(Event::new().data("a\n"), b"data: a\ndata:\n\n");
        check(Event::new().data("a\r\n"), b"data: a\ndata:\n\n");
        check(Event::new().data("\n"), b"data:\ndata:\n\n");
    }

    #[test]
    fn data_leading_space_survives_with_one_extra_space() {
        check(Event::new().data(" x"), b"data:  x\n\n");
    }

    #[test]
    fn data_colon_is_kept_verbatim() {
        check(Event::new().data("a: b"), b"data: a: b\n\n");
    }

    #[test]
    fn event_name_field() {
        check(Event::new().event("ping").unwrap(), b"event: ping\n\n");
    }

    #[test]
    fn event_name_empty() {
        check(Event::new().event("").unwrap(), b"event:\n\n");
    }

    #[test]
    fn event_name_rejects_cr_and_lf() {
        assert_eq!(Event::new().event("a\nb"), Err(EncodeError::InvalidEvent));
        assert_eq!(Event::new().event("a\rb"), Err(EncodeError::InvalidEvent));
        assert_eq!(validate_event_name("a\r\n"), Err(EncodeError::InvalidEvent));
        assert_eq!(validate_event_name("a\0b:c d"), Ok(()));
    }

    #[test]
    fn id_field() {
        check(Event::new().id("42").unwrap(), b"id: 42\n\n");
    }

    #[test]
    fn id_empty_resets_last_event_id() {
        check(Event::new().id("").unwrap(), b"id:\n\n");
    }

    #[test]
    fn id_rejects_cr_lf_and_nul() {
        assert_eq!(Event::new().id("a\nb"), Err(EncodeError::InvalidId));
        assert_eq!(Event::new().id("a\rb"), Err(EncodeError::InvalidId));
        assert_eq!(Event::new().id("a\0b"), Err(EncodeError::InvalidId));
        assert_eq!(validate_id("\u{FEFF} ok: yes"), Ok(()));
    }

    #[test]
    fn retry_in_whole_milliseconds() {
        check(
            Event::new().retry(Duration::from_millis(3000)),
            b"retry: 3000\n\n",
        );
        check(
            Event::new().retry(Duration::from_micros(1999)),
            b"retry: 1\n\n",
        );
        check(Event::new().retry(Duration::ZERO), b"retry: 0\n\n");
    }

    #[test]
    fn retry_saturates_at_u64_max() {
        check(
            Event::new().retry(Duration::MAX),
            b"retry: 18446744073709551615\n\n",
        );
    }

    #[test]
    fn comment_field_no_added_space() {
        check(Event::new().comment("hi"), b":hi\n\n");
        check(Event::new().comment(" hi"), b": hi\n\n");
    }

    #[test]
    fn comment_field_empty() {
        check(Event::new().comment(""), b":\n\n");
    }

    #[test]
    fn comment_field_split_into_lines() {
        check(
            Event::new().comment("a\r\nb\rc\nd\n"),
            b":a\n:b\n:c\n:d\n:\n\n",
        );
    }

    #[test]
    fn fields_in_fixed_order() {
        // Set in reverse order on purpose: the layout must not depend on call order.
        let event = Event::new()
            .data("d1\nd2")
            .retry(Duration::from_secs(5))
            .id("7")
            .unwrap()
            .event("update")
            .unwrap()
            .comment("c");
        check(
            event,
            b":c\nevent: update\nid: 7\nretry: 5000\ndata: d1\ndata: d2\n\n",
        );
    }

    #[test]
    fn setting_a_field_twice_keeps_the_last_value() {
        check(Event::new().data("a").data("b"), b"data: b\n\n");
    }

    #[test]
    fn rejected_field_leaves_no_partial_frame() {
        assert!(Event::new().data("x").id("bad\n").is_err());
    }

    #[test]
    fn unicode_data_is_utf8() {
        check(
            Event::new().data("é\u{1F600}"),
            "data: é\u{1F600}\n\n".as_bytes(),
        );
    }

    #[test]
    fn comment_line_ends_no_frame() {
        assert_eq!(&comment_line("")[..], b":\n");
        assert_eq!(&comment_line("hi")[..], b":hi\n");
        assert_eq!(&comment_line(" hi")[..], b": hi\n");
        assert_eq!(&comment_line("a\r\nb\rc\nd")[..], b":a\n:b\n:c\n:d\n");
    }

    #[test]
    fn retry_line_ends_no_frame() {
        assert_eq!(&retry_line(Duration::from_secs(3))[..], b"retry: 3000\n");
        assert_eq!(&retry_line(Duration::from_micros(1999))[..], b"retry: 1\n");
        assert_eq!(&retry_line(Duration::ZERO)[..], b"retry: 0\n");
        assert_eq!(
            &retry_line(Duration::MAX)[..],
            b"retry: 18446744073709551615\n"
        );
    }

    #[test]
    fn error_messages_are_one_line() {
        assert_eq!(
            EncodeError::InvalidId.to_string(),
            "id must not contain CR, LF or NUL"
        );
        assert_eq!(
            EncodeError::InvalidEvent.to_string(),
            "event name must not contain CR or LF"
        );
    }

    #[test]
    fn encode_allocates_exact_capacity() {
        let event = Event::new().data("x\ny").id("1").unwrap();
        let len = event.encoded_len();
        let mut buf = BytesMut::with_capacity(len);
        event.encode_into(&mut buf);
        assert_eq!(buf.len(), len);
        assert_eq!(buf.capacity(), len);
    }

    #[test]
    fn digits_helpers_agree_with_std() {
        for n in [0, 1, 9, 10, 99, 100, 12345, u64::MAX / 10, u64::MAX] {
            let mut out = [0u8; MAX_U64_DIGITS];
            assert_eq!(format_u64(n, &mut out), n.to_string().as_bytes());
            assert_eq!(u64_digits(n), n.to_string().len());
        }
    }

    #[test]
    fn lines_splitter() {
        let split = |s| Lines::new(s).collect::<Vec<_>>();
        assert_eq!(split(""), [""]);
        assert_eq!(split("a"), ["a"]);
        assert_eq!(split("a\r\n"), ["a", ""]);
        assert_eq!(split("\r\r\n\n"), ["", "", "", ""]);
        assert_eq!(split("a\rb"), ["a", "b"]);
    }
}
