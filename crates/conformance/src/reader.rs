//! [`Reader`]: a subscriber's events as `(type, id, data)`, read with a timeout.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::StreamExt;
use ssehub_codec::{Frame, Parser};
use ssehub_hub::SubscriberStream;

/// One event: its type, the id it carried (empty for none), its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ev {
    /// `message` unless the frame named one.
    pub event_type: String,
    /// The frame's own id; empty when it had none (gap and lagged notices).
    pub id: String,
    /// The data.
    pub data: String,
}

/// Reads a subscriber's events across batches.
#[derive(Debug)]
pub struct Reader {
    stream: SubscriberStream,
    parser: Parser,
    pending: VecDeque<Ev>,
    ended: bool,
}

/// How long a read waits for the next batch (Redis delivers through its reader task).
const WAIT: Duration = Duration::from_secs(10);

impl Reader {
    /// Reads `stream`.
    pub fn new(stream: SubscriberStream) -> Reader {
        Reader {
            stream,
            parser: Parser::new(),
            pending: VecDeque::new(),
            ended: false,
        }
    }

    /// The stream itself (its cursor, its id).
    pub fn stream(&self) -> &SubscriberStream {
        &self.stream
    }

    async fn fill(&mut self, wait: Duration) -> bool {
        match tokio::time::timeout(wait, self.stream.next()).await {
            Ok(Some(bytes)) => {
                // Ids are per frame: a frame without `id:` is read as having none.
                for chunk in split_frames(&bytes) {
                    self.parser.feed(chunk.as_bytes());
                    let has_id = chunk.lines().any(|l| l.starts_with("id:"));
                    while let Some(f) = self.parser.next_frame() {
                        if let Frame::Event(e) = f {
                            self.pending.push_back(Ev {
                                event_type: e.event_type,
                                id: if has_id {
                                    e.last_event_id
                                } else {
                                    String::new()
                                },
                                data: e.data,
                            });
                        }
                    }
                }
                true
            }
            Ok(None) => {
                self.ended = true;
                false
            }
            Err(_) => false,
        }
    }

    /// The next `n` events; panics after 10 s without one, or if the stream ends first.
    pub async fn take(&mut self, n: usize) -> Vec<Ev> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if let Some(e) = self.pending.pop_front() {
                out.push(e);
                continue;
            }
            assert!(
                self.fill(WAIT).await,
                "no event within {WAIT:?} (ended: {}); got {out:?}",
                self.ended
            );
        }
        out
    }

    /// Everything until the stream ends (panics if it does not end within 10 s).
    pub async fn until_end(&mut self) -> Vec<Ev> {
        let mut out: Vec<Ev> = self.pending.drain(..).collect();
        while !self.ended {
            assert!(
                self.fill(WAIT).await || self.ended,
                "the stream did not end; got {out:?}"
            );
            out.extend(self.pending.drain(..));
        }
        out
    }

    /// Asserts that no event arrives for a short while.
    pub async fn quiet(&mut self) {
        if self.pending.is_empty() {
            self.fill(Duration::from_millis(200)).await;
        }
        assert!(
            self.pending.is_empty(),
            "unexpected events: {:?}",
            self.pending
        );
    }
}

/// Splits a batch into its frames (each ends with a blank line), so each frame's own `id:` can
/// be told apart from the parser's carried-over last event id.
fn split_frames(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    let mut rest: &str = &text;
    while let Some(i) = rest.find("\n\n") {
        out.push(rest[..i + 2].to_owned());
        rest = &rest[i + 2..];
    }
    if !rest.is_empty() {
        out.push(rest.to_owned());
    }
    out
}
