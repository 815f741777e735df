//! The stream of events: the `EventSource` processing model as a state machine.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use ssehub_codec::{Frame, MessageEvent, Parser};

use crate::client::Shared;
use crate::error::ClientError;

/// What an [`EventStream`] yields, besides errors.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A connection was established: status 200 and a `text/event-stream` body (the browser's
    /// `open` event). Yielded on every (re)connection.
    Open {
        /// The URL that answered, after redirects.
        url: String,
        /// The HTTP version spoken.
        version: reqwest::Version,
    },
    /// A dispatched event (the browser's `message` or named event).
    Message(MessageEvent),
    /// The server set the reconnection time with a valid `retry:` field. It is in force from
    /// now on, whether or not the event it came in is ever dispatched.
    Retry(Duration),
    /// A comment line (the text after `:`, verbatim); servers send them as heartbeats.
    Comment(String),
    /// The connection ended or could not be made; the client waits `delay`, then reconnects
    /// with the last event ID (the browser's `error` event with `readyState` CONNECTING).
    Reconnecting {
        /// How long the client waits before the attempt.
        delay: Duration,
        /// Attempts since the last successful open, this one included (1 for the first).
        attempt: u32,
        /// Why the connection ended.
        reason: ReconnectReason,
    },
    /// The stream ended for good without an error; it yields nothing after this.
    Closed(CloseReason),
}

/// Why the client reconnects.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReconnectReason {
    /// The server ended the response body cleanly.
    EndOfStream,
    /// The request or the body failed; the text is the error's one-line display.
    Error(String),
    /// No byte arrived for the read timeout.
    ReadTimeout,
}

/// Why a stream closed cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The server answered `204 No Content`, which tells an `EventSource` to stop for good.
    NoContent,
    /// The body ended and reconnection is off ([`no_reconnect`](crate::ClientBuilder::no_reconnect),
    /// or a policy with `max_attempts: Some(0)`).
    EndOfStream,
}

/// A stream of [`ClientEvent`]s from one `EventSource` connection sequence, made by
/// [`Client::stream`](crate::Client::stream).
///
/// An `Err` item is always the last one: the stream ends after a fatal response (a status other
/// than 200 or 204, a wrong `Content-Type`), after a failure with reconnection off, or when the
/// reconnect policy gives up. Transient failures with reconnection on show up as
/// [`ClientEvent::Reconnecting`] instead. A clean end is [`ClientEvent::Closed`]. Dropping the
/// stream closes the connection.
#[must_use = "streams do nothing unless polled"]
pub struct EventStream {
    inner: Pin<Box<dyn Stream<Item = Result<ClientEvent, ClientError>> + Send>>,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl EventStream {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let driver = Driver::new(shared);
        let inner = futures_util::stream::unfold(driver, |mut driver| async move {
            let item = driver.step().await?;
            Some((item, driver))
        });
        Self {
            inner: Box::pin(inner),
        }
    }

    /// The next item, or `None` once the stream has ended; the same as `StreamExt::next`,
    /// without the import.
    pub async fn next(&mut self) -> Option<Result<ClientEvent, ClientError>> {
        std::future::poll_fn(|cx| self.inner.as_mut().poll_next(cx)).await
    }
}

impl Stream for EventStream {
    type Item = Result<ClientEvent, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

enum Phase {
    Connect,
    Wait(Duration),
    Open(reqwest::Response),
    Done,
}

/// How a connection attempt that did not open ended.
enum Refused {
    /// Retry under the reconnect policy.
    Transient(ClientError),
    /// Stop with this error.
    Fatal(ClientError),
    /// Stop cleanly (204).
    NoContent,
}

struct Driver {
    shared: Arc<Shared>,
    parser: Parser,
    /// The reconnection time in force.
    retry: Duration,
    /// Reconnection attempts since the last successful open.
    failures: u32,
    /// Bytes fed to the parser since it last produced a frame.
    pending_bytes: usize,
    phase: Phase,
}

impl Driver {
    fn new(shared: Arc<Shared>) -> Self {
        let mut parser = Parser::new();
        parser.set_last_event_id(&shared.last_event_id);
        let retry = shared
            .reconnect
            .map_or(Duration::ZERO, |policy| policy.initial_delay);
        Self {
            shared,
            parser,
            retry,
            failures: 0,
            pending_bytes: 0,
            phase: Phase::Connect,
        }
    }

    /// Runs until the next item; `None` once done.
    async fn step(&mut self) -> Option<Result<ClientEvent, ClientError>> {
        loop {
            match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Done => return None,
                Phase::Wait(delay) => {
                    tokio::time::sleep(delay).await;
                    self.phase = Phase::Connect;
                }
                Phase::Connect => {
                    return Some(match self.connect().await {
                        Ok(response) => {
                            self.failures = 0;
                            self.pending_bytes = 0;
                            let event = ClientEvent::Open {
                                url: response.url().to_string(),
                                version: response.version(),
                            };
                            self.phase = Phase::Open(response);
                            Ok(event)
                        }
                        Err(Refused::Transient(error)) => self.disconnected(Err(error)),
                        Err(Refused::Fatal(error)) => Err(error),
                        Err(Refused::NoContent) => Ok(ClientEvent::Closed(CloseReason::NoContent)),
                    });
                }
                Phase::Open(mut response) => {
                    // Hand out what complete lines already give before reading more, so a
                    // frame is never held back waiting for the network.
                    if let Some(frame) = self.parser.next_frame() {
                        self.phase = Phase::Open(response);
                        self.pending_bytes = 0;
                        return Some(Ok(self.on_frame(frame)));
                    }
                    let read = response.chunk();
                    let read = match self.shared.read_timeout {
                        Some(limit) => match tokio::time::timeout(limit, read).await {
                            Ok(read) => read,
                            Err(_) => {
                                return Some(
                                    self.disconnected(Err(ClientError::ReadTimeout(limit))),
                                );
                            }
                        },
                        None => read.await,
                    };
                    match read {
                        Ok(Some(bytes)) => {
                            self.pending_bytes = self.pending_bytes.saturating_add(bytes.len());
                            if let Some(limit) = self.shared.max_pending_bytes
                                && self.pending_bytes > limit
                            {
                                return Some(Err(ClientError::TooLarge { limit }));
                            }
                            self.parser.feed(&bytes);
                            self.phase = Phase::Open(response);
                        }
                        Ok(None) => return Some(self.disconnected(Ok(()))),
                        Err(error) => {
                            return Some(self.disconnected(Err(ClientError::Http(error))));
                        }
                    }
                }
            }
        }
    }

    fn on_frame(&mut self, frame: Frame) -> ClientEvent {
        match frame {
            Frame::Event(event) => ClientEvent::Message(event),
            Frame::Retry(ms) => {
                self.retry = Duration::from_millis(ms);
                ClientEvent::Retry(self.retry)
            }
            Frame::Comment(text) => ClientEvent::Comment(text),
        }
    }

    /// The connection ended (`Ok`: cleanly) or could not be made: schedules a reconnect, or
    /// ends the stream when the policy says so.
    fn disconnected(&mut self, cause: Result<(), ClientError>) -> Result<ClientEvent, ClientError> {
        // Complete lines were all handed out before the read that ended the connection, so
        // this only drops a partial line and an undispatched event, as the specification wants.
        self.parser.reset_stream();
        let Some(policy) = self.shared.reconnect else {
            return cause.map(|()| ClientEvent::Closed(CloseReason::EndOfStream));
        };
        if policy.max_attempts.is_some_and(|max| self.failures >= max) {
            return match cause {
                Ok(()) => Ok(ClientEvent::Closed(CloseReason::EndOfStream)),
                Err(last) => Err(ClientError::GaveUp {
                    attempts: self.failures,
                    last: Box::new(last),
                }),
            };
        }
        let delay = policy.delay(self.retry, self.failures, rand::random());
        self.failures += 1;
        self.phase = Phase::Wait(delay);
        let reason = match cause {
            Ok(()) => ReconnectReason::EndOfStream,
            Err(ClientError::ReadTimeout(_)) => ReconnectReason::ReadTimeout,
            Err(error) => ReconnectReason::Error(error.to_string()),
        };
        Ok(ClientEvent::Reconnecting {
            delay,
            attempt: self.failures,
            reason,
        })
    }

    async fn connect(&mut self) -> Result<reqwest::Response, Refused> {
        let shared = &*self.shared;
        let mut headers = shared.headers.clone();
        if let Some(provider) = &shared.token_provider {
            let token = provider.call().await.map_err(|error| {
                Refused::Transient(ClientError::Token(format!(
                    "the token provider failed: {}",
                    crate::error::error_chain(&*error)
                )))
            })?;
            let value = crate::client::bearer_value(token.trim()).map_err(Refused::Transient)?;
            headers.insert(AUTHORIZATION, value);
        }
        let mut request = shared.http.get(shared.url.clone()).headers(headers);
        let id = self.parser.last_event_id();
        if !id.is_empty() {
            // An id the server sent can hold characters a header cannot (other control
            // characters than CR, LF and NUL); such an id is kept for events but not sent.
            if let Ok(value) = HeaderValue::from_bytes(id.as_bytes()) {
                request = request.header("last-event-id", value);
            }
        }
        let send = request.send();
        let sent = match shared.read_timeout {
            Some(limit) => tokio::time::timeout(limit, send)
                .await
                .map_err(|_| Refused::Transient(ClientError::ReadTimeout(limit)))?,
            None => send.await,
        };
        let response = sent.map_err(|error| {
            if error.is_builder() || error.is_redirect() {
                Refused::Fatal(ClientError::Http(error))
            } else {
                Refused::Transient(ClientError::Http(error))
            }
        })?;

        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Err(Refused::NoContent);
        }
        if status != StatusCode::OK {
            let url = response.url().to_string();
            return Err(Refused::Fatal(ClientError::Status {
                status: status.as_u16(),
                url,
                reason: refusal_reason(response).await,
            }));
        }
        let content_type = response.headers().get(CONTENT_TYPE);
        if !content_type.is_some_and(|value| is_event_stream(value.as_bytes())) {
            return Err(Refused::Fatal(ClientError::ContentType {
                content_type: content_type
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
                url: response.url().to_string(),
            }));
        }
        Ok(response)
    }
}

/// Whether a `Content-Type` value is `text/event-stream`, with any parameters, in any case.
fn is_event_stream(value: &[u8]) -> bool {
    media_type_is(value, b"text/event-stream")
}

/// Whether the media type of a `Content-Type` value (parameters ignored) is `want`, in any case.
fn media_type_is(value: &[u8], want: &[u8]) -> bool {
    let essence = value.split(|&b| b == b';').next().unwrap_or_default();
    essence.trim_ascii().eq_ignore_ascii_case(want)
}

/// The most bytes of a refusal's body read to find its reason.
const REASON_MAX_BYTES: usize = 1024;
/// The longest the client waits for a refusal's body.
const REASON_WAIT: Duration = Duration::from_secs(1);
/// The longest reason kept, in characters.
const REASON_MAX_CHARS: usize = 200;

/// The first non-empty line of a `text/plain` error body, where servers (ssehub among them)
/// say why they refused; bounded in bytes read, time and length.
async fn refusal_reason(mut response: reqwest::Response) -> Option<String> {
    let content_type = response.headers().get(CONTENT_TYPE)?;
    if !media_type_is(content_type.as_bytes(), b"text/plain") {
        return None;
    }
    let mut body = Vec::new();
    let read = async {
        while body.len() < REASON_MAX_BYTES && !has_complete_line(&body) {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
    };
    // Whatever arrived in time is used.
    let _ = tokio::time::timeout(REASON_WAIT, read).await;
    body.truncate(REASON_MAX_BYTES);
    reason_from(&body)
}

/// Whether `body` holds a non-blank line followed by a line end.
fn has_complete_line(body: &[u8]) -> bool {
    body.iter()
        .position(|b| !b.is_ascii_whitespace())
        .is_some_and(|start| body[start..].iter().any(|&b| b == b'\n' || b == b'\r'))
}

fn reason_from(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().map(str::trim).find(|line| !line.is_empty())?;
    let reason: String = line
        .chars()
        .filter(|c| !c.is_control())
        .take(REASON_MAX_CHARS)
        .collect();
    (!reason.is_empty()).then_some(reason)
}

#[cfg(test)]
mod tests {
    use super::{has_complete_line, is_event_stream, reason_from};

    #[test]
    fn a_refusal_reason_is_the_first_non_blank_line_cleaned_and_bounded() {
        assert_eq!(
            reason_from(b"invalid token: expired\nmore"),
            Some("invalid token: expired".into())
        );
        assert_eq!(
            reason_from(b"\r\n  \n  missing match parameter \r\n"),
            Some("missing match parameter".into())
        );
        assert_eq!(reason_from(b"a\x1b[31mb\tc"), Some("a[31mbc".into()));
        assert_eq!(reason_from(b" \n\n"), None);
        assert_eq!(reason_from(b""), None);
        assert_eq!(reason_from(b"\xff ok"), Some("\u{fffd} ok".into()));
        let long = "x".repeat(1000);
        assert_eq!(reason_from(long.as_bytes()).unwrap().len(), 200);
        assert!(!has_complete_line(b"\n\n  "));
        assert!(!has_complete_line(b"\nabc"));
        assert!(has_complete_line(b"\nabc\n"));
    }

    #[test]
    fn content_type_essence_is_matched_case_insensitively_with_any_parameters() {
        for ok in [
            &b"text/event-stream"[..],
            b"TEXT/EVENT-STREAM",
            b"Text/Event-Stream; charset=utf-8",
            b"text/event-stream;charset=utf-8",
            b" text/event-stream ; foo=bar",
        ] {
            assert!(is_event_stream(ok), "{:?}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b""[..],
            b"text/plain",
            b"text/event-streams",
            b"text/event-stream-x",
            b"text/event",
            b"application/octet-stream",
            b"text/event\xffstream",
        ] {
            assert!(!is_event_stream(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
