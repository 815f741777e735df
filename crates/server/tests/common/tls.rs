//! TLS helpers: a self-signed certificate made at test time, a hub serving TLS with it, and a
//! client trusting it.

use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use ssehub_hub::Hub;
use ssehub_server::rustls;

use super::{TestHub, publisher, start_with};

/// A self-signed certificate for 127.0.0.1 and localhost, and its key, as PEM files.
pub struct Cert {
    pub pem: String,
    pub der: CertificateDer<'static>,
    pub cert_file: tempfile::NamedTempFile,
    pub key_file: tempfile::NamedTempFile,
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    f
}

pub fn cert() -> Cert {
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    Cert {
        pem: made.cert.pem(),
        der: made.cert.der().clone(),
        cert_file: file(&made.cert.pem()),
        key_file: file(&made.signing_key.serialize_pem()),
    }
}

/// A hub serving TLS with `cert` (loaded from its files, as `ssehub serve` does).
pub async fn start_tls(
    cert: &Cert,
    configure: impl FnOnce(&mut ssehub_server::MercureConfig),
) -> TestHub {
    let tls = ssehub_server::tls::server_config(cert.cert_file.path(), cert.key_file.path())
        .expect("the generated certificate loads");
    start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.tls = Some(tls);
        configure(c);
    })
    .await
}

/// [`start_tls`] with its own `hub`.
pub async fn start_tls_with_hub(cert: &Cert, hub: Hub) -> TestHub {
    let tls = ssehub_server::tls::server_config(cert.cert_file.path(), cert.key_file.path())
        .expect("the generated certificate loads");
    start_with(hub, |c| c.tls = Some(tls)).await
}

pub fn https(hub: &TestHub, path_and_query: &str) -> String {
    format!("https://127.0.0.1:{}{path_and_query}", hub.addr.port())
}

/// A client trusting only `cert`; HTTP/2 when the server offers it unless `http1`.
pub fn client(cert: &Cert, http1: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert.pem.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(10));
    if http1 {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

pub async fn publish_to(client: &reqwest::Client, url: String, topic: &str, data: &str) -> String {
    let response = client
        .post(url)
        .bearer_auth(publisher())
        .form(&[("topic", topic), ("data", data)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// Waits (bounded) until the hub counts `n` subscribers.
pub async fn subscribers(hub: &TestHub, n: usize) {
    let started = Instant::now();
    while hub.hub.subscriber_count() != n {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{} subscribers, expected {n}",
            hub.hub.subscriber_count()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
