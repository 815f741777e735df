//! HTTP/2 (cleartext with prior knowledge, and negotiated by ALPN over TLS) and TLS with
//! rustls, against a hyper server over real TCP.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::StreamBody;
use http_body_util::combinators::BoxBody;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use ssehub_client::{Client, ClientBuilder, ClientError, ClientEvent, ReconnectPolicy, Version};
use support::{collect_all, msg, next_state};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// A test CA, and a certificate it signed for `127.0.0.1` and `localhost` (valid until 2126;
/// the CA key was discarded).
const CA_PEM: &[u8] = include_bytes!("fixtures/ca.pem");
const SERVER_PEM: &[u8] = include_bytes!("fixtures/server.pem");
const SERVER_KEY: &[u8] = include_bytes!("fixtures/server.key");

/// What the server saw of a request.
#[derive(Debug)]
struct Seen {
    /// The key exchange of its TLS connection.
    group: Option<rustls::NamedGroup>,
    version: hyper::Version,
    last_event_id: Option<String>,
}

struct Server {
    addr: SocketAddr,
    tls: bool,
    requests: mpsc::UnboundedReceiver<Seen>,
}

/// Serves HTTP/1.1 and HTTP/2 (auto-detected), over TLS when `tls`. The first request gets an
/// event with id 3 and a clean end; later ones get one event and then an open body.
async fn start(tls: bool) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.then(|| TlsAcceptor::from(Arc::new(server_config())));
    let (tx, requests) = mpsc::unbounded_channel();
    let count = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (tx, count, acceptor) = (tx.clone(), Arc::clone(&count), acceptor.clone());
            tokio::spawn(async move {
                let (tls, plain) = match acceptor {
                    Some(acceptor) => match acceptor.accept(socket).await {
                        Ok(stream) => (Some(stream), None),
                        Err(_) => return,
                    },
                    None => (None, Some(socket)),
                };
                let group = tls.as_ref().and_then(|tls| {
                    let group = tls.get_ref().1.negotiated_key_exchange_group()?;
                    Some(group.name())
                });
                let service = service_fn(move |request: hyper::Request<Incoming>| {
                    let _ = tx.send(Seen {
                        group,
                        version: request.version(),
                        last_event_id: request
                            .headers()
                            .get("last-event-id")
                            .map(|v| v.to_str().unwrap().to_owned()),
                    });
                    let first = count.fetch_add(1, Ordering::SeqCst) == 0;
                    async move { Ok::<_, Infallible>(response(first)) }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = match (tls, plain) {
                    (Some(tls), _) => builder.serve_connection(TokioIo::new(tls), service).await,
                    (None, Some(tcp)) => builder.serve_connection(TokioIo::new(tcp), service).await,
                    (None, None) => return,
                };
            });
        }
    });
    Server {
        addr,
        tls,
        requests,
    }
}

fn response(first: bool) -> hyper::Response<BoxBody<Bytes, Infallible>> {
    let frame =
        |text: &'static str| Ok::<_, Infallible>(Frame::data(Bytes::from_static(text.as_bytes())));
    let body = if first {
        BoxBody::new(StreamBody::new(futures_util::stream::iter([
            frame("id: 3\ndata: hello\n"),
            frame("\n"),
        ])))
    } else {
        let events = futures_util::stream::iter([frame("data: again\n\n")]);
        BoxBody::new(StreamBody::new(
            events.chain(futures_util::stream::pending()),
        ))
    };
    hyper::Response::builder()
        .header("content-type", "text/event-stream")
        .body(body)
        .unwrap()
}

fn server_config() -> ServerConfig {
    let certs = CertificateDer::pem_slice_iter(SERVER_PEM)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(SERVER_KEY).unwrap();
    let mut config = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

fn fast(url: String) -> ClientBuilder {
    Client::builder(url).reconnect(ReconnectPolicy {
        initial_delay: Duration::from_millis(10),
        jitter: 0.0,
        ..ReconnectPolicy::default()
    })
}

/// Reads the first connection, its reconnection, and checks both ran over `version`; over
/// TLS with the hybrid post-quantum key exchange that rustls' aws-lc-rs provider offers first.
async fn check_reconnecting_session(client: Client, server: &mut Server, version: Version) {
    let mut stream = client.stream();
    match next_state(&mut stream).await {
        ClientEvent::Open { version: got, .. } => assert_eq!(got, version),
        other => panic!("{other:?}"),
    }
    assert_eq!(next_state(&mut stream).await, msg("message", "hello", "3"));
    assert!(matches!(
        next_state(&mut stream).await,
        ClientEvent::Reconnecting { .. }
    ));
    assert!(matches!(
        next_state(&mut stream).await,
        ClientEvent::Open { .. }
    ));
    assert_eq!(next_state(&mut stream).await, msg("message", "again", "3"));
    let first = server.requests.recv().await.unwrap();
    let second = server.requests.recv().await.unwrap();
    for seen in [&first, &second] {
        let tls = server.tls;
        let want = tls.then_some(rustls::NamedGroup::X25519MLKEM768);
        assert_eq!(seen.group, want, "tls: {tls}");
    }
    assert_eq!((first.version, first.last_event_id), (version, None));
    assert_eq!(
        (second.version, second.last_event_id.as_deref()),
        (version, Some("3"))
    );
}

#[tokio::test]
async fn http2_cleartext_with_prior_knowledge() {
    let mut server = start(false).await;
    let client = fast(format!("http://{}/", server.addr))
        .http2_prior_knowledge()
        .build()
        .unwrap();
    support::bounded(check_reconnecting_session(
        client,
        &mut server,
        Version::HTTP_2,
    ))
    .await;
}

#[tokio::test]
async fn http2_is_negotiated_over_tls() {
    let mut server = start(true).await;
    let client = fast(format!("https://127.0.0.1:{}/", server.addr.port()))
        .add_root_certificate_pem(CA_PEM)
        .unwrap()
        .build()
        .unwrap();
    support::bounded(check_reconnecting_session(
        client,
        &mut server,
        Version::HTTP_2,
    ))
    .await;
}

#[tokio::test]
async fn http1_over_tls_when_asked() {
    let mut server = start(true).await;
    let client = fast(format!("https://localhost:{}/", server.addr.port()))
        .add_root_certificate_pem(CA_PEM)
        .unwrap()
        .http1_only()
        .build()
        .unwrap();
    support::bounded(check_reconnecting_session(
        client,
        &mut server,
        Version::HTTP_11,
    ))
    .await;
}

#[tokio::test]
async fn an_untrusted_certificate_is_an_error() {
    let server = start(true).await;
    let client = Client::builder(format!("https://127.0.0.1:{}/", server.addr.port()))
        .no_reconnect()
        .build()
        .unwrap();
    let items = collect_all(&mut client.stream()).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let error = items[0].as_ref().unwrap_err();
    assert!(matches!(error, ClientError::Http(_)), "{error:?}");
    let text = error.to_string();
    assert!(
        !text.contains('\n') && text.to_lowercase().contains("certificate"),
        "{text}"
    );
}
