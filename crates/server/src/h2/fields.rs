//! HTTP/2 field blocks: a request head decoded from HPACK (RFC 7541, by `loona-hpack`) and
//! checked as RFC 9113 §8.2-8.3 requires, and response heads encoded.
//!
//! Responses are encoded with no dynamic table: `:status 200` indexed from the static table,
//! everything else a literal that is never added to a table. The encoder then keeps no state
//! per connection (a push server answers few requests per connection, and each one's headers
//! are small), and the client's decoder keeps nothing of ours either.

use std::borrow::Cow;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};

/// The cost of a field in a header list's size (RFC 9113 §6.5.2: name, value and 32).
const FIELD_OVERHEAD: usize = 32;

/// A request head, as the router takes it.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
    /// The `content-length` field, when there is one.
    pub(crate) content_length: Option<u64>,
}

/// Why a field block was not a usable request head.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// The HPACK encoding is broken: the connection's decoding state is lost (a connection
    /// error, COMPRESSION_ERROR).
    Compression,
    /// Decoded, but not a well-formed request (a stream error, PROTOCOL_ERROR).
    Malformed(&'static str),
    /// Decoded and well-formed, but larger than the head limit: answered `431`.
    TooLarge,
}

/// Decodes a request's field block and checks it. The block is always decoded whole, so the
/// decoder's table stays in step with the client's even when the request is refused.
pub(crate) fn decode_request(
    decoder: &mut loona_hpack::Decoder<'static>,
    block: &[u8],
    max_list: usize,
) -> Result<RequestHead, HeadError> {
    let mut fields = Fields::default();
    let mut size = 0usize;
    let mut refused: Option<HeadError> = None;
    decoder
        .decode_with_cb(block, |name, value| {
            size = size.saturating_add(name.len() + value.len() + FIELD_OVERHEAD);
            if refused.is_some() {
                return;
            }
            if size > max_list {
                refused = Some(HeadError::TooLarge);
                return;
            }
            if let Err(reason) = fields.add(name, value) {
                refused = Some(HeadError::Malformed(reason));
            }
        })
        .map_err(|_| HeadError::Compression)?;
    if let Some(refused) = refused {
        return Err(refused);
    }
    fields.finish()
}

/// Decodes a trailer block (fields after a request body): decoded for the table's sake, and
/// only checked to hold no pseudo-field. The router's body does not carry request trailers on,
/// so they are dropped.
pub(crate) fn decode_trailers(
    decoder: &mut loona_hpack::Decoder<'static>,
    block: &[u8],
) -> Result<(), HeadError> {
    let mut pseudo = false;
    decoder
        .decode_with_cb(block, |name, _| pseudo |= name.first() == Some(&b':'))
        .map_err(|_| HeadError::Compression)?;
    if pseudo {
        return Err(HeadError::Malformed("a pseudo-header field in trailers"));
    }
    Ok(())
}

#[derive(Default)]
struct Fields {
    method: Option<Method>,
    scheme: Option<String>,
    authority: Option<String>,
    path: Option<String>,
    headers: HeaderMap,
    /// Cookie fields, joined with "; " at the end (RFC 9113 §8.2.3): clients split the cookie
    /// into one field per pair for compression, the application reads one header.
    cookie: Option<Vec<u8>>,
    regular_seen: bool,
}

impl Fields {
    fn add(&mut self, name: Cow<'_, [u8]>, value: Cow<'_, [u8]>) -> Result<(), &'static str> {
        if let Some(pseudo) = name.strip_prefix(b":") {
            if self.regular_seen {
                return Err("a pseudo-header field after a regular one");
            }
            let text = || {
                std::str::from_utf8(&value)
                    .map(str::to_owned)
                    .map_err(|_| "a pseudo-header field that is not text")
            };
            let slot_taken = "a repeated pseudo-header field";
            match pseudo {
                b"method" => {
                    let method = Method::from_bytes(&value).map_err(|_| "an invalid :method")?;
                    if self.method.replace(method).is_some() {
                        return Err(slot_taken);
                    }
                }
                b"scheme" if self.scheme.replace(text()?).is_some() => return Err(slot_taken),
                b"authority" if self.authority.replace(text()?).is_some() => {
                    return Err(slot_taken);
                }
                b"path" if self.path.replace(text()?).is_some() => return Err(slot_taken),
                b"scheme" | b"authority" | b"path" => {}
                _ => return Err("an unknown or response pseudo-header field"),
            }
            return Ok(());
        }
        self.regular_seen = true;
        if name.iter().any(u8::is_ascii_uppercase) {
            return Err("an uppercase field name");
        }
        let name = HeaderName::from_bytes(&name).map_err(|_| "an invalid field name")?;
        let value = HeaderValue::from_bytes(&value).map_err(|_| "an invalid field value")?;
        if connection_specific(&name) {
            return Err("a connection-specific field");
        }
        if name == header::TE && value != "trailers" {
            return Err("a te field other than \"trailers\"");
        }
        if name == header::COOKIE {
            let joined = self.cookie.get_or_insert_with(Vec::new);
            if !joined.is_empty() {
                joined.extend_from_slice(b"; ");
            }
            joined.extend_from_slice(value.as_bytes());
            return Ok(());
        }
        self.headers.append(name, value);
        Ok(())
    }

    fn finish(mut self) -> Result<RequestHead, HeadError> {
        let malformed = HeadError::Malformed;
        let method = self.method.ok_or(malformed("no :method"))?;
        let uri = if method == Method::CONNECT {
            // Only the authority (RFC 9113 §8.5); extended CONNECT is not offered.
            if self.scheme.is_some() || self.path.is_some() {
                return Err(malformed("a CONNECT with :scheme or :path"));
            }
            let authority = self
                .authority
                .ok_or(malformed("a CONNECT without :authority"))?;
            Uri::try_from(authority).map_err(|_| malformed("an invalid :authority"))?
        } else {
            let scheme = self.scheme.ok_or(malformed("no :scheme"))?;
            let path = self.path.filter(|p| !p.is_empty());
            let path = path.ok_or(malformed("no :path, or an empty one"))?;
            let mut builder = Uri::builder().scheme(scheme.as_str());
            if let Some(authority) = &self.authority {
                builder = builder.authority(authority.as_str());
            } else if let Some(host) = self.headers.get(header::HOST) {
                builder = builder.authority(host.as_bytes());
            }
            builder
                .path_and_query(path.as_str())
                .build()
                .map_err(|_| malformed("an invalid :scheme, :authority or :path"))?
        };
        if let Some(cookie) = self.cookie {
            let value = HeaderValue::from_bytes(&cookie).map_err(|_| malformed("a bad cookie"))?;
            self.headers.insert(header::COOKIE, value);
        }
        let content_length = match self.headers.get(header::CONTENT_LENGTH) {
            None => None,
            Some(v) => Some(
                std::str::from_utf8(v.as_bytes())
                    .ok()
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse().ok())
                    .ok_or(malformed("an invalid content-length"))?,
            ),
        };
        Ok(RequestHead {
            method,
            uri,
            headers: self.headers,
            content_length,
        })
    }
}

/// Whether a field is connection-specific, which HTTP/2 forbids both ways (RFC 9113 §8.2.2).
fn connection_specific(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == "keep-alive"
        || name == "proxy-connection"
}

/// Appends the HPACK block of a response head: `:status`, then `fields` without the
/// connection-specific ones, each a literal never added to a table.
pub(crate) fn encode_response(status: StatusCode, fields: &HeaderMap, out: &mut Vec<u8>) {
    if status == StatusCode::OK {
        // Static table entry 8: ":status: 200" (RFC 7541 Appendix A).
        out.push(0x88);
    } else {
        // Literal without indexing, name from static entry 8.
        out.push(0x08);
        put_string(out, status.as_str().as_bytes());
    }
    encode_fields(fields, out);
}

/// Appends the HPACK block of a trailer section.
pub(crate) fn encode_fields(fields: &HeaderMap, out: &mut Vec<u8>) {
    for (name, value) in fields {
        if connection_specific(name) {
            continue;
        }
        // Literal without indexing, new name (RFC 7541 §6.2.2).
        out.push(0x00);
        put_string(out, name.as_str().as_bytes());
        put_string(out, value.as_bytes());
    }
}

/// A string literal, not Huffman-coded: a 7-bit-prefix length, then the bytes.
fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_int(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

/// An integer with an N-bit prefix (RFC 7541 §5.1); `first` holds the bits above the prefix.
fn put_int(out: &mut Vec<u8>, first: u8, prefix_bits: u32, mut n: usize) {
    let max = (1usize << prefix_bits) - 1;
    if n < max {
        out.push(first | n as u8);
        return;
    }
    out.push(first | max as u8);
    n -= max;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block of literal fields, as a client that indexes nothing sends.
    fn block(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            out.push(0x00);
            put_string(&mut out, name.as_bytes());
            put_string(&mut out, value.as_bytes());
        }
        out
    }

    fn decode(fields: &[(&str, &str)]) -> Result<RequestHead, HeadError> {
        decode_request(&mut loona_hpack::Decoder::new(), &block(fields), 64 * 1024)
    }

    const GET: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "example.com"),
        (":path", "/.well-known/mercure?topic=a"),
    ];

    #[test]
    fn a_request_head_decodes_into_method_uri_and_fields() {
        let mut fields = GET.to_vec();
        fields.extend([
            ("accept", "text/event-stream"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
        ]);
        let head = decode(&fields).unwrap();
        assert_eq!(head.method, Method::GET);
        assert_eq!(
            head.uri.to_string(),
            "https://example.com/.well-known/mercure?topic=a"
        );
        assert_eq!(head.headers["accept"], "text/event-stream");
        assert_eq!(head.headers["cookie"], "a=1; b=2");
        assert_eq!(head.content_length, None);
    }

    #[test]
    fn a_huffman_coded_indexed_block_from_the_rfc_decodes() {
        // RFC 7541 C.4.1: ":method GET, :scheme http, :path /, :authority www.example.com".
        let block = [
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ];
        let head = decode_request(&mut loona_hpack::Decoder::new(), &block, 64 * 1024).unwrap();
        assert_eq!(head.uri.to_string(), "http://www.example.com/");
    }

    #[test]
    fn malformed_heads_are_refused_with_a_reason() {
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut fields = GET.to_vec();
            fields.extend_from_slice(extra);
            decode(&fields).unwrap_err()
        };
        let malformed = |r| HeadError::Malformed(r);
        assert_eq!(
            with(&[("Accept", "x")]),
            malformed("an uppercase field name")
        );
        assert_eq!(
            with(&[("connection", "keep-alive")]),
            malformed("a connection-specific field")
        );
        assert_eq!(
            with(&[("te", "gzip")]),
            malformed("a te field other than \"trailers\"")
        );
        assert_eq!(
            with(&[("a", "b"), (":method", "GET")]),
            malformed("a pseudo-header field after a regular one")
        );
        assert_eq!(
            with(&[(":path", "/x")]),
            malformed("a repeated pseudo-header field")
        );
        assert_eq!(
            with(&[(":status", "200")]),
            malformed("an unknown or response pseudo-header field")
        );
        assert_eq!(
            with(&[("content-length", "1x")]),
            malformed("an invalid content-length")
        );
        assert_eq!(decode(&GET[1..]).unwrap_err(), malformed("no :method"));
        assert_eq!(
            decode(&[(":method", "GET"), (":scheme", "https")]).unwrap_err(),
            malformed("no :path, or an empty one")
        );
        let mut fields = GET.to_vec();
        fields.extend([("te", "trailers"), ("content-length", "12")]);
        assert_eq!(decode(&fields).unwrap().content_length, Some(12));
    }

    #[test]
    fn broken_hpack_is_a_compression_error_and_big_heads_are_too_large() {
        let mut decoder = loona_hpack::Decoder::new();
        // Index 0 does not exist.
        assert_eq!(
            decode_request(&mut decoder, &[0x80], 1024).unwrap_err(),
            HeadError::Compression
        );
        let big = "x".repeat(2000);
        let mut fields = GET.to_vec();
        fields.push(("x-big", &big));
        assert_eq!(
            decode_request(&mut loona_hpack::Decoder::new(), &block(&fields), 1024).unwrap_err(),
            HeadError::TooLarge
        );
    }

    #[test]
    fn response_heads_encode_byte_exact_and_decode_back() {
        let mut fields = HeaderMap::new();
        fields.insert(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
        fields.insert("connection", HeaderValue::from_static("close"));
        let mut out = Vec::new();
        encode_response(StatusCode::OK, &fields, &mut out);
        let mut want = vec![0x88, 0x00, 12];
        want.extend_from_slice(b"content-type");
        want.push(17);
        want.extend_from_slice(b"text/event-stream");
        assert_eq!(out, want);

        let mut out = Vec::new();
        let long = "v".repeat(300);
        fields.insert("x-long", HeaderValue::from_str(&long).unwrap());
        encode_response(StatusCode::NOT_FOUND, &fields, &mut out);
        assert_eq!(&out[..5], &[0x08, 3, b'4', b'0', b'4']);
        let decoded = loona_hpack::Decoder::new().decode(&out).unwrap();
        let decoded: Vec<(String, String)> = decoded
            .into_iter()
            .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
            .collect();
        assert_eq!(
            decoded,
            [
                (":status".to_owned(), "404".to_owned()),
                ("content-type".to_owned(), "text/event-stream".to_owned()),
                ("x-long".to_owned(), long),
            ]
        );
    }

    #[test]
    fn integers_use_the_prefix_then_continuation_bytes() {
        let mut out = Vec::new();
        put_int(&mut out, 0, 5, 10);
        put_int(&mut out, 0, 5, 1337);
        put_int(&mut out, 0, 7, 127);
        // RFC 7541 C.1.1 and C.1.2.
        assert_eq!(out, [10, 31, 154, 10, 127, 0]);
    }
}
