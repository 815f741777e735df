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
//! TLS connections skip the plaintext HTTP/1 fast path of [`crate::conn`]: after the
//! handshake they go to hyper (HTTP/2 or HTTP/1.1, as the client speaks). The fast path's gain
//! is not keeping hyper's buffers per idle subscriber, but a TLS session has buffers of its own
//! anyway, and over HTTP/2 many subscribers share one connection; making the fast path generic
//! over the stream would add a type parameter to its code for little.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

use crate::conn::{self, Shared};
use crate::rewind::Rewind;

/// The protocols offered by ALPN, preferred first.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The first byte of a TLS handshake record (a ClientHello starts with it).
const HANDSHAKE_RECORD: u8 = 0x16;

/// Bytes read after the handshake to see that the client speaks (handed on to hyper).
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

/// Serves one accepted connection over TLS until it closes. The handshake and the first bytes
/// after it must arrive within [`crate::MercureConfig::head_timeout`] of the accept (a client
/// that never sends a ClientHello, or goes silent after the handshake, is closed then); what
/// follows is hyper's, with the same head timeout for HTTP/1.1 requests.
pub(crate) async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
) {
    let deadline = tokio::time::sleep(shared.state.config.head_timeout);
    tokio::pin!(deadline);
    let peer = Some(peer);
    let opening = async move {
        let mut first = [0u8; 1];
        if !matches!(tcp.peek(&mut first).await, Ok(1..)) {
            return None;
        }
        if first[0] != HANDSHAKE_RECORD {
            return Some(Err(tcp));
        }
        let mut tls = acceptor.accept(tcp).await.ok()?;
        let mut read = Vec::with_capacity(FIRST_READ);
        match tls.read_buf(&mut read).await {
            Ok(1..) => Some(Ok((tls, read))),
            _ => None,
        }
    };
    let opened = tokio::select! {
        opened = opening => opened,
        () = &mut deadline => None,
        () = shared.shutdown.cancelled() => None,
    };
    match opened {
        None => {}
        Some(Ok((tls, read))) => conn::serve_hyper(Rewind::new(read, tls), peer, &shared).await,
        Some(Err(tcp)) => refuse_plaintext(tcp).await,
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
