//! HTTP/2 subscribers (issue 22): one TLS connection (ALPN `h2`) carrying several subscription
//! streams, as a browser multiplexes its EventSources to one origin.
//!
//! The `h2` crate's client, driven on the worker thread's `LocalSet`: a task per connection
//! (h2's connection future) and a task per stream reading its DATA frames into the same
//! [`Sink`] the HTTP/1.1 subscribers count with. Each stream is one subscriber of the run: it
//! counts as connected when its response head (200) arrives.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use h2::RecvStream;
use tokio::sync::Semaphore;

use crate::load::{Local, Shared, Sink, Sub, connect_subscriber, mark_connected};
use crate::tls::TlsClient;

/// The client's windows. Subscribers only receive, and release what they read at once, so the
/// windows never close; a large connection window keeps many streams of one connection from
/// waiting on each other's window updates in the fan-out.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;

/// Opens one HTTP/2 connection to `addr` and a subscription stream on it for each of
/// `streams` (local slot, request); returns once every stream has its head or failed (the
/// streams then run as tasks of their own until the run ends).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn connection(
    streams: Vec<(usize, Rc<Sub>)>,
    addr: SocketAddr,
    source: Option<IpAddr>,
    tls: Arc<TlsClient>,
    shared: Arc<Shared>,
    local: Rc<RefCell<Local>>,
    sem: Rc<Semaphore>,
) {
    let permit = sem.acquire().await;
    let setup = async {
        let tcp = connect_subscriber(addr, source).await?;
        tcp.set_nodelay(true)?;
        let session = tls.connect(tcp, true).await?;
        h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, Bytes>(session)
            .await
            .map_err(std::io::Error::other)
    };
    let (send, conn) = match setup.await {
        Ok(v) => v,
        Err(e) => {
            shared.connect_failed.fetch_add(streams.len(), Relaxed);
            shared.error(format!("h2 connect: {e}"));
            return;
        }
    };
    {
        let shared = shared.clone();
        // The driver keeps a request handle: h2 closes a client connection (GOAWAY) once no
        // handle and no stream is left, and a subscription's lifetime is its streams' alone.
        let keep = send.clone();
        tokio::task::spawn_local(async move {
            let _keep = keep;
            if let Err(e) = conn.await {
                shared.error(format!("h2 connection: {e}"));
            }
        });
    }
    // All requests first, then the heads: the streams open in one flight, as a page's
    // EventSources would.
    let mut pending = Vec::with_capacity(streams.len());
    let mut send = Some(send);
    for (slot, sub) in streams {
        let opened = async {
            // Waits while the server's SETTINGS_MAX_CONCURRENT_STREAMS are all in use.
            let mut ready = send
                .take()
                .ok_or_else(|| std::io::Error::other("h2 connection lost"))?
                .ready()
                .await
                .map_err(std::io::Error::other)?;
            let uri = format!("https://{addr}{}", sub.path);
            let request = http::Request::get(uri)
                .header("accept", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(())
                .map_err(std::io::Error::other)?;
            let (response, _) = ready
                .send_request(request, true)
                .map_err(std::io::Error::other)?;
            send = Some(ready);
            Ok::<_, std::io::Error>(response)
        };
        match opened.await {
            Ok(response) => pending.push((slot, response)),
            Err(e) => {
                shared.connect_failed.fetch_add(1, Relaxed);
                shared.error(format!("h2 subscribe: {e}"));
            }
        }
    }
    for (slot, response) in pending {
        match response.await {
            Ok(r) if r.status() == http::StatusCode::OK => {
                mark_connected(slot, &shared, &local);
                tokio::task::spawn_local(read_stream(
                    slot,
                    r.into_body(),
                    shared.clone(),
                    local.clone(),
                ));
            }
            Ok(r) => {
                shared.connect_failed.fetch_add(1, Relaxed);
                shared.error(format!("h2 subscribe: HTTP {}", r.status().as_u16()));
            }
            Err(e) => {
                shared.connect_failed.fetch_add(1, Relaxed);
                shared.error(format!("h2 subscribe: {e}"));
            }
        }
    }
    drop(permit);
}

/// Counts one stream's events until it ends or fails.
async fn read_stream(
    slot: usize,
    mut body: RecvStream,
    shared: Arc<Shared>,
    local: Rc<RefCell<Local>>,
) {
    let mut sink = Sink::new(slot, false);
    let error = loop {
        match body.data().await {
            Some(Ok(data)) => {
                // Credit back what was read, so the server's window never closes.
                let _ = body.flow_control().release_capacity(data.len());
                if let Err(e) = sink.feed(&data, &shared, &local) {
                    break e.to_string();
                }
            }
            Some(Err(e)) => break e.to_string(),
            None => break "stream ended".to_string(),
        }
    };
    shared.closed.fetch_add(1, Relaxed);
    shared.error(format!("h2 subscriber stream: {error}"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Local;
    use crate::scan::write_timestamp;
    use crate::tls::testing::{acceptor, args, cert, until};
    use tokio::net::TcpListener;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    /// An SSE frame whose data carries the generator's timestamp marker.
    fn event(ts: u64) -> Bytes {
        let mut b = b"data: ".to_vec();
        write_timestamp(&mut b, ts);
        b.extend_from_slice(b"xx\n\n");
        Bytes::from(b)
    }

    /// A TLS 1.3 server offering `alpn` that answers every HTTP/2 request with 200 and
    /// `events` SSE events (the first split over two DATA frames), then holds the stream open.
    async fn server(
        alpn: &[&[u8]],
        der: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
        events: u64,
    ) -> SocketAddr {
        let acceptor = acceptor(alpn, der, key);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut conn) = h2::server::handshake(tls).await else {
                        return;
                    };
                    while let Some(Ok((request, mut respond))) = conn.accept().await {
                        assert_eq!(request.method(), http::Method::GET);
                        assert_eq!(request.uri().path(), "/sub");
                        let response = http::Response::builder().status(200).body(()).unwrap();
                        let mut send = respond.send_response(response, false).unwrap();
                        tokio::spawn(async move {
                            for i in 0..events {
                                let e = event(1_000 + i);
                                let (a, b) = e.split_at(10);
                                send.send_data(Bytes::copy_from_slice(a), false).unwrap();
                                send.send_data(Bytes::copy_from_slice(b), false).unwrap();
                            }
                            // Held open, as a subscription is.
                            std::future::pending::<()>().await;
                            drop(send);
                        });
                    }
                });
            }
        });
        addr
    }

    fn subs(slots: std::ops::Range<usize>) -> Vec<(usize, Rc<Sub>)> {
        slots
            .map(|slot| {
                (
                    slot,
                    Rc::new(Sub {
                        h1: Vec::new(),
                        path: "/sub".into(),
                    }),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn streams_on_one_connection_count_events_and_a_second_connection_resumes() {
        let (der, key, path) = cert("h2");
        let addr = server(&[b"h2"], der, key, 2).await;
        let tls = args(&path, 3).client().unwrap().unwrap();
        let shared = Arc::new(Shared::new(1));
        let local = Rc::new(RefCell::new(Local::new(4)));
        let sem = Rc::new(Semaphore::new(4));
        let set = tokio::task::LocalSet::new();
        set.run_until(async {
            connection(
                subs(0..3),
                addr,
                None,
                tls.clone(),
                shared.clone(),
                local.clone(),
                sem.clone(),
            )
            .await;
            assert_eq!(shared.connected.load(Relaxed), 3);
            until("6 events", || shared.received.load(Relaxed) == 6).await;
            for slot in 0..3 {
                assert_eq!(local.borrow().of(slot), (2, true), "slot {slot}");
            }
            // A second connection, after the first one's tickets arrived: resumed.
            connection(
                subs(3..4),
                addr,
                None,
                tls.clone(),
                shared.clone(),
                local.clone(),
                sem.clone(),
            )
            .await;
            until("8 events", || shared.received.load(Relaxed) == 8).await;
        })
        .await;
        let stats = tls.stats.json(3);
        assert_eq!(stats["handshakes_full"], 1, "{stats}");
        assert_eq!(stats["handshakes_resumed"], 1, "{stats}");
        assert_eq!(stats["version"], "TLSv1_3", "{stats}");
        assert_eq!(stats["group"], "X25519MLKEM768", "{stats}");
        assert_eq!(stats["http"], "h2", "{stats}");
        assert_eq!(shared.connect_failed.load(Relaxed), 0);
        assert_eq!(shared.closed.load(Relaxed), 0);
        std::fs::remove_file(path).unwrap();
    }

    #[tokio::test]
    async fn a_server_that_does_not_choose_h2_fails_every_stream_of_the_connection() {
        // No ALPN at all on the server: the handshake succeeds, and our check refuses it (a
        // server offering only other protocols ends the handshake with an alert instead).
        let (der, key, path) = cert("noalpn");
        let addr = server(&[], der, key, 0).await;
        let tls = args(&path, 2).client().unwrap().unwrap();
        let shared = Arc::new(Shared::new(1));
        let local = Rc::new(RefCell::new(Local::new(2)));
        let set = tokio::task::LocalSet::new();
        set.run_until(connection(
            subs(0..2),
            addr,
            None,
            tls,
            shared.clone(),
            local,
            Rc::new(Semaphore::new(1)),
        ))
        .await;
        assert_eq!(shared.connect_failed.load(Relaxed), 2);
        assert_eq!(shared.connected.load(Relaxed), 0);
        let errors = shared.errors.lock().unwrap().clone();
        assert!(
            errors[0].contains("ALPN: offered h2, the peer chose None"),
            "{errors:?}"
        );
        std::fs::remove_file(path).unwrap();
    }
}
