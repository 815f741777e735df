//! The JWK Set source against real local HTTP servers: fetching usable keys, rotation, the
//! unknown-`kid` rate limit, shared fetches, `Cache-Control` lifetimes, failures (unreachable,
//! HTTP errors, oversized or invalid bodies, hanging servers, insecure redirects) and key
//! filtering. Every test is bounded in time.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use ssehub_auth::jwks::{
    ACCEPT_VALUE, EcCurve, JwksError, JwksKey, JwksOptions, JwksSource, KeyFamily, MAX_BODY_BYTES,
    MAX_KEYS,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::{Instant, sleep, timeout};

// Test keys, made once on this machine with `openssl genpkey -algorithm ed25519` and
// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`. Test use only.
const ED25519_A: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIL8wStVwHLJnSdw5vFDtJU5Qklk3xJ0l09Srq0BoHZQg
-----END PRIVATE KEY-----
";
const ED25519_B: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIMuGX0HNmCGVkukb2Fdb48wmT6JfZsjCrY+NWrwp/COz
-----END PRIVATE KEY-----
";
const P256: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPzj70aLjVwKDbcUC
8kyj0jPcjuXNnxXGS45ne9W7O0qhRANCAAQ1XBXHM//PH/m5QGvapwk/Webo2JQP
oguj+csl2AO4Ir+LRW7WJdZEgySaKPwzTUve5s6nfzOGP+7QX8ru7YIf
-----END PRIVATE KEY-----
";

/// No test may run longer than this.
const TEST_LIMIT: Duration = Duration::from_secs(20);

async fn bounded<F: Future>(test: F) -> F::Output {
    timeout(TEST_LIMIT, test).await.expect("test timed out")
}

/// Polls `condition` every 10 ms until it holds; panics after `limit`.
async fn eventually(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(10)).await;
    }
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// Short intervals so the tests run fast.
fn fast_options(min_refresh_interval: Duration) -> JwksOptions {
    let mut options = JwksOptions::default();
    options.timeout = Duration::from_secs(3);
    options.connect_timeout = Duration::from_secs(3);
    options.min_refresh_interval = min_refresh_interval;
    options.initial_backoff = ms(50);
    options.max_backoff = ms(400);
    options
}

fn encoding_key(pem: &str, alg: Algorithm) -> EncodingKey {
    match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        other => panic!("no test key for {other:?}"),
    }
}

/// The public JWK of a test key, as an issuer would publish it.
fn public_jwk(pem: &str, alg: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(&encoding_key(pem, alg), alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    serde_json::to_value(jwk).unwrap()
}

fn jwk_set(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

fn sign(pem: &str, alg: Algorithm, kid: &str) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    let claims = json!({ "sub": "alice", "exp": jsonwebtoken::get_current_timestamp() + 60 });
    jsonwebtoken::encode(&header, &claims, &encoding_key(pem, alg)).unwrap()
}

/// Verifies a token the way the hub would: the key is chosen among the cached ones by `kid` and
/// must accept the token's `alg`.
fn verify(keys: &[JwksKey], token: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let key = keys
        .iter()
        .find(|k| k.kid == header.kid && k.accepts(header.alg))
        .ok_or("no cached key for this kid and alg")?;
    jsonwebtoken::decode::<Value>(token, &key.key, &Validation::new(header.alg))
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

fn kids(source: &JwksSource) -> Vec<String> {
    source.keys().iter().filter_map(|k| k.kid.clone()).collect()
}

/// What the test server answers on `/jwks`; changeable at runtime.
#[derive(Clone)]
struct Reply {
    status: StatusCode,
    body: String,
    cache_control: Option<String>,
    delay: Duration,
}

#[derive(Clone)]
struct ServerState {
    addr: SocketAddr,
    reply: Arc<Mutex<Reply>>,
    hits: Arc<AtomicUsize>,
    accept: Arc<Mutex<Option<String>>>,
}

/// A local JWKS endpoint that counts its requests.
struct Server {
    state: ServerState,
}

impl Server {
    async fn start() -> Server {
        Server::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    fn start_on(listener: TcpListener) -> Server {
        let state = ServerState {
            addr: listener.local_addr().unwrap(),
            reply: Arc::new(Mutex::new(Reply {
                status: StatusCode::OK,
                body: jwk_set(&[]),
                cache_control: None,
                delay: Duration::ZERO,
            })),
            hits: Arc::default(),
            accept: Arc::default(),
        };
        let app = Router::new()
            .route("/jwks", get(serve_jwks))
            .route("/redirect", get(redirect_to_http))
            .with_state(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server { state }
    }

    fn url(&self) -> String {
        format!("http://{}/jwks", self.state.addr)
    }

    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    fn update(&self, change: impl FnOnce(&mut Reply)) {
        change(&mut self.state.reply.lock().unwrap());
    }

    fn serve_keys(&self, keys: &[Value]) {
        self.update(|reply| {
            reply.status = StatusCode::OK;
            reply.body = jwk_set(keys);
        });
    }
}

async fn serve_jwks(State(state): State<ServerState>, headers: HeaderMap) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    *state.accept.lock().unwrap() = headers
        .get(ACCEPT)
        .map(|value| value.to_str().unwrap().to_owned());
    let reply = state.reply.lock().unwrap().clone();
    if !reply.delay.is_zero() {
        sleep(reply.delay).await;
    }
    let mut response = Response::builder()
        .status(reply.status)
        .header(CONTENT_TYPE, "application/jwk-set+json");
    if let Some(cache_control) = reply.cache_control {
        response = response.header(CACHE_CONTROL, cache_control);
    }
    response.body(Body::from(reply.body)).unwrap()
}

async fn redirect_to_http(State(state): State<ServerState>) -> Response {
    Response::builder()
        .status(StatusCode::FOUND)
        .header(LOCATION, format!("http://{}/jwks", state.addr))
        .body(Body::empty())
        .unwrap()
}

/// What the raw server does with its n-th connection.
#[derive(Clone)]
enum Raw {
    /// 200 with no `Content-Length`, the body written in small pieces, then the connection
    /// closed (the client cannot know the size up front).
    Unsized(String),
    /// Reads the request and never answers.
    Hang,
}

/// A bare TCP server for what axum would not do; connection n gets `script[n]` (the last entry
/// repeats). Returns its address and connection counter.
async fn raw_server(script: Vec<Raw>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let action = script[n.min(script.len() - 1)].clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16_384 {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                match action {
                    Raw::Unsized(body) => {
                        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                                    Connection: close\r\n\r\n";
                        if stream.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        for piece in body.as_bytes().chunks(8 * 1024) {
                            if stream.write_all(piece).await.is_err() {
                                return; // the client gave up, as it should past the cap
                            }
                        }
                        let _ = stream.shutdown().await;
                    }
                    Raw::Hang => {
                        sleep(TEST_LIMIT).await;
                        drop(stream);
                    }
                }
            });
        }
    });
    (addr, hits)
}

/// A JSON body larger than the cap that is otherwise a valid (empty) JWK Set.
fn oversized_set() -> String {
    let padding = "x".repeat(MAX_BODY_BYTES + 1);
    json!({ "keys": [], "padding": padding }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_keys_verify_tokens() {
    bounded(async {
        let server = Server::start().await;
        server.serve_keys(&[
            public_jwk(ED25519_A, Algorithm::EdDSA, "ed"),
            public_jwk(P256, Algorithm::ES256, "p256"),
        ]);
        let source = JwksSource::with_options(&server.url(), fast_options(ms(200))).unwrap();
        assert!(source.keys().is_empty(), "no keys before the first fetch");

        assert_eq!(source.refresh(false).await, Ok(true));
        assert_eq!(server.hits(), 1);
        assert_eq!(
            server.state.accept.lock().unwrap().as_deref(),
            Some(ACCEPT_VALUE)
        );
        let keys = source.keys();
        assert_eq!(kids(&source), ["ed", "p256"]);
        assert_eq!(keys[0].family, KeyFamily::Ed25519);
        assert_eq!(keys[0].alg, Some(Algorithm::EdDSA));
        assert_eq!(keys[1].family, KeyFamily::Ec(EcCurve::P256));
        assert_eq!(keys[1].alg, Some(Algorithm::ES256));

        let ed_token = sign(ED25519_A, Algorithm::EdDSA, "ed");
        let ec_token = sign(P256, Algorithm::ES256, "p256");
        assert_eq!(verify(&keys, &ed_token).unwrap()["sub"], "alice");
        assert_eq!(verify(&keys, &ec_token).unwrap()["sub"], "alice");

        // The kid picks the key; a key never verifies another family's algorithm, and another
        // key's signature does not verify.
        assert!(!keys[0].accepts(Algorithm::ES256));
        assert!(!keys[1].accepts(Algorithm::EdDSA));
        assert!(!keys[0].accepts(Algorithm::HS256));
        let wrong_kid = sign(ED25519_B, Algorithm::EdDSA, "ed");
        assert!(verify(&keys, &wrong_kid).is_err());

        // Fresh (default 5 minute lifetime): a non-forced refresh does nothing.
        sleep(ms(250)).await;
        assert_eq!(source.refresh(false).await, Ok(false));
        assert_eq!(server.hits(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_replaces_the_key_set() {
    bounded(async {
        let server = Server::start().await;
        server.serve_keys(&[public_jwk(ED25519_A, Algorithm::EdDSA, "2024")]);
        let source = JwksSource::with_options(&server.url(), fast_options(ms(500))).unwrap();
        assert_eq!(source.refresh(true).await, Ok(true));
        let old_token = sign(ED25519_A, Algorithm::EdDSA, "2024");
        assert!(verify(&source.keys(), &old_token).is_ok());

        server.serve_keys(&[public_jwk(ED25519_B, Algorithm::EdDSA, "2025")]);
        // Within the minimum interval even a forced refresh does not fetch.
        assert_eq!(source.refresh(true).await, Ok(false));
        assert_eq!(kids(&source), ["2024"]);

        sleep(ms(550)).await;
        assert_eq!(source.refresh(true).await, Ok(true));
        assert_eq!(server.hits(), 2);
        assert_eq!(kids(&source), ["2025"]);
        let new_token = sign(ED25519_B, Algorithm::EdDSA, "2025");
        assert!(verify(&source.keys(), &new_token).is_ok());
        assert!(
            verify(&source.keys(), &old_token).is_err(),
            "the old key is gone"
        );

        // Same set again: fetched, but nothing changed.
        sleep(ms(550)).await;
        assert_eq!(source.refresh(true).await, Ok(false));
        assert_eq!(server.hits(), 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_refreshes_are_rate_limited() {
    bounded(async {
        let interval = ms(500);
        let server = Server::start().await;
        server.serve_keys(&[public_jwk(ED25519_A, Algorithm::EdDSA, "a")]);
        let source = JwksSource::with_options(&server.url(), fast_options(interval)).unwrap();
        assert_eq!(source.refresh(false).await, Ok(true));
        assert_eq!(server.hits(), 1);

        // The issuer rotates; tokens with the new (and random) kids arrive.
        server.serve_keys(&[public_jwk(ED25519_B, Algorithm::EdDSA, "b")]);
        sleep(interval + ms(50)).await;
        let burst = |n: usize| {
            let calls: Vec<_> = (0..n)
                .map(|_| {
                    let source = source.clone();
                    tokio::spawn(async move { source.refresh_for_unknown_kid().await })
                })
                .collect();
            async move {
                let mut results = Vec::new();
                for call in calls {
                    results.push(call.await.unwrap());
                }
                results
            }
        };
        let started = Instant::now();
        let first = burst(50).await;
        assert_eq!(
            server.hits(),
            2,
            "50 concurrent unknown-kid refreshes: one fetch"
        );
        assert!(first.contains(&true), "the fetch changed the set");
        assert_eq!(kids(&source), ["b"]);

        let second = burst(50).await;
        if started.elapsed() < interval {
            assert_eq!(server.hits(), 2, "50 more within the interval: no fetch");
            assert!(second.iter().all(|changed| !changed));
        } else {
            // Only on a very slow machine: the interval ran out during the bursts.
            assert!(server.hits() <= 3, "at most one fetch per interval");
        }

        sleep(interval + ms(50)).await;
        let hits = server.hits();
        assert!(!source.refresh_for_unknown_kid().await, "set unchanged");
        assert_eq!(
            server.hits(),
            hits + 1,
            "after the interval, one more fetch"
        );
        assert!(!source.refresh_for_unknown_kid().await);
        assert_eq!(server.hits(), hits + 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_share_one_fetch() {
    bounded(async {
        let server = Server::start().await;
        server.serve_keys(&[public_jwk(ED25519_A, Algorithm::EdDSA, "a")]);
        server.update(|reply| reply.delay = ms(300));
        let source = JwksSource::with_options(&server.url(), fast_options(ms(200))).unwrap();
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let source = source.clone();
                tokio::spawn(async move { source.refresh(true).await })
            })
            .collect();
        for call in calls {
            // Every caller waited for the one fetch and got its result.
            assert_eq!(call.await.unwrap(), Ok(true));
        }
        assert_eq!(server.hits(), 1);
        assert_eq!(kids(&source), ["a"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresher_honours_cache_control_max_age() {
    bounded(async {
        let server = Server::start().await;
        server.serve_keys(&[public_jwk(ED25519_A, Algorithm::EdDSA, "a")]);
        server.update(|reply| reply.cache_control = Some("public, max-age=1".into()));
        let source = JwksSource::with_options(&server.url(), fast_options(ms(200))).unwrap();
        let refresher = source.spawn_refresher();

        eventually("the first fetch", ms(3000), || source.keys().len() == 1).await;
        let first = Instant::now();
        assert_eq!(server.hits(), 1);
        // The next answer says max-age=60.
        server.update(|reply| reply.cache_control = Some("max-age=60".into()));
        sleep(ms(600)).await;
        assert_eq!(server.hits(), 1, "no fetch before max-age runs out");
        eventually("the fetch after max-age", ms(3000), || server.hits() >= 2).await;
        let gap = first.elapsed();
        assert!(gap >= ms(900), "second fetch after {gap:?}");

        // The longer max-age is honoured too: no third fetch a while later.
        sleep(ms(1500)).await;
        assert_eq!(server.hits(), 2);
        refresher.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_at_start_then_picked_up() {
    bounded(async {
        // A port nothing listens on (yet).
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let uri = format!("http://127.0.0.1:{port}/jwks");
        let source = JwksSource::with_options(&uri, fast_options(ms(100))).unwrap();
        let error = source.refresh(false).await.unwrap_err();
        assert!(matches!(error, JwksError::Request(_)), "{error:?}");
        let message = error.to_string();
        assert!(!message.contains('\n'), "one line: {message}");
        assert!(source.keys().is_empty());

        let refresher = source.spawn_refresher();
        sleep(ms(400)).await;
        assert!(!refresher.is_finished(), "the refresher keeps retrying");
        assert!(source.keys().is_empty());

        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let server = Server::start_on(listener);
        server.serve_keys(&[public_jwk(ED25519_A, Algorithm::EdDSA, "late")]);
        eventually("the keys once the issuer is up", ms(5000), || {
            !source.keys().is_empty()
        })
        .await;
        assert_eq!(kids(&source), ["late"]);

        // Dropping the last handle ends the refresher, even in the middle of a long sleep.
        drop(source);
        timeout(ms(2000), refresher)
            .await
            .expect("the refresher ends with its source")
            .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_then_success_picked_up_by_refresher() {
    bounded(async {
        let server = Server::start().await;
        server.update(|reply| {
            reply.status = StatusCode::INTERNAL_SERVER_ERROR;
            reply.body = "oops".into();
        });
        let source = JwksSource::with_options(&server.url(), fast_options(ms(100))).unwrap();
        assert_eq!(source.refresh(false).await, Err(JwksError::Status(500)));

        let refresher = source.spawn_refresher();
        eventually("a retry", ms(3000), || server.hits() >= 3).await;
        assert!(source.keys().is_empty());
        assert!(!refresher.is_finished());

        server.serve_keys(&[public_jwk(P256, Algorithm::ES256, "ok")]);
        eventually("the keys after recovery", ms(5000), || {
            !source.keys().is_empty()
        })
        .await;
        assert_eq!(kids(&source), ["ok"]);
        // Backoff is bounded: retries were at most every 50..400 ms, not a hot loop.
        assert!(server.hits() < 60, "{} requests", server.hits());
        refresher.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_refreshes_keep_the_old_keys() {
    bounded(async {
        let server = Server::start().await;
        server.serve_keys(&[public_jwk(ED25519_A, Algorithm::EdDSA, "kept")]);
        let source = JwksSource::with_options(&server.url(), fast_options(ms(100))).unwrap();
        assert_eq!(source.refresh(true).await, Ok(true));

        // Body over the cap, announced by Content-Length.
        server.update(|reply| reply.body = oversized_set());
        sleep(ms(150)).await;
        assert_eq!(
            source.refresh(true).await,
            Err(JwksError::TooLarge(MAX_BODY_BYTES))
        );
        assert_eq!(kids(&source), ["kept"]);

        // Not a JWK Set.
        for body in ["not json", "{}", r#"{"keys": {}}"#, "[]"] {
            server.update(|reply| reply.body = body.into());
            sleep(ms(150)).await;
            let error = source.refresh(true).await.unwrap_err();
            assert!(matches!(error, JwksError::Parse(_)), "{body}: {error:?}");
            assert_eq!(kids(&source), ["kept"]);
        }

        // HTTP error.
        server.update(|reply| reply.status = StatusCode::NOT_FOUND);
        sleep(ms(150)).await;
        assert_eq!(source.refresh(true).await, Err(JwksError::Status(404)));
        assert_eq!(kids(&source), ["kept"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_without_length_is_refused() {
    bounded(async {
        let good = jwk_set(&[public_jwk(ED25519_A, Algorithm::EdDSA, "kept")]);
        let (addr, hits) =
            raw_server(vec![Raw::Unsized(good), Raw::Unsized(oversized_set())]).await;
        let uri = format!("http://{addr}/jwks");
        let source = JwksSource::with_options(&uri, fast_options(ms(100))).unwrap();
        assert_eq!(
            source.refresh(true).await,
            Ok(true),
            "an unsized body is fine"
        );
        assert_eq!(kids(&source), ["kept"]);

        sleep(ms(150)).await;
        assert_eq!(
            source.refresh(true).await,
            Err(JwksError::TooLarge(MAX_BODY_BYTES))
        );
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert_eq!(kids(&source), ["kept"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_server_times_out() {
    bounded(async {
        let (addr, _) = raw_server(vec![Raw::Hang]).await;
        let mut options = fast_options(ms(100));
        options.timeout = ms(300);
        let source = JwksSource::with_options(&format!("http://{addr}/jwks"), options).unwrap();
        let started = Instant::now();
        assert_eq!(
            source.refresh(false).await,
            Err(JwksError::Timeout(ms(300)))
        );
        assert!(started.elapsed() < ms(2000), "{:?}", started.elapsed());
        // The in-flight marker was cleared: a later refresh fetches again.
        sleep(ms(150)).await;
        assert!(matches!(
            source.refresh(false).await,
            Err(JwksError::Timeout(_))
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_plain_http_is_refused() {
    bounded(async {
        let server = Server::start().await;
        server.serve_keys(&[public_jwk(ED25519_A, Algorithm::EdDSA, "a")]);
        let uri = server.url().replace("/jwks", "/redirect");
        let source = JwksSource::with_options(&uri, fast_options(ms(100))).unwrap();
        let error = source.refresh(false).await.unwrap_err();
        assert!(
            matches!(&error, JwksError::Request(text) if text.contains("non-https")),
            "{error:?}"
        );
        assert_eq!(server.hits(), 0, "the redirect was not followed");
        assert!(source.keys().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_keys_are_skipped() {
    bounded(async {
        let ed = public_jwk(ED25519_A, Algorithm::EdDSA, "good-ed");
        let ec = public_jwk(P256, Algorithm::ES256, "good-ec");
        let with = |base: &Value, changes: Value| {
            let mut jwk = base.clone();
            for (name, value) in changes.as_object().unwrap() {
                if value.is_null() {
                    jwk.as_object_mut().unwrap().remove(name);
                } else {
                    jwk[name] = value.clone();
                }
            }
            jwk
        };
        let keys = [
            // Symmetric keys are refused: a public JWK Set must not carry secrets.
            json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldA", "alg": "HS256"}),
            json!({"kty": "oct", "kid": "hmac-no-alg", "k": "c2VjcmV0"}),
            with(&ed, json!({"kid": "enc", "use": "enc"})),
            with(&ed, json!({"kid": "ops", "key_ops": ["sign"]})),
            with(&ed, json!({"kid": "alg-mismatch", "alg": "ES256"})),
            with(&ec, json!({"kid": "hs-on-ec", "alg": "HS256"})),
            with(&ec, json!({"kid": "unknown-alg", "alg": "ES512"})),
            with(
                &ec,
                json!({"kid": "p384-with-p256-coordinates", "crv": "P-384"}),
            ),
            with(&ed, json!({"kid": "ed448", "crv": "Ed448"})),
            with(&ed, json!({"kid": "bad-base64", "x": "not*base64"})),
            json!({"kty": "RSA", "kid": "rsa-1024", "n": "A".repeat(171), "e": "AQAB"}),
            json!({"kty": "EC", "kid": "secp256k1", "crv": "secp256k1", "x": "AA", "y": "AA"}),
            json!({"kty": "PQC", "kid": "future"}),
            json!({"kid": 42, "kty": "OKP"}),
            json!("not an object"),
            // Usable: kept in order, `use` and `alg` optional.
            ed,
            with(
                &ec,
                json!({"use": null, "alg": null, "key_ops": ["verify"]}),
            ),
        ];
        let server = Server::start().await;
        server.serve_keys(&keys);
        let source = JwksSource::with_options(&server.url(), fast_options(ms(100))).unwrap();
        assert_eq!(source.refresh(false).await, Ok(true));
        assert_eq!(kids(&source), ["good-ed", "good-ec"]);
        let kept = source.keys();
        assert_eq!(kept[1].alg, None);
        assert!(kept[1].accepts(Algorithm::ES256));
        assert!(!kept[1].accepts(Algorithm::ES384));
        let token = sign(P256, Algorithm::ES256, "good-ec");
        assert!(verify(&kept, &token).is_ok());

        // A set with no usable key at all is still a successful fetch (the issuer's word).
        sleep(ms(150)).await;
        server.serve_keys(&keys[..3]);
        assert_eq!(source.refresh(true).await, Ok(true));
        assert!(source.keys().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_max_keys_are_kept() {
    bounded(async {
        let ed = public_jwk(ED25519_A, Algorithm::EdDSA, "x");
        let keys: Vec<Value> = (0..MAX_KEYS + 50)
            .map(|i| {
                let mut jwk = ed.clone();
                jwk["kid"] = json!(format!("k{i}"));
                jwk
            })
            .collect();
        let server = Server::start().await;
        server.serve_keys(&keys);
        let source = JwksSource::with_options(&server.url(), fast_options(ms(100))).unwrap();
        assert_eq!(source.refresh(false).await, Ok(true));
        let kept = kids(&source);
        assert_eq!(kept.len(), MAX_KEYS);
        assert_eq!(kept.first().map(String::as_str), Some("k0"));
        assert_eq!(kept.last().map(String::as_str), Some("k99"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uri_must_be_https_or_loopback() {
    bounded(async {
        let error = JwksSource::new("http://example.com/jwks").unwrap_err();
        assert!(matches!(error, JwksError::InsecureUri(_)), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("use https"), "{message}");
        assert!(!message.contains('\n'));
        for insecure in ["http://10.1.2.3/jwks", "http://localhost.example.com/jwks"] {
            assert!(matches!(
                JwksSource::new(insecure),
                Err(JwksError::InsecureUri(_))
            ));
        }
        for invalid in ["", "jwks.json", "ftp://example.com/jwks", "file:///jwks"] {
            assert!(
                matches!(JwksSource::new(invalid), Err(JwksError::InvalidUri(_))),
                "{invalid}"
            );
        }

        // https is accepted without any network I/O, and so is http to loopback.
        let source = JwksSource::new("https://issuer.example/.well-known/jwks.json").unwrap();
        assert_eq!(source.uri(), "https://issuer.example/.well-known/jwks.json");
        assert!(source.keys().is_empty());
        for loopback in [
            "http://127.0.0.1:8080/jwks",
            "http://127.1.2.3/jwks",
            "http://[::1]:8080/jwks",
            "http://localhost:8080/jwks",
        ] {
            assert!(JwksSource::new(loopback).is_ok(), "{loopback}");
        }
    })
    .await;
}

#[test]
fn inconsistent_options_are_refused() {
    let uri = "https://issuer.example/jwks";
    let mut zero_interval = JwksOptions::default();
    zero_interval.min_refresh_interval = Duration::ZERO;
    let mut short_max = JwksOptions::default();
    short_max.max_cache_age = Duration::from_secs(60);
    let mut zero_timeout = JwksOptions::default();
    zero_timeout.timeout = Duration::ZERO;
    for options in [zero_interval, short_max, zero_timeout] {
        assert!(matches!(
            JwksSource::with_options(uri, options),
            Err(JwksError::InvalidOptions(_))
        ));
    }
}
