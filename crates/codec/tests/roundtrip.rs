//! Property tests: what the encoder writes, the parser reads back, however the bytes are cut;
//! and no input, however cut, makes the parser panic or change its answer.

mod common;

use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;
use ssehub_codec::{EncodeError, Event, Frame, MessageEvent, parse_all};

/// What one generated event holds, kept so the expected frames can be computed independently
/// of the encoder.
#[derive(Debug, Clone)]
struct Spec {
    comment: Option<String>,
    event: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
    data: Option<String>,
}

impl Spec {
    fn build(&self) -> Event {
        let mut event = Event::new();
        if let Some(text) = &self.comment {
            event = event.comment(text.clone());
        }
        if let Some(name) = &self.event {
            event = event.event(name.clone()).expect("generated name is valid");
        }
        if let Some(id) = &self.id {
            event = event.id(id.clone()).expect("generated id is valid");
        }
        if let Some(ms) = self.retry {
            event = event.retry(Duration::from_millis(ms));
        }
        if let Some(data) = &self.data {
            event = event.data(data.clone());
        }
        event
    }
}

/// Text with arbitrary Unicode (NUL, lone CR and LF included) and CRLF pairs mixed in.
fn text_with_line_breaks() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => any::<char>().prop_map(String::from),
            1 => Just("\r\n".to_owned()),
            1 => Just("\r".to_owned()),
            1 => Just("\n".to_owned()),
            1 => Just(" ".to_owned()),
            1 => Just(":".to_owned()),
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::option::weighted(0.2, text_with_line_breaks()),
        prop::option::of("[^\r\n]{0,6}"),
        prop::option::of("[^\r\n\0]{0,6}"),
        prop::option::weighted(0.3, any::<u64>()),
        prop::option::weighted(0.8, text_with_line_breaks()),
    )
        .prop_map(|(comment, event, id, retry, data)| Spec {
            comment,
            event,
            id,
            retry,
            data,
        })
}

fn split_lines(text: &str) -> Vec<String> {
    normalise(text).split('\n').map(str::to_owned).collect()
}

fn normalise(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// The frames a spec-following receiver must produce, derived from the specs alone.
fn expected_frames(specs: &[Spec]) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut last_event_id = String::new();
    for spec in specs {
        if let Some(text) = &spec.comment {
            frames.extend(split_lines(text).into_iter().map(Frame::Comment));
        }
        if let Some(ms) = spec.retry {
            frames.push(Frame::Retry(ms));
        }
        if let Some(id) = &spec.id {
            last_event_id.clone_from(id);
        }
        if let Some(data) = &spec.data {
            let event_type = match spec.event.as_deref() {
                None | Some("") => "message".to_owned(),
                Some(name) => name.to_owned(),
            };
            frames.push(Frame::Event(MessageEvent {
                event_type,
                data: normalise(data),
                last_event_id: last_event_id.clone(),
            }));
        }
    }
    frames
}

/// Rewrites the encoder's LF line ends as LF, CR or CRLF, cycling through `choices`. The
/// encoder never writes CR inside a line, so every LF it writes is a line end.
fn rewrite_line_ends(encoded: &[u8], choices: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len() * 2);
    let mut next = choices.iter().cycle();
    for &byte in encoded {
        if byte != b'\n' {
            out.push(byte);
            continue;
        }
        match next.next().map_or(0, |c| c % 3) {
            1 => out.push(b'\r'),
            2 => out.extend_from_slice(b"\r\n"),
            // A bare CR followed by this LF would merge into one CRLF line end and swallow
            // a blank line, so use CRLF after a bare CR.
            _ if out.last() == Some(&b'\r') => out.extend_from_slice(b"\r\n"),
            _ => out.push(b'\n'),
        }
    }
    out
}

fn encode_all(specs: &[Spec]) -> Vec<u8> {
    let mut stream = Vec::new();
    for spec in specs {
        let event = spec.build();
        let bytes = event.encode();
        assert_eq!(bytes.len(), event.encoded_len());
        stream.extend_from_slice(&bytes);
    }
    stream
}

fn cut_points(len: usize, indices: &[Index]) -> Vec<usize> {
    indices.iter().map(|i| i.index(len + 1)).collect()
}

/// Bytes that look enough like an event stream to reach every branch of the parser.
fn stream_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => any::<u8>().prop_map(|b| vec![b]),
            2 => prop::sample::select(vec![
                &b"\r"[..], b"\n", b"\r\n", b":", b" ", b"data", b"id", b"event", b"retry",
                b"\xEF\xBB\xBF", b"\xEF\xBB", b"\xE2\x82", b"\xF0\x9F\x98\x80", b"\xFF", b"\0",
                b"0", b"42", b"99999999999999999999",
            ])
            .prop_map(<[u8]>::to_vec),
        ],
        0..64,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encoded_events_round_trip_under_any_chunking(
        specs in prop::collection::vec(spec(), 0..8),
        line_ends in prop::collection::vec(any::<u8>(), 1..8),
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        let expected = expected_frames(&specs);
        let lf_stream = encode_all(&specs);
        let mixed_stream = rewrite_line_ends(&lf_stream, &line_ends);

        for stream in [&lf_stream, &mixed_stream] {
            prop_assert_eq!(&parse_all(stream), &expected);
            prop_assert_eq!(&common::run(stream.chunks(1)), &expected, "1-byte chunks");
            prop_assert_eq!(&common::run(stream.chunks(2)), &expected, "2-byte chunks");
            let random = common::split_at_points(stream, &cut_points(stream.len(), &cuts));
            prop_assert_eq!(&common::run(random), &expected, "random cuts");
            let mut torn_cuts = common::crlf_split_points(stream);
            torn_cuts.extend(cut_points(stream.len(), &cuts));
            let torn = common::split_at_points(stream, &torn_cuts);
            prop_assert_eq!(&common::run(torn), &expected, "every CRLF torn");
        }
    }

    #[test]
    fn arbitrary_bytes_same_frames_under_any_chunking(
        bytes in prop_oneof![stream_like_bytes(), prop::collection::vec(any::<u8>(), 0..256)],
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        let whole = parse_all(&bytes);
        prop_assert_eq!(&common::run(bytes.chunks(1)), &whole, "1-byte chunks");
        prop_assert_eq!(&common::run(bytes.chunks(2)), &whole, "2-byte chunks");
        let random = common::split_at_points(&bytes, &cut_points(bytes.len(), &cuts));
        prop_assert_eq!(&common::run(random), &whole, "random cuts");
    }

    #[test]
    fn encoded_len_is_exact(spec in spec()) {
        let event = spec.build();
        prop_assert_eq!(event.encode().len(), event.encoded_len());
    }

    #[test]
    fn builders_reject_exactly_the_forbidden_characters(text in text_with_line_breaks()) {
        let has_line_break = text.contains(['\r', '\n']);
        let event = Event::new().event(text.clone());
        prop_assert_eq!(event.is_err(), has_line_break);
        if has_line_break {
            prop_assert_eq!(event, Err(EncodeError::InvalidEvent));
        }
        let has_forbidden_id_char = text.contains(['\r', '\n', '\0']);
        let id = Event::new().id(text);
        prop_assert_eq!(id.is_err(), has_forbidden_id_char);
        if has_forbidden_id_char {
            prop_assert_eq!(id, Err(EncodeError::InvalidId));
        }
    }

    #[test]
    fn comment_lines_round_trip(text in text_with_line_breaks()) {
        let lines = ssehub_codec::comment_line(&text);
        let expected: Vec<Frame> = split_lines(&text).into_iter().map(Frame::Comment).collect();
        prop_assert_eq!(parse_all(&lines), expected);
    }

    /// Lines that end no frame, sent before a frame, change nothing in what it dispatches: the
    /// receiver sees the comments, the retry, then exactly the one event.
    #[test]
    fn lines_before_a_frame_leave_its_event_alone(
        text in text_with_line_breaks(),
        ms in any::<u64>(),
        data in text_with_line_breaks(),
    ) {
        let frame = Event::new().id("7").unwrap().data(data.clone()).encode();
        let mut wire = ssehub_codec::comment_line(&text).to_vec();
        wire.extend_from_slice(&ssehub_codec::retry_line(Duration::from_millis(ms)));
        wire.extend_from_slice(&frame);
        let mut expected: Vec<Frame> = split_lines(&text).into_iter().map(Frame::Comment).collect();
        expected.push(Frame::Retry(ms));
        expected.extend(parse_all(&frame));
        prop_assert_eq!(parse_all(&wire), expected);
    }
}
