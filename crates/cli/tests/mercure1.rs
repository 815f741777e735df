//! `ssehub serve` as a Mercure 1.0 hub, over the real binary: trusted issuers from the flags and
//! from `[[issuer]]` tables (each verifying only its own tokens), EdDSA keys and a JWK Set,
//! tokens minted by `ssehub token`, RFC 6750 answers, the pinned resource identifier and the
//! cookie name, the maximum connection lifetime, what `--legacy-protocol` brings back, and the
//! startup errors of a configuration that cannot work (exit 2, one line).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Served, all_rights_token, modern_all_rights_token};
use reqwest::StatusCode;
use reqwest::header::WWW_AUTHENTICATE;

const KEY: &str = "mercure1-test-secret-0123456789abcdef";
const ISSUER: &str = "https://app.mercure1.test";

/// `ssehub ARGS` to completion (at most 15 s), without the test's own SSEHUB_* variables;
/// returns (exit code, stdout, stderr).
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("RUST_LOG", "off");
    for (k, _) in std::env::vars() {
        if k.starts_with("SSEHUB_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ssehub {args:?} did not exit within 15 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code(), stdout, stderr)
}

/// `ssehub token ARGS`, which must succeed: the token.
fn token(args: &[&str]) -> String {
    let mut all = vec!["token"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = run(&all);
    assert_eq!(code, Some(0), "{args:?}: {stderr}");
    stdout.trim().to_owned()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Publishes `data` on topic `t` with `token`; the status and the `WWW-Authenticate` header.
async fn publish(hub: &str, token: &str) -> (StatusCode, Option<String>) {
    let res = client()
        .post(hub)
        .bearer_auth(token)
        .form(&[("topic", "t"), ("data", "x")])
        .send()
        .await
        .unwrap();
    (res.status(), challenge(&res))
}

fn challenge(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// An Ed25519 key pair as PEM files: (private, public).
fn ed25519(dir: &tempfile::TempDir, name: &str) -> (String, String) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    (
        write(dir, &format!("{name}.key"), &pair.serialize_pem()),
        write(dir, &format!("{name}.pub"), &pair.public_key_pem()),
    )
}

#[tokio::test]
async fn a_token_from_ssehub_token_publishes_and_a_0x_token_is_refused_with_invalid_token() {
    let served = Served::start_modern(&["--memory", "--issuer", ISSUER, "--jwt-key", KEY], &[]);
    let hub = served.hub_url();
    served.wait_line(&format!("trusted token issuers: {ISSUER}"));
    // The resource identifier is the hub's URL as the client reaches it.
    let port = hub
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/.well-known/mercure");
    let audience = format!("http://127.0.0.1:{port}/.well-known/mercure");
    let good = token(&[
        "--issuer",
        ISSUER,
        "--jwt-key",
        KEY,
        "--audience",
        &audience,
        "--publish",
        "*",
    ]);
    assert_eq!(publish(&hub, &good).await, (StatusCode::OK, None));

    let metadata =
        format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/.well-known/mercure");
    let legacy = all_rights_token(KEY);
    let (status, www) = publish(&hub, &legacy).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        www.as_deref(),
        Some(format!("Bearer error=\"invalid_token\", resource_metadata=\"{metadata}\"").as_str())
    );
    // So is `ssehub token --legacy`'s, and a 1.0 token of an issuer the hub does not trust.
    let legacy = token(&["--legacy", "--jwt-key", KEY, "--publish", "*"]);
    assert_eq!(publish(&hub, &legacy).await.0, StatusCode::UNAUTHORIZED);
    let stranger = token(&[
        "--issuer",
        "https://stranger.example",
        "--jwt-key",
        KEY,
        "--audience",
        &audience,
        "--publish",
        "*",
    ]);
    assert_eq!(publish(&hub, &stranger).await.0, StatusCode::UNAUTHORIZED);

    // No token: a challenge without an error code; a token in the URL: invalid_request.
    let res = client()
        .post(&hub)
        .form(&[("topic", "t")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(&res),
        Some(format!("Bearer resource_metadata=\"{metadata}\""))
    );
    let res = client()
        .post(&hub)
        .query(&[("authorization", good.as_str())])
        .form(&[("topic", "t")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(
        challenge(&res).is_some_and(|c| c.starts_with("Bearer error=\"invalid_request\"")),
        "{res:?}"
    );
}

#[test]
fn startup_errors_exit_2_with_one_line_that_says_what_to_add() {
    let dir = tempfile::tempdir().unwrap();
    let file_key = write(&dir, "key.toml", "jwt-key = \"from-the-file-0123456789\"\n");
    let twice = write(
        &dir,
        "twice.toml",
        &format!("[[issuer]]\nid = \"{ISSUER}\"\njwt-key = \"k-0123456789\"\n"),
    );
    let twice_in_file = write(
        &dir,
        "twice-in-file.toml",
        "[[issuer]]\nid = \"a\"\njwt-key = \"k1-0123456789\"\n\
         [[issuer]]\nid = \"a\"\njwt-key = \"k2-0123456789\"\n",
    );
    let keyless = write(&dir, "keyless.toml", "[[issuer]]\nid = \"a\"\n");
    let bad_alg = write(
        &dir,
        "bad-alg.toml",
        "[[issuer]]\nid = \"a\"\njwt-key = \"k\"\nalgorithms = [\"HS256\", \"XX9\"]\n",
    );
    let without_issuer = "given without --issuer: add --issuer ID (the `iss` of the tokens the \
                          key verifies), or --legacy-protocol to accept 0.x tokens";
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--jwt-key", KEY],
            format!("ssehub: --jwt-key is {without_issuer}"),
        ),
        (
            vec!["--publisher-jwt-key", KEY],
            format!("ssehub: --publisher-jwt-key is {without_issuer}"),
        ),
        (
            vec!["--subscriber-jwt-key", KEY],
            format!("ssehub: --subscriber-jwt-key is {without_issuer}"),
        ),
        (
            vec!["--config", &file_key],
            format!("ssehub: --jwt-key is {without_issuer}"),
        ),
        (
            vec!["--jwks-uri", "https://auth.example/jwks"],
            "ssehub: --jwks-uri needs --issuer ID".into(),
        ),
        (
            vec!["--issuer", ISSUER],
            format!("ssehub: --issuer \"{ISSUER}\" has no key: add --jwt-key"),
        ),
        (
            vec!["--issuer", "", "--jwt-key", KEY],
            "ssehub: --issuer must not be empty".into(),
        ),
        (
            vec!["--issuer", ISSUER, "--jwt-key", KEY, "--config", &twice],
            format!("ssehub: issuer \"{ISSUER}\" is configured twice"),
        ),
        (
            vec!["--config", &twice_in_file],
            "ssehub: issuer \"a\" is configured twice".into(),
        ),
        (
            vec!["--config", &keyless],
            "ssehub: [[issuer]] \"a\" has no key".into(),
        ),
        (
            vec!["--config", &bad_alg],
            "ssehub: [[issuer]] \"a\" algorithms: unknown algorithm \"XX9\"".into(),
        ),
        (
            vec!["--issuer", ISSUER, "--jwks-uri", "http://auth.example/jwks"],
            "ssehub: invalid --jwks-uri \"http://auth.example/jwks\": ".into(),
        ),
        (
            vec![
                "--issuer",
                ISSUER,
                "--jwt-algorithm",
                "EdDSA",
                "--jwt-key",
                "not a pem",
            ],
            "ssehub: invalid JWT key: ".into(),
        ),
        (
            vec!["--resource-identifier", "hub.example.com"],
            "ssehub: invalid --resource-identifier \"hub.example.com\": ".into(),
        ),
        (
            vec!["--cookie-name", "two words"],
            "ssehub: invalid --cookie-name \"two words\"".into(),
        ),
        (
            vec!["--jwt-algorithm", "XX999"],
            "ssehub: --jwt-algorithm: unknown algorithm \"XX999\" (expected one of".into(),
        ),
        (
            vec!["--max-connection-lifetime", "soon"],
            "ssehub: invalid value 'soon' for '--max-connection-lifetime".into(),
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["serve", "--memory", "--addr", "127.0.0.1:0"];
        all.extend_from_slice(&args);
        let (code, _, stderr) = run(&all);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with(&want), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn legacy_protocol_accepts_0x_tokens_and_the_authorization_query_parameter() {
    // `Served::start` adds --legacy-protocol.
    let served = Served::start(
        &[
            "--memory",
            "--no-anonymous",
            "--issuer",
            ISSUER,
            "--jwt-key",
            KEY,
        ],
        &[],
    );
    let hub = served.hub_url();
    let legacy = all_rights_token(KEY);
    assert_eq!(publish(&hub, &legacy).await, (StatusCode::OK, None));
    let res = client()
        .post(&hub)
        .query(&[("authorization", legacy.as_str())])
        .form(&[("topic", "t"), ("data", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The 0.x cookie too, here for a subscriber (anonymous ones are refused).
    let url = format!("{hub}?topic=t");
    let res = client().get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = client()
        .get(&url)
        .header("Cookie", format!("mercureAuthorization={legacy}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    drop(res);
    // The --issuer's 1.0 tokens work as well.
    let modern = modern_all_rights_token(KEY, ISSUER, &hub);
    assert_eq!(publish(&hub, &modern).await.0, StatusCode::OK);
    // Refusals are 0.x ones: no RFC 6750 error code.
    let (status, www) = publish(&hub, "not.a.token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!www.unwrap_or_default().contains("error="));
}

#[tokio::test]
async fn config_file_issuers_each_verify_only_their_own_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let (key_a, key_b) = (
        "issuer-a-secret-0123456789abcdef",
        "issuer-b-secret-0123456789abcdef",
    );
    let (ed_private, ed_public) = ed25519(&dir, "c");
    let (other_private, _) = ed25519(&dir, "other");
    let file = write(
        &dir,
        "issuers.toml",
        &format!(
            "memory = true\n\n\
             [[issuer]]\nid = \"https://a.example\"\njwt-key = \"{key_a}\"\n\n\
             [[issuer]]\nid = \"https://b.example\"\npublisher-jwt-key = \"{key_b}\"\n\n\
             [[issuer]]\nid = \"https://c.example\"\njwt-key = \"{ed_public}\"\njwt-algorithm = \"EdDSA\"\n"
        ),
    );
    let served = Served::start_modern(&["--config", &file], &[]);
    let hub = served.hub_url();
    served.wait_line(
        "trusted token issuers: https://a.example, https://b.example, https://c.example",
    );
    let mint = |issuer: &str, key: &str, algorithm: &str| {
        token(&[
            "--issuer",
            issuer,
            "--jwt-key",
            key,
            "--jwt-algorithm",
            algorithm,
            "--hub",
            &hub,
            "--publish",
            "*",
        ])
    };
    for (issuer, key, algorithm) in [
        ("https://a.example", key_a, "HS256"),
        ("https://b.example", key_b, "HS256"),
        ("https://c.example", ed_private.as_str(), "EdDSA"),
    ] {
        let token = mint(issuer, key, algorithm);
        assert_eq!(
            publish(&hub, &token).await.0,
            StatusCode::OK,
            "{issuer}'s own token"
        );
    }
    // A token claiming one issuer, signed with another's key, is refused: keys are never
    // pooled across issuers.
    for (issuer, key, algorithm) in [
        ("https://a.example", key_b, "HS256"),
        ("https://b.example", key_a, "HS256"),
        ("https://a.example", ed_private.as_str(), "EdDSA"),
        ("https://c.example", other_private.as_str(), "EdDSA"),
    ] {
        let (status, www) = publish(&hub, &mint(issuer, key, algorithm)).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{issuer} signed with {key}"
        );
        assert!(
            www.unwrap_or_default()
                .starts_with("Bearer error=\"invalid_token\""),
            "{issuer}"
        );
    }
}

/// A JWK Set server on loopback: answers every request with `body` (cached for 5 minutes).
fn jwks_server(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8];
            while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = socket.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/jwk-set+json\r\n\
                     Cache-Control: max-age=300\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    url
}

#[tokio::test]
async fn a_jwks_uri_issuer_verifies_tokens_signed_with_a_published_key() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = ed25519(&dir, "jwks");
    let decoding =
        jsonwebtoken::DecodingKey::from_ed_pem(std::fs::read(&public).unwrap().as_slice()).unwrap();
    let mut jwk =
        jsonwebtoken::jwk::Jwk::from_decoding_key(&decoding, Some(jsonwebtoken::Algorithm::EdDSA))
            .unwrap();
    jwk.common.key_id = Some("key-1".into());
    let set = serde_json::json!({ "keys": [jwk] }).to_string();
    let jwks = jwks_server(set);

    let served = Served::start_modern(&["--memory", "--issuer", ISSUER, "--jwks-uri", &jwks], &[]);
    let hub = served.hub_url();
    let signed = |kid: &str| {
        token(&[
            "--issuer",
            ISSUER,
            "--jwt-key",
            &private,
            "--jwt-algorithm",
            "EdDSA",
            "--kid",
            kid,
            "--hub",
            &hub,
            "--publish",
            "*",
        ])
    };
    // The set is fetched at start, in the background: the token works once it has arrived.
    let good = signed("key-1");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = publish(&hub, &good).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the JWK Set key never verified: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A key the set does not have is refused.
    assert_eq!(
        publish(&hub, &signed("key-2")).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn resource_identifier_pins_the_audience_and_cookie_name_the_cookie() {
    let pinned = "https://hub.example.com/.well-known/mercure";
    let served = Served::start_modern(
        &[
            "--memory",
            "--no-anonymous",
            "--issuer",
            ISSUER,
            "--jwt-key",
            KEY,
            "--resource-identifier",
            pinned,
            "--cookie-name",
            "app_token",
        ],
        &[],
    );
    let hub = served.hub_url();
    // Whatever the Host, the audience is the pinned identifier.
    let for_pinned = modern_all_rights_token(KEY, ISSUER, pinned);
    let for_host = modern_all_rights_token(KEY, ISSUER, &hub);
    assert_eq!(publish(&hub, &for_pinned).await.0, StatusCode::OK);
    assert_eq!(publish(&hub, &for_host).await.0, StatusCode::UNAUTHORIZED);

    // The metadata says so, and names the cookie.
    let origin = hub.trim_end_matches("/.well-known/mercure");
    let metadata = client()
        .get(format!(
            "{origin}/.well-known/oauth-protected-resource/.well-known/mercure"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let metadata: serde_json::Value = serde_json::from_str(&metadata).unwrap();
    assert_eq!(metadata["resource"], pinned, "{metadata}");
    assert_eq!(metadata["mercure_cookie"], "app_token", "{metadata}");

    // Browsers present the token in that cookie; the default name is not read.
    let url = format!("{hub}?match=t");
    let res = client()
        .get(&url)
        .header("Cookie", format!("app_token={for_pinned}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    drop(res);
    let res = client()
        .get(&url)
        .header(
            "Cookie",
            format!("__Secure-mercure_access_token={for_pinned}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn max_connection_lifetime_closes_a_stream_in_time() {
    let served = Served::start_modern(
        &[
            "--memory",
            "--heartbeat",
            "0",
            "--max-connection-lifetime",
            "2s",
        ],
        &[],
    );
    let hub = served.hub_url();
    let started = Instant::now();
    let mut sub = client().get(format!("{hub}?match=t")).send().await.unwrap();
    assert_eq!(sub.status(), StatusCode::OK);
    let ended = tokio::time::timeout(Duration::from_secs(8), async {
        while sub.chunk().await.unwrap().is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived its lifetime");
    let lived = started.elapsed();
    // Each stream draws its lifetime from the last tenth of the limit (1.8 s to 2 s); the
    // shared task that ends streams may add a little.
    assert!(
        lived >= Duration::from_millis(1700) && lived < Duration::from_millis(4500),
        "{lived:?}"
    );
}
