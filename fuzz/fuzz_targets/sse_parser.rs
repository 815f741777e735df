//! The SSE parser on arbitrary bytes: it never panics, and feeding the same bytes in arbitrary
//! chunks gives exactly the frames (and the last event id) that feeding them whole gives.
//! Chunk boundaries are where a real network splits a stream, so any difference here would be a
//! bug a client only sees sometimes.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ssehub_codec::{Frame, Parser};

#[derive(Debug, Arbitrary)]
struct Input {
    /// Lengths of the chunks to cut the stream into, in order; the rest is one last chunk.
    cuts: Vec<u8>,
    stream: Vec<u8>,
}

/// Feeds `chunks` one after another, taking frames after every feed (as a client does), then
/// finishes the stream.
fn run<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<Frame>, String) {
    let mut parser = Parser::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        parser.feed(chunk);
        while let Some(frame) = parser.next_frame() {
            frames.push(frame);
        }
    }
    let id_before_finish = parser.last_event_id().to_owned();
    while let Some(frame) = parser.finish() {
        frames.push(frame);
    }
    // `finish` keeps the last event id (a reconnecting client resumes from it).
    assert_eq!(parser.last_event_id(), id_before_finish);
    (frames, id_before_finish)
}

fn chunks<'a>(stream: &'a [u8], cuts: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = stream;
    for &cut in cuts {
        let n = usize::from(cut).min(rest.len());
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
    }
    out.push(rest);
    out
}

fuzz_target!(|input: Input| {
    let whole = run(std::iter::once(&input.stream[..]));
    assert_eq!(whole.0, ssehub_codec::parse_all(&input.stream));

    let pieces = chunks(&input.stream, &input.cuts);
    assert_eq!(run(pieces.into_iter()), whole, "arbitrary chunks");
    assert_eq!(run(input.stream.chunks(1)), whole, "1-byte chunks");

    for frame in &whole.0 {
        match frame {
            // The parser hands out only what the spec allows through: event types and ids never
            // contain a line end, and ids never NUL.
            Frame::Event(e) => {
                assert!(!e.event_type.is_empty());
                assert!(!e.event_type.contains(['\r', '\n']));
                assert!(!e.data.contains('\r'));
                assert!(!e.last_event_id.contains(['\r', '\n', '\0']));
            }
            Frame::Comment(text) => assert!(!text.contains(['\r', '\n'])),
            Frame::Retry(_) => {}
        }
    }
});
