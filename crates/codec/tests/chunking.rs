//! Parser cases, each run under every chunking: whole, 1-, 2- and 3-byte pieces, two pieces
//! at every position, every CRLF torn, and pseudo-random pieces.

mod common;

use ssehub_codec::{Frame, MessageEvent, parse_all};

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

struct Case {
    name: &'static str,
    input: &'static [u8],
    expected: Vec<Frame>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "spec example: stock ticker, data lines joined with LF",
            input: b"data: YHOO\ndata: +2\ndata: 10\n\n",
            expected: vec![msg("message", "YHOO\n+2\n10", "")],
        },
        Case {
            name: "spec example: comment, id, empty id, leading space kept",
            input: b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
            expected: vec![
                comment(" test stream"),
                msg("message", "first event", "1"),
                msg("message", "second event", ""),
                msg("message", " third event", ""),
            ],
        },
        Case {
            name: "spec example: empty data, newline data, unterminated block dropped",
            input: b"data\n\ndata\ndata\n\ndata:",
            expected: vec![msg("message", "", ""), msg("message", "\n", "")],
        },
        Case {
            name: "spec example: space after colon is optional",
            input: b"data:test\n\ndata: test\n\n",
            expected: vec![msg("message", "test", ""), msg("message", "test", "")],
        },
        Case {
            name: "mixed line ends, CRLF everywhere",
            input: b"event: a\r\ndata: 1\r\ndata: 2\r\n\r\nid: 9\rdata: x\r\r",
            expected: vec![msg("a", "1\n2", ""), msg("message", "x", "9")],
        },
        Case {
            name: "CR-only stream",
            input: b"data: a\rdata: b\r\rretry: 20\r\r",
            expected: vec![msg("message", "a\nb", ""), Frame::Retry(20)],
        },
        Case {
            name: "LF CR is two line ends, CR LF is one",
            input: b"data: a\n\rdata: b\r\n\n",
            expected: vec![msg("message", "a", ""), msg("message", "b", "")],
        },
        Case {
            name: "leading BOM stripped once, second BOM kept",
            input: b"\xEF\xBB\xBFdata: \xEF\xBB\xBF\n\n\xEF\xBB\xBFdata: no\n\n",
            expected: vec![msg("message", "\u{FEFF}", "")],
        },
        Case {
            name: "invalid UTF-8 replaced, multi-byte chars intact",
            input: b"data: \xC3\xA9\xFF\xF0\x9F\x98\x80\xE2\x82\n\n",
            expected: vec![msg("message", "\u{E9}\u{FFFD}\u{1F600}\u{FFFD}", "")],
        },
        Case {
            name: "retry valid, invalid, overflow",
            input: b"retry: 0100\nretry: 1e3\nretry:\nretry: 99999999999999999999\ndata: r\n\n",
            expected: vec![Frame::Retry(100), msg("message", "r", "")],
        },
        Case {
            name: "id with NUL ignored, empty id resets, id persists",
            input: b"id: a\ndata: 1\n\nid: b\0\ndata: 2\n\nid:\ndata: 3\n\ndata: 4\n\n",
            expected: vec![
                msg("message", "1", "a"),
                msg("message", "2", "a"),
                msg("message", "3", ""),
                msg("message", "4", ""),
            ],
        },
        Case {
            name: "event without data resets type but id still applies",
            input: b"event: lost\nid: 3\n\ndata: x\n\n",
            expected: vec![msg("message", "x", "3")],
        },
        Case {
            name: "unknown fields and no-colon fields",
            input: b"foo\nbar: baz\nevent\ndata\n\n",
            expected: vec![msg("message", "", "")],
        },
        Case {
            name: "comments interleaved with fields",
            input: b":a\ndata: 1\n:b\ndata: 2\n\n:\n",
            expected: vec![comment("a"), comment("b"), msg("message", "1\n2", ""), comment("")],
        },
        Case {
            name: "unterminated final line dropped",
            input: b"data: a\n\nretry: 5",
            expected: vec![msg("message", "a", "")],
        },
        Case {
            name: "empty input",
            input: b"",
            expected: vec![],
        },
        Case {
            name: "only a partial BOM",
            input: b"\xEF\xBB",
            expected: vec![],
        },
    ]
}

#[test]
fn cases_under_every_chunking() {
    for case in cases() {
        assert_eq!(parse_all(case.input), case.expected, "case {:?}", case.name);
        for (how, chunks) in common::chunkings(case.input) {
            assert_eq!(
                common::run(chunks.iter().copied()),
                case.expected,
                "case {:?}, chunking {how}: {chunks:?}",
                case.name
            );
        }
    }
}
