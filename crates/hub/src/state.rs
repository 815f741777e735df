//! [`LiveState`]: application state kept as a topic. Its changes are the topic's updates
//! (JSON), so the hub's storage is where the state lives: on start it is rebuilt from what the
//! storage retained, every subscriber gets the whole state first and then each change, with no
//! change missed or sent twice, and a change is applied only once the hub has it (durable, on a
//! durable hub).
//!
//! Two shapes cover the tutorials, and most dashboards:
//!
//! - [`LiveState::value`]: each update is the whole value (vote totals, a config). On start,
//!   the topic's latest update is the value: the hub's retained state (a durable log's
//!   latest-per-topic index, which outlives retention), not a scan of the log.
//! - [`LiveState::list`]: each update is one more item (the nests). On start, every retained
//!   update of the topic, in order, is the list.
//!
//! Why a lock of the app's and not a subscription of the hub's own: a change is computed from
//! the current state (the totals plus one vote, or "refuse once the list is full"), so changes
//! must be serialized, and the snapshot a new subscriber gets must sit exactly between two
//! changes. One async mutex does both: [`LiveState::update`] holds it across "compute, publish,
//! apply", [`LiveState::subscribe`] across "snapshot, register". The state is therefore this
//! process's: publish to the topic only through it (another process, or a plain
//! [`Hub::publish`] to the topic, would not be applied).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use ssehub_codec::{Event, Frame, Parser};

use crate::error::{PublishError, SubscribeError};
use crate::hub::Hub;
use crate::replay::{HISTORY_GAP_EVENT, LAGGED_EVENT};
use crate::stream::SubscriberStream;
use crate::subscription::Subscription;
use crate::update::Update;

/// Why a [`LiveState`] could not be restored or subscribed to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The hub refused the subscription (restoring or subscribing).
    #[error(transparent)]
    Subscribe(#[from] SubscribeError),
    /// A retained update of the topic is not a change of this state (its JSON does not
    /// decode): another app's data, or a type that changed shape.
    #[error("update {id:?} on {topic:?} is not a change of this state: {reason}")]
    Invalid {
        /// The topic.
        topic: String,
        /// The update's id (empty when it had none).
        id: String,
        /// What serde said.
        reason: String,
    },
    /// The storage lost updates while they were being read (the restore fell so far behind
    /// that the hub closed it as lagged).
    #[error("updates on {0:?} were lost while restoring them")]
    Lost(String),
    /// The state could not be encoded as JSON for a new subscriber.
    #[error("the state cannot be encoded as JSON: {0}")]
    Encode(String),
}

/// Application state kept as a topic (see the module docs): restored from the hub's storage,
/// sent whole to each new subscriber, then changed one published update at a time. A cheap
/// handle: clones share the state.
///
/// `S` is the state, `C` one change (an update's JSON); [`LiveState::value`] has `C = S`,
/// [`LiveState::list`] has `S = Vec<C>`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use futures_util::StreamExt;
/// use ssehub_hub::{Hub, LiveState, PublishError};
///
/// #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
/// struct Votes { yes: u64, no: u64 }
///
/// let hub = Hub::new();
/// let votes = LiveState::<Votes>::value(&hub, "votes").await?;
/// let mut stream = votes.subscribe().await?;
/// // Whole state first (with the retry advice)...
/// let first = stream.next().await.unwrap();
/// assert_eq!(first, "retry: 3000\ndata: {\"yes\":0,\"no\":0}\n\n");
/// // ...then each change, computed from the state under its lock.
/// let now = votes
///     .update(|v| Ok::<_, PublishError>(Votes { yes: v.yes + 1, ..*v }))
///     .await?;
/// assert_eq!(now.yes, 1);
/// let next = stream.next().await.unwrap();
/// assert!(next.ends_with(b"data: {\"yes\":1,\"no\":0}\n\n"));
/// # Ok(()) }
/// ```
pub struct LiveState<S, C = S> {
    shared: Arc<Shared<S, C>>,
    retry: Duration,
}

struct Shared<S, C> {
    hub: Hub,
    topic: String,
    state: tokio::sync::Mutex<S>,
    apply: fn(&mut S, C),
}

impl<S, C> Clone for LiveState<S, C> {
    fn clone(&self) -> Self {
        LiveState {
            shared: self.shared.clone(),
            retry: self.retry,
        }
    }
}

impl<S, C> std::fmt::Debug for LiveState<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveState")
            .field("topic", &self.shared.topic)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// The retry advice sent with the snapshot unless [`LiveState::retry`] says otherwise: what
/// `ssehub serve` advises.
const DEFAULT_RETRY: Duration = Duration::from_secs(3);

impl<T> LiveState<T, T>
where
    T: Serialize + DeserializeOwned + Default + Clone + Send + Sync + 'static,
{
    /// A value whose every update on `topic` is the whole value: restored from the topic's
    /// latest retained update (`T::default()` when there is none).
    pub async fn value(hub: &Hub, topic: &str) -> Result<Self, StateError> {
        let sub = Subscription::to(topic).retained_state(true);
        let state = restore(hub, topic, sub, T::default(), replace).await?;
        Ok(LiveState::new(hub, topic, state, replace))
    }
}

impl<T> LiveState<Vec<T>, T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// A list whose every update on `topic` is one more item: restored from every retained
    /// update of the topic, oldest first (so keep the log's retention above the list's size).
    pub async fn list(hub: &Hub, topic: &str) -> Result<Self, StateError> {
        let sub = Subscription::to(topic).last_event_id(crate::EARLIEST);
        let state = restore(hub, topic, sub, Vec::new(), Vec::push).await?;
        Ok(LiveState::new(hub, topic, state, Vec::push))
    }
}

fn replace<T>(state: &mut T, value: T) {
    *state = value;
}

impl<S, C> LiveState<S, C>
where
    S: Serialize + Send + Sync + 'static,
    C: Serialize + Clone + Send + 'static,
{
    fn new(hub: &Hub, topic: &str, state: S, apply: fn(&mut S, C)) -> Self {
        LiveState {
            shared: Arc::new(Shared {
                hub: hub.clone(),
                topic: topic.to_owned(),
                state: tokio::sync::Mutex::new(state),
                apply,
            }),
            retry: DEFAULT_RETRY,
        }
    }

    /// The reconnection advice sent with the snapshot (default 3 s).
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = retry;
        self
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.shared.topic
    }

    /// The hub it publishes to.
    pub fn hub(&self) -> &Hub {
        &self.shared.hub
    }

    /// How many subscribers its topic has now ([`Hub::topic_subscribers`]): presence, e.g. an
    /// app's `/status`.
    pub fn subscribers(&self) -> usize {
        self.shared.hub.topic_subscribers(&self.shared.topic)
    }

    /// Reads the current state.
    pub async fn read<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        f(&*self.shared.state.lock().await)
    }

    /// Changes the state: `change` sees the current state and returns the change (or refuses
    /// with its own error, e.g. "the list is full"); the change is published on the topic as
    /// JSON, and applied only once the hub has it (on disk, with a durable hub). Returns the
    /// change. Changes are serialized: each one sees the state with every earlier one applied.
    ///
    /// Runs on a task of its own, so a request handler dropped mid-way (its client went
    /// away) cannot leave a change published but not applied. A failed publish
    /// ([`PublishError`], converted into `E`) applies nothing.
    pub async fn update<E>(
        &self,
        change: impl FnOnce(&S) -> Result<C, E> + Send + 'static,
    ) -> Result<C, E>
    where
        E: From<PublishError> + Send + 'static,
    {
        let shared = self.shared.clone();
        let task = tokio::spawn(async move {
            let mut state = shared.state.lock().await;
            let c = change(&state)?;
            shared
                .hub
                .publish(Update::json(shared.topic.as_str(), &c)?)
                .await?;
            (shared.apply)(&mut state, c.clone());
            Ok(c)
        });
        match task.await {
            Ok(done) => done,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down.
            Err(_) => Err(PublishError::Closed.into()),
        }
    }

    /// A subscriber stream: `retry:` and the whole state as one event (no `id:`), then each
    /// change as it is applied. The snapshot and the registration happen under the state's
    /// lock, so each change is in the snapshot or in the stream, never both, never neither.
    /// A `Last-Event-ID` is not needed: a reconnecting client gets the whole state again.
    pub async fn subscribe(&self) -> Result<SubscriberStream, StateError> {
        let state = self.shared.state.lock().await;
        let snapshot =
            serde_json::to_string(&*state).map_err(|e| StateError::Encode(e.to_string()))?;
        let first = Event::new().retry(self.retry).data(snapshot).encode();
        let sub = Subscription::to(&self.shared.topic).preamble(first);
        Ok(self.shared.hub.subscribe(sub)?)
    }
}

/// Folds what the hub replays for `sub` into `state`, until the stream has caught up.
async fn restore<S, C: DeserializeOwned>(
    hub: &Hub,
    topic: &str,
    sub: Subscription,
    mut state: S,
    apply: fn(&mut S, C),
) -> Result<S, StateError> {
    let mut stream = hub.subscribe(sub)?;
    let mut parser = Parser::new();
    while !stream.settled() {
        let Some(bytes) = stream.next().await else {
            break;
        };
        parser.feed(&bytes);
        while let Some(frame) = parser.next_frame() {
            let Frame::Event(event) = frame else { continue };
            match event.event_type.as_str() {
                LAGGED_EVENT => return Err(StateError::Lost(topic.to_owned())),
                // `earliest` resumes without a gap; a notice would only precede the updates.
                HISTORY_GAP_EVENT => continue,
                _ => {}
            }
            let change = serde_json::from_str(&event.data).map_err(|e| StateError::Invalid {
                topic: topic.to_owned(),
                id: event.last_event_id.clone(),
                reason: e.to_string(),
            })?;
            apply(&mut state, change);
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;

    #[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
    struct Votes {
        yes: u64,
        no: u64,
    }

    /// What the stream has ready now, as text.
    fn ready(stream: &mut SubscriberStream) -> String {
        let mut out = String::new();
        while let Some(Some(b)) = stream.next().now_or_never() {
            out.push_str(std::str::from_utf8(&b).unwrap());
        }
        out
    }

    #[tokio::test]
    async fn a_value_is_restored_from_the_latest_update_and_sent_first() {
        let hub = Hub::new();
        hub.publish(Update::new("votes", r#"{"yes":1,"no":0}"#))
            .await
            .unwrap();
        hub.publish(Update::new("other", "not json")).await.unwrap();
        hub.publish(Update::new("votes", r#"{"yes":2,"no":5}"#))
            .await
            .unwrap();
        let votes = LiveState::<Votes>::value(&hub, "votes").await.unwrap();
        assert_eq!(votes.read(Clone::clone).await, Votes { yes: 2, no: 5 });
        // The restore's own subscription is gone.
        assert_eq!(hub.subscriber_count(), 0);

        let mut stream = votes
            .retry(Duration::from_millis(1500))
            .subscribe()
            .await
            .unwrap();
        assert_eq!(
            ready(&mut stream),
            "retry: 1500\ndata: {\"yes\":2,\"no\":5}\n\n"
        );
    }

    #[tokio::test]
    async fn a_list_is_restored_from_every_update_in_order() {
        let hub = Hub::new();
        for i in 0..5 {
            hub.publish(Update::new("nests", i.to_string()))
                .await
                .unwrap();
            hub.publish(Update::new("noise", "x")).await.unwrap();
        }
        let list = LiveState::<Vec<u32>, u32>::list(&hub, "nests")
            .await
            .unwrap();
        assert_eq!(list.read(Clone::clone).await, vec![0, 1, 2, 3, 4]);
        let pushed = list
            .update(|l| Ok::<_, PublishError>(l.len() as u32 * 10))
            .await
            .unwrap();
        assert_eq!(pushed, 50);
        assert_eq!(list.read(Clone::clone).await, vec![0, 1, 2, 3, 4, 50]);
    }

    #[tokio::test]
    async fn an_update_that_is_not_a_change_is_an_error_naming_it() {
        let hub = Hub::new();
        hub.publish(Update::new("nests", "[1, 2]").id("bad-1"))
            .await
            .unwrap();
        let err = LiveState::<Vec<u32>, u32>::list(&hub, "nests")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StateError::Invalid { topic, id, .. } if topic == "nests" && id == "bad-1"),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("update \"bad-1\" on \"nests\" is not a change")
        );
    }

    #[tokio::test]
    async fn a_refused_change_publishes_and_applies_nothing() {
        let hub = Hub::new();
        let list = LiveState::<Vec<u32>, u32>::list(&hub, "l").await.unwrap();
        let mut stream = list.subscribe().await.unwrap();
        assert_eq!(ready(&mut stream), "retry: 3000\ndata: []\n\n");
        #[derive(Debug, PartialEq)]
        enum Full {
            Full,
            Publish(PublishError),
        }
        impl From<PublishError> for Full {
            fn from(e: PublishError) -> Self {
                Full::Publish(e)
            }
        }
        assert_eq!(
            list.update(|_| Err::<u32, _>(Full::Full)).await,
            Err(Full::Full)
        );
        assert_eq!(ready(&mut stream), "");
        hub.close();
        assert_eq!(
            list.update(|_| Ok::<u32, Full>(1)).await,
            Err(Full::Publish(PublishError::Closed))
        );
        assert!(list.read(Vec::is_empty).await);
    }

    /// Concurrent changes each see the one before; every subscriber, whenever it joined, sees
    /// its snapshot then exactly the changes after it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshot_then_live_has_no_gap_and_no_repeat_under_concurrency() {
        let hub = Hub::new();
        let count = LiveState::<u64>::value(&hub, "n").await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let count = count.clone();
            tasks.spawn(async move { count.update(|n| Ok::<_, PublishError>(n + 1)).await });
        }
        let mut streams = Vec::new();
        for _ in 0..10 {
            streams.push(count.subscribe().await.unwrap());
            tokio::task::yield_now().await;
        }
        let mut answers: Vec<u64> = Vec::new();
        while let Some(done) = tasks.join_next().await {
            answers.push(done.unwrap().unwrap());
        }
        answers.sort_unstable();
        assert_eq!(answers, (1..=50).collect::<Vec<_>>());
        for mut stream in streams {
            let text = ready(&mut stream);
            let values: Vec<u64> = ssehub_codec::parse_all(text.as_bytes())
                .into_iter()
                .filter_map(|f| match f {
                    Frame::Event(e) => Some(e.data.parse().unwrap()),
                    _ => None,
                })
                .collect();
            // The snapshot, then every later value once, in order, up to the last.
            let first = values[0];
            assert_eq!(values, (first..=50).collect::<Vec<_>>(), "{text}");
        }
    }
}
