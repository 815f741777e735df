//! TLS for [`crate::MercureServer::serve`]: loading a certificate chain and key from PEM into a
//! rustls [`ServerConfig`] that offers HTTP/2 and HTTP/1.1 by ALPN, and serving one accepted
//! connection over TLS.
//!
//! Why HTTP/2 matters here: browsers open at most 6 HTTP/1.1 connections per origin, and an
//! `EventSource` holds one for its whole life, so an app with several streams or tabs stalls
//! on the 7th. Over HTTP/2 they are streams of one connection. Browsers speak HTTP/2 only over
//! TLS, hence this module; cleartext HTTP/2 with prior knowledge (for proxies) needs nothing
//! from it and is served on plain listeners.
//!
//! Crypto is rustls' aws-lc-rs provider ([`provider`]), with the hybrid post-quantum key
//! exchange X25519MLKEM768 preferred: browsers offer it first (Chromium and Firefox by
//! default), and ring's provider, used before, lacks it.
//!
//! Sessions run on rustls' unbuffered API (`wire.rs`), whose buffers this crate owns: an idle
//! session holds none (tokio-rustls' buffered session kept a 4 KiB record buffer for life).
//! After the handshake, HTTP/1.1 connections go to the connection layer (the `conn` module) as
//! plain ones do, so TLS subscribers take the compact path too (the session in place of the
//! socket): hyper's HTTP/1 connection was ~30 KiB of the ~42 KiB an idle TLS subscriber cost
//! (docs/tls-memory.md). HTTP/2 connections (ALPN `h2`) are served by our own HTTP/2 layer
//! (`h2.rs`) over the same session, or by hyper when `fast_subscribe` is off.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

use crate::conn::{self, Shared};
use crate::rewind::Rewind;

mod wire;

use wire::TlsWire;

/// The protocols offered by ALPN, preferred first.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The first byte of a TLS handshake record (a ClientHello starts with it).
const HANDSHAKE_RECORD: u8 = 0x16;

/// Bytes read after an HTTP/2 handshake to see that the client speaks (handed on to the
/// HTTP/2 connection).
const FIRST_READ: usize = 1024;

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file is not valid PEM of the expected kind.
    #[error("{}: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("certificate {} with key {}: {source}", cert.display(), key.display())]
    Rejected {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
}

/// A server configuration from a PEM certificate chain (leaf first) and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1) read from files, with ALPN `h2` and `http/1.1`.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    let pem_error = |path: &Path, reason: String| TlsError::Pem {
        path: path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, format!("invalid PEM certificate: {}", pem_reason(e))))?;
    if chain.is_empty() {
        return Err(pem_error(
            cert,
            "no CERTIFICATE block found (expected a PEM certificate chain)".into(),
        ));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        pem_error(
            key,
            match e {
                pem::Error::NoItemsFound => {
                    "no PRIVATE KEY block found (expected a PEM private key)".into()
                }
                e => format!("invalid PEM private key: {}", pem_reason(e)),
            },
        )
    })?;
    server_config_from_der(chain, private).map_err(|source| TlsError::Rejected {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    })
}

/// A server configuration from a DER certificate chain and key, with ALPN `h2` and
/// `http/1.1`: what [`server_config`] builds once the files are read.
pub fn server_config_from_der(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    // Stateless session tickets (keys rotated every 6 hours): any number of clients can resume,
    // and the hub keeps nothing per session. The default stateful cache remembers 256 sessions,
    // so a reconnect wave of thousands of subscribers (a deploy, a network blip) was mostly full
    // handshakes (1,190 of the 10,000 of bench/run's TLS ramp were full; of 300 distinct clients
    // reconnecting, none resumed: tests/tls.rs).
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(Arc::new(config))
}

/// rustls' aws-lc-rs provider, its key exchanges in this order: the hybrid post-quantum
/// X25519MLKEM768 first (what Chromium and Firefox offer first), then the classical ones for
/// clients without it. Spelled out rather than left to the provider's default because that
/// order depends on a rustls cargo feature (`prefer-post-quantum`) that any crate in a build may
/// turn on or leave off.
pub fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::aws_lc_rs::{self, kx_group};
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = vec![
        kx_group::X25519MLKEM768,
        kx_group::X25519,
        kx_group::SECP256R1,
        kx_group::SECP384R1,
    ];
    provider
}

fn pem_reason(e: pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "section not ended (missing {})",
            String::from_utf8_lossy(&end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => format!(
            "bad section start {:?}",
            String::from_utf8_lossy(&line).trim()
        ),
        pem::Error::Base64Decode(e) => format!("bad base64: {e}"),
        e => format!("{e:?}"),
    }
}

/// Serves one accepted connection over TLS until it closes. The handshake (and, for HTTP/2,
/// the first bytes after it) must arrive within [`crate::MercureConfig::head_timeout`] of the
/// accept (a client that never sends a ClientHello, or goes silent after the handshake, is
/// closed then). HTTP/1.1 then goes to the connection layer like a plain connection (its first
/// request head within a head timeout, plain subscribes on the compact path, the rest to
/// hyper); HTTP/2 goes to hyper.
pub(crate) async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    config: Arc<ServerConfig>,
    shared: Arc<Shared>,
) {
    // Boxed: its timer and buffers are freed when it ends, not kept in this future's frame
    // for the connection's life. So are hyper's connection and the refusal: this future is as
    // large as its largest state, and an HTTP/1.1 subscriber's task would carry their size.
    match Box::pin(open(tcp, config, &shared)).await {
        None => {}
        Some(Opened::Http1(tls)) => conn::serve_connection(*tls, peer, shared).await,
        Some(Opened::Http2(tls, read)) if shared.state.config.fast_subscribe => {
            // Inline, not boxed: the HTTP/2 connection is about as large as the HTTP/1.1
            // pump this future holds anyway (a unit test bounds both), and a second
            // allocation per connection would cost more than it saves.
            crate::h2::serve(*tls, read, peer, shared).await;
        }
        Some(Opened::Http2(tls, read)) => {
            Box::pin(conn::serve_hyper(
                Rewind::new(read, tls),
                Some(peer),
                &shared,
            ))
            .await;
        }
        Some(Opened::Plaintext(tcp)) => Box::pin(refuse_plaintext(tcp)).await,
    }
}

/// What became of a connection's opening.
enum Opened {
    /// HTTP/1.1 (by ALPN, or no ALPN): for the connection layer.
    Http1(Box<TlsWire>),
    /// HTTP/2, and the first bytes read after the handshake: for hyper.
    Http2(Box<TlsWire>, Vec<u8>),
    /// Not a TLS handshake.
    Plaintext(TcpStream),
}

async fn open(tcp: TcpStream, config: Arc<ServerConfig>, shared: &Shared) -> Option<Opened> {
    let opening = async move {
        let mut first = [0u8; 1];
        if !matches!(tcp.peek(&mut first).await, Ok(1..)) {
            return None;
        }
        if first[0] != HANDSHAKE_RECORD {
            return Some(Opened::Plaintext(tcp));
        }
        let mut tls = TlsWire::accept(tcp, config).await.ok()?;
        if tls.alpn_protocol() != Some(b"h2") {
            // The connection layer reads the head itself, with its own head timeout.
            return Some(Opened::Http1(Box::new(tls)));
        }
        let mut read = Vec::with_capacity(FIRST_READ);
        match tls.read_buf(&mut read).await {
            Ok(1..) => Some(Opened::Http2(Box::new(tls), read)),
            _ => None,
        }
    };
    tokio::select! {
        opened = opening => opened,
        () = tokio::time::sleep(shared.state.config.head_timeout) => None,
        () = shared.shutdown.cancelled() => None,
    }
}

/// Answers a connection that did not start with a TLS handshake: `400` with a one-line reason
/// when it looks like an HTTP request (as a plain `http://` URL sends), then closes.
async fn refuse_plaintext(mut tcp: TcpStream) {
    let mut first = [0u8; 1];
    let looks_like_http =
        matches!(tcp.peek(&mut first).await, Ok(1..) if first[0].is_ascii_uppercase());
    if looks_like_http {
        let reason = "this port speaks HTTPS (TLS): use an https:// URL\n";
        let response = format!(
            "HTTP/1.1 400 Bad Request\r\n\
             content-type: text/plain; charset=utf-8\r\n\
             content-length: {}\r\n\
             connection: close\r\n\r\n{reason}",
            reason.len(),
        );
        if tcp.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
    conn::linger(tcp).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which path answers what over TLS: hyper here serves a router that answers everything
    /// with 418, so only the compact path can produce a stream. HTTP/1.1 subscribes take it;
    /// other requests, and HTTP/2, go to hyper.
    #[tokio::test]
    async fn tls_http1_subscribes_take_the_compact_path_and_the_rest_goes_to_hyper() {
        use axum::Router;
        use axum::http::StatusCode;
        use tokio_rustls::rustls::{ClientConfig, RootCertStore};

        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap();
        let config = server_config_from_der(vec![made.cert.der().clone()], key).unwrap();
        let server = crate::MercureServer::new(
            ssehub_hub::Hub::builder().heartbeat(None).build(),
            crate::MercureConfig::for_tests(),
        );
        let teapot = Router::new().fallback(|| async { StatusCode::IM_A_TEAPOT });
        let shared = Arc::new(Shared::new(
            server.state().clone(),
            teapot,
            tokio_util::sync::CancellationToken::new(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, peer)) = listener.accept().await {
                tokio::spawn(serve_connection(tcp, peer, config.clone(), shared.clone()));
            }
        });
        let mut roots = RootCertStore::empty();
        roots.add(made.cert.der().clone()).unwrap();
        let status_line = async |alpn: &[u8], request: &[u8]| {
            let mut client = ClientConfig::builder_with_provider(Arc::new(provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            client.alpn_protocols = vec![alpn.to_vec()];
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
                .connect(name, tcp)
                .await
                .unwrap();
            tls.write_all(request).await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 512];
            while !buf.windows(2).any(|w| w == b"\r\n") {
                let n =
                    tokio::time::timeout(std::time::Duration::from_secs(5), tls.read(&mut chunk))
                        .await
                        .unwrap()
                        .unwrap();
                assert!(n > 0, "closed");
                buf.extend_from_slice(&chunk[..n]);
            }
            let text = String::from_utf8_lossy(&buf).into_owned();
            text.split("\r\n").next().unwrap().to_owned()
        };
        let subscribe = b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(status_line(b"http/1.1", subscribe).await, "HTTP/1.1 200 OK");
        let health = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            status_line(b"http/1.1", health).await,
            "HTTP/1.1 418 I'm a teapot"
        );
        // HTTP/2: hyper answers the preface with its SETTINGS frame (no status line to read,
        // so only that it answers: a frame header, type 4).
        let mut client = ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        client.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .unwrap();
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        let mut header = [0u8; 9];
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tls.read_exact(&mut header),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(header[3], 4, "a SETTINGS frame first: {header:?}");
    }

    /// An idle TLS subscriber's task is this future: keep big things out of it (see
    /// conn.rs' `the_connection_future_stays_small` for the plain one).
    #[test]
    fn the_tls_connection_future_stays_small() {
        fn size_of_future<F: std::future::Future>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
            let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap();
            let config = server_config_from_der(vec![made.cert.der().clone()], key).unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
            drop(client);
            let (tcp, peer) = accepted.unwrap();
            let server = crate::MercureServer::new(
                ssehub_hub::Hub::new(),
                crate::MercureConfig::for_tests(),
            );
            let shared = Arc::new(Shared::new(
                server.state().clone(),
                server.router(),
                tokio_util::sync::CancellationToken::new(),
            ));
            let session = std::mem::size_of::<TlsWire>();
            let fut = serve_connection(tcp, peer, config, shared);
            let size = size_of_future(&fut);
            eprintln!("TLS connection future: {size} bytes, of which the session {session}");
            // The session (rustls' connection state, inline) plus the plain path's pump and
            // a few words: 1,736 bytes in a debug build when written, with a 1,224-byte
            // session.
            assert!(
                size <= session + 600,
                "TLS connection future is {size} bytes"
            );
        });
    }

    fn temp(contents: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, contents).unwrap();
        file
    }

    #[test]
    fn loading_errors_name_the_file_and_the_reason() {
        let missing = Path::new("/nonexistent/ssehub-cert.pem");
        let err = server_config(missing, missing).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("cannot read /nonexistent/ssehub-cert.pem: "),
            "{err}"
        );

        let junk = temp(b"not pem at all\n");
        let err = server_config(junk.path(), junk.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: no CERTIFICATE block found (expected a PEM certificate chain)",
                junk.path().display()
            )
        );

        let cut = temp(b"-----BEGIN CERTIFICATE-----\nMIIB\n");
        let err = server_config(cut.path(), cut.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("invalid PEM certificate: section not ended"),
            "{err}"
        );
    }
}
