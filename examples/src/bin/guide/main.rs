use std::collections::HashMap;
use std::time::Duration;

use axum::routing::{get, post};
use axum::{Form, Router, extract::State, response::Html};
use ssehub_server::{ApiError, Hub, Subscription, Update, events, serve};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // One hub for the app: a cheap handle, cloned into the handlers that need it. Every stream
    // starts with `retry: 3000` (reconnect after 3 s), which also opens it at once.
    let hub = Hub::builder().retry(Duration::from_secs(3)).build();
    let app = Router::new()
        .route("/", get(Html(PAGE)))
        // Browsers subscribe here: each update on the topic "chat", and after a reconnect
        // the ones they missed (the `Last-Event-ID` their EventSource sends).
        .route("/events", events(&hub, Subscription::to("chat")))
        .route("/send", post(send))
        .with_state(hub.clone());
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("open http://{}/", listener.local_addr()?);
    // Until Ctrl-C or SIGTERM; then every stream ends cleanly and browsers reconnect later.
    serve(listener, app, hub).await
}

/// `POST /send` with `text=...`: publishes it to every subscriber, answers the event's id.
async fn send(
    State(hub): State<Hub>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<String, ApiError> {
    let text = form.get("text").map(|t| t.trim()).unwrap_or_default();
    if text.is_empty() {
        return Err(ApiError::bad_request("text must not be empty"));
    }
    // `?` turns a refused publish into an answer with a status and a reason.
    Ok(hub.publish(Update::new("chat", text)).await?)
}

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>Live</title>
<form id="send"><input name="text" autofocus> <button>Send</button></form>
<ul id="log"></ul>
<script>
  const events = new EventSource('/events');
  events.onmessage = (e) => {
    const li = document.createElement('li');
    li.textContent = e.data;
    document.getElementById('log').append(li);
  };
  document.getElementById('send').onsubmit = async (e) => {
    e.preventDefault();
    await fetch('/send', { method: 'POST', body: new URLSearchParams(new FormData(e.target)) });
    e.target.reset();
  };
</script>
"#;
