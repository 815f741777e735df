//! `ssehub serve --tls-cert --tls-key` as a real process: HTTPS with HTTP/2, publish/subscribe
//! over it, a clean exit on SIGTERM; bad or half-given TLS settings exit 2 with a clear line;
//! the settings also come from the environment and the config file.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{BIN, Served, after, hello_round_trip, retry_of, token_in_publish_line};

struct Cert {
    pem: String,
    dir: tempfile::TempDir,
}

impl Cert {
    fn new() -> Cert {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), made.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), made.signing_key.serialize_pem()).unwrap();
        Cert {
            pem: made.cert.pem(),
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }
}

/// `ssehub ARGS` without any SSEHUB_* variable of the test's own environment, plus `env`.
/// A client that trusts only `cert`.
fn tls_client(cert: &Cert) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert.pem.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("RUST_LOG", "off");
    for (k, _) in std::env::vars() {
        if k.starts_with("SSEHUB_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied()).output().unwrap()
}

#[tokio::test]
async fn serves_https_with_http2_and_exits_cleanly() {
    let cert = Cert::new();
    // A 1.0 hub: the generated token's audience is the hub's https URL, which is also what
    // the hub derives from each request it serves over TLS.
    let served = Served::start_modern(
        &[
            "--memory",
            "--drain-timeout",
            "1s",
            "--tls-cert",
            &cert.path("cert.pem"),
            "--tls-key",
            &cert.path("key.pem"),
        ],
        &[],
    );
    let listening = served.wait_line("hub at https://");
    let hub_url = after(&listening, "hub at ").to_owned();
    let audience = served.wait_line("  audience:  ");
    assert_eq!(after(&audience, "audience:"), hub_url);
    let publish_line = served.wait_line("publish:   curl");
    assert!(
        publish_line.contains(&format!(" {hub_url}")),
        "{publish_line}"
    );
    let token = token_in_publish_line(&publish_line);

    let client = tls_client(&cert);
    let mut sub = hello_round_trip(&client, &hub_url, &token).await;
    assert_eq!(sub.version(), reqwest::Version::HTTP_2);

    let status = tokio::task::spawn_blocking(move || served.terminate())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    // Within the 1 s drain, the HTTP/2 stream ended cleanly rather than being reset (an
    // HTTP/2 body may end with an empty DATA frame, which reqwest passes on as an empty
    // chunk), after a last `retry:` drawn in [3 s, 6 s).
    let mut rest = Vec::new();
    while let Some(more) = sub.chunk().await.unwrap() {
        rest.extend_from_slice(&more);
    }
    let retry = retry_of(&String::from_utf8(rest).unwrap());
    assert!((3000..6000).contains(&retry), "{retry}");
}

#[test]
fn bad_or_half_given_tls_settings_exit_2_with_a_clear_line() {
    let cert = Cert::new();
    let (cert_pem, key_pem) = (cert.path("cert.pem"), cert.path("key.pem"));
    let missing = cert.path("missing-key.pem");
    std::fs::write(cert.path("junk.pem"), "not a key\n").unwrap();
    let junk = cert.path("junk.pem");
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], String);
    let cases: [Case<'_>; 5] = [
        (
            &["--tls-cert", &cert_pem, "--tls-key", &missing],
            &[],
            format!("ssehub: cannot use --tls-cert/--tls-key: cannot read {missing}: "),
        ),
        (
            &["--tls-cert", &cert_pem, "--tls-key", &junk],
            &[],
            format!("ssehub: cannot use --tls-cert/--tls-key: {junk}: no PRIVATE KEY block found"),
        ),
        (
            &["--tls-cert", &junk, "--tls-key", &key_pem],
            &[],
            format!("ssehub: cannot use --tls-cert/--tls-key: {junk}: no CERTIFICATE block found"),
        ),
        (
            &["--tls-cert", &cert_pem],
            &[],
            "ssehub: --tls-cert and --tls-key go together: give both, or neither".to_owned(),
        ),
        (
            &[],
            &[("SSEHUB_TLS_KEY", &key_pem)],
            "ssehub: --tls-cert and --tls-key go together: give both, or neither".to_owned(),
        ),
    ];
    for (args, env, want) in cases {
        let mut all = vec!["serve", "--memory", "--addr", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let out = run(&all, env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert!(err.starts_with(&want), "{args:?} {env:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?} {env:?}: {err}");
    }
}

#[tokio::test]
async fn tls_settings_come_from_the_environment_and_the_config_file() {
    let cert = Cert::new();
    let (cert_pem, key_pem) = (cert.path("cert.pem"), cert.path("key.pem"));
    let file = cert.path("ssehub.toml");
    std::fs::write(
        &file,
        format!("tls-cert = {cert_pem:?}\ntls-key = {key_pem:?}\nmemory = true\n"),
    )
    .unwrap();
    let out = run(&["serve", "--config", &file, "--print-config"], &[]);
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.contains(&format!("tls-cert = {cert_pem:?}  # file\n")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("tls-key = {key_pem:?}  # file\n")),
        "{printed}"
    );
    let out = run(&["serve", "--print-config"], &[]);
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("# tls-cert is not set\n"), "{printed}");

    // From the environment: the hub serves HTTPS.
    let served = Served::start(
        &["--memory"],
        &[("SSEHUB_TLS_CERT", &cert_pem), ("SSEHUB_TLS_KEY", &key_pem)],
    );
    let listening = served.wait_line("hub at https://");
    let hub_url = after(&listening, "hub at ").to_owned();
    let client = tls_client(&cert);
    let health = client
        .get(hub_url.replace("/.well-known/mercure", "/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.text().await.unwrap(), "ok\n");
}
