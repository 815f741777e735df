//! Helpers shared by the integration tests: feeding a parser in chunks.

#![allow(dead_code)] // each test binary uses a different subset

use ssehub_codec::{Frame, Parser};

/// Feeds `chunks` one by one, draining frames after each, then finishes the stream.
pub fn run<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Frame> {
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

/// Cuts `input` at the given positions (any order, duplicates and out-of-range ones allowed).
pub fn split_at_points<'a>(input: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = points.iter().map(|&p| p.min(input.len())).collect();
    points.sort_unstable();
    points.dedup();
    let mut chunks = Vec::with_capacity(points.len() + 1);
    let mut start = 0;
    for point in points {
        chunks.push(&input[start..point]);
        start = point;
    }
    chunks.push(&input[start..]);
    chunks
}

/// Every position just after a CR that is followed by LF: where a CRLF is torn in two.
pub fn crlf_split_points(input: &[u8]) -> Vec<usize> {
    input
        .windows(2)
        .enumerate()
        .filter(|(_, pair)| pair == b"\r\n")
        .map(|(i, _)| i + 1)
        .collect()
}

/// Small deterministic xorshift generator, so chunkings are reproducible without a dependency.
#[derive(Debug)]
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The chunkings every parser case runs under: whole, 1-, 2- and 3-byte pieces, two pieces at
/// every position, every CRLF torn, and pseudo-random pieces of 0 to 8 bytes.
pub fn chunkings(input: &[u8]) -> Vec<(String, Vec<&[u8]>)> {
    let mut all = vec![("whole".to_owned(), vec![input])];
    for size in 1..=3 {
        all.push((format!("{size}-byte"), input.chunks(size).collect()));
    }
    for at in 0..=input.len() {
        all.push((format!("split at {at}"), split_at_points(input, &[at])));
    }
    all.push((
        "every CRLF torn".to_owned(),
        split_at_points(input, &crlf_split_points(input)),
    ));
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    for round in 0..16 {
        let mut chunks = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let take = rng.below(9).min(rest.len());
            let (chunk, tail) = rest.split_at(take);
            chunks.push(chunk);
            rest = tail;
        }
        all.push((format!("random #{round}"), chunks));
    }
    all
}
