//! HTTP/2 frames (RFC 9113 §4 and §6) as bytes: the 9-byte frame header, the frame types and
//! flags, error codes, SETTINGS entries, and the frames this server writes. No I/O here: the
//! connection (`super::connection`) reads and writes through these, and the tests pin the bytes.

/// What a client sends first (RFC 9113 §3.4), before its SETTINGS frame.
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Length of a frame header.
pub(crate) const HEADER_LEN: usize = 9;

/// The initial flow-control window of a connection and of its streams (RFC 9113 §6.9.2).
pub(crate) const DEFAULT_WINDOW: i64 = 65_535;

/// The largest flow-control window (2^31 - 1).
pub(crate) const MAX_WINDOW: i64 = (1 << 31) - 1;

/// The default, and smallest, SETTINGS_MAX_FRAME_SIZE (RFC 9113 §6.5.2).
pub(crate) const DEFAULT_MAX_FRAME: usize = 16_384;

/// The largest SETTINGS_MAX_FRAME_SIZE a peer may announce.
const MAX_MAX_FRAME: u32 = (1 << 24) - 1;

/// Frame types (RFC 9113 §6).
pub(crate) mod kind {
    pub(crate) const DATA: u8 = 0x0;
    pub(crate) const HEADERS: u8 = 0x1;
    pub(crate) const PRIORITY: u8 = 0x2;
    pub(crate) const RST_STREAM: u8 = 0x3;
    pub(crate) const SETTINGS: u8 = 0x4;
    pub(crate) const PUSH_PROMISE: u8 = 0x5;
    pub(crate) const PING: u8 = 0x6;
    pub(crate) const GOAWAY: u8 = 0x7;
    pub(crate) const WINDOW_UPDATE: u8 = 0x8;
    pub(crate) const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub(crate) mod flag {
    pub(crate) const END_STREAM: u8 = 0x1;
    pub(crate) const ACK: u8 = 0x1;
    pub(crate) const END_HEADERS: u8 = 0x4;
    pub(crate) const PADDED: u8 = 0x8;
    pub(crate) const PRIORITY: u8 = 0x20;
}

/// Error codes (RFC 9113 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reason(pub(crate) u32);

impl Reason {
    pub(crate) const NO_ERROR: Reason = Reason(0x0);
    pub(crate) const PROTOCOL_ERROR: Reason = Reason(0x1);
    pub(crate) const INTERNAL_ERROR: Reason = Reason(0x2);
    pub(crate) const FLOW_CONTROL_ERROR: Reason = Reason(0x3);
    pub(crate) const STREAM_CLOSED: Reason = Reason(0x5);
    pub(crate) const FRAME_SIZE_ERROR: Reason = Reason(0x6);
    pub(crate) const REFUSED_STREAM: Reason = Reason(0x7);
    pub(crate) const CANCEL: Reason = Reason(0x8);
    pub(crate) const COMPRESSION_ERROR: Reason = Reason(0x9);
    pub(crate) const ENHANCE_YOUR_CALM: Reason = Reason(0xb);
}

/// SETTINGS identifiers (RFC 9113 §6.5.2).
pub(crate) mod setting {
    pub(crate) const HEADER_TABLE_SIZE: u16 = 0x1;
    pub(crate) const ENABLE_PUSH: u16 = 0x2;
    pub(crate) const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub(crate) const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub(crate) const MAX_FRAME_SIZE: u16 = 0x5;
    pub(crate) const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) len: usize,
    pub(crate) kind: u8,
    pub(crate) flags: u8,
    /// The stream identifier, the reserved bit cleared.
    pub(crate) stream: u32,
}

impl Header {
    pub(crate) fn parse(b: &[u8; HEADER_LEN]) -> Header {
        Header {
            len: usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Appends a frame header. `len` must fit 24 bits (callers write at most the peer's maximum
/// frame size, itself at most 2^24 - 1).
pub(crate) fn put_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(len < 1 << 24);
    let len = (len as u32).to_be_bytes();
    out.extend_from_slice(&len[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
}

/// Appends a SETTINGS frame with these entries.
pub(crate) fn put_settings(out: &mut Vec<u8>, entries: &[(u16, u32)]) {
    put_header(out, entries.len() * 6, kind::SETTINGS, 0, 0);
    for (id, value) in entries {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

pub(crate) fn put_settings_ack(out: &mut Vec<u8>) {
    put_header(out, 0, kind::SETTINGS, flag::ACK, 0);
}

pub(crate) fn put_ping_ack(out: &mut Vec<u8>, payload: &[u8; 8]) {
    put_header(out, 8, kind::PING, flag::ACK, 0);
    out.extend_from_slice(payload);
}

/// A GOAWAY naming the last stream this server processes or may process, with a short debug
/// text (read by people looking at a client's log).
pub(crate) fn put_goaway(out: &mut Vec<u8>, last_stream: u32, reason: Reason, debug: &str) {
    put_header(out, 8 + debug.len(), kind::GOAWAY, 0, 0);
    out.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(&reason.0.to_be_bytes());
    out.extend_from_slice(debug.as_bytes());
}

pub(crate) fn put_rst_stream(out: &mut Vec<u8>, stream: u32, reason: Reason) {
    put_header(out, 4, kind::RST_STREAM, 0, stream);
    out.extend_from_slice(&reason.0.to_be_bytes());
}

/// `increment` must be 1..=2^31-1.
pub(crate) fn put_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    debug_assert!(increment > 0 && i64::from(increment) <= MAX_WINDOW);
    put_header(out, 4, kind::WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&increment.to_be_bytes());
}

/// The peer's settings that matter to a server that sends responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PeerSettings {
    /// SETTINGS_INITIAL_WINDOW_SIZE: the send window of each stream at its start.
    pub(crate) initial_window: i64,
    /// SETTINGS_MAX_FRAME_SIZE: the largest frame payload we may send.
    pub(crate) max_frame: usize,
}

impl Default for PeerSettings {
    fn default() -> Self {
        PeerSettings {
            initial_window: DEFAULT_WINDOW,
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

/// A SETTINGS frame the peer may not send (RFC 9113 §6.5.2): a connection error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BadSettings(pub(crate) Reason, pub(crate) &'static str);

/// Applies a SETTINGS payload (not an ACK) to `settings`; unknown identifiers are ignored, as
/// the RFC requires. Header table size, push and the peer's own stream limits ask nothing of a
/// server that encodes without a dynamic table, never pushes and opens no streams.
pub(crate) fn apply_settings(
    settings: &mut PeerSettings,
    payload: &[u8],
) -> Result<(), BadSettings> {
    if !payload.len().is_multiple_of(6) {
        return Err(BadSettings(
            Reason::FRAME_SIZE_ERROR,
            "SETTINGS length is not a multiple of 6",
        ));
    }
    for entry in payload.chunks_exact(6) {
        let id = u16::from_be_bytes([entry[0], entry[1]]);
        let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
        match id {
            setting::ENABLE_PUSH if value > 1 => {
                return Err(BadSettings(
                    Reason::PROTOCOL_ERROR,
                    "SETTINGS_ENABLE_PUSH must be 0 or 1",
                ));
            }
            setting::INITIAL_WINDOW_SIZE => {
                if i64::from(value) > MAX_WINDOW {
                    return Err(BadSettings(
                        Reason::FLOW_CONTROL_ERROR,
                        "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1",
                    ));
                }
                settings.initial_window = i64::from(value);
            }
            setting::MAX_FRAME_SIZE => {
                if !(DEFAULT_MAX_FRAME as u32..=MAX_MAX_FRAME).contains(&value) {
                    return Err(BadSettings(
                        Reason::PROTOCOL_ERROR,
                        "SETTINGS_MAX_FRAME_SIZE outside 16384..=16777215",
                    ));
                }
                settings.max_frame = value as usize;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The payload of a DATA or HEADERS frame without its padding (RFC 9113 §6.1): `None` when the
/// pad length is not shorter than the payload (a connection error).
pub(crate) fn unpad(header: &Header, payload: &[u8]) -> Option<(usize, usize)> {
    if !header.has(flag::PADDED) {
        return Some((0, payload.len()));
    }
    let (&pad, rest) = payload.split_first()?;
    let pad = usize::from(pad);
    (pad <= rest.len()).then(|| (1, payload.len() - pad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers_parse_and_write_byte_exact() {
        let mut out = Vec::new();
        put_header(
            &mut out,
            0x01_02_03,
            kind::HEADERS,
            flag::END_HEADERS,
            0x8000_0005,
        );
        assert_eq!(out, [1, 2, 3, 1, 4, 0, 0, 0, 5]);
        let parsed = Header::parse(&[0, 0, 8, 6, 1, 0x80, 0, 0, 0]);
        assert_eq!(
            parsed,
            Header {
                len: 8,
                kind: kind::PING,
                flags: flag::ACK,
                stream: 0
            }
        );
    }

    #[test]
    fn control_frames_are_byte_exact() {
        let mut out = Vec::new();
        put_settings(&mut out, &[(setting::MAX_CONCURRENT_STREAMS, 100)]);
        put_settings_ack(&mut out);
        put_ping_ack(&mut out, b"12345678");
        put_goaway(&mut out, 7, Reason::ENHANCE_YOUR_CALM, "x");
        put_rst_stream(&mut out, 3, Reason::CANCEL);
        put_window_update(&mut out, 0, 65_535);
        let want: &[u8] = &[
            0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100, // SETTINGS
            0, 0, 0, 4, 1, 0, 0, 0, 0, // SETTINGS ACK
            0, 0, 8, 6, 1, 0, 0, 0, 0, b'1', b'2', b'3', b'4', b'5', b'6', b'7', b'8', // PING
            0, 0, 9, 7, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0xb, b'x', // GOAWAY
            0, 0, 4, 3, 0, 0, 0, 0, 3, 0, 0, 0, 8, // RST_STREAM
            0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, // WINDOW_UPDATE
        ];
        assert_eq!(out, want);
    }

    #[test]
    fn settings_are_applied_and_bad_ones_refused() {
        let mut s = PeerSettings::default();
        let entry = |id: u16, v: u32| {
            let mut e = id.to_be_bytes().to_vec();
            e.extend_from_slice(&v.to_be_bytes());
            e
        };
        let mut payload = entry(setting::INITIAL_WINDOW_SIZE, 10);
        payload.extend(entry(setting::MAX_FRAME_SIZE, 32_768));
        payload.extend(entry(0x99, 7));
        apply_settings(&mut s, &payload).unwrap();
        assert_eq!((s.initial_window, s.max_frame), (10, 32_768));
        let refused = |p: &[u8]| {
            apply_settings(&mut PeerSettings::default(), p)
                .unwrap_err()
                .0
        };
        assert_eq!(refused(&[0, 1, 0]), Reason::FRAME_SIZE_ERROR);
        assert_eq!(
            refused(&entry(setting::ENABLE_PUSH, 2)),
            Reason::PROTOCOL_ERROR
        );
        assert_eq!(
            refused(&entry(setting::INITIAL_WINDOW_SIZE, 1 << 31)),
            Reason::FLOW_CONTROL_ERROR
        );
        assert_eq!(
            refused(&entry(setting::MAX_FRAME_SIZE, 16_383)),
            Reason::PROTOCOL_ERROR
        );
        assert_eq!(
            refused(&entry(setting::MAX_FRAME_SIZE, 1 << 24)),
            Reason::PROTOCOL_ERROR
        );
    }

    #[test]
    fn padding_is_stripped_and_bad_padding_refused() {
        let padded = Header {
            len: 5,
            kind: kind::DATA,
            flags: flag::PADDED,
            stream: 1,
        };
        assert_eq!(unpad(&padded, &[2, b'a', b'b', 0, 0]), Some((1, 3)));
        assert_eq!(unpad(&padded, &[4, b'a', b'b', 0, 0]), Some((1, 1)));
        assert_eq!(unpad(&padded, &[5, b'a', b'b', 0, 0]), None);
        assert_eq!(unpad(&padded, &[]), None);
        let plain = Header { flags: 0, ..padded };
        assert_eq!(unpad(&plain, b"abc"), Some((0, 3)));
    }
}
