//! [`LastEventId`]: the id a reconnecting client resumes after, as an axum extractor.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::ApiError;

/// The id a client resumes after: the `Last-Event-ID` header (what a browser's `EventSource`
/// sends when it reconnects), else the `lastEventID` or `last_event_id` query parameter (what
/// a page can put in the URL of its first request, since `EventSource` cannot set headers).
/// `None` when there is none or it is empty. A header that is not visible ASCII is refused
/// with `400` and a reason.
///
/// Give it to [`ssehub_hub::Subscription::resume`]:
///
/// ```
/// use axum::{extract::State, routing::get, Router};
/// use ssehub_hub::{Hub, Subscription};
/// use ssehub_server::{ApiError, LastEventId, Sse};
///
/// async fn events(State(hub): State<Hub>, last: LastEventId) -> Result<Sse, ApiError> {
///     Ok(Sse::new(hub.subscribe(Subscription::to("room").resume(last))?))
/// }
/// # fn app(hub: Hub) -> Router { Router::new().route("/events", get(events)).with_state(hub) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastEventId(pub Option<String>);

impl From<LastEventId> for Option<String> {
    fn from(id: LastEventId) -> Self {
        id.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for LastEventId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        if let Some(header) = parts.headers.get("last-event-id") {
            let id = header
                .to_str()
                .map_err(|_| ApiError::bad_request("Last-Event-ID header is not visible ASCII"))?;
            if !id.is_empty() {
                return Ok(LastEventId(Some(id.to_owned())));
            }
        }
        let query = parts.uri.query().unwrap_or("");
        let id = form_urlencoded_pairs(query)
            .find(|(k, v)| (k == "lastEventID" || k == "last_event_id") && !v.is_empty())
            .map(|(_, v)| v);
        Ok(LastEventId(id))
    }
}

/// The query's `name=value` pairs, percent-decoded (`+` is a space).
fn form_urlencoded_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .unwrap_or_default()
        .into_iter()
}
