//! One SSE subscription over HTTP, read frame by frame (`id` and `data` of each update),
//! counting heartbeats: what the cluster tests (Redis, PostgreSQL) read from each node.

use std::time::{Duration, Instant};

/// One SSE subscription over HTTP.
pub struct Sse {
    pub res: reqwest::Response,
    pub buf: String,
    /// Heartbeats seen: `:` lines between frames (they end no frame).
    pub heartbeats: usize,
}

/// What `Sse::next` got.
#[derive(Debug)]
pub enum Got {
    Event(String, String),
    /// The stream ended or broke (its node died).
    End,
}

impl Sse {
    pub async fn open(url: &str, last_event_id: Option<&str>) -> Sse {
        let mut req = reqwest::Client::new().get(format!("{url}?topic=t"));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        Sse {
            res,
            buf: String::new(),
            heartbeats: 0,
        }
    }

    /// The next update `(id, data)`, or `End`; fails the test after `within`.
    pub async fn next(&mut self, within: Duration) -> Got {
        let deadline = Instant::now() + within;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut data) = (None, None);
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(v.to_owned());
                    } else {
                        assert!(
                            line.is_empty() || line.starts_with(':') || line.starts_with("retry:"),
                            "unexpected line {line:?} in {frame:?}"
                        );
                    }
                }
                if let (Some(id), Some(data)) = (id, data) {
                    return Got::Event(id, data);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.res.chunk()).await {
                Err(_) => panic!("no event within {within:?}"),
                Ok(Ok(Some(chunk))) => {
                    self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
                    self.take_heartbeats();
                }
                Ok(Ok(None) | Err(_)) => return Got::End,
            }
        }
    }

    /// Takes the heartbeats out of the buffer, counting them: lines that are `:` alone (a line
    /// starts the buffer or follows a `\n`; an update's lines never are a bare `:`).
    pub fn take_heartbeats(&mut self) {
        let mut at = 0;
        while let Some(off) = self.buf[at..].find(":\n") {
            let pos = at + off;
            if pos == 0 || self.buf.as_bytes()[pos - 1] == b'\n' {
                self.buf.replace_range(pos..pos + 2, "");
                self.heartbeats += 1;
                at = pos;
            } else {
                at = pos + 2;
            }
        }
    }

    /// The next `n` updates; fails if the stream ends first.
    pub async fn take(&mut self, n: usize) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while out.len() < n {
            match self.next(Duration::from_secs(20)).await {
                Got::Event(id, data) => out.push((id, data)),
                Got::End => panic!("stream ended after {} of {n}", out.len()),
            }
        }
        out
    }

    /// Nothing more for a moment.
    pub async fn quiet(&mut self) {
        assert!(!self.buf.contains("id: "), "unexpected {:?}", self.buf);
        if let Ok(Ok(Some(more))) =
            tokio::time::timeout(Duration::from_millis(500), self.res.chunk()).await
        {
            let more = String::from_utf8_lossy(&more);
            assert!(!more.contains("id: "), "unexpected {more:?}");
        }
    }
}
