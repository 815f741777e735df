//! Hostile clients against the real server over TCP: every kind of bad token is refused with
//! `401` and a one-line reason that does not echo it (publish and subscribe, from every token
//! source), and a broken token never falls through to another source; private updates never
//! reach a subscriber whose token does not allow them, live, through replay from `earliest` or
//! through `retained=latest`, on a RAM-only and on a durable hub; CORS never reflects an origin
//! that is not allowed, in preflights and actual requests; cookie-authenticated publishes need
//! an explicitly listed origin; the console's presence names only the selectors a subscriber
//! token matches, and nothing without one.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::{Events, client, get, publish, publisher, start_with, token};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use ssehub_auth::{Algorithm, Authorizer, KeyConfig};
use ssehub_codec::Frame;
use ssehub_hub::Hub;
use ssehub_server::{MercureConfig, MercureServer};
use ssehub_store::{DurableHub, Log, LogOptions};

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../auth/tests/fixtures");
    std::fs::read_to_string(path.join(name)).unwrap()
}

fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut n = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            n |= u32::from(b) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Signs `claims` with HS256 and `secret` (the test hub's secret unless told otherwise).
fn hs256(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn good_claims() -> Value {
    json!({"mercure": {"publish": ["*"], "subscribe": ["*"]}})
}

/// A token with a hand-written header and signature part.
fn raw(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// Every way an HS256 token for the test hub can be bad, with a fragment of the reason.
fn bad_tokens() -> Vec<(&'static str, String, &'static str)> {
    let secret = common::SECRET.as_bytes();
    let mut claims = good_claims();
    claims["exp"] = json!(now() - 3600);
    let expired = hs256(secret, &claims);
    let mut claims = good_claims();
    claims["nbf"] = json!(now() + 3600);
    let not_yet = hs256(secret, &claims);
    let good = hs256(secret, &good_claims());
    let good_sig = good.rsplit('.').next().unwrap().to_owned();
    vec![
        ("expired", expired, "expired"),
        ("not yet valid", not_yet, "not valid yet"),
        (
            "alg none, no signature",
            raw(&json!({"alg": "none", "typ": "JWT"}), &good_claims(), ""),
            "configured algorithm",
        ),
        (
            "alg none, a real HS256 signature kept",
            raw(
                &json!({"alg": "none", "typ": "JWT"}),
                &good_claims(),
                &good_sig,
            ),
            "configured algorithm",
        ),
        (
            "alg None (case)",
            raw(&json!({"alg": "None"}), &good_claims(), ""),
            "configured algorithm",
        ),
        (
            "HS512 instead of HS256",
            jsonwebtoken::encode(
                &Header::new(jsonwebtoken::Algorithm::HS512),
                &good_claims(),
                &EncodingKey::from_secret(secret),
            )
            .unwrap(),
            "configured algorithm",
        ),
        (
            "wrong key",
            hs256(b"some-other-secret-some-other-secret", &good_claims()),
            "signature is invalid",
        ),
        (
            "payload swapped under a valid signature",
            {
                let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
                parts[1] = b64url(br#"{"mercure":{"publish":["*"],"subscribe":["*"],"x":1}}"#);
                parts.join(".")
            },
            "signature is invalid",
        ),
        ("one part", "abcdef".into(), "malformed"),
        ("two parts", "abcdef.ghijkl".into(), "malformed"),
        ("four parts", format!("{good}.abcd"), "malformed"),
        ("bad base64", "aaaaa.bbbbb.ccccc".into(), "malformed"),
        (
            "bad JSON header",
            format!("{}.{}.{good_sig}", b64url(b"{not json"), b64url(b"{}")),
            "malformed",
        ),
        (
            "bad JSON claims",
            {
                let header = good.split('.').next().unwrap();
                let message = format!("{header}.{}", b64url(b"{\"mercure\":"));
                let sig = jsonwebtoken::crypto::sign(
                    message.as_bytes(),
                    &EncodingKey::from_secret(secret),
                    jsonwebtoken::Algorithm::HS256,
                )
                .unwrap();
                format!("{message}.{sig}")
            },
            "malformed",
        ),
        (
            "claims not an object",
            hs256(secret, &json!(["mercure"])),
            "malformed",
        ),
        (
            "exp not a number",
            hs256(
                secret,
                &json!({"exp": "tomorrow", "mercure": {"publish": ["*"]}}),
            ),
            "malformed",
        ),
        (
            "nbf not a number",
            hs256(secret, &json!({"nbf": true, "mercure": {"publish": ["*"]}})),
            "malformed",
        ),
        (
            "mercure claim not an object",
            hs256(secret, &json!({"mercure": "*"})),
            "malformed",
        ),
        (
            "publish not an array",
            hs256(
                secret,
                &json!({"mercure": {"publish": "*", "subscribe": ["*"]}}),
            ),
            "malformed",
        ),
        (
            "subscribe not an array",
            hs256(
                secret,
                &json!({"mercure": {"publish": ["*"], "subscribe": "*"}}),
            ),
            "malformed",
        ),
        (
            "crit header",
            {
                let header = json!({"alg": "HS256", "crit": ["exp"]});
                let message = format!(
                    "{}.{}",
                    b64url(header.to_string().as_bytes()),
                    b64url(good_claims().to_string().as_bytes())
                );
                let sig = jsonwebtoken::crypto::sign(
                    message.as_bytes(),
                    &EncodingKey::from_secret(secret),
                    jsonwebtoken::Algorithm::HS256,
                )
                .unwrap();
                format!("{message}.{sig}")
            },
            "",
        ),
    ]
}

/// Checks a refusal: `401`, `WWW-Authenticate: Bearer`, one line of `text/plain` that says why
/// and does not quote the token.
async fn assert_401(res: reqwest::Response, token: &str, reason: &str, what: &str) {
    assert_eq!(res.status(), 401, "{what}");
    assert_eq!(res.headers()["www-authenticate"], "Bearer", "{what}");
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{what}"
    );
    let body = res.text().await.unwrap();
    let line = body
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("{what}: {body:?}"));
    assert!(
        !line.is_empty() && !line.contains(['\n', '\r']),
        "{what}: {body:?}"
    );
    assert!(line.contains(reason), "{what}: {body:?} lacks {reason:?}");
    for part in token.split('.').filter(|p| p.len() > 8) {
        assert!(!line.contains(part), "{what}: {body:?} quotes the token");
    }
}

#[tokio::test]
async fn bad_tokens_get_401_with_a_one_line_reason_for_publish_and_subscribe() {
    let hub = start_with(Hub::builder().heartbeat(None).build(), |_| {}).await;
    let c = client();
    let cookie = |t: &str| format!("mercureAuthorization={t}");
    for (what, bad, reason) in bad_tokens() {
        let res = c
            .post(hub.hub_url())
            .bearer_auth(&bad)
            .form(&[("topic", "a"), ("data", "x")])
            .send()
            .await
            .unwrap();
        assert_401(res, &bad, reason, &format!("publish, header: {what}")).await;
        let res = c
            .post(hub.hub_url())
            .query(&[("authorization", &bad)])
            .form(&[("topic", "a"), ("data", "x")])
            .send()
            .await
            .unwrap();
        assert_401(res, &bad, reason, &format!("publish, query: {what}")).await;

        // Subscribing: anonymous subscribers are allowed on this hub, but a bad token is
        // refused, never silently downgraded to anonymous.
        let res = c
            .get(hub.hub_url())
            .query(&[("topic", "a")])
            .bearer_auth(&bad)
            .send()
            .await
            .unwrap();
        assert_401(res, &bad, reason, &format!("subscribe, header: {what}")).await;
        let res = c
            .get(hub.hub_url())
            .query(&[("topic", "a"), ("authorization", &bad)])
            .send()
            .await
            .unwrap();
        assert_401(res, &bad, reason, &format!("subscribe, query: {what}")).await;
        let res = c
            .get(hub.hub_url())
            .query(&[("topic", "a")])
            .header("Cookie", cookie(&bad))
            .send()
            .await
            .unwrap();
        assert_401(res, &bad, reason, &format!("subscribe, cookie: {what}")).await;
    }
    assert_eq!(hub.hub.stats().publishes, 0, "no bad token published");
    assert_eq!(hub.hub.subscriber_count(), 0, "no bad token subscribed");

    // The same hub takes good tokens, so the refusals above were about the tokens.
    assert_eq!(publish(&hub, &[("topic", "a")]).await.status(), 200);
}

/// An RS256 hub given its public key, and a token "signed" with HS256 using that public key's
/// PEM text as the secret: the classic algorithm confusion. The hub must refuse it, while a
/// real RS256 token works.
#[tokio::test]
async fn hs256_token_signed_with_the_rsa_public_key_is_refused_by_an_rs256_hub() {
    let public = fixture("rsa_public.pem");
    let rs = KeyConfig::new(Algorithm::RS256, public.clone());
    let authorizer = Authorizer::new(Some(rs.clone()), Some(rs)).unwrap();
    let hub = Server::start(
        Hub::builder().heartbeat(None).build(),
        MercureConfig::new(authorizer),
    )
    .await;
    let c = client();

    let private = KeyConfig::new(Algorithm::RS256, fixture("rsa_private.pem"));
    let real = ssehub_auth::encode_token(&private, Some(&["*"]), Some(&["*"]), None).unwrap();
    let res = c
        .post(hub.url())
        .bearer_auth(&real)
        .form(&[("topic", "a")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "a real RS256 token publishes");

    let trimmed = public.trim_end().to_owned();
    for secret in [public.as_bytes(), trimmed.as_bytes()] {
        let forged = hs256(secret, &good_claims());
        let res = c
            .post(hub.url())
            .bearer_auth(&forged)
            .form(&[("topic", "a")])
            .send()
            .await
            .unwrap();
        assert_401(
            res,
            &forged,
            "configured algorithm",
            "publish, HS/RS confusion",
        )
        .await;
        let res = c
            .get(hub.url())
            .query(&[("topic", "a")])
            .bearer_auth(&forged)
            .send()
            .await
            .unwrap();
        assert_401(
            res,
            &forged,
            "configured algorithm",
            "subscribe, HS/RS confusion",
        )
        .await;
    }
    // An RS256 token signed with another RSA key.
    let other = KeyConfig::new(Algorithm::RS256, fixture("rsa_other_private.pem"));
    let wrong = ssehub_auth::encode_token(&other, Some(&["*"]), None, None).unwrap();
    let res = c
        .post(hub.url())
        .bearer_auth(&wrong)
        .form(&[("topic", "a")])
        .send()
        .await
        .unwrap();
    assert_401(
        res,
        &wrong,
        "signature is invalid",
        "publish, other RSA key",
    )
    .await;
}

/// A server with a given authorizer (the common helper fixes HS256).
struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(hub: Hub, config: MercureConfig) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = MercureServer::new(hub, config);
        let router = server.router();
        let task = tokio::spawn(server.serve(listener, router, std::future::pending()));
        Server { addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}/.well-known/mercure", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const PRIVATE_TOPIC: &str = "https://ex.com/private/1";
const SENTINEL_TOPIC: &str = "https://ex.com/sentinel";

/// Reads events until the one with `data == sentinel`, and returns the data of those before.
async fn data_until(events: &mut Events, sentinel: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let e = events.event().await;
        if e.data == sentinel {
            return seen;
        }
        seen.push(e.data);
    }
}

/// Publishes a private update (and public ones around it), then connects subscribers with
/// every kind of token, replaying from `earliest` and asking for retained state, and checks
/// that only a matching token sees it; then does the same live.
async fn private_updates_stay_private(hub: Hub) {
    let hub = start_with(hub, |_| {}).await;
    let p = |topics: &[&str], data: &str, private: bool| {
        let mut form: Vec<(&str, String)> =
            topics.iter().map(|t| ("topic", t.to_string())).collect();
        form.push(("data", data.into()));
        if private {
            form.push(("private", "on".into()));
        }
        let hub = &hub;
        async move {
            let res = client()
                .post(hub.hub_url())
                .bearer_auth(publisher())
                .form(&form)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }
    };
    p(&["https://ex.com/public"], "public-1", false).await;
    p(&[PRIVATE_TOPIC, "https://ex.com/public"], "secret-1", true).await;
    p(&[PRIVATE_TOPIC], "secret-2", true).await;

    // (token, may see the private updates)
    let tokens: Vec<(&str, Option<String>, bool)> = vec![
        ("anonymous", None, false),
        ("publish rights only", Some(token(&["*"], &[])), false),
        (
            "no mercure claim",
            Some(hs256(common::SECRET.as_bytes(), &json!({"sub": "x"}))),
            false,
        ),
        ("empty subscribe", Some(token(&[], &[])), false),
        (
            "other topic",
            Some(token(&[], &["https://ex.com/private/2"])),
            false,
        ),
        (
            "template for other topics",
            Some(token(&[], &["https://ex.com/other/{id}"])),
            false,
        ),
        (
            "prefix, not a match",
            Some(token(&[], &["https://ex.com/private/"])),
            false,
        ),
        ("exact", Some(token(&[], &[PRIVATE_TOPIC])), true),
        (
            "template",
            Some(token(&[], &["https://ex.com/private/{id}"])),
            true,
        ),
        ("star", Some(token(&[], &["*"])), true),
    ];
    let queries: [&[(&str, &str)]; 4] = [
        &[("topic", "*"), ("lastEventID", "earliest")],
        &[
            ("topic", "https://ex.com/private/{id}"),
            ("topic", "https://ex.com/public"),
            ("topic", SENTINEL_TOPIC),
            ("lastEventID", "earliest"),
        ],
        &[("topic", "*"), ("retained", "latest")],
        &[
            ("topic", PRIVATE_TOPIC),
            ("topic", "https://ex.com/public"),
            ("topic", SENTINEL_TOPIC),
            ("retained", "latest"),
        ],
    ];
    let mut live = Vec::new();
    for (what, tok, allowed) in &tokens {
        for query in queries {
            let mut req = client().get(hub.hub_url()).query(query);
            if let Some(t) = tok {
                req = req.bearer_auth(t);
            }
            let mut events = Events::open(req).await;
            // On a topic of its own, so that the retained state of the others stays put.
            let sentinel = format!("end {what} {query:?}");
            p(&[SENTINEL_TOPIC], &sentinel, false).await;
            let seen = data_until(&mut events, &sentinel).await;
            let secrets: Vec<&String> = seen.iter().filter(|d| d.starts_with("secret")).collect();
            let retained = query.iter().any(|(k, _)| *k == "retained");
            if !allowed {
                assert!(secrets.is_empty(), "{what}, {query:?}: saw {seen:?}");
            } else if retained {
                // The latest update of each matching topic: secret-2 is the private topic's.
                assert!(
                    secrets.contains(&&"secret-2".to_owned()),
                    "{what}, {query:?}: {seen:?}"
                );
            } else {
                assert_eq!(
                    secrets,
                    ["secret-1", "secret-2"],
                    "{what}, {query:?}: {seen:?}"
                );
            }
        }
        // Keep one live subscriber per token for the live check below.
        let mut req = client().get(hub.hub_url()).query(&[("topic", "*")]);
        if let Some(t) = tok {
            req = req.bearer_auth(t);
        }
        live.push((*what, *allowed, Events::open(req).await));
    }

    p(&[PRIVATE_TOPIC], "secret-live", true).await;
    p(&["https://ex.com/public"], "live end", false).await;
    for (what, allowed, events) in &mut live {
        let seen = data_until(events, "live end").await;
        let saw_secret = seen.iter().any(|d| d == "secret-live");
        assert_eq!(saw_secret, *allowed, "{what}, live: saw {seen:?}");
    }
}

#[tokio::test]
async fn private_updates_never_reach_a_non_matching_token_in_memory() {
    private_updates_stay_private(Hub::builder().heartbeat(None).build()).await;
}

#[tokio::test]
async fn private_updates_never_reach_a_non_matching_token_durable() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    private_updates_stay_private(Hub::builder().heartbeat(None).durable(log).build()).await;
}

/// Origins that must never be reflected when only `https://app.example` is allowed.
const EVIL_ORIGINS: &[&str] = &[
    "https://evil.example",
    "https://app.example.evil.example",
    "https://evilapp.example",
    "http://app.example",
    "https://app.example:8443",
    "https://app.example/",
    "https://app.example.",
    "null",
    "*",
];

#[tokio::test]
async fn cors_never_reflects_an_origin_that_is_not_allowed() {
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.cors_origins = vec!["https://app.example".into()];
    })
    .await;
    let c = client();
    let sub_token = token(&[], &["*"]);
    let allow_origin = |res: &reqwest::Response| {
        res.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    for origin in EVIL_ORIGINS.iter().copied().chain(["https://app.example"]) {
        let allowed = origin == "https://app.example";
        let want = allowed.then(|| origin.to_owned());
        for method in ["GET", "POST"] {
            let preflight = c
                .request(reqwest::Method::OPTIONS, hub.hub_url())
                .header("Origin", origin)
                .header("Access-Control-Request-Method", method)
                .header(
                    "Access-Control-Request-Headers",
                    "authorization,last-event-id",
                )
                .send()
                .await
                .unwrap();
            assert_eq!(
                allow_origin(&preflight),
                want,
                "preflight {method} from {origin}"
            );
            // (tower-http sends `Access-Control-Allow-Credentials: true` on every preflight;
            // without a matching allow-origin a browser ignores it, so it is not checked.)
        }
        // Actual requests: a refused one, a publish, and a subscription whose head is read.
        let refused = c
            .post(hub.hub_url())
            .header("Origin", origin)
            .form(&[("topic", "a")])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401);
        assert_eq!(allow_origin(&refused), want, "401 from {origin}");
        let published = c
            .post(hub.hub_url())
            .header("Origin", origin)
            .bearer_auth(publisher())
            .form(&[("topic", "a")])
            .send()
            .await
            .unwrap();
        assert_eq!(published.status(), 200);
        assert_eq!(allow_origin(&published), want, "publish from {origin}");
        let events = Events::open(
            c.get(hub.hub_url())
                .query(&[("topic", "a")])
                .header("Origin", origin)
                .bearer_auth(&sub_token),
        )
        .await;
        assert_eq!(
            allow_origin(&events.response),
            want,
            "subscribe from {origin}"
        );
        if allowed {
            assert_eq!(
                events.response.headers()["access-control-allow-credentials"],
                "true"
            );
        }
    }

    // Without any configured origin there are no CORS headers at all.
    let plain = start_with(Hub::builder().heartbeat(None).build(), |_| {}).await;
    for origin in ["https://app.example", "https://evil.example"] {
        let res = c
            .request(reqwest::Method::OPTIONS, plain.hub_url())
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(allow_origin(&res), None, "{origin}");
        let res = c
            .get(plain.url("/healthz"))
            .header("Origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(allow_origin(&res), None, "{origin}");
    }
}

/// `--cors-origin '*'`: any origin may read, but never with credentials; and since a browser
/// sends cookies with a cross-site form post whatever CORS says, the wildcard does not allow
/// cookie-authenticated publishes (that needs a listed origin).
#[tokio::test]
async fn wildcard_cors_is_without_credentials_and_allows_no_cookie_publish() {
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.cors_origins = vec!["*".into()];
    })
    .await;
    let c = client();
    let preflight = c
        .request(reqwest::Method::OPTIONS, hub.hub_url())
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    assert!(
        preflight
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );

    let cookie = format!("mercureAuthorization={}", publisher());
    for origin in [Some("https://evil.example"), Some("null"), None] {
        let mut req = c
            .post(hub.hub_url())
            .header("Cookie", &cookie)
            .form(&[("topic", "a"), ("data", "csrf")]);
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 403, "cookie publish from {origin:?}");
    }
    // A header token is not sent by a browser on its own, so it works from anywhere.
    let res = c
        .post(hub.hub_url())
        .header("Origin", "https://evil.example")
        .bearer_auth(publisher())
        .form(&[("topic", "a")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(hub.hub.stats().publishes, 1);
}

/// Cookie-authenticated publishes with a listed origin: the origin is checked from `Origin`,
/// else `Referer`, and look-alike origins are refused.
#[tokio::test]
async fn cookie_publish_origin_check_refuses_look_alikes() {
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.cors_origins = vec!["https://app.example".into()];
    })
    .await;
    let c = client();
    let cookie = format!("mercureAuthorization={}", publisher());
    let post = |name: &'static str, value: &str| {
        c.post(hub.hub_url())
            .header("Cookie", &cookie)
            .header(name, value)
            .form(&[("topic", "a")])
    };
    for origin in EVIL_ORIGINS
        .iter()
        .filter(|o| **o != "https://app.example/")
    {
        let res = post("Origin", origin).send().await.unwrap();
        assert_eq!(res.status(), 403, "Origin {origin}");
    }
    for referer in [
        "https://app.example.evil.example/page",
        "https://evil.example/https://app.example/",
        "https://app.example@evil.example/",
        "http://app.example/page",
    ] {
        let res = post("Referer", referer).send().await.unwrap();
        assert_eq!(res.status(), 403, "Referer {referer}");
    }
    assert_eq!(
        post("Origin", "https://app.example")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        post("Referer", "https://app.example/page?x=1")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Without Origin or Referer there is no proof the request is not cross-site.
    let res = c
        .post(hub.hub_url())
        .header("Cookie", &cookie)
        .form(&[("topic", "a")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(hub.hub.stats().publishes, 2);
}

/// Key hints in the token header (`jwk`, `jku`, `kid`) change nothing: the hub only ever uses
/// its configured key. A subscription keeps what its token granted at connect time when the
/// token expires mid-stream (as documented in SECURITY.md), but a new connection with it is
/// refused.
#[tokio::test]
async fn embedded_key_headers_are_ignored_and_expired_tokens_cannot_reconnect() {
    let hub = start_with(Hub::builder().heartbeat(None).build(), |_| {}).await;
    let c = client();
    let attacker = b"attacker-secret-attacker-secret";
    let header = json!({"alg": "HS256", "kid": "../../dev/null", "jku": "https://evil.example/jwks", "jwk": {"kty": "oct", "k": b64url(attacker)}});
    let message = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(good_claims().to_string().as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(attacker),
        jsonwebtoken::Algorithm::HS256,
    )
    .unwrap();
    let forged = format!("{message}.{sig}");
    let res = c
        .post(hub.hub_url())
        .bearer_auth(&forged)
        .form(&[("topic", "a")])
        .send()
        .await
        .unwrap();
    assert_401(res, &forged, "signature is invalid", "embedded key").await;

    // A token valid for two more seconds (plus the verifier's leeway).
    let mut claims = json!({"mercure": {"subscribe": ["*"]}});
    claims["exp"] = json!(now() + 2);
    let short = hs256(common::SECRET.as_bytes(), &claims);
    let mut events = Events::open(
        c.get(hub.hub_url())
            .query(&[("topic", "a")])
            .bearer_auth(&short),
    )
    .await;
    assert_eq!(
        events.frame().await,
        Some(Frame::Retry(3000)),
        "the preamble"
    );
    tokio::time::sleep(Duration::from_secs(2 + ssehub_auth::LEEWAY_SECS + 2)).await;
    let res = c
        .get(hub.hub_url())
        .query(&[("topic", "a")])
        .bearer_auth(&short)
        .send()
        .await
        .unwrap();
    assert_401(res, &short, "expired", "reconnect with an expired token").await;
    // The stream opened while it was valid goes on: rights are checked at connect time.
    assert_eq!(
        publish(&hub, &[("topic", "a"), ("data", "after")])
            .await
            .status(),
        200
    );
    assert_eq!(events.event().await.data, "after");
}

/// Over the wire, a broken token never falls through to a lower-precedence one: a bad header
/// with a good query token or cookie is refused, a good header wins over a bad cookie, and two
/// different tokens in one mechanism are refused as ambiguous (subscribe and publish).
#[tokio::test]
async fn a_broken_token_never_falls_through_to_another_source() {
    let hub = start_with(Hub::builder().heartbeat(None).build(), |_| {}).await;
    let c = client();
    let good = token(&["*"], &["*"]);
    let bad = hs256(b"some-other-secret-some-other-secret", &good_claims());
    let cookie = |t: &str| format!("mercureAuthorization={t}");
    // (what, request headers, query parameters, expected status)
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, String)>,
        Vec<(&'a str, &'a str)>,
        u16,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "bad header, good query",
            vec![("Authorization", format!("Bearer {bad}"))],
            vec![("authorization", good.as_str())],
            401,
        ),
        (
            "bad header, good cookie",
            vec![
                ("Authorization", format!("Bearer {bad}")),
                ("Cookie", cookie(&good)),
            ],
            vec![],
            401,
        ),
        (
            "non-Bearer header, good cookie",
            vec![
                ("Authorization", format!("Basic {good}")),
                ("Cookie", cookie(&good)),
            ],
            vec![],
            401,
        ),
        (
            "bad query, good cookie",
            vec![("Cookie", cookie(&good))],
            vec![("authorization", bad.as_str())],
            401,
        ),
        (
            "two different cookies",
            vec![("Cookie", format!("{}; {}", cookie(&good), cookie(&bad)))],
            vec![],
            401,
        ),
        (
            "two different query tokens",
            vec![],
            vec![
                ("authorization", good.as_str()),
                ("authorization", bad.as_str()),
            ],
            401,
        ),
        (
            "good header, bad cookie",
            vec![
                ("Authorization", format!("Bearer {good}")),
                ("Cookie", cookie(&bad)),
            ],
            vec![],
            200,
        ),
    ];
    for (what, headers, query, status) in cases {
        let mut sub = c.get(hub.hub_url()).query(&[("topic", "a")]).query(&query);
        let mut publ = c
            .post(hub.hub_url())
            .query(&query)
            .header("Origin", "https://app.example")
            .form(&[("topic", "a")]);
        for (name, value) in &headers {
            sub = sub.header(*name, value);
            publ = publ.header(*name, value);
        }
        let res = sub.send().await.unwrap();
        assert_eq!(res.status(), status, "subscribe: {what}");
        drop(res);
        let res = publ.send().await.unwrap();
        assert_eq!(res.status(), status, "publish: {what}");
    }
}

#[tokio::test]
async fn console_presence_needs_a_subscriber_token_and_lists_only_the_selectors_it_matches() {
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| c.console = true).await;
    let inbox = "https://example.com/users/42/inbox";
    let books = "https://example.com/books/{id}";
    let _a = Events::open(
        client()
            .get(hub.url("/.well-known/mercure"))
            .query(&[("topic", inbox)]),
    )
    .await;
    let _b = Events::open(
        client()
            .get(hub.url("/.well-known/mercure"))
            .query(&[("topic", books)]),
    )
    .await;
    let presence = "/console/presence";

    // Without a token: 401 with a reason, and no selector in the body.
    let (status, _, body) = get(&hub, presence, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("subscriber token"), "{body}");
    assert!(!body.contains("inbox") && !body.contains("books"), "{body}");
    // A publisher-only token has no subscribe claim: it sees the total, and no selector.
    let (status, _, body) = get(&hub, presence, Some(&token(&["*"], &[]))).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v, json!({ "subscribers": 2, "topics": [] }));
    // A bad signature is refused like everywhere else.
    let forged = format!("{}x", token(&[], &["*"]));
    assert_eq!(get(&hub, presence, Some(&forged)).await.0, 401);

    // `*` sees every selector; a narrower token only the ones its selectors match.
    let all: Value =
        serde_json::from_str(&get(&hub, presence, Some(&token(&[], &["*"]))).await.2).unwrap();
    assert_eq!(all["subscribers"], 2);
    let mut rows: Vec<(String, u64)> = all["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["selector"].as_str().unwrap().to_owned(),
                t["subscribers"].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    assert_eq!(rows, [(books.to_owned(), 1), (inbox.to_owned(), 1)]);
    let mine: Value =
        serde_json::from_str(&get(&hub, presence, Some(&token(&[], &[books]))).await.2).unwrap();
    assert_eq!(
        mine,
        json!({ "subscribers": 2, "topics": [{ "selector": books, "subscribers": 1 }] })
    );
    // The token may also come as the query parameter the console's EventSource users know.
    let (status, _, body) = get(
        &hub,
        &format!("{presence}?authorization={}", token(&[], &[inbox])),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["topics"],
        json!([{ "selector": inbox, "subscribers": 1 }])
    );
}
