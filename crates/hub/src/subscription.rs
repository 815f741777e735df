//! [`Subscription`]: what a subscriber asks the hub for.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use ssehub_selector::{Selector, SelectorError};

/// A subscription request: topic selectors, where to resume, and what it may see privately.
///
/// The builder never fails: [`Subscription::to`] and [`Subscription::exact`] take any text as
/// an exact topic, and a topic that cannot be one (empty, over the length limit) is reported
/// by [`crate::Hub::subscribe`] as [`crate::SubscribeError::InvalidTopic`], the one place that
/// returns a `Result` anyway.
///
/// ```
/// use std::time::Duration;
/// use ssehub_hub::Subscription;
///
/// let sub = Subscription::to("room")
///     .exact("clients/42")
///     .retry(Duration::from_secs(3))
///     .resume(Some("earliest".to_owned()));
/// assert_eq!(sub.selectors().len(), 2);
/// ```
///
/// [`Subscription::topic`] parses selectors (`*`, RFC 6570 URI templates) and reports a bad
/// one at once:
///
/// ```
/// use ssehub_hub::Subscription;
///
/// let sub = Subscription::new()
///     .topic("https://example.com/books/{id}")?
///     .last_event_id("earliest");
/// # Ok::<(), ssehub_selector::SelectorError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Subscription {
    pub(crate) selectors: Vec<Selector>,
    pub(crate) last_event_id: Option<String>,
    pub(crate) authorized: Option<Arc<[Selector]>>,
    pub(crate) preamble: Option<Bytes>,
    pub(crate) payload: Option<serde_json::Value>,
    pub(crate) retained: bool,
    pub(crate) expires_at: Option<SystemTime>,
    /// The first invalid topic given to an infallible builder method, reported by subscribe.
    pub(crate) invalid: Option<SelectorError>,
}

impl Subscription {
    /// An empty subscription; add at least one selector.
    pub fn new() -> Self {
        Subscription::default()
    }

    /// A subscription to one exact topic (byte for byte; `*` is every topic).
    pub fn to(topic: &str) -> Self {
        Subscription::new().exact(topic)
    }

    /// Adds an exact topic (byte for byte, never a template; `*` is every topic). Infallible:
    /// an invalid topic is reported by [`crate::Hub::subscribe`].
    pub fn exact(mut self, topic: &str) -> Self {
        match Selector::exact_topic(topic) {
            Ok(selector) => self.selectors.push(selector),
            Err(e) => {
                self.invalid.get_or_insert(e);
            }
        }
        self
    }

    /// Sends `retry: MS` first, as a line that ends no frame: the reconnection advice, and
    /// the first bytes that make the response head leave at once (clients fire `open`,
    /// proxies stop waiting). Sets the [`Subscription::preamble`].
    pub fn retry(self, retry: std::time::Duration) -> Self {
        self.preamble(ssehub_codec::retry_line(retry))
    }

    /// Resumes after `id` when there is one: [`Subscription::last_event_id`] for an
    /// `Option` (e.g. `ssehub_server::LastEventId`, the extractor). `None` and the empty
    /// string (a browser's "no id yet") start live.
    pub fn resume(self, id: impl Into<Option<String>>) -> Self {
        match id.into() {
            Some(id) if !id.is_empty() => self.last_event_id(id),
            _ => self,
        }
    }

    /// Adds a topic selector parsed from text: an exact topic, `*`, or a URI template.
    pub fn topic(self, selector: &str) -> Result<Self, SelectorError> {
        Ok(self.selector(Selector::parse(selector)?))
    }

    /// Adds a parsed topic selector.
    pub fn selector(mut self, selector: Selector) -> Self {
        self.selectors.push(selector);
        self
    }

    /// Resumes after this event id (`Last-Event-ID`), or from the oldest retained update when it
    /// is `earliest`. An unknown or expired id gets an in-band `ssehub.history-gap` event first.
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = Some(id.into());
        self
    }

    /// Selectors this subscriber is authorized for (its JWT `mercure.subscribe` claim): private
    /// updates reach it only when one of their topics matches one of these. `None`: public only.
    pub fn authorized(mut self, selectors: impl Into<Arc<[Selector]>>) -> Self {
        self.authorized = Some(selectors.into());
        self
    }

    /// Bytes sent first, before any replay, so the response head and first bytes go out at
    /// once: e.g. the `retry:` advice as a line that ends no frame
    /// (`ssehub_codec::retry_line`, or `ssehub_server::preamble`).
    pub fn preamble(mut self, bytes: Bytes) -> Self {
        self.preamble = Some(bytes);
        self
    }

    /// Opaque data about the subscriber (the JWT `mercure.payload`), shown to presence hooks.
    pub fn payload(mut self, payload: serde_json::Value) -> Self {
        self.payload = Some(payload);
        self
    }

    /// Sends the retained state first: the latest update of each topic the selectors match
    /// (that this subscriber may see), oldest first, then live updates. A durable hub serves it
    /// from the log's latest-per-topic index (it outlives retention); a RAM-only hub from its
    /// history ring. Ignored when [`Subscription::last_event_id`] is set: replay from there
    /// already brings the subscriber up to date.
    pub fn retained_state(mut self, yes: bool) -> Self {
        self.retained = yes;
        self
    }

    /// Ends the stream no later than `deadline` (wall-clock time, e.g. the access token's
    /// `exp`, which Mercure says a subscription must not outlive). Called several times, the
    /// earliest deadline wins; with [`crate::HubBuilder::max_connection_lifetime`] the earlier
    /// of the two wins.
    ///
    /// At the deadline the stream ends the way [`crate::Hub::close`] ends it: what is already
    /// queued is still yielded, then `None`, with no event of its own (the client reconnects
    /// with its `Last-Event-ID`). The deadline is turned into a point on the hub's monotonic
    /// (Tokio) clock when the subscription starts, so later changes of the wall clock do not
    /// move it. No timer per subscriber: one shared task ends every due stream.
    ///
    /// A deadline that is not in the future when [`crate::Hub::subscribe`] runs is not an
    /// error: the subscription succeeds, its stream yields the
    /// [`Subscription::preamble`] alone (no replay, no retained state, no live update) and
    /// ends. It is never registered: no presence join or leave, not counted in
    /// [`crate::HubStats::subscribers`], no subscription event.
    pub fn expires_at(mut self, deadline: SystemTime) -> Self {
        self.expires_at = Some(match self.expires_at {
            Some(earlier) => earlier.min(deadline),
            None => deadline,
        });
        self
    }

    /// The topic selectors.
    pub fn selectors(&self) -> &[Selector] {
        &self.selectors
    }
}
