//! Reading a request body whole (a publish, a `QUERY` subscribe): within a size, and within a
//! time, so that a client dribbling a body cannot hold its request open (`body_timeout`).

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use bytes::Bytes;

use crate::ApiError;
use crate::metrics::{Cause, Limit};

/// Why a body could not be read whole.
#[derive(Debug)]
pub(super) enum ReadError {
    /// Over the size limit.
    TooLarge,
    /// Not complete within this time.
    TimedOut(Duration),
    /// The connection failed or the body was malformed.
    Failed(axum::Error),
}

/// The body, if it is at most `max` bytes and arrives within `timeout`.
pub(super) async fn read_whole(
    body: Body,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, ReadError> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, max)).await {
        Err(_) => Err(ReadError::TimedOut(timeout)),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = source {
                if err.is::<http_body_util::LengthLimitError>() {
                    return Err(ReadError::TooLarge);
                }
                source = err.source();
            }
            Err(ReadError::Failed(e))
        }
    }
}

impl ReadError {
    /// The answer: `too_large` over the limit (its wording is the endpoint's), `408` when late,
    /// `400` otherwise.
    pub(super) fn into_api(self, too_large: impl FnOnce() -> ApiError) -> ApiError {
        match self {
            ReadError::TooLarge => too_large(),
            ReadError::TimedOut(t) => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("request body not complete within {t:?}"),
            )
            .with_cause(Cause::Limit(Limit::BodyTimeout)),
            ReadError::Failed(e) => {
                ApiError::bad_request(format!("could not read the request body: {e}"))
            }
        }
    }
}
