//! Presence: who is subscribed, and join/leave hooks.

use std::sync::Arc;

/// What a join or leave hook is told about a subscriber.
#[derive(Debug, Clone)]
pub struct PresenceEvent {
    /// Whether the subscriber joined or left.
    pub kind: PresenceKind,
    /// The hub-local subscriber id (unique for the life of the hub).
    pub subscriber: u64,
    /// The subscriber id the subscriptions API shows is `urn:uuid:` and this (random, v4).
    pub uuid: uuid::Uuid,
    /// The subscriber's topic selectors, as given (`Selector::as_str` gives the text).
    pub topics: Arc<[ssehub_selector::Selector]>,
    /// The subscriber's payload (e.g. the JWT `mercure.payload`), if any.
    pub payload: Option<Arc<serde_json::Value>>,
    /// Subscribers connected after this event.
    pub total: usize,
}

/// Join or leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceKind {
    /// A subscription started.
    Join,
    /// A subscription ended (client gone, lag close, or hub shutdown).
    Leave,
}

impl PresenceKind {
    /// `"join"` or `"leave"`: e.g. the event type of an announcement.
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceKind::Join => "join",
            PresenceKind::Leave => "leave",
        }
    }
}

/// A presence hook. It runs on the task that subscribed or dropped the stream, outside every hub
/// lock, so it may call back into the hub (e.g. publish a `join` event); it should be quick.
pub(crate) type PresenceHook = Arc<dyn Fn(&PresenceEvent) + Send + Sync>;
