//! Conformance of the client to WHATWG HTML, "Interpreting an event stream", end to end: each
//! case is served over real TCP by a local server and read by the client, under every chunking
//! (whole, 1 byte, 2 bytes, and pseudo-random sizes), with one HTTP chunk per piece so the
//! parser is fed exactly those pieces.

mod support;

use ssehub_client::{Client, ClientEvent, CloseReason};
use support::{Reply, TestServer, collect_all, comment, message, msg, retry};

/// The chunkings every case runs under, with a name for failure messages.
fn chunkings(input: &[u8]) -> Vec<(String, Vec<Vec<u8>>)> {
    let mut out = vec![
        ("whole".to_owned(), vec![input.to_vec()]),
        (
            "1-byte".to_owned(),
            input.chunks(1).map(<[u8]>::to_vec).collect(),
        ),
        (
            "2-byte".to_owned(),
            input.chunks(2).map(<[u8]>::to_vec).collect(),
        ),
    ];
    for seed in [0x9E37_79B9_7F4A_7C15_u64, 42, 7] {
        out.push((format!("random (seed {seed})"), random_chunks(input, seed)));
    }
    out
}

/// Cuts `input` into pieces of 1 to 7 bytes, sizes drawn with xorshift from `seed`.
fn random_chunks(input: &[u8], seed: u64) -> Vec<Vec<u8>> {
    let mut state = seed | 1;
    let mut rest = input;
    let mut out = Vec::new();
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let size = ((state % 7) as usize + 1).min(rest.len());
        let (head, tail) = rest.split_at(size);
        out.push(head.to_vec());
        rest = tail;
    }
    out
}

/// Serves `chunks` once and returns what the client reports between `Open` and the final
/// `Closed(EndOfStream)`.
async fn through_client(chunks: Vec<Vec<u8>>) -> Vec<ClientEvent> {
    let server = TestServer::start(vec![Reply::sse(chunks)]).await;
    let client = Client::builder(server.url("/events"))
        .no_reconnect()
        .build()
        .unwrap();
    let items = collect_all(&mut client.stream()).await;
    let mut events: Vec<ClientEvent> = items
        .into_iter()
        .map(|item| item.expect("no error expected"))
        .collect();
    assert!(
        matches!(events.first(), Some(ClientEvent::Open { .. })),
        "{events:?}"
    );
    assert_eq!(
        events.last(),
        Some(&ClientEvent::Closed(CloseReason::EndOfStream))
    );
    events.pop();
    events.remove(0);
    events
}

/// Checks `input` yields `expected` under every chunking.
async fn check(input: &[u8], expected: &[ClientEvent]) {
    for (name, chunks) in chunkings(input) {
        check_chunks_named(&name, chunks, expected).await;
    }
}

/// Checks these exact pieces yield `expected`.
async fn check_chunks(chunks: &[&[u8]], expected: &[ClientEvent]) {
    let chunks = chunks.iter().map(|c| c.to_vec()).collect();
    check_chunks_named("explicit", chunks, expected).await;
}

async fn check_chunks_named(name: &str, chunks: Vec<Vec<u8>>, expected: &[ClientEvent]) {
    let got = through_client(chunks.clone()).await;
    assert_eq!(
        got,
        expected,
        "chunking {name}: {:?}",
        chunks
            .iter()
            .map(|c| String::from_utf8_lossy(c))
            .collect::<Vec<_>>()
    );
}

// --- byte order mark ---

#[tokio::test]
async fn a_single_leading_bom_is_stripped() {
    check(b"\xEF\xBB\xBFdata: a\n\n", &[message("a")]).await;
}

#[tokio::test]
async fn a_second_bom_is_part_of_the_first_field_name() {
    // The second BOM makes the first line's field "\u{FEFF}data", an unknown field.
    check(
        b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n",
        &[message("b")],
    )
    .await;
}

#[tokio::test]
async fn a_bom_split_across_reads_is_still_stripped() {
    let expected = [message("a")];
    check_chunks(&[b"\xEF", b"\xBB", b"\xBFdata: a\n\n"], &expected).await;
    check_chunks(&[b"\xEF\xBB", b"\xBF", b"data: a\n\n"], &expected).await;
    check_chunks(&[b"\xEF", b"\xBB\xBFdata: a\n", b"\n"], &expected).await;
}

#[tokio::test]
async fn a_bom_after_the_start_is_not_stripped() {
    check(
        b"data: a\n\n\xEF\xBB\xBFdata: b\n\ndata: c\n\n",
        &[message("a"), message("c")],
    )
    .await;
    check(b"data: \xEF\xBB\xBFx\n\n", &[message("\u{FEFF}x")]).await;
}

// --- line ends ---

#[tokio::test]
async fn lf_cr_and_crlf_all_end_lines() {
    check(
        b"data: 1\n\ndata: 2\r\rdata: 3\r\n\r\n",
        &[message("1"), message("2"), message("3")],
    )
    .await;
}

#[tokio::test]
async fn mixed_line_ends_within_one_event() {
    check(b"data: a\rdata: b\ndata: c\r\n\n", &[message("a\nb\nc")]).await;
    check(b"data: a\n\r\ndata: b\r\n\r", &[message("a"), message("b")]).await;
    // CR, then CRLF: a line end, then a blank line.
    check(b"data: x\r\r\n", &[message("x")]).await;
    // LF then CR: two line ends, so a blank line.
    check(b"data: y\n\rdata: z\r\n\n", &[message("y"), message("z")]).await;
}

#[tokio::test]
async fn a_cr_at_the_end_of_a_read_pairs_with_a_following_lf() {
    // The LF that starts the next read belongs to the CR: one line end, not a blank line.
    check_chunks(
        &[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"],
        &[message("a\nb")],
    )
    .await;
    // A CR at the end of a read followed by something else is a line end of its own.
    check_chunks(&[b"data: a\r", b"data: b\r", b"\r"], &[message("a\nb")]).await;
    check_chunks(
        &[b"data: a\r", b"\r", b"\ndata: b\n\n"],
        &[message("a"), message("b")],
    )
    .await;
}

// --- comments, fields, values ---

#[tokio::test]
async fn comments_are_reported_verbatim_and_do_not_end_events() {
    check(
        b":hello\n: with space\ndata: x\n:\ndata: y\n\n",
        &[
            comment("hello"),
            comment(" with space"),
            comment(""),
            message("x\ny"),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_field_without_colon_has_an_empty_value() {
    check(b"data\n\n", &[message("")]).await;
    check(b"data\ndata\n\n", &[message("\n")]).await;
    check(
        b"event\ndata: x\n\nevent:\ndata: y\n\n",
        &[message("x"), message("y")],
    )
    .await;
}

#[tokio::test]
async fn one_leading_space_is_stripped_from_values() {
    check(
        b"data:a\n\ndata: a\n\ndata:  a\n\ndata:\ta\n\ndata: \n\n",
        &[
            message("a"),
            message("a"),
            message(" a"),
            message("\ta"),
            message(""),
        ],
    )
    .await;
    check(b"event:  x\ndata: 1\n\n", &[msg(" x", "1", "")]).await;
}

#[tokio::test]
async fn data_lines_join_with_lf_and_empty_data_dispatches() {
    check(b"data: a\ndata:\ndata: b\n\n", &[message("a\n\nb")]).await;
    check(b"data:\n\n", &[message("")]).await;
    check(b"data:\ndata:\n\n", &[message("\n")]).await;
    check(b"data: x: y\n\n", &[message("x: y")]).await;
}

#[tokio::test]
async fn an_event_without_data_dispatches_nothing() {
    check(b"\n\n\n", &[]).await;
    check(b"event: ping\n\n", &[]).await;
    // The type does not leak into the next event.
    check(b"event: ping\n\ndata: x\n\n", &[message("x")]).await;
}

#[tokio::test]
async fn an_empty_event_type_is_message() {
    check(
        b"event:\ndata: a\n\nevent: \ndata: b\n\nevent: custom\ndata: c\n\n",
        &[message("a"), message("b"), msg("custom", "c", "")],
    )
    .await;
    // The last `event` field of a block wins; a later empty one clears it.
    check(b"event: x\nevent:\ndata: d\n\n", &[message("d")]).await;
}

// --- id ---

#[tokio::test]
async fn the_last_event_id_persists_across_events() {
    check(
        b"id: 1\ndata: a\n\ndata: b\n\nid: 2\n\ndata: c\n\n",
        &[
            msg("message", "a", "1"),
            msg("message", "b", "1"),
            msg("message", "c", "2"),
        ],
    )
    .await;
}

#[tokio::test]
async fn an_empty_id_resets_the_last_event_id() {
    check(
        b"id: 1\ndata: a\n\nid\ndata: b\n\nid: 3\ndata: c\n\nid:\ndata: d\n\n",
        &[
            msg("message", "a", "1"),
            msg("message", "b", ""),
            msg("message", "c", "3"),
            msg("message", "d", ""),
        ],
    )
    .await;
}

#[tokio::test]
async fn an_id_with_nul_is_ignored() {
    check(
        b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
        &[msg("message", "a", "1"), msg("message", "b", "1")],
    )
    .await;
}

#[tokio::test]
async fn an_id_in_an_undispatched_block_still_sets_the_last_event_id() {
    check(b"id: 7\n\ndata: x\n\n", &[msg("message", "x", "7")]).await;
    // An id in the unterminated last block never takes effect.
    check(
        b"id: 1\ndata: a\n\nid: 2\ndata: b\n",
        &[msg("message", "a", "1")],
    )
    .await;
}

// --- retry ---

#[tokio::test]
async fn retry_with_leading_zeros_is_valid() {
    check(
        b"retry: 0010\ndata: a\n\nretry: 0\n\n",
        &[retry(10), message("a"), retry(0)],
    )
    .await;
}

#[tokio::test]
async fn bogus_and_empty_retry_values_are_ignored() {
    check(
        b"retry: 1e3\nretry: -1\nretry: +5\nretry:  5\nretry: 5 \nretry: 5.0\nretry:\nretry\n\
          retry: 99999999999999999999999\nretry: \xD9\xA3\ndata: a\n\nretry: 25\n\n",
        &[message("a"), retry(25)],
    )
    .await;
}

#[tokio::test]
async fn retry_applies_as_soon_as_read_even_in_a_block_never_dispatched() {
    check(b"data: a\nretry: 50\n", &[retry(50)]).await;
}

// --- unknown fields, end of stream, encoding ---

#[tokio::test]
async fn unknown_fields_and_wrong_case_are_ignored() {
    check(
        b"foo: bar\ndata: x\nDATA: y\nData: z\n data: w\nEvent: e\nID: 9\n\n",
        &[message("x")],
    )
    .await;
}

#[tokio::test]
async fn an_unterminated_last_event_is_dropped() {
    check(b"data: a\n\ndata: b\n", &[message("a")]).await;
    check(b"data: a\n\ndata: b", &[message("a")]).await;
    check(b"data: a\n\ndata: b\r", &[message("a")]).await;
}

#[tokio::test]
async fn invalid_utf8_becomes_replacement_characters() {
    check(b"data: a\xFFb\n\n", &[message("a\u{FFFD}b")]).await;
    // An incomplete sequence is one U+FFFD (maximal subpart), also when cut by the line end.
    check(b"data: \xE2\x82\n\n", &[message("\u{FFFD}")]).await;
    check(b"data: \xC3\x28\n\n", &[message("\u{FFFD}(")]).await;
    // Overlong and surrogate encodings: one U+FFFD per byte.
    check(b"data: \xC0\xAF\n\n", &[message("\u{FFFD}\u{FFFD}")]).await;
    check(
        b"data: \xED\xA0\x80\n\n",
        &[message("\u{FFFD}\u{FFFD}\u{FFFD}")],
    )
    .await;
    // Invalid bytes in names and ids too.
    check(
        b"event: \xFF\nid: \xFE\ndata: \xE2\x82\xAC\n\n",
        &[msg("\u{FFFD}", "\u{20AC}", "\u{FFFD}")],
    )
    .await;
}

#[tokio::test]
async fn a_multibyte_character_split_across_reads_is_reassembled() {
    check_chunks(
        &[b"data: \xE2", b"\x82", b"\xAC\n\n"],
        &[message("\u{20AC}")],
    )
    .await;
}

#[tokio::test]
async fn a_realistic_stream_with_every_feature() {
    check(
        b"\xEF\xBB\xBF: hub ready\nretry: 2500\n\nid: 10\nevent: join\ndata: {\"user\":\"ann\"}\n\n\
          :ping\r\nid: 11\r\ndata: line 1\r\ndata: line 2\r\n\r\nevent: vote\rdata: yes\r\r",
        &[
            comment(" hub ready"),
            retry(2500),
            msg("join", "{\"user\":\"ann\"}", "10"),
            comment("ping"),
            msg("message", "line 1\nline 2", "11"),
            msg("vote", "yes", "11"),
        ],
    )
    .await;
}

/// Bytes biased towards what matters to the format: line ends, colons, spaces, field names,
/// the BOM, NUL, invalid UTF-8.
fn noisy_bytes(seed: u64, len: usize) -> Vec<u8> {
    const PIECES: &[&[u8]] = &[
        b"\n",
        b"\r",
        b"\r\n",
        b"\n\n",
        b"\r\n\r\n",
        b":",
        b" ",
        b"data",
        b"data: ",
        b"data:",
        b"event: ",
        b"id: ",
        b"id",
        b"retry: ",
        b"0",
        b"7",
        b"\xEF\xBB\xBF",
        b"\0",
        b"\xFF",
        b"\xE2\x82",
        b"x",
        b"\xC3\xA9",
        b"data: x\n",
        b"data: y\n\n",
        b": ping\n",
    ];
    let mut state = seed | 1;
    let mut out = Vec::new();
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(PIECES[(state % PIECES.len() as u64) as usize]);
    }
    out
}

#[tokio::test]
async fn the_client_reports_exactly_what_the_parser_reads_from_noisy_streams() {
    let mut messages = 0;
    for seed in 1..=12u64 {
        let input = noisy_bytes(
            seed.wrapping_mul(0x2545_F491_4F6C_DD1D),
            40 + 25 * seed as usize,
        );
        let expected: Vec<ClientEvent> = ssehub_codec::parse_all(&input)
            .into_iter()
            .map(|frame| match frame {
                ssehub_codec::Frame::Event(event) => ClientEvent::Message(event),
                ssehub_codec::Frame::Retry(ms) => retry(ms),
                ssehub_codec::Frame::Comment(text) => comment(&text),
            })
            .collect();
        messages += expected
            .iter()
            .filter(|e| matches!(e, ClientEvent::Message(_)))
            .count();
        check_chunks_named(
            &format!("noise seed {seed}"),
            random_chunks(&input, seed),
            &expected,
        )
        .await;
    }
    // The noise is not so noisy that nothing is ever dispatched.
    assert!(messages >= 10, "{messages}");
}
