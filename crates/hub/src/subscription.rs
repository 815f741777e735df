//! [`Subscription`]: what a subscriber asks the hub for.

use std::sync::Arc;

use bytes::Bytes;
use ssehub_selector::{Selector, SelectorError};

/// A subscription request: topic selectors, where to resume, and what it may see privately.
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
}

impl Subscription {
    /// An empty subscription; add at least one selector.
    pub fn new() -> Self {
        Subscription::default()
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

    /// Bytes sent first, before any replay (e.g. `retry:` advice and a comment so the response
    /// head and first bytes go out at once).
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

    /// The topic selectors.
    pub fn selectors(&self) -> &[Selector] {
        &self.selectors
    }
}
