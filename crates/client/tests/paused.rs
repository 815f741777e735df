//! Long waits under a paused clock: the reconnection schedule in virtual time, over real TCP.
//!
//! Tokio's paused clock jumps to the next timer whenever the runtime would otherwise sleep, so
//! these tests must not hold a timer while waiting on the network (it would fire at once).
//! They use no tokio timeout; a real-time watchdog thread bounds them instead.

mod support;

use std::future::Future;
use std::time::Duration;

use ssehub_client::{
    Client, ClientError, ClientEvent, EventStream, ReconnectPolicy, ReconnectReason,
};
use support::{End, Reply, TestServer};
use tokio::time::Instant;

/// Runs `test` on a paused current-thread runtime, failing if it takes over 20 s of real time.
fn run_paused<F: Future<Output = ()> + 'static>(test: impl FnOnce() -> F + Send + 'static) {
    let (done, finished) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(test());
        let _ = done.send(());
    });
    match finished.recv_timeout(Duration::from_secs(20)) {
        Ok(()) => thread.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // The test panicked: re-raise its panic here.
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("test timed out (real time)"),
    }
}

async fn next_state(stream: &mut EventStream) -> ClientEvent {
    loop {
        match stream.next().await {
            Some(Ok(ClientEvent::Comment(_) | ClientEvent::Retry(_))) => continue,
            Some(Ok(event)) => return event,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

#[test]
fn an_hour_long_server_retry_is_waited_out_in_full() {
    run_paused(|| async {
        let mut server = TestServer::start(vec![
            Reply::sse(["id: 1\nretry: 3600000\n\n"]),
            Reply::sse(["data: back\n\n"]).end(End::Hang),
        ])
        .await;
        let client = Client::builder(server.url("/"))
            .reconnect(ReconnectPolicy {
                jitter: 0.0,
                ..ReconnectPolicy::default()
            })
            .build()
            .unwrap();
        let mut stream = client.stream();
        assert!(matches!(
            next_state(&mut stream).await,
            ClientEvent::Open { .. }
        ));
        assert_eq!(
            next_state(&mut stream).await,
            ClientEvent::Reconnecting {
                delay: Duration::from_secs(3600),
                attempt: 1,
                reason: ReconnectReason::EndOfStream,
            }
        );
        let waiting = Instant::now();
        assert!(matches!(
            next_state(&mut stream).await,
            ClientEvent::Open { .. }
        ));
        assert!(waiting.elapsed() >= Duration::from_secs(3600));
        match next_state(&mut stream).await {
            ClientEvent::Message(event) => {
                assert_eq!((&*event.data, &*event.last_event_id), ("back", "1"))
            }
            other => panic!("{other:?}"),
        }
        let requests = server.received();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[1].header("last-event-id"), Some("1"));
    });
}

#[test]
fn repeated_failures_follow_the_capped_exponential_schedule_in_virtual_time() {
    run_paused(|| async {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let client = Client::builder(format!("http://127.0.0.1:{port}/"))
            .reconnect(ReconnectPolicy {
                initial_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(20),
                jitter: 0.0,
                max_attempts: Some(7),
            })
            .build()
            .unwrap();
        let mut stream = client.stream();
        let started = Instant::now();
        let mut announced = Vec::new();
        let last = loop {
            match stream.next().await {
                Some(Ok(ClientEvent::Reconnecting { delay, attempt, .. })) => {
                    announced.push((attempt, delay.as_secs(), started.elapsed().as_secs()))
                }
                other => break other,
            }
        };
        // (attempt, announced delay, virtual seconds elapsed when announced)
        assert_eq!(
            announced,
            [
                (1, 1, 0),
                (2, 2, 1),
                (3, 4, 3),
                (4, 8, 7),
                (5, 16, 15),
                (6, 20, 31),
                (7, 20, 51)
            ]
        );
        assert!(
            matches!(last, Some(Err(ClientError::GaveUp { attempts: 7, .. }))),
            "{last:?}"
        );
        assert!(stream.next().await.is_none());
        assert!(started.elapsed() >= Duration::from_secs(71));
    });
}
