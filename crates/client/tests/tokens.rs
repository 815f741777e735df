//! Access tokens over real TCP: a fixed bearer token, and a token provider asked before every
//! connection attempt (how a subscriber outlives tokens that a Mercure 1.0 hub enforces by
//! ending the stream at `exp`). Tokens travel only in `Authorization: Bearer`, never in the URL.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ssehub_client::{Client, ClientBuilder, ClientError, ClientEvent, ReconnectPolicy};
use support::{End, Reply, TestServer, message, msg, next, next_state};

fn fast(url: String) -> ClientBuilder {
    Client::builder(url).reconnect(ReconnectPolicy {
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        jitter: 0.0,
        max_attempts: None,
    })
}

fn is_open(event: &ClientEvent) -> bool {
    matches!(event, ClientEvent::Open { .. })
}

#[tokio::test]
async fn a_bearer_token_is_sent_in_the_authorization_header_and_never_in_the_url() {
    let mut server = TestServer::start(vec![Reply::sse(["data: a\n\n"]).end(End::Hang)]).await;
    let client = Client::builder(server.url("/.well-known/mercure?match=a"))
        // Replaced by the bearer token, not sent alongside it.
        .header("Authorization", "Basic dXNlcjpwYXNz")
        .unwrap()
        .bearer_token("header.payload.signature")
        .build()
        .unwrap();
    let mut stream = client.stream();
    assert!(is_open(&next_state(&mut stream).await));
    assert_eq!(next_state(&mut stream).await, message("a"));
    let request = server.request().await;
    assert_eq!(
        request.header("authorization"),
        Some("Bearer header.payload.signature")
    );
    assert_eq!(request.target, "/.well-known/mercure?match=a");
    assert!(!request.target.contains("authorization"), "{request:?}");
    assert!(!request.target.contains("signature"), "{request:?}");
}

#[tokio::test]
async fn the_provider_gives_each_connection_a_fresh_token() {
    // Each connection ends after one event, as a hub ends a stream at its token's `exp`.
    let mut server = TestServer::start(vec![
        Reply::sse(["id: 1\ndata: first\n\n"]),
        Reply::sse(["id: 2\ndata: second\n\n"]),
        Reply::sse(["id: 3\ndata: third\n\n"]).end(End::Hang),
    ])
    .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let client = fast(server.url("/events"))
        .token_provider(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                tokio::task::yield_now().await;
                // Surrounding whitespace (a command's trailing newline) is trimmed.
                Ok::<_, std::io::Error>(format!("token-{n}\n"))
            }
        })
        .build()
        .unwrap();
    let mut stream = client.stream();
    let mut messages = Vec::new();
    while messages.len() < 3 {
        if let ClientEvent::Message(m) = next_state(&mut stream).await {
            messages.push(m.data);
        }
    }
    assert_eq!(messages, ["first", "second", "third"]);
    for (n, last_id) in [(1, None), (2, Some("1")), (3, Some("2"))] {
        let request = server.request().await;
        let want = format!("Bearer token-{n}");
        assert_eq!(request.header("authorization"), Some(want.as_str()));
        assert_eq!(request.header("last-event-id"), last_id);
        assert!(!request.target.contains("token"), "{request:?}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_failing_provider_is_retried_like_a_network_error() {
    let mut server = TestServer::start(vec![Reply::sse(["data: a\n\n"]).end(End::Hang)]).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let client = fast(server.url("/events"))
        .token_provider_sync(move || match counter.fetch_add(1, Ordering::SeqCst) {
            0 => Err("the issuer is down".to_owned()),
            1 => Ok("   ".to_owned()),
            _ => Ok("good-token".to_owned()),
        })
        .build()
        .unwrap();
    let mut stream = client.stream();
    for want in ["the token provider failed: the issuer is down", "empty"] {
        match next(&mut stream).await {
            Some(Ok(ClientEvent::Reconnecting { reason, .. })) => {
                let text = format!("{reason:?}");
                assert!(text.contains(want), "{text}");
            }
            other => panic!("expected a reconnect, got {other:?}"),
        }
    }
    assert!(is_open(&next_state(&mut stream).await));
    assert_eq!(next_state(&mut stream).await, msg("message", "a", ""));
    // No request went out without a token.
    let request = server.request().await;
    assert_eq!(request.header("authorization"), Some("Bearer good-token"));
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn without_reconnect_a_provider_error_ends_the_stream() {
    let mut server = TestServer::start(vec![Reply::sse(["data: a\n\n"])]).await;
    let client = Client::builder(server.url("/events"))
        .no_reconnect()
        .token_provider(|| async { Err::<String, _>("no token for you") })
        .build()
        .unwrap();
    let mut stream = client.stream();
    match next(&mut stream).await {
        Some(Err(ClientError::Token(text))) => {
            assert_eq!(text, "the token provider failed: no token for you");
        }
        other => panic!("expected a token error, got {other:?}"),
    }
    assert!(next(&mut stream).await.is_none());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(server.received().is_empty());
}

#[test]
fn a_fixed_token_that_cannot_be_sent_is_a_build_error_that_does_not_quote_it() {
    for bad in ["", "two words", "line\nbreak", "caf\u{e9}"] {
        let err = Client::builder("http://x/")
            .bearer_token(bad)
            .build()
            .unwrap_err();
        assert!(matches!(err, ClientError::Token(_)), "{bad:?}: {err:?}");
        let text = err.to_string();
        if !bad.is_empty() {
            assert!(!text.contains(bad), "{text}");
        }
    }
    // The builder's Debug output does not show the token either.
    let builder = Client::builder("http://x/").bearer_token("secret-token-text");
    assert!(!format!("{builder:?}").contains("secret-token-text"));
}
