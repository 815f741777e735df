//! Tokens never appear in the hub's logs: the real `ssehub serve` binary, logging at `trace`,
//! is sent good and bad tokens in every place a token can travel (header, query parameter,
//! cookies) for publish and subscribe, and `/metrics` is scraped with right and wrong bearer
//! tokens; afterwards its whole stderr must not contain any token, any signature, the metrics
//! token, or the key. Once with `--legacy-protocol` and 0.x tokens, once as a Mercure 1.0 hub
//! with 1.0 tokens (and 0.x ones, which it refuses).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ssehub_auth::{Algorithm, KeyConfig, Matcher, TokenSpec, encode_token};

const BIN: &str = env!("CARGO_BIN_EXE_ssehub");
const KEY: &str = "log-test-secret-log-test-secret-0123456789";
const ISSUER: &str = "https://app.log-test.example";
const METRICS_TOKEN: &str = "metrics-log-test-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_keys_never_reach_the_logs_even_at_trace() {
    no_secret_in_the_logs(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_keys_never_reach_the_logs_of_a_1_0_hub_even_at_trace() {
    no_secret_in_the_logs(false).await;
}

async fn no_secret_in_the_logs(legacy: bool) {
    let mode: &[&str] = if legacy {
        &["--legacy-protocol"]
    } else {
        &["--issuer", ISSUER]
    };
    let mut child = Command::new(BIN)
        .args(["serve", "--memory", "--addr", "127.0.0.1:0"])
        .args(mode)
        .args(["--jwt-key", KEY, "--metrics-token", METRICS_TOKEN])
        .env("RUST_LOG", "trace")
        .env_remove("SSEHUB_JWT_KEY")
        .env_remove("SSEHUB_ISSUER")
        .env_remove("SSEHUB_LEGACY_PROTOCOL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let hub = loop {
        let found = lines.lock().unwrap().iter().find_map(|l| {
            let at = l.find("hub at ")? + "hub at ".len();
            l[at..].split_whitespace().next().map(str::to_owned)
        });
        if let Some(url) = found {
            break url;
        }
        assert!(Instant::now() < deadline, "the hub did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let key = KeyConfig::new(Algorithm::HS256, KEY);
    let other_key = KeyConfig::new(Algorithm::HS256, "another-secret-another-secret");
    let legacy_good = encode_token(&key, Some(&["*"]), Some(&["*"]), None).unwrap();
    let modern = |key: &KeyConfig| {
        TokenSpec::new(ISSUER, &hub)
            .publish([Matcher::any()])
            .subscribe([Matcher::any()], None)
            .sign(key)
            .unwrap()
    };
    let good = if legacy {
        legacy_good.clone()
    } else {
        modern(&key)
    };
    let expired = {
        let now = jsonwebtoken::get_current_timestamp();
        let mut header = jsonwebtoken::Header::default();
        let claims = if legacy {
            serde_json::json!({
                "exp": now - 3600,
                "mercure": {"publish": ["*"], "subscribe": ["*"]},
            })
        } else {
            header.typ = Some("at+jwt".into());
            serde_json::json!({
                "iss": ISSUER,
                "aud": hub,
                "iat": now - 7200,
                "exp": now - 3600,
                "authorization_details": [{
                    "type": "https://mercure.rocks/authorization-detail",
                    "actions": ["publish", "subscribe"],
                    "topics": [{"match": "*"}],
                }],
            })
        };
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
        )
        .unwrap()
    };
    let wrong_key = if legacy {
        encode_token(&other_key, Some(&["*"]), Some(&["*"]), None).unwrap()
    } else {
        modern(&other_key)
    };
    let garbage = "garbageTokenText0123456789.notBase64Either.xyzzyPlugh".to_owned();
    // A 1.0 hub refuses a 0.x token: that refusal must not leak it either.
    let tokens = [&good, &expired, &wrong_key, &garbage, &legacy_good];

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // The subscribe parameter of each protocol (a legacy hub takes both).
    let matcher = if legacy { "topic" } else { "match" };
    for token in tokens {
        let form = [("topic", "demo"), ("data", "hello")];
        let requests = [
            client.post(&hub).bearer_auth(token).form(&form),
            client
                .post(&hub)
                .query(&[("authorization", token)])
                .form(&form),
            client
                .post(&hub)
                .header("Cookie", format!("mercureAuthorization={token}"))
                .header("Origin", "https://app.example")
                .form(&form),
            client
                .post(&hub)
                .header("Cookie", format!("__Secure-mercure_access_token={token}"))
                .header("Origin", "https://app.example")
                .form(&form),
            // A token in a bad place: the Authorization header without the Bearer scheme.
            client
                .post(&hub)
                .header("Authorization", format!("Token {token}"))
                .form(&form),
            client
                .get(&hub)
                .query(&[(matcher, "demo")])
                .bearer_auth(token),
            client
                .get(&hub)
                .query(&[(matcher, "demo"), ("authorization", token)]),
            client
                .get(&hub)
                .query(&[(matcher, "demo")])
                .header("Cookie", format!("mercureAuthorization={token}")),
            client
                .get(&hub)
                .query(&[(matcher, "demo")])
                .header("Cookie", format!("__Secure-mercure_access_token={token}")),
        ];
        for request in requests {
            let res = request.send().await.unwrap();
            // Streams stay open: drop them once the head is in.
            drop(res);
        }
    }

    let metrics = hub.replace("/.well-known/mercure", "/metrics");
    for (bearer, status) in [
        (METRICS_TOKEN, 200),
        (good.as_str(), 401),
        (garbage.as_str(), 401),
    ] {
        let res = client
            .get(&metrics)
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status);
    }

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "ssehub did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reader.join().unwrap();

    let log = lines.lock().unwrap().join("\n");
    // The log was really at debug level and saw the refusals, so absence below means something.
    assert!(
        log.contains("request refused"),
        "no debug log captured:\n{log}"
    );
    assert!(
        log.contains("expired"),
        "no refusal reason in the log:\n{log}"
    );
    for token in tokens {
        assert!(
            !log.contains(token.as_str()),
            "a token is in the log:\n{log}"
        );
        for part in token.split('.').filter(|p| p.len() >= 16) {
            assert!(!log.contains(part), "a token part {part:?} is in the log");
        }
    }
    assert!(!log.contains(KEY), "the key is in the log");
    assert!(
        !log.contains(METRICS_TOKEN),
        "the metrics token is in the log"
    );
    // The one-line-per-event logs were there to leak: refused publishes and closed streams.
    assert!(log.contains("publish refused"), "no refusal line:\n{log}");
    assert!(log.contains("subscriber closed"), "no close line:\n{log}");
}
