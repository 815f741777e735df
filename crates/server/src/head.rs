//! Sorting a connection's first request head: a plain SSE subscribe that the connection layer
//! serves itself, or anything else, which goes to hyper.
//!
//! Pure functions over the bytes read so far, so they are tested without sockets. The rule is
//! conservative on purpose: only the exact shape browsers and the bench send (`GET` of the
//! Mercure path over HTTP/1.1, no body, no upgrade, nothing after the head) takes the fast path;
//! every doubt is resolved by handing the bytes to hyper, which answers as it always did.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};

use crate::mercure::MERCURE_PATH;

/// Most headers a fast-path head may have; more goes to hyper, whose limit (100) is the same,
/// so it answers `431` exactly as before.
const MAX_HEADERS: usize = 100;

/// What the bytes read so far are.
#[derive(Debug)]
pub(crate) enum Head {
    /// Could still be a subscribe head: read more.
    Partial,
    /// A complete subscribe request, and nothing after it.
    Subscribe { uri: Uri, headers: HeaderMap },
    /// Anything else: hyper serves the connection, starting with these bytes.
    Other,
}

/// What the connection layer can say of a head hyper will serve, before handing it over: hyper
/// answers a head over its limit or a malformed request target with an empty body, and a
/// refusal must carry its reason.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Precheck {
    /// Not known yet: read more.
    Partial,
    /// Hand it to hyper as it is (a sound HTTP/1 head, HTTP/2, or not HTTP at all).
    Pass,
    /// The request target has a byte a URI may not hold raw (non-ASCII, control, space
    /// inside): `400` with a reason.
    BadTarget,
}

/// Looks at a non-subscribe head as it is read: `Pass` at once for anything that is not an
/// HTTP/1 request line (the HTTP/2 preface, TLS sent to a plain port, garbage: hyper answers
/// those), else waits for the whole head so the caller can also enforce the size limit. Like
/// [`Scan`], it resumes where it stopped, so a head dribbled byte by byte costs linear time.
#[derive(Debug, Default)]
pub(crate) struct OtherHead {
    /// The request line was checked.
    line_checked: bool,
    /// Bytes already searched for the end of the line, then of the head.
    searched: usize,
}

impl OtherHead {
    pub(crate) fn precheck(&mut self, buf: &[u8]) -> Precheck {
        if !self.line_checked {
            // The method: a token of at most 16 characters, then a space.
            let Some(space) = buf.iter().take(17).position(|&b| b == b' ') else {
                let token = buf.iter().all(|b| b.is_ascii_uppercase() || *b == b'-');
                return if token && buf.len() < 17 {
                    Precheck::Partial
                } else {
                    Precheck::Pass
                };
            };
            let method = &buf[..space];
            if method.is_empty()
                || method == b"PRI"
                || !method.iter().all(|b| b.is_ascii_uppercase() || *b == b'-')
            {
                return Precheck::Pass;
            }
            let from = self.searched.max(space);
            let Some(line_end) = buf[from..].iter().position(|&b| b == b'\n') else {
                self.searched = buf.len();
                return Precheck::Partial;
            };
            let line = &buf[space + 1..from + line_end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let target = match line.iter().rposition(|&b| b == b' ') {
                Some(i) => &line[..i],
                None => line,
            };
            if target.is_empty() || !target.iter().all(|b| (0x21..=0x7e).contains(b)) {
                return Precheck::BadTarget;
            }
            self.line_checked = true;
            // The head's end is looked for from the request line's end.
            self.searched = from + line_end;
        }
        let from = self.searched.saturating_sub(2);
        self.searched = buf.len();
        if has_end(&buf[from..]) {
            Precheck::Pass
        } else {
            Precheck::Partial
        }
    }
}

/// Where a head's end is looked for: the scan resumes where the last one stopped, so a head
/// dribbled one byte per read costs linear time, not quadratic.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    searched: usize,
}

impl Scan {
    /// Sorts `buf`, the bytes read from the connection so far.
    pub(crate) fn classify(&mut self, buf: &[u8]) -> Head {
        match prefix_matches(buf) {
            None => return Head::Partial,
            Some(false) => return Head::Other,
            Some(true) => {}
        }
        // httparse accepts bare LF line ends as hyper does, so a head ends at "\n\n" or "\n\r\n".
        let from = self.searched.saturating_sub(2);
        let ended = has_end(&buf[from..]);
        self.searched = buf.len();
        if !ended {
            return Head::Partial;
        }
        parse(buf)
    }
}

fn has_end(buf: &[u8]) -> bool {
    buf.windows(2).any(|w| w == b"\n\n") || buf.windows(3).any(|w| w == b"\n\r\n")
}

/// Whether `buf` starts (or may yet start) with `GET <MERCURE_PATH>` followed by `?` or a space:
/// `None` while too short to tell.
fn prefix_matches(buf: &[u8]) -> Option<bool> {
    let want = b"GET ".iter().chain(MERCURE_PATH.as_bytes());
    let mut at = 0;
    for &w in want {
        match buf.get(at) {
            None => return None,
            Some(&b) if b == w => at += 1,
            Some(_) => return Some(false),
        }
    }
    match buf.get(at) {
        None => None,
        Some(b'?' | b' ') => Some(true),
        Some(_) => Some(false),
    }
}

fn parse(buf: &[u8]) -> Head {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Other,
    };
    // Pipelined bytes belong to the next request; hyper knows how to keep them.
    if len != buf.len() || req.version != Some(1) || req.method != Some("GET") {
        return Head::Other;
    }
    // A raw non-ASCII byte in the target is refused with a reason on the other path.
    let Some(Ok(uri)) = req
        .path
        .filter(|p| p.bytes().all(|b| (0x21..=0x7e).contains(&b)))
        .map(Uri::try_from)
    else {
        return Head::Other;
    };
    if uri.path() != MERCURE_PATH {
        return Head::Other;
    }
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Head::Other;
        };
        if !plain(&name, &value) {
            return Head::Other;
        }
        headers.append(name, value);
    }
    Head::Subscribe { uri, headers }
}

/// Whether a header leaves the request a plain subscribe: no body, no upgrade, no `Expect`, and
/// no connection option besides keep-alive (hyper answers `Connection: close` differently).
fn plain(name: &HeaderName, value: &HeaderValue) -> bool {
    use axum::http::header;
    if name == header::CONTENT_LENGTH
        || name == header::TRANSFER_ENCODING
        || name == header::EXPECT
        || name == header::UPGRADE
        || name == header::TE
    {
        return false;
    }
    if name == header::CONNECTION {
        return value.as_bytes().eq_ignore_ascii_case(b"keep-alive");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precheck_waits_for_a_whole_http1_head_and_passes_the_rest_at_once() {
        for partial in [
            &b"P"[..],
            b"POST",
            b"POST /.well-known/mercure HTTP/1.1\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\n",
        ] {
            assert_eq!(
                OtherHead::default().precheck(partial),
                Precheck::Partial,
                "{partial:?}"
            );
        }
        for pass in [
            &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
            b"\x16\x03\x01\x02\x00\x01",
            b"post / HTTP/1.1\r\n",
            b"AVERYLONGMETHODNAMEX / HTTP/1.1",
            b"POST /.well-known/mercure HTTP/1.1\r\nHost: x\r\n\r\ntopic=a",
            b"GET /a?b=%C3%A9 HTTP/1.1\nHost: x\n\n",
        ] {
            assert_eq!(
                OtherHead::default().precheck(pass),
                Precheck::Pass,
                "{pass:?}"
            );
        }
        for bad in [
            &b"GET /.well-known/mercure?topic=\xc3\xa9 HTTP/1.1\r\n"[..],
            b"POST /x?y=\xff HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /a\x01b HTTP/1.1\r\n",
            b"GET  HTTP/1.1\r\n",
        ] {
            assert_eq!(
                OtherHead::default().precheck(bad),
                Precheck::BadTarget,
                "{bad:?}"
            );
        }
        // Fed a byte at a time, the same answers.
        let whole = b"POST /x HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut check = OtherHead::default();
        for n in 1..whole.len() {
            assert_eq!(check.precheck(&whole[..n]), Precheck::Partial, "{n}");
        }
        assert_eq!(check.precheck(whole), Precheck::Pass);
        let bad = b"GET /\xc3 HTTP/1.1\r\n";
        let mut check = OtherHead::default();
        let answers: Vec<Precheck> = (1..=bad.len()).map(|n| check.precheck(&bad[..n])).collect();
        assert_eq!(answers.last(), Some(&Precheck::BadTarget));
        // A raw non-ASCII byte never takes the fast path.
        assert!(matches!(
            classify(b"GET /.well-known/mercure?topic=\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Head::Other
        ));
    }

    fn classify(buf: &[u8]) -> Head {
        Scan::default().classify(buf)
    }

    fn is_subscribe(h: &Head) -> bool {
        matches!(h, Head::Subscribe { .. })
    }

    #[test]
    fn plain_subscribe_is_recognized_with_its_headers() {
        let head =
            b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n\r\n";
        match classify(head) {
            Head::Subscribe { uri, headers } => {
                assert_eq!(uri.query(), Some("topic=a"));
                assert_eq!(headers["last-event-id"], "7");
            }
            other => panic!("{other:?}"),
        }
        // Bare LF line ends, as hyper accepts them.
        assert!(is_subscribe(&classify(
            b"GET /.well-known/mercure?topic=a HTTP/1.1\nHost: x\n\n"
        )));
        assert!(is_subscribe(&classify(
            b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nConnection: Keep-Alive\r\n\r\n"
        )));
    }

    #[test]
    fn other_requests_are_told_apart_as_early_as_possible() {
        for early in [
            &b"P"[..],
            b"POST /.well-known/mercure",
            b"PRI * HTTP/2.0\r\n",
            b"GET /healthz",
            b"GET /.well-known/mercurex",
            b"OPTIONS /",
            b"get /.well-known/mercure",
        ] {
            assert!(matches!(classify(early), Head::Other), "{early:?}");
        }
        for undecided in [
            &b""[..],
            b"GE",
            b"GET /.well-known/merc",
            b"GET /.well-known/mercure",
        ] {
            assert!(
                matches!(classify(undecided), Head::Partial),
                "{undecided:?}"
            );
        }
        assert!(matches!(
            classify(b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: x\r\n"),
            Head::Partial
        ));
    }

    #[test]
    fn anything_unusual_goes_to_hyper() {
        for head in [
            // HTTP/1.0, pipelining, bodies, upgrades, expectations, connection options.
            &b"GET /.well-known/mercure?topic=a HTTP/1.0\r\n\r\n"[..],
            b"GET /.well-known/mercure?topic=a HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n",
            b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
            b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nConnection: close\r\n\r\n",
            // Not parseable by httparse or not a valid URI: hyper gives its 400.
            b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET /.well-known/mercure?a\x7fb HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(classify(head), Head::Other),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn a_head_fed_one_byte_at_a_time_is_found_once_complete() {
        let head = b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut scan = Scan::default();
        for end in 1..head.len() {
            assert!(
                matches!(scan.classify(&head[..end]), Head::Partial),
                "at {end}"
            );
        }
        assert!(is_subscribe(&scan.classify(head)));
    }

    #[test]
    fn too_many_headers_go_to_hyper() {
        let mut head = b"GET /.well-known/mercure?topic=a HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            head.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        assert!(matches!(classify(&head), Head::Other));
    }
}
