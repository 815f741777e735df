//! [`Update`]: what a publisher sends to the hub, and its validation.
//!
//! An update is validated once, on publish, so that the frame encoded from it can never be
//! broken: no CR/LF in the event type, no CR/LF/NUL in the id, at least one topic.

use std::time::Duration;

use ssehub_codec::{validate_event_name, validate_id};

use crate::error::PublishError;

/// Most topics one update may carry; a bound keeps matching cost per publish predictable.
pub const MAX_TOPICS_PER_UPDATE: usize = 64;

/// One update: data for one or more topics.
///
/// ```
/// use std::time::Duration;
/// use ssehub_hub::Update;
///
/// let update = Update::new("https://example.com/books/1", r#"{"title":"Dune"}"#)
///     .topic("https://example.com/books")
///     .event_type("book")
///     .retry(Duration::from_secs(5))
///     .private(true);
/// assert_eq!(update.topics().len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub(crate) topics: Vec<String>,
    pub(crate) data: String,
    pub(crate) event_type: Option<String>,
    pub(crate) id: Option<String>,
    pub(crate) retry: Option<Duration>,
    pub(crate) private: bool,
}

impl Update {
    /// An update of `data` for one topic.
    pub fn new(topic: impl Into<String>, data: impl Into<String>) -> Self {
        Update {
            topics: vec![topic.into()],
            data: data.into(),
            ..Update::default()
        }
    }

    /// An update of `value` as JSON for one topic: typed updates with serde.
    ///
    /// ```
    /// use ssehub_hub::Update;
    ///
    /// #[derive(serde::Serialize)]
    /// struct Chat<'a> { from: &'a str, text: &'a str }
    ///
    /// let update = Update::json("room", &Chat { from: "ann", text: "hi" })?.event_type("chat");
    /// assert_eq!(update.data_str(), r#"{"from":"ann","text":"hi"}"#);
    /// # Ok::<(), ssehub_hub::PublishError>(())
    /// ```
    ///
    /// A value serde cannot encode as JSON (a map with non-string keys) is
    /// [`PublishError::Encode`].
    pub fn json<T: serde::Serialize + ?Sized>(
        topic: impl Into<String>,
        value: &T,
    ) -> Result<Self, PublishError> {
        let data = serde_json::to_string(value).map_err(|e| PublishError::Encode(e.to_string()))?;
        Ok(Update::new(topic, data))
    }

    /// An update with no topic yet (add them with [`Update::topic`]); publishing it as is fails.
    pub fn empty() -> Self {
        Update::default()
    }

    /// Adds a topic. The first topic is the canonical one (Mercure); the others are alternates.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// Replaces the data.
    pub fn data(mut self, data: impl Into<String>) -> Self {
        self.data = data.into();
        self
    }

    /// Sets the SSE event type (`event:` field); browsers dispatch it to `addEventListener(type)`.
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// Sets a publisher-chosen id instead of a hub-assigned one.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the reconnection time advised to subscribers (`retry:` field).
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Marks the update private: only subscribers authorized for one of its topics receive it.
    pub fn private(mut self, private: bool) -> Self {
        self.private = private;
        self
    }

    /// The topics, canonical first.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// The data.
    pub fn data_str(&self) -> &str {
        &self.data
    }

    /// The event type, if any.
    pub fn event_type_str(&self) -> Option<&str> {
        self.event_type.as_deref()
    }

    /// The publisher-chosen id, if any.
    pub fn id_str(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The reconnection time advised, if any.
    pub fn retry_duration(&self) -> Option<Duration> {
        self.retry
    }

    /// Whether the update is private.
    pub fn is_private(&self) -> bool {
        self.private
    }

    /// Checks everything that would make the update unpublishable.
    pub fn validate(&self) -> Result<(), PublishError> {
        if self.topics.is_empty() {
            return Err(PublishError::NoTopic);
        }
        if self.topics.len() > MAX_TOPICS_PER_UPDATE {
            return Err(PublishError::TooManyTopics {
                max: MAX_TOPICS_PER_UPDATE,
            });
        }
        if self.topics.iter().any(|t| t.is_empty()) {
            return Err(PublishError::EmptyTopic);
        }
        if let Some(t) = &self.event_type {
            validate_event_name(t).map_err(|_| PublishError::InvalidEventType)?;
        }
        if let Some(id) = &self.id {
            if id.is_empty() {
                return Err(PublishError::EmptyId);
            }
            if id == crate::EARLIEST {
                return Err(PublishError::ReservedId);
            }
            validate_id(id).map_err(|_| PublishError::InvalidId)?;
        }
        Ok(())
    }
}
