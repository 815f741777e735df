//! The web console served at `/`: a page to subscribe to topic selectors and watch events
//! arrive, publish updates, and see subscriber counts per selector. Its assets are compiled into
//! the binary, so `ssehub serve` needs no files on disk.
//!
//! Routes: `GET /` (the page), `GET /console/app.js`, `GET /console/style.css`, and
//! `GET /console/presence`, the JSON the page polls for counts:
//! `{"subscribers": N, "topics": [{"selector": "...", "subscribers": n}, ...]}`.
//! Like Mercure's subscriptions API it asks for a subscriber token (header, cookie or
//! `authorization` query parameter) and tells which selectors are being watched, never who
//! watches nor any data: a topic's name can itself be private (`/users/42/inbox`). `N` is the
//! hub's total; the rows are only the selectors the token's `mercure.subscribe` claim matches,
//! so a token for `*` sees them all and a narrower one sees its own corner.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ssehub_auth::Role;

use crate::ApiError;
use crate::mercure::{AuthRequest, Authenticated, MercureState, Peer, peer_ip};

const INDEX_HTML: &str = include_str!("../console/index.html");
const APP_JS: &str = include_str!("../console/app.js");
const STYLE_CSS: &str = include_str!("../console/style.css");

/// The page only talks to its own origin and runs only its own script: a strict policy keeps a
/// token pasted into it from leaking through injected content.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's routes, with their state already attached, so they merge into any router.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(state: MercureState) -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/console/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route("/console/presence", get(presence))
        .with_state(state)
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidate each time: the assets change with the binary and are a few KiB.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(CSP),
    );
    res
}

async fn presence(
    State(state): State<MercureState>,
    peer: Peer,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let auth = AuthRequest::new(&state.config, &uri, &headers, peer_ip(&peer));
    let Some(Authenticated { claims, .. }) = auth
        .authenticate_refreshing(&headers, uri.query(), Role::Subscriber)
        .await?
    else {
        return Err(auth.missing(
            "the console's presence needs a subscriber token: its subscribe grants choose the \
             selectors shown",
        ));
    };
    let hub = &state.hub;
    let topics: Vec<serde_json::Value> = hub
        .presence()
        .into_iter()
        .filter(|(selector, _)| claims.can_subscribe_any([selector.as_str()]))
        .map(|(selector, n)| serde_json::json!({ "selector": selector, "subscribers": n }))
        .collect();
    let mut res =
        Json(serde_json::json!({ "subscribers": hub.subscriber_count(), "topics": topics }))
            .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
