//! `ssehub serve` as a real process: flags, the generated-key curl line, publish/subscribe over
//! TCP, and a clean exit on SIGTERM.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{BIN, Served, after, hello_round_trip, retry_of, token_in_publish_line};

#[tokio::test]
async fn generated_key_curl_line_works_and_sigterm_exits_zero() {
    let served = Served::start_modern(&["--memory", "--drain-timeout", "1s"], &[]);
    let listening = served.wait_line("hub at http://");
    let hub_url = after(&listening, "hub at ").to_owned();
    // The development issuer's lines, in order: what the tokens are, then the commands.
    let issuer = served.wait_line("  issuer:    ");
    assert_eq!(after(&issuer, "issuer:"), "urn:ssehub:dev");
    let key = after(&served.wait_line("  key:       "), "key:").to_owned();
    let audience = served.wait_line("  audience:  ");
    assert_eq!(after(&audience, "audience:"), hub_url);
    let authority = hub_url
        .trim_start_matches("http://")
        .trim_end_matches("/.well-known/mercure");
    assert!(
        audience.contains(&format!("clients that reach the hub as {authority}")),
        "{audience}"
    );
    let validity = served.wait_line("  tokens:    ");
    assert!(validity.contains("valid for 24h (until "), "{validity}");
    let subscribe_line = served.wait_line("subscribe: curl -N -H 'Authorization: Bearer ");
    assert!(
        subscribe_line.ends_with(&format!(" '{hub_url}?match=demo'")),
        "{subscribe_line}"
    );
    let subscriber = token_in_publish_line(&subscribe_line);
    let publish_line = served.wait_line("publish:   curl");
    let token = token_in_publish_line(&publish_line);
    let more = served.wait_line("  new token: ssehub token ");
    assert!(
        more.contains(&format!(
            "--issuer urn:ssehub:dev --jwt-key {key} --audience {hub_url}"
        )),
        "{more}"
    );
    // Both are 1.0 access tokens of the development issuer for this hub, valid for a day.
    for (token, action) in [(&token, "publish"), (&subscriber, "subscribe")] {
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_audience(&[&hub_url]);
        validation.set_issuer(&["urn:ssehub:dev"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            token,
            &jsonwebtoken::DecodingKey::from_secret(key.as_bytes()),
            &validation,
        )
        .unwrap()
        .claims;
        let ttl = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
        assert_eq!(ttl, 24 * 3600);
        assert_eq!(
            claims["authorization_details"][0]["actions"],
            serde_json::json!([action])
        );
        assert_eq!(
            claims["authorization_details"][0]["topics"],
            serde_json::json!([{"match": "*"}])
        );
    }

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut sub = hello_round_trip(&client, &hub_url, &token).await;
    // The descriptor table was grown at startup to the open-file limit (at most 65,536), so
    // accepting never waits for the kernel to grow it (ssehub_server::presize_fd_table). A
    // fresh process has 64 or 256 slots; the server inherits this process's limit.
    let field = |text: &str, name: &str, nth: usize| -> u64 {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap();
        line[name.len()..]
            .split_whitespace()
            .nth(nth)
            .unwrap()
            .parse()
            .unwrap()
    };
    let soft = field(
        &std::fs::read_to_string("/proc/self/limits").unwrap(),
        "Max open files",
        0,
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", served.pid())).unwrap();
    let slots = field(&status, "FDSize:", 0);
    assert!(
        slots >= soft.min(65_536),
        "FDSize {slots}, open-file limit {soft}"
    );
    // The console is on by default; its counts need a subscriber token (the logged one has
    // `*`).
    let origin = hub_url.trim_end_matches("/.well-known/mercure");
    let page = client.get(format!("{origin}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let presence = format!("{origin}/console/presence");
    let res = client.get(&presence).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = client
        .get(&presence)
        .bearer_auth(&subscriber)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let counts: serde_json::Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(
        counts,
        serde_json::json!({ "subscribers": 1, "topics": [{ "selector": "demo", "subscribers": 1 }] })
    );

    let status = tokio::task::spawn_blocking(move || served.terminate())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    // Within the 1 s drain, the stream ended cleanly rather than being cut, after a last
    // `retry:` drawn in [3 s, 6 s) (the retry advice is 3 s).
    let last = sub.chunk().await.unwrap().unwrap();
    let retry = retry_of(std::str::from_utf8(&last).unwrap());
    assert!((3000..6000).contains(&retry), "{retry}");
    assert_eq!(sub.chunk().await.unwrap(), None);
}

#[tokio::test]
async fn with_legacy_protocol_the_generated_key_logs_a_0x_token_as_before() {
    let served = Served::start(&["--memory"], &[]);
    let hub_url = served.hub_url();
    let key = after(&served.wait_line("  key:       "), "key:").to_owned();
    let subscribe_line = served.wait_line("subscribe: curl");
    assert!(
        subscribe_line.ends_with(&format!("subscribe: curl -N '{hub_url}?topic=demo'")),
        "{subscribe_line}"
    );
    let token = token_in_publish_line(&served.wait_line("publish:   curl"));
    // A 0.x token: the `mercure` claim with every right, no type, issuer, audience or expiry.
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(key.as_bytes()),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(
        claims["mercure"],
        serde_json::json!({"publish": ["*"], "subscribe": ["*"]})
    );
    for claim in ["exp", "iss", "aud"] {
        assert!(claims.get(claim).is_none(), "{claims}");
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let _sub = hello_round_trip(&client, &hub_url, &token).await;
}

#[tokio::test]
async fn flags_also_come_from_the_environment() {
    let served = Served::start(
        &[],
        &[
            ("SSEHUB_JWT_KEY", "from-env-secret"),
            ("SSEHUB_NO_ANONYMOUS", "true"),
            ("SSEHUB_MEMORY", "true"),
            ("SSEHUB_NO_CONSOLE", "true"),
        ],
    );
    let listening = served.wait_line("hub at http://");
    let hub_url = after(&listening, "hub at ").to_owned();
    let client = reqwest::Client::new();
    // --no-anonymous from the environment: a subscriber without a token is refused.
    let res = client
        .get(format!("{hub_url}?topic=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // --no-console from the environment: no page, no counts.
    let origin = hub_url.trim_end_matches("/.well-known/mercure");
    for path in ["/", "/console/app.js", "/console/presence"] {
        let res = client.get(format!("{origin}{path}")).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
    }
    assert_eq!(
        tokio::task::spawn_blocking(move || served.terminate())
            .await
            .unwrap()
            .code(),
        Some(0)
    );
}

#[test]
fn help_lists_every_flag() {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--addr",
        "--jwt-key",
        "--publisher-jwt-key",
        "--subscriber-jwt-key",
        "--jwt-algorithm",
        "EdDSA",
        "--legacy-protocol",
        "SSEHUB_LEGACY_PROTOCOL",
        "weakens token validation",
        "mercureAuthorization",
        "--issuer",
        "SSEHUB_ISSUER",
        "--jwks-uri",
        "SSEHUB_JWKS_URI",
        "--resource-identifier",
        "SSEHUB_RESOURCE_IDENTIFIER",
        "--cookie-name",
        "SSEHUB_COOKIE_NAME",
        "[default: __Secure-mercure_access_token]",
        "--max-connection-lifetime",
        "SSEHUB_MAX_CONNECTION_LIFETIME",
        "--cors-origin",
        "--heartbeat",
        "--history-size",
        "--no-anonymous",
        "--no-console",
        "SSEHUB_NO_CONSOLE",
        "--max-body",
        "--data-dir",
        "--memory",
        "--retain-count",
        "--retain-age",
        "--retain-bytes",
        "--durability",
        "--drain-timeout",
        "SSEHUB_DRAIN_TIMEOUT",
        "[default: 30s]",
        "SSEHUB_DATA_DIR",
        "SSEHUB_DURABILITY",
        "[default: ./ssehub-data]",
        "[default: batched]",
        "SSEHUB_ADDR",
        "SSEHUB_MAX_BODY",
        "[default: 127.0.0.1:3000]",
        "[default: 15s]",
        "[default: 1048576]",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn bad_flags_exit_2_with_one_clear_line() {
    for args in [
        &["serve", "--heartbeat", "soon"][..],
        &["serve", "--addr", "nowhere"],
        &["serve", "--jwt-algorithm", "XX999"],
        &["serve", "--jwt-algorithm", "RS256"],
        &[
            "serve",
            "--jwt-algorithm",
            "RS256",
            "--jwt-key",
            "not a pem",
        ],
        &["serve", "--bogus"],
    ] {
        let out = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
