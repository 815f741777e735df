//! The strict form decoder (`POST` bodies and subscribe query strings) on arbitrary bytes: it
//! never panics, it decodes exactly what an independent reading of the format says (and fails
//! exactly when some name or value is not UTF-8 after percent-decoding), its error is one line,
//! and what it decodes survives a round trip through a strict encoder.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ssehub_server::form::decode_pairs;

/// Percent-encodes everything but unreserved characters, and a space as `+`.
fn encode(s: &str, out: &mut Vec<u8>) {
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b),
            b' ' => out.push(b'+'),
            _ => out.extend_from_slice(format!("%{b:02X}").as_bytes()),
        }
    }
}

/// `+` is a space; `%` and two hex digits is that byte; any other `%` is itself.
fn unescape(raw: &[u8]) -> Option<String> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let escaped = (raw[i] == b'%' && i + 2 < raw.len())
            .then(|| Some(hex(raw[i + 1])? * 16 + hex(raw[i + 2])?))
            .flatten();
        if let Some(byte) = escaped {
            out.push(byte);
            i += 3;
        } else {
            out.push(if raw[i] == b'+' { b' ' } else { raw[i] });
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Pairs split on `&` (empty ones skipped), then on the first `=`.
fn oracle(input: &[u8]) -> Option<Vec<(String, String)>> {
    input
        .split(|&b| b == b'&')
        .filter(|s| !s.is_empty())
        .map(|segment| {
            let mut parts = segment.splitn(2, |&b| b == b'=');
            let name = unescape(parts.next().unwrap_or_default())?;
            let value = unescape(parts.next().unwrap_or_default())?;
            Some((name, value))
        })
        .collect()
}

fuzz_target!(|input: &[u8]| {
    let decoded = decode_pairs(input);
    assert_eq!(decoded.as_ref().ok(), oracle(input).as_ref());
    match decoded {
        Ok(pairs) => {
            let mut again = Vec::new();
            for (name, value) in &pairs {
                if !again.is_empty() {
                    again.push(b'&');
                }
                encode(name, &mut again);
                again.push(b'=');
                encode(value, &mut again);
            }
            assert_eq!(decode_pairs(&again).unwrap(), pairs, "round trip");
        }
        // The message goes into a one-line 400 reason and the log.
        Err(e) => assert!(!e.to_string().contains(['\r', '\n']), "{e}"),
    }
});
