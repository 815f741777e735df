//! How to talk to each peer: where to subscribe, how to publish, and the bytes of both requests.
//!
//! Requests are written by hand (a few header lines) and built once per topic, so a publish costs
//! a memcpy and 20 digits of timestamp, not an HTTP client's machinery.

use std::net::SocketAddr;

use clap::ValueEnum;

use crate::scan::{TS_DIGITS, TS_MARKER, write_timestamp};

/// The body format a peer's publish endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PubKind {
    /// Mercure: `application/x-www-form-urlencoded` with `topic` and `data` (ssehub).
    Mercure,
    /// nchan: the raw body is the message, the channel is in the URL (`/pub?id=T`).
    Nchan,
    /// The nests tutorial's `POST /nest` with a JSON object, re-sent as `JSON.stringify`.
    Nests,
    /// Pushpin's HTTP publish API (`POST /publish/`): a JSON item for the channel whose
    /// `http-stream` content is the SSE frame itself (`data: ...` and its blank line).
    Pushpin,
}

/// The peers the runner starts, with their URL layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    Ssehub,
    Nchan,
    Express,
    BetterSse,
    /// Pushpin in front of bench/peers/pushpin/origin.js, which holds each request as a GRIP
    /// stream on the channel named in its query; publishes go to Pushpin's publish port.
    Pushpin,
}

/// One peer as the generator sees it.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// Where publishes go (Pushpin takes them on a port of their own); `addr` by default.
    pub pub_addr: SocketAddr,
    /// Path and query of the subscribe URL; `{topic}` is replaced by the topic.
    pub sub_path: String,
    /// Path and query of the publish URL; `{topic}` is replaced by the topic.
    pub pub_path: String,
    pub kind: PubKind,
    /// Extra request headers for publishing, e.g. `Authorization: Bearer ...`.
    pub pub_headers: Vec<String>,
}

impl Target {
    pub fn preset(preset: Preset, addr: SocketAddr) -> Self {
        let (sub, publ, kind) = match preset {
            Preset::Ssehub => (
                // Mercure 1.0: an exact matcher (`topic=` is the 0.x parameter).
                "/.well-known/mercure?match={topic}",
                "/.well-known/mercure",
                PubKind::Mercure,
            ),
            Preset::Nchan => ("/sub?id={topic}", "/pub?id={topic}", PubKind::Nchan),
            Preset::Express | Preset::BetterSse => ("/events", "/nest", PubKind::Nests),
            Preset::Pushpin => ("/stream?channel={topic}", "/publish/", PubKind::Pushpin),
        };
        Self {
            addr,
            pub_addr: addr,
            sub_path: sub.into(),
            pub_path: publ.into(),
            kind,
            pub_headers: Vec::new(),
        }
    }

    /// Whether subscribers can pick a topic at all (the tutorial servers broadcast to everyone).
    pub fn has_topics(&self) -> bool {
        self.sub_path.contains("{topic}")
    }

    /// Path and query of the subscribe URL for `topic` (HTTP/2's `:path`).
    pub fn subscribe_path(&self, topic: &str) -> String {
        self.sub_path.replace("{topic}", topic)
    }

    pub fn subscribe_request(&self, topic: &str) -> Vec<u8> {
        self.subscribe_request_with(topic, None, &[])
    }

    /// The subscribe request with `query` (`name=value`, already encoded) added to the URL and
    /// `headers` (`Name: value`) added to the head.
    pub fn subscribe_request_with(
        &self,
        topic: &str,
        query: Option<&str>,
        headers: &[String],
    ) -> Vec<u8> {
        let mut path = self.sub_path.replace("{topic}", topic);
        if let Some(q) = query {
            path = add_query(&path, q);
        }
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n",
            self.addr
        );
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        req.into_bytes()
    }

    /// The publish request for `topic` split around the timestamp, with event data of exactly
    /// `size` bytes (padded with `x`; at least the marker and its digits).
    pub fn publish_request(&self, topic: &str, size: usize) -> PublishRequest {
        let stamp = TS_MARKER.len() + TS_DIGITS;
        let (body_before, body_after, content_type) = match self.kind {
            PubKind::Mercure => (
                // `~`, digits and `x` need no percent-encoding, and neither do our topic names.
                format!("topic={topic}&data="),
                "x".repeat(size.saturating_sub(stamp)),
                "application/x-www-form-urlencoded",
            ),
            PubKind::Nchan => (
                String::new(),
                "x".repeat(size.saturating_sub(stamp)),
                "text/plain",
            ),
            PubKind::Nests => {
                // `JSON.stringify` of {"momma": "..."} is what reaches subscribers: make that
                // `size` bytes, like the other peers' data.
                let wrapper = r#"{"momma":""}"#.len();
                (
                    r#"{"momma":""#.to_string(),
                    format!("{}\"}}", "x".repeat(size.saturating_sub(stamp + wrapper))),
                    "application/json",
                )
            }
            PubKind::Pushpin => (
                // The content is what subscribers receive, verbatim: one SSE frame. `~`, digits,
                // `x` and our channel names need no JSON escaping; the frame's line ends do.
                format!(
                    r#"{{"items":[{{"channel":"{topic}","formats":{{"http-stream":{{"content":"data: "#
                ),
                format!(
                    r#"{}\n\n"}}}}}}]}}"#,
                    "x".repeat(size.saturating_sub(stamp))
                ),
                "application/json",
            ),
        };
        let body_len = body_before.len() + stamp + body_after.len();
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {body_len}\r\n",
            self.pub_path.replace("{topic}", topic),
            self.pub_addr
        );
        for h in &self.pub_headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        head.push_str(&body_before);
        PublishRequest {
            before: head.into_bytes(),
            after: body_after.into_bytes(),
        }
    }
}

/// `path` with `param` (`name=value`) appended to its query string.
pub fn add_query(path: &str, param: &str) -> String {
    match path.find('?') {
        None => format!("{path}?{param}"),
        Some(q) if q + 1 == path.len() || path.ends_with('&') => format!("{path}{param}"),
        Some(_) => format!("{path}&{param}"),
    }
}

/// A publish request with a hole for the timestamp.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    before: Vec<u8>,
    after: Vec<u8>,
}

impl PublishRequest {
    /// Writes the whole request for a publish stamped `ts_ns` into `out` (cleared first).
    pub fn write(&self, ts_ns: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.before);
        write_timestamp(out, ts_ns);
        out.extend_from_slice(&self.after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{extract_timestamp, parse_head};

    #[test]
    fn query_parameters_are_appended() {
        assert_eq!(add_query("/sub", "a=1"), "/sub?a=1");
        assert_eq!(add_query("/sub?", "a=1"), "/sub?a=1");
        assert_eq!(add_query("/sub?t=x", "a=1"), "/sub?t=x&a=1");
        assert_eq!(add_query("/sub?t=x&", "a=1"), "/sub?t=x&a=1");
    }

    #[test]
    fn subscribe_requests_carry_query_and_headers() {
        let t = Target::preset(Preset::Ssehub, "127.0.0.1:9".parse().unwrap());
        let req = t.subscribe_request_with(
            "t1",
            Some("last_event_id=earliest"),
            &["Last-Event-ID: urn:x:1".to_string()],
        );
        let text = String::from_utf8(req).unwrap();
        assert!(
            text.starts_with(
                "GET /.well-known/mercure?match=t1&last_event_id=earliest HTTP/1.1\r\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("\r\nLast-Event-ID: urn:x:1\r\n\r\n"),
            "{text}"
        );
        assert_eq!(
            t.subscribe_request("t1"),
            t.subscribe_request_with("t1", None, &[])
        );
    }

    fn body(req: &[u8]) -> &[u8] {
        let at = memchr::memmem::find(req, b"\r\n\r\n").unwrap() + 4;
        &req[at..]
    }

    #[test]
    fn publish_bodies_have_the_right_length_and_stamp() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for preset in [Preset::Ssehub, Preset::Nchan, Preset::Express] {
            let t = Target::preset(preset, addr);
            let mut out = Vec::new();
            t.publish_request("t7", 100).write(77, &mut out);
            let b = body(&out);
            let text = std::str::from_utf8(&out).unwrap();
            assert!(
                text.contains(&format!("Content-Length: {}\r\n", b.len())),
                "{text}"
            );
            assert_eq!(extract_timestamp(b), Some(77));
            match preset {
                Preset::Ssehub => assert_eq!(b.len() - "topic=t7&data=".len(), 100),
                Preset::Nchan => {
                    assert_eq!(b.len(), 100);
                    assert!(text.starts_with("POST /pub?id=t7 "));
                }
                _ => assert_eq!(b.len(), 100),
            }
        }
        // The head parser reads our own request line shape back (a sanity check of CRLFs).
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").unwrap().is_some());
    }

    #[test]
    fn pushpin_publishes_one_sse_frame_to_its_publish_port() {
        let mut t = Target::preset(Preset::Pushpin, "127.0.0.1:9".parse().unwrap());
        t.pub_addr = "127.0.0.1:10".parse().unwrap();
        let mut out = Vec::new();
        t.publish_request("t7", 100).write(77, &mut out);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(
            text.starts_with("POST /publish/ HTTP/1.1\r\nHost: 127.0.0.1:10\r\n"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_slice(body(&out)).unwrap();
        let item = &json["items"][0];
        assert_eq!(item["channel"], "t7");
        let content = item["formats"]["http-stream"]["content"].as_str().unwrap();
        // What a subscriber receives: one frame whose data is 100 bytes with the stamp.
        let data = content
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        assert_eq!(data.len(), 100);
        assert_eq!(extract_timestamp(data.as_bytes()), Some(77));
        assert!(
            t.subscribe_request("t7")
                .starts_with(b"GET /stream?channel=t7 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n")
        );
    }
}
