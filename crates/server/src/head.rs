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
    let Some(Ok(uri)) = req.path.map(Uri::try_from) else {
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
