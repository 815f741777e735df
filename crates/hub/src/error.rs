//! Typed errors of the hub core. Each `Display` is a one-line reason fit for an HTTP body.

use thiserror::Error;

/// Why a publish was refused. Nothing was stored or delivered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PublishError {
    /// No topic.
    #[error("an update needs at least one topic")]
    NoTopic,
    /// An empty topic string.
    #[error("a topic must not be empty")]
    EmptyTopic,
    /// More topics than [`crate::MAX_TOPICS_PER_UPDATE`].
    #[error("too many topics in one update (at most {max})")]
    TooManyTopics {
        /// The limit.
        max: usize,
    },
    /// The event type contains CR or LF.
    #[error("type must not contain CR or LF")]
    InvalidEventType,
    /// The id contains CR, LF or NUL.
    #[error("id must not contain CR, LF or NUL")]
    InvalidId,
    /// An empty id: it would reset the subscriber's last event id.
    #[error("id must not be empty")]
    EmptyId,
    /// `earliest` is the replay keyword, or the id has the shape of a hub-assigned id.
    #[error("id is reserved by the hub")]
    ReservedId,
    /// The id is already used by a retained update, so replay from it would be ambiguous.
    #[error("id is already used by a retained update")]
    DuplicateId,
    /// The hub is shutting down.
    #[error("the hub is shutting down")]
    Closed,
    /// The durable store could not take the update (disk full, I/O error); nothing was
    /// acknowledged or delivered. Retry later: the hub recovers when the store does.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// [`crate::Hub::publish_now`] on a hub with durable storage, which cannot acknowledge an
    /// update before it is on disk without waiting: use [`crate::Hub::publish`].
    #[error("publish_now cannot wait for durable storage; use publish().await")]
    NeedsAwait,
    /// The update's data could not be encoded ([`crate::Update::json`]: a value serde cannot
    /// turn into JSON, such as a map with non-string keys). A bug of the caller's, not of the
    /// request: the server answers it `500`.
    #[error("the update's data cannot be encoded as JSON: {0}")]
    Encode(String),
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// No topic selector.
    #[error("a subscription needs at least one topic selector")]
    NoTopic,
    /// More selectors than the hub allows.
    #[error("too many topic selectors (at most {max})")]
    TooManyTopics {
        /// The limit.
        max: usize,
    },
    /// More subscribers than the hub allows.
    #[error("too many subscribers (at most {max})")]
    TooManySubscribers {
        /// The limit.
        max: usize,
    },
    /// The hub is shutting down.
    #[error("the hub is shutting down")]
    Closed,
    /// The durable store could not be read to resolve or replay the subscription.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A topic given to [`crate::Subscription::to`], [`crate::Subscription::exact`] or
    /// [`crate::Subscription::topic`] is not a valid selector (empty, or too long). The
    /// builder defers this error to [`crate::Hub::subscribe`], so building never fails.
    #[error("invalid topic: {0}")]
    InvalidTopic(ssehub_selector::SelectorError),
}
