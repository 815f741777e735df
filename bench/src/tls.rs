//! The generator's TLS and HTTP/2 options (issue 22): a rustls client (aws-lc-rs provider, as
//! the workspace uses) that trusts one given certificate, sends SNI, speaks TLS 1.3 only and
//! resumes sessions, and the handshake counters every TLS workload reports.
//!
//! Plain runs never touch this module: `--tls` absent, [`TlsArgs::client`] is `None` and every
//! connection is the bare socket it was before.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::Resumption;
use tokio_rustls::rustls::crypto::aws_lc_rs::{self, kx_group};
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, HandshakeKind, RootCertStore};

use crate::tickets::TicketPool;

/// TLS and HTTP/2 flags, shared by `fanout` and `idle`.
#[derive(Debug, Clone, Args)]
pub(crate) struct TlsArgs {
    /// Speak TLS 1.3 to the peer, trusting this PEM certificate (the peer's self-signed
    /// certificate, or the CA that issued it). Subscribers and publishers both use it.
    #[arg(long, value_name = "CERT")]
    pub(crate) tls: Option<PathBuf>,
    /// The server name sent as SNI and checked against the certificate.
    #[arg(long, default_value = "localhost", requires = "tls")]
    pub(crate) sni: String,
    /// Subscribe over HTTP/2 (ALPN `h2`) with this many subscription streams per connection;
    /// 0: HTTP/1.1, one subscription per connection. Needs --tls (no h2c).
    #[arg(long, default_value_t = 0, requires = "tls")]
    pub(crate) h2_streams: usize,
    /// Key exchange groups offered, in order (the first is the one the client sends a key
    /// share for). The default is what Chromium and Firefox offer.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "x25519mlkem768,x25519,secp256r1"
    )]
    pub(crate) tls_groups: Vec<Group>,
    /// TLS 1.3 tickets kept for resumption, shared by all connections (each connection a
    /// returning client with a ticket of its own, once the first handshakes brought them);
    /// 0 turns resumption off.
    #[arg(long, default_value_t = 4096)]
    pub(crate) tls_session_cache: usize,
}

/// A key exchange group the client can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Group {
    X25519mlkem768,
    X25519,
    Secp256r1,
    Secp384r1,
}

impl TlsArgs {
    /// The TLS client, or `None` for a plain run. Errors (exit 2 from main) on a certificate
    /// file that cannot be read or holds no certificate, and on an unusable server name.
    pub(crate) fn client(&self) -> anyhow::Result<Option<Arc<TlsClient>>> {
        let Some(path) = &self.tls else {
            return Ok(None);
        };
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the certificate {}", path.display()))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.with_context(|| format!("bad PEM in {}", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("{} is not a usable certificate", path.display()))?;
        }
        if roots.is_empty() {
            bail!("{} holds no certificate", path.display());
        }
        let mut provider = aws_lc_rs::default_provider();
        // Browsers' order (Chromium, Firefox): AES-128-GCM first. rustls' default puts AES-256
        // first, and both servers follow the client's order.
        provider.cipher_suites = vec![
            aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256,
            aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
            aws_lc_rs::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ];
        provider.kx_groups = self
            .tls_groups
            .iter()
            .map(|g| match g {
                Group::X25519mlkem768 => kx_group::X25519MLKEM768,
                Group::X25519 => kx_group::X25519,
                Group::Secp256r1 => kx_group::SECP256R1,
                Group::Secp384r1 => kx_group::SECP384R1,
            })
            .collect();
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("TLS 1.3 with the aws-lc-rs provider")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = if self.tls_session_cache == 0 {
            Resumption::disabled()
        } else {
            Resumption::store(Arc::new(TicketPool::new(self.tls_session_cache)))
        };
        let mut h1 = config.clone();
        h1.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut h2 = config;
        h2.alpn_protocols = vec![b"h2".to_vec()];
        let server_name = ServerName::try_from(self.sni.clone())
            .with_context(|| format!("{:?} is not a server name", self.sni))?;
        Ok(Some(Arc::new(TlsClient {
            h1: TlsConnector::from(Arc::new(h1)),
            h2: TlsConnector::from(Arc::new(h2)),
            server_name,
            h2_streams: self.h2_streams,
            stats: HandshakeStats::default(),
        })))
    }
}

/// What TLS connections are opened with; one per run, shared by the worker threads (its
/// session cache too, so a ticket from one thread's handshake resumes another's).
pub(crate) struct TlsClient {
    h1: TlsConnector,
    h2: TlsConnector,
    server_name: ServerName<'static>,
    /// Subscription streams per HTTP/2 connection; 0: subscribers speak HTTP/1.1.
    pub(crate) h2_streams: usize,
    pub(crate) stats: HandshakeStats,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio-rustls' connector has no Debug of its own.
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .field("h2_streams", &self.h2_streams)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// The TLS handshake over `tcp`, offering ALPN `h2` or `http/1.1`; counted in `stats`.
    /// A peer that picks another protocol than the one offered is an error.
    pub(crate) async fn connect(
        &self,
        tcp: TcpStream,
        h2: bool,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let connector = if h2 { &self.h2 } else { &self.h1 };
        let tls = connector.connect(self.server_name.clone(), tcp).await?;
        let conn = tls.get_ref().1;
        let want: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
        match conn.alpn_protocol() {
            Some(p) if p == want => {}
            // No ALPN answer: HTTP/1.1 by default, but never HTTP/2.
            None if !h2 => {}
            other => {
                return Err(std::io::Error::other(format!(
                    "ALPN: offered {}, the peer chose {:?}",
                    String::from_utf8_lossy(want),
                    other.map(String::from_utf8_lossy)
                )));
            }
        }
        self.stats.record(conn);
        Ok(tls)
    }
}

/// Handshakes by kind, and the parameters the peer chose (the first handshake's; they do not
/// change within a run).
#[derive(Debug, Default)]
pub(crate) struct HandshakeStats {
    full: AtomicU64,
    resumed: AtomicU64,
    hello_retry: AtomicU64,
    first: Mutex<Option<(String, String, String)>>,
}

impl HandshakeStats {
    fn record(&self, conn: &rustls::ClientConnection) {
        match conn.handshake_kind() {
            Some(HandshakeKind::Resumed) => &self.resumed,
            Some(HandshakeKind::FullWithHelloRetryRequest) => &self.hello_retry,
            _ => &self.full,
        }
        .fetch_add(1, Relaxed);
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some((
                conn.protocol_version()
                    .map_or_else(|| "?".into(), |v| format!("{v:?}")),
                conn.negotiated_key_exchange_group()
                    .map_or_else(|| "?".into(), |g| format!("{:?}", g.name())),
                conn.negotiated_cipher_suite()
                    .map_or_else(|| "?".into(), |s| format!("{:?}", s.suite())),
            ));
        }
    }

    /// The `tls` object of a JSON line.
    pub(crate) fn json(&self, h2_streams: usize) -> serde_json::Value {
        let first = self.first.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (version, group, suite) = first.unwrap_or_default();
        json!({
            "http": if h2_streams > 0 { "h2" } else { "http/1.1" },
            "h2_streams": h2_streams,
            "handshakes_full": self.full.load(Relaxed),
            "handshakes_resumed": self.resumed.load(Relaxed),
            "handshakes_hello_retry": self.hello_retry.load(Relaxed),
            "version": version,
            "group": group,
            "suite": suite,
        })
    }

    /// Handshakes so far, all kinds.
    pub(crate) fn total(&self) -> u64 {
        self.full.load(Relaxed) + self.resumed.load(Relaxed) + self.hello_retry.load(Relaxed)
    }
}

/// A client connection, plain or TLS: what publishers and HTTP/1.1 subscribers read and write.
/// One `match` per poll is all a plain run pays for TLS being possible.
#[derive(Debug)]
pub(crate) enum Wire {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Wire {
    /// A connected socket as is (`tls` `None`), or after a TLS handshake for HTTP/1.1. TLS
    /// sockets get `TCP_NODELAY`: the client's Finished and its request are two writes, and
    /// Nagle's algorithm would hold the request until the Finished is acknowledged.
    pub(crate) async fn open(tcp: TcpStream, tls: Option<&TlsClient>) -> std::io::Result<Self> {
        match tls {
            None => Ok(Self::Plain(tcp)),
            Some(t) => {
                tcp.set_nodelay(true)?;
                Ok(Self::Tls(Box::new(t.connect(tcp, false).await?)))
            }
        }
    }
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(tls: Option<PathBuf>) -> TlsArgs {
        TlsArgs {
            tls,
            sni: "localhost".into(),
            h2_streams: 0,
            tls_groups: vec![Group::X25519],
            tls_session_cache: 0,
        }
    }

    #[test]
    fn plain_runs_have_no_tls_client() {
        assert!(args(None).client().unwrap().is_none());
    }

    #[test]
    fn unusable_certificate_files_are_refused_with_their_name() {
        let missing = std::env::temp_dir().join("ssehub-bench-no-such-cert.pem");
        let e = args(Some(missing.clone())).client().unwrap_err();
        assert!(
            format!("{e:#}").contains("cannot read the certificate"),
            "{e:#}"
        );
        let empty =
            std::env::temp_dir().join(format!("ssehub-bench-{}-empty.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = args(Some(empty.clone())).client().unwrap_err();
        assert!(format!("{e:#}").contains("holds no certificate"), "{e:#}");
        std::fs::remove_file(empty).unwrap();
    }
}

/// What the TLS and HTTP/2 tests share: a certificate, a server's acceptor, the client's flags.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::Duration;

    use tokio_rustls::TlsAcceptor;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio_rustls::rustls::{self, ServerConfig};

    use super::{Group, TlsArgs};

    /// A self-signed P-256 certificate for localhost, and its PEM in a file of its own.
    pub(crate) fn cert(name: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>, PathBuf) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let path =
            std::env::temp_dir().join(format!("ssehub-bench-{}-{name}.pem", std::process::id()));
        std::fs::write(&path, made.cert.pem()).unwrap();
        let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der());
        (made.cert.der().clone(), key.into(), path)
    }

    /// A TLS 1.3 server (rustls' defaults: stateful resumption) offering `alpn`.
    pub(crate) fn acceptor(
        alpn: &[&[u8]],
        der: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
    ) -> TlsAcceptor {
        let mut config = ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsAcceptor::from(Arc::new(config))
    }

    /// The client's flags: trust `path`, `streams` HTTP/2 streams per connection (0: HTTP/1.1).
    pub(crate) fn args(path: &Path, streams: usize) -> TlsArgs {
        TlsArgs {
            tls: Some(path.to_path_buf()),
            sni: "localhost".into(),
            h2_streams: streams,
            tls_groups: vec![Group::X25519mlkem768, Group::X25519],
            tls_session_cache: 16,
        }
    }

    /// Waits (at most 5 s) until `done`.
    pub(crate) async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }
}
