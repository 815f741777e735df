//! [`ApiError`]: every refusal the HTTP API makes, as a status and a one-line reason.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use ssehub_hub::{PublishError, StateError, SubscribeError};

use crate::metrics::Cause;

/// An HTTP error answer: status plus a one-line `text/plain` reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    reason: String,
    /// Seconds for a `Retry-After` header (rate limits, a full hub).
    retry_after: Option<u64>,
    /// What the refusal counts as in the metrics (an auth failure, a limit), beyond its status.
    cause: Cause,
    /// The `WWW-Authenticate` challenge of an authorization failure (RFC 6750); a 401 without
    /// one gets a bare `Bearer`.
    challenge: Option<HeaderValue>,
}

impl ApiError {
    /// An error with this status and reason.
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        ApiError {
            status,
            reason: reason.into(),
            retry_after: None,
            cause: Cause::Other,
            challenge: None,
        }
    }

    /// The same error, counted in the metrics as `cause`.
    pub(crate) fn with_cause(mut self, cause: Cause) -> Self {
        self.cause = cause;
        self
    }

    /// The same error with another reason.
    pub(crate) fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// The same error with this `WWW-Authenticate` challenge.
    pub(crate) fn with_challenge(mut self, challenge: HeaderValue) -> Self {
        self.challenge = Some(challenge);
        self
    }

    /// The `WWW-Authenticate` challenge, if the error has one of its own.
    pub fn challenge(&self) -> Option<&HeaderValue> {
        self.challenge.as_ref()
    }

    pub(crate) fn cause(&self) -> Cause {
        self.cause
    }

    /// The same error with `Retry-After: secs`: when trying again makes sense.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The `Retry-After` seconds, if any.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// `400 Bad Request`.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }

    /// `401 Unauthorized`.
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, reason)
    }

    /// `403 Forbidden`.
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, reason)
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// A refused subscription as an answer: `503` (with `Retry-After: 1`) when the hub is full,
/// closing or cannot read its storage, since trying again later may work; `400` for what is
/// wrong with the request itself (no topic, too many, an invalid one). So a handler can
/// `hub.subscribe(sub)?`.
impl From<SubscribeError> for ApiError {
    fn from(e: SubscribeError) -> Self {
        match e {
            SubscribeError::TooManySubscribers { .. }
            | SubscribeError::Closed
            | SubscribeError::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).with_retry_after(1)
            }
            _ => ApiError::bad_request(e.to_string()),
        }
    }
}

/// A refused publish as an answer: `503` (with `Retry-After: 1`) when the hub is closing or
/// its storage cannot take the update, `409` for an id already in use, `413` for too many
/// topics, `500` for what only the code can cause (data serde cannot encode, `publish_now` on
/// a durable hub), `400` for the rest (the update's own fields). So a handler can
/// `hub.publish(update).await?`.
impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        let status = match e {
            PublishError::Closed | PublishError::Unavailable(_) => {
                return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                    .with_retry_after(1);
            }
            PublishError::DuplicateId => StatusCode::CONFLICT,
            PublishError::TooManyTopics { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            PublishError::Encode(_) | PublishError::NeedsAwait => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

/// A [`ssehub_hub::LiveState`] error as an answer: the subscription's refusal as
/// [`From<SubscribeError>`] says, `500` for a state that cannot be read or encoded.
impl From<StateError> for ApiError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Subscribe(e) => e.into(),
            e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::debug!(status = self.status.as_u16(), reason = %self.reason, "request refused");
        let mut body = self.reason;
        body.push('\n');
        let mut res = (self.status, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = self.challenge {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        } else if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}
