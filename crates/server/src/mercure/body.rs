//! Reading a request body whole (a publish, a `QUERY` subscribe): within a size, and within a
//! time, so that a client dribbling a body cannot hold its request open (`body_timeout`).

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use bytes::Bytes;

use crate::ApiError;
use crate::metrics::{Cause, Limit};

/// The body, if it is at most `max` bytes and arrives within `timeout`. Otherwise the answer:
/// `too_large()` over the size (its wording is the endpoint's), `408` when late, `400` when the
/// connection failed or the body was malformed.
pub(super) async fn read_whole(
    body: Body,
    max: usize,
    timeout: Duration,
    too_large: impl FnOnce() -> ApiError,
) -> Result<Bytes, ApiError> {
    let read = match tokio::time::timeout(timeout, axum::body::to_bytes(body, max)).await {
        Ok(read) => read,
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("request body not complete within {timeout:?}"),
            )
            .with_cause(Cause::Limit(Limit::BodyTimeout)));
        }
    };
    read.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            source = err.source();
        }
        ApiError::bad_request(format!("could not read the request body: {e}"))
    })
}
