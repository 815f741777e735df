//! Mercure 1.0 authorization over real TCP: access-token validation (each rule), issuers bound
//! to their own keys, RFC 6750 answers, the RFC 9728 metadata document, the resource
//! identifier, grants and payloads, streams closed at `exp`, and the legacy switch.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Events, TestHub, client, start_with};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use ssehub_auth::{
    Algorithm, Authorizer, DETAIL_TYPE, Issuer, KeyConfig, Matcher, TokenSpec, encode_token,
};
use ssehub_codec::Frame;
use ssehub_hub::{Hub, PresenceKind};
use ssehub_server::MercureConfig;

const ISSUER: &str = "https://issuer.example";
const OTHER: &str = "https://other.example";
const SECRET: &str = "a-1.0-secret-a-1.0-secret-a-1.0-secret";
const OTHER_SECRET: &str = "another-secret-another-secret-another";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../auth/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn hs(secret: &str) -> KeyConfig {
    KeyConfig::new(Algorithm::HS256, secret)
}

/// A 1.0 hub trusting two issuers: `ISSUER` (HS256) and `OTHER` (HS256 with its own secret,
/// and ES256 / EdDSA public keys).
fn authorizer() -> Authorizer {
    Authorizer::builder()
        .issuer(Issuer::new(ISSUER).key(hs(SECRET)))
        .issuer(
            Issuer::new(OTHER)
                .key(hs(OTHER_SECRET))
                .key(KeyConfig::new(
                    Algorithm::ES256,
                    fixture("ec256_public.pem"),
                ))
                .key(KeyConfig::new(
                    Algorithm::EdDSA,
                    fixture("ed25519_public.pem"),
                )),
        )
        .build()
        .unwrap()
}

async fn start_modern(configure: impl FnOnce(&mut MercureConfig)) -> TestHub {
    start_modern_hub(Hub::builder().heartbeat(None).build(), configure).await
}

async fn start_modern_hub(hub: Hub, configure: impl FnOnce(&mut MercureConfig)) -> TestHub {
    start_with(hub, |c| {
        c.authorizer = authorizer();
        configure(c);
    })
    .await
}

/// The resource identifier a request to `hub` derives (reqwest sends `Host: 127.0.0.1:PORT`).
fn aud(hub: &TestHub) -> String {
    hub.hub_url()
}

fn metadata_url(hub: &TestHub) -> String {
    hub.url("/.well-known/oauth-protected-resource/.well-known/mercure")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A publish-and-subscribe-everything 1.0 token from `ISSUER`.
fn token(hub: &TestHub) -> String {
    TokenSpec::new(ISSUER, aud(hub))
        .publish([Matcher::any()])
        .subscribe([Matcher::any()], None)
        .sign(&hs(SECRET))
        .unwrap()
}

/// Claims of a valid all-rights 1.0 token for `hub`, to mutate.
fn claims(hub: &TestHub) -> Value {
    json!({
        "iss": ISSUER, "aud": aud(hub), "exp": now() + 600, "iat": now(),
        "sub": "urn:test", "client_id": ISSUER, "jti": "urn:test:1",
        "authorization_details": [
            {"type": DETAIL_TYPE, "actions": ["publish", "subscribe"], "topics": [{"match": "*"}]}
        ]
    })
}

/// Signs `claims` with a header of `alg` and `typ`.
fn sign(
    alg: jsonwebtoken::Algorithm,
    typ: Option<&str>,
    key: &EncodingKey,
    claims: &Value,
) -> String {
    let mut header = Header::new(alg);
    header.typ = typ.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn hs_token(secret: &str, typ: Option<&str>, claims: &Value) -> String {
    sign(
        jsonwebtoken::Algorithm::HS256,
        typ,
        &EncodingKey::from_secret(secret.as_bytes()),
        claims,
    )
}

fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | b as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

async fn publish_with(hub: &TestHub, token: &str, topics: &[&str]) -> reqwest::Response {
    let mut form: Vec<(&str, &str)> = topics.iter().map(|t| ("topic", *t)).collect();
    form.push(("data", "x"));
    client()
        .post(hub.hub_url())
        .bearer_auth(token)
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// Checks a refusal: status, the challenge, and the one-line body.
async fn assert_refused(
    res: reqwest::Response,
    status: u16,
    challenge: &str,
    body: &str,
    what: &str,
) {
    assert_eq!(res.status(), status, "{what}");
    let header = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header.as_deref(), Some(challenge), "{what}");
    let text = res.text().await.unwrap();
    assert!(text.starts_with(body), "{what}: {text:?}");
    assert_eq!(text.matches('\n').count(), 1, "{what}: {text:?}");
}

fn invalid_token(hub: &TestHub) -> String {
    format!(
        "Bearer error=\"invalid_token\", resource_metadata=\"{}\"",
        metadata_url(hub)
    )
}

#[tokio::test]
async fn a_1_0_token_publishes_and_a_subscribe_grant_reads_private_updates() {
    let hub = start_modern(|_| {}).await;
    let subscriber = TokenSpec::new(ISSUER, aud(&hub))
        .subscribe([Matcher::exact("urn:mine")], None)
        .sign(&hs(SECRET))
        .unwrap();
    let mut events = Events::open(
        client()
            .get(hub.hub_url())
            .query(&[("match", "urn:mine"), ("match", "urn:theirs")])
            .bearer_auth(&subscriber),
    )
    .await;
    let publisher = token(&hub);
    for (topic, private) in [("urn:theirs", "on"), ("urn:mine", "on")] {
        let res = client()
            .post(hub.hub_url())
            .bearer_auth(&publisher)
            .form(&[("topic", topic), ("data", topic), ("private", private)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    // The private update on a topic the grant does not cover never arrives; the next one does.
    assert_eq!(events.event().await.data, "urn:mine");
    // A subscribe-only token cannot publish.
    let res = publish_with(&hub, &subscriber, &["urn:mine"]).await;
    let forbidden = format!(
        "Bearer error=\"insufficient_scope\", resource_metadata=\"{}\"",
        metadata_url(&hub)
    );
    assert_refused(
        res,
        403,
        &forbidden,
        "the token may not publish",
        "subscribe-only",
    )
    .await;
}

#[tokio::test]
async fn every_validation_rule_refuses_with_invalid_token_and_one_message() {
    let hub = start_modern(|_| {}).await;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims(&hub);
        f(&mut c);
        c
    };
    let at = Some("at+jwt");
    let rsa_public_as_secret = fixture("rsa_public.pem");
    let cases: Vec<(&str, String)> = vec![
        ("typ JWT", hs_token(SECRET, Some("JWT"), &claims(&hub))),
        ("no typ", hs_token(SECRET, None, &claims(&hub))),
        (
            "no exp",
            hs_token(
                SECRET,
                at,
                &with(&|c| drop(c.as_object_mut().unwrap().remove("exp"))),
            ),
        ),
        (
            "expired",
            hs_token(SECRET, at, &with(&|c| c["exp"] = json!(now() - 60))),
        ),
        (
            "nbf in the future",
            hs_token(SECRET, at, &with(&|c| c["nbf"] = json!(now() + 600))),
        ),
        (
            "no aud",
            hs_token(
                SECRET,
                at,
                &with(&|c| drop(c.as_object_mut().unwrap().remove("aud"))),
            ),
        ),
        (
            "another hub's aud",
            hs_token(
                SECRET,
                at,
                &with(&|c| c["aud"] = json!("https://other-hub.example/.well-known/mercure")),
            ),
        ),
        (
            "aud array without us",
            hs_token(SECRET, at, &with(&|c| c["aud"] = json!(["a", "b"]))),
        ),
        (
            "no iss",
            hs_token(
                SECRET,
                at,
                &with(&|c| drop(c.as_object_mut().unwrap().remove("iss"))),
            ),
        ),
        (
            "untrusted iss",
            hs_token(
                SECRET,
                at,
                &with(&|c| c["iss"] = json!("https://evil.example")),
            ),
        ),
        (
            "issuer A signed with issuer B's key",
            hs_token(OTHER_SECRET, at, &claims(&hub)),
        ),
        (
            "issuer B signed with issuer A's key",
            hs_token(SECRET, at, &with(&|c| c["iss"] = json!(OTHER))),
        ),
        (
            "ES256 under an HS256-only issuer",
            sign(
                jsonwebtoken::Algorithm::ES256,
                at,
                &EncodingKey::from_ec_pem(fixture("ec256_private.pem").as_bytes()).unwrap(),
                &claims(&hub),
            ),
        ),
        (
            "HS256 keyed with an RSA public key",
            hs_token(
                &rsa_public_as_secret,
                at,
                &with(&|c| c["iss"] = json!(OTHER)),
            ),
        ),
        (
            "0.x mercure claim",
            hs_token(
                SECRET,
                at,
                &with(&|c| c["mercure"] = json!({"publish": ["*"]})),
            ),
        ),
        (
            "bare string topic",
            hs_token(
                SECRET,
                at,
                &with(&|c| c["authorization_details"][0]["topics"] = json!(["*"])),
            ),
        ),
        (
            "unknown match_type",
            hs_token(
                SECRET,
                at,
                &with(&|c| {
                    c["authorization_details"][0]["topics"] =
                        json!([{"match": "a", "match_type": "regex"}])
                }),
            ),
        ),
        (
            "non-string action",
            hs_token(
                SECRET,
                at,
                &with(&|c| c["authorization_details"][0]["actions"] = json!(["publish", 7])),
            ),
        ),
        ("garbage", "not.a.token".to_owned()),
    ];
    // `alg: none` and a `crit` header, built by hand.
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"at+jwt"}"#),
        b64url(claims(&hub).to_string().as_bytes())
    );
    let mut cases = cases;
    cases.push(("alg none", none));
    let body = b64url(claims(&hub).to_string().as_bytes());
    let head = b64url(br#"{"alg":"HS256","typ":"at+jwt","crit":["exp"],"exp":1}"#);
    let sig = jsonwebtoken::crypto::sign(
        format!("{head}.{body}").as_bytes(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
        jsonwebtoken::Algorithm::HS256,
    )
    .unwrap();
    cases.push(("crit header", format!("{head}.{body}.{sig}")));

    for (what, bad) in &cases {
        let res = publish_with(&hub, bad, &["urn:a"]).await;
        assert_refused(res, 401, &invalid_token(&hub), "invalid token\n", what).await;
        let res = client()
            .get(hub.hub_url())
            .query(&[("match", "urn:a")])
            .bearer_auth(bad)
            .send()
            .await
            .unwrap();
        assert_refused(res, 401, &invalid_token(&hub), "invalid token\n", what).await;
    }

    // And the variants the rules allow.
    let ok: Vec<(&str, String)> = vec![
        (
            "application/at+jwt",
            hs_token(SECRET, Some("application/AT+JWT"), &claims(&hub)),
        ),
        (
            "aud array with us",
            hs_token(SECRET, at, &with(&|c| c["aud"] = json!(["x", aud(&hub)]))),
        ),
        (
            "nbf in the past",
            hs_token(SECRET, at, &with(&|c| c["nbf"] = json!(now() - 10))),
        ),
        (
            "no sub, client_id, iat or jti",
            hs_token(
                SECRET,
                at,
                &with(&|c| {
                    for k in ["sub", "client_id", "iat", "jti"] {
                        c.as_object_mut().unwrap().remove(k);
                    }
                }),
            ),
        ),
        (
            "issuer B signed with its own key",
            hs_token(OTHER_SECRET, at, &with(&|c| c["iss"] = json!(OTHER))),
        ),
        (
            "unknown action beside publish",
            hs_token(
                SECRET,
                at,
                &with(&|c| {
                    c["authorization_details"][0]["actions"] = json!(["frobnicate", "publish"])
                }),
            ),
        ),
        (
            "another API's detail",
            hs_token(
                SECRET,
                at,
                &with(&|c| {
                    c["authorization_details"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"type": "payment", "x": 1}))
                }),
            ),
        ),
    ];
    for (what, good) in &ok {
        let res = publish_with(&hub, good, &["urn:a"]).await;
        assert_eq!(res.status(), 200, "{what}");
    }
}

#[tokio::test]
async fn urlpattern_grants_absolute_and_relative_to_the_hub_url() {
    let hub = start_modern(|_| {}).await;
    let token = TokenSpec::new(ISSUER, aud(&hub))
        .publish([
            Matcher::urlpattern("https://example.com/books/:id"),
            Matcher::urlpattern("/shelves/:id"),
        ])
        .sign(&hs(SECRET))
        .unwrap();
    let shelf = hub.url("/shelves/7");
    for (topics, status) in [
        (vec!["https://example.com/books/1"], 200),
        (
            vec![
                "https://example.com/books/1",
                "https://example.com/authors/1",
            ],
            403,
        ),
        (vec!["https://example.com/books/1/reviews"], 403),
        // The relative pattern resolves against this request's hub URL, and so does a
        // relative topic.
        (vec![shelf.as_str()], 200),
        (vec!["/shelves/7"], 200),
        (vec!["https://elsewhere.example/shelves/7"], 403),
    ] {
        let res = publish_with(&hub, &token, &topics).await;
        assert_eq!(res.status(), status, "{topics:?}");
    }
    // Presented under another of the hub's names, the relative grant follows that name.
    let port = hub.addr.port();
    let other = TokenSpec::new(
        ISSUER,
        format!("http://localhost:{port}/.well-known/mercure"),
    )
    .publish([Matcher::urlpattern("/shelves/:id")])
    .sign(&hs(SECRET))
    .unwrap();
    let res = client()
        .post(hub.hub_url())
        .header("Host", format!("localhost:{port}"))
        .bearer_auth(&other)
        .form(&[("topic", format!("http://localhost:{port}/shelves/1"))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn es256_and_eddsa_issuer_keys_verify_their_tokens() {
    let hub = start_modern(|_| {}).await;
    for (alg, pem) in [
        (Algorithm::ES256, "ec256_private.pem"),
        (Algorithm::EdDSA, "ed25519_private.pem"),
    ] {
        let token = TokenSpec::new(OTHER, aud(&hub))
            .publish([Matcher::exact("urn:a")])
            .sign(&KeyConfig::new(alg, fixture(pem)))
            .unwrap();
        assert_eq!(
            publish_with(&hub, &token, &["urn:a"]).await.status(),
            200,
            "{alg}"
        );
        // Every topic of the update needs a grant.
        assert_eq!(
            publish_with(&hub, &token, &["urn:a", "urn:b"])
                .await
                .status(),
            403,
            "{alg}"
        );
    }
}

#[tokio::test]
async fn role_keys_verify_only_their_role() {
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.authorizer = Authorizer::builder()
            .issuer(
                Issuer::new(ISSUER)
                    .publisher_key(hs(SECRET))
                    .subscriber_key(hs(OTHER_SECRET)),
            )
            .build()
            .unwrap();
        c.anonymous = false;
    })
    .await;
    let spec = TokenSpec::new(ISSUER, aud(&hub))
        .publish([Matcher::any()])
        .subscribe([Matcher::any()], None);
    let publisher = spec.sign(&hs(SECRET)).unwrap();
    let subscriber = spec.sign(&hs(OTHER_SECRET)).unwrap();
    assert_eq!(publish_with(&hub, &publisher, &["a"]).await.status(), 200);
    assert_eq!(publish_with(&hub, &subscriber, &["a"]).await.status(), 401);
    let get = |t: &str| {
        client()
            .get(hub.hub_url())
            .query(&[("match", "a")])
            .bearer_auth(t)
            .send()
    };
    assert_eq!(get(&subscriber).await.unwrap().status(), 200);
    assert_eq!(get(&publisher).await.unwrap().status(), 401);
}

#[tokio::test]
async fn rfc_6750_answers_for_missing_malformed_and_insufficient() {
    let hub = start_modern(|c| c.anonymous = false).await;
    let c = client();
    let bare = format!("Bearer resource_metadata=\"{}\"", metadata_url(&hub));
    let invalid_request = format!(
        "Bearer error=\"invalid_request\", resource_metadata=\"{}\"",
        metadata_url(&hub)
    );

    let res = c
        .post(hub.hub_url())
        .form(&[("topic", "a")])
        .send()
        .await
        .unwrap();
    assert_refused(
        res,
        401,
        &bare,
        "a publisher token is required",
        "publish, no token",
    )
    .await;
    let res = c
        .get(hub.hub_url())
        .query(&[("match", "a")])
        .send()
        .await
        .unwrap();
    assert_refused(
        res,
        401,
        &bare,
        "a subscriber token is required",
        "subscribe, no token",
    )
    .await;

    let good = token(&hub);
    let malformed: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "Basic scheme",
            c.get(hub.hub_url())
                .query(&[("match", "a")])
                .header("Authorization", "Basic dXNlcjpwYXNz"),
        ),
        (
            "empty Bearer",
            c.get(hub.hub_url())
                .query(&[("match", "a")])
                .header("Authorization", "Bearer "),
        ),
        (
            "token in the query",
            c.get(hub.hub_url())
                .query(&[("match", "a"), ("authorization", good.as_str())]),
        ),
        (
            "RFC 6750 access_token parameter",
            c.get(hub.hub_url())
                .query(&[("match", "a"), ("access_token", good.as_str())]),
        ),
        (
            "0.x cookie",
            c.get(hub.hub_url())
                .query(&[("match", "a")])
                .header("Cookie", format!("mercureAuthorization={good}")),
        ),
        (
            "query beside a good header",
            c.post(hub.hub_url())
                .query(&[("authorization", good.as_str())])
                .bearer_auth(&good)
                .form(&[("topic", "a")]),
        ),
    ];
    for (what, req) in malformed {
        let res = req.send().await.unwrap();
        assert_refused(
            res,
            400,
            &invalid_request,
            "malformed token presentation",
            what,
        )
        .await;
    }

    // The 1.0 cookie works, and the header wins over a bad cookie.
    let cookie = |t: &str| format!("__Secure-mercure_access_token={t}");
    let res = c
        .get(hub.hub_url())
        .query(&[("match", "a")])
        .header("Cookie", cookie(&good))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "cookie");
    drop(res);
    let res = c
        .get(hub.hub_url())
        .query(&[("match", "a")])
        .bearer_auth(&good)
        .header("Cookie", cookie("garbage"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "header over cookie");
}

#[tokio::test]
async fn protected_resource_metadata_is_served_from_the_spec_members() {
    let hub = start_modern(|_| {}).await;
    let res = client().get(metadata_url(&hub)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let doc: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(
        doc,
        json!({
            "resource": aud(&hub),
            "bearer_methods_supported": ["header"],
            "authorization_details_types_supported": [DETAIL_TYPE],
            "mercure_cookie": "__Secure-mercure_access_token",
            "mercure_matcher_types_supported": ["exact", "urlpattern"],
        })
    );

    // Pinned identifier, an authorization server, another cookie, active subscriptions.
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.authorizer = Authorizer::builder()
            .issuer(
                Issuer::new(ISSUER)
                    .key(hs(SECRET))
                    .authorization_server(true),
            )
            .issuer(Issuer::new(OTHER).key(hs(OTHER_SECRET)))
            .build()
            .unwrap();
        c.resource_identifier = Some("https://hub.example/.well-known/mercure".into());
        c.cookie_name = "mercure_dev".into();
        c.subscriptions = true;
    })
    .await;
    let res = client().get(metadata_url(&hub)).send().await.unwrap();
    let doc: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(doc["resource"], "https://hub.example/.well-known/mercure");
    assert_eq!(doc["authorization_servers"], json!([ISSUER]));
    assert_eq!(doc["mercure_cookie"], "mercure_dev");
    assert_eq!(doc["mercure_subscriptions"], true);
    // The challenge points at the metadata of the pinned identifier.
    let res = client()
        .post(hub.hub_url())
        .form(&[("topic", "a")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["www-authenticate"],
        "Bearer resource_metadata=\"https://hub.example/.well-known/oauth-protected-resource/.well-known/mercure\""
    );
}

#[tokio::test]
async fn the_resource_identifier_is_pinned_or_derived_from_each_request() {
    let hub = start_modern(|_| {}).await;
    let port = hub.addr.port();
    let for_aud = |aud: String| {
        TokenSpec::new(ISSUER, aud)
            .publish([Matcher::any()])
            .sign(&hs(SECRET))
            .unwrap()
    };
    let post = |token: String, host: Option<String>, proto: Option<&'static str>| {
        let mut req = client()
            .post(hub.hub_url())
            .bearer_auth(token)
            .form(&[("topic", "a")]);
        if let Some(host) = host {
            req = req.header("Host", host);
        }
        if let Some(proto) = proto {
            req = req.header("X-Forwarded-Proto", proto);
        }
        req.send()
    };
    let localhost = format!("http://localhost:{port}/.well-known/mercure");
    // A token for another name of this hub: refused on this name, accepted on that one.
    assert_eq!(
        post(for_aud(localhost.clone()), None, None)
            .await
            .unwrap()
            .status(),
        401
    );
    let host = Some(format!("localhost:{port}"));
    assert_eq!(
        post(for_aud(localhost), host.clone(), None)
            .await
            .unwrap()
            .status(),
        200
    );
    // A trusted proxy (loopback) terminating TLS: the identifier is https.
    let https = format!("https://localhost:{port}/.well-known/mercure");
    assert_eq!(
        post(for_aud(https.clone()), host.clone(), Some("https"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        post(for_aud(https), host, None).await.unwrap().status(),
        401
    );

    let pinned = "https://hub.example/.well-known/mercure";
    let hub = start_modern(|c| c.resource_identifier = Some(pinned.into())).await;
    let res = client()
        .post(hub.hub_url())
        .bearer_auth(for_aud(pinned.into()))
        .form(&[("topic", "a")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = publish_with(&hub, &token(&hub), &["a"]).await;
    assert_eq!(res.status(), 401, "the derived identifier no longer counts");
}

#[tokio::test]
async fn the_payload_is_the_first_subscribe_grant_matching_the_subscription() {
    let seen: Arc<Mutex<Vec<Option<Value>>>> = Arc::default();
    let log = Arc::clone(&seen);
    let built = Hub::builder()
        .heartbeat(None)
        .on_join(move |e| {
            if e.kind == PresenceKind::Join {
                log.lock().unwrap().push(e.payload.as_deref().cloned());
            }
        })
        .build();
    let hub = start_modern_hub(built, |_| {}).await;
    let subscriber = hs_token(SECRET, Some("at+jwt"), &{
        let mut c = claims(&hub);
        c["authorization_details"] = json!([
            {"type": DETAIL_TYPE, "actions": ["publish"], "topics": [{"match": "*"}], "payload": {"never": 0}},
            {"type": DETAIL_TYPE, "actions": ["subscribe"], "topics": [{"match": "https://example.com/foo"}], "payload": {"custom1": 1}},
            {"type": DETAIL_TYPE, "actions": ["subscribe"], "topics": [{"match": "*"}], "payload": {"custom3": 3}},
        ]);
        c
    });
    for topic in ["https://example.com/foo", "https://example.com/bar"] {
        let events = Events::open(
            client()
                .get(hub.hub_url())
                .query(&[("match", topic)])
                .bearer_auth(&subscriber),
        )
        .await;
        drop(events);
    }
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Some(json!({"custom1": 1})), Some(json!({"custom3": 3}))]
    );
}

#[tokio::test]
async fn a_stream_ends_at_its_token_exp() {
    let hub = start_modern(|_| {}).await;
    let short = TokenSpec::new(ISSUER, aud(&hub))
        .subscribe([Matcher::any()], None)
        .ttl(Duration::from_secs(2))
        .sign(&hs(SECRET))
        .unwrap();
    let opened = std::time::Instant::now();
    let mut events = Events::open(
        client()
            .get(hub.hub_url())
            .query(&[("match", "a")])
            .bearer_auth(&short),
    )
    .await;
    // `exp` is whole seconds, so the end comes 1-2 s after the subscribe.
    let ended = tokio::time::timeout(Duration::from_secs(4), async {
        while events.frame().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived its token");
    let lived = opened.elapsed();
    assert!(lived >= Duration::from_millis(900), "ended after {lived:?}");
}

#[tokio::test]
async fn the_legacy_switch_both_ways() {
    let legacy_token = encode_token(&hs(SECRET), Some(&["*"]), Some(&["*"]), None).unwrap();

    // Modern: the 0.x token and presentation are refused with the 1.0 errors.
    let hub = start_modern(|_| {}).await;
    let res = publish_with(&hub, &legacy_token, &["a"]).await;
    assert_refused(
        res,
        401,
        &invalid_token(&hub),
        "invalid token\n",
        "0.x token",
    )
    .await;
    let res = client()
        .post(hub.hub_url())
        .query(&[("authorization", legacy_token.as_str())])
        .form(&[("topic", "a")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // Legacy: the 0.x token, the query parameter, the 0.x cookie, and 1.0 tokens of an issuer.
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.authorizer = Authorizer::builder()
            .issuer(Issuer::new(ISSUER).key(hs(SECRET)))
            .legacy_keys(Some(hs(SECRET)), Some(hs(SECRET)))
            .build()
            .unwrap();
    })
    .await;
    assert_eq!(
        publish_with(&hub, &legacy_token, &["a"]).await.status(),
        200
    );
    assert_eq!(publish_with(&hub, &token(&hub), &["a"]).await.status(), 200);
    let res = client()
        .post(hub.hub_url())
        .query(&[("authorization", legacy_token.as_str())])
        .form(&[("topic", "a")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client()
        .get(hub.hub_url())
        .query(&[("topic", "a")])
        .header("Cookie", format!("mercureAuthorization={legacy_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    drop(res);
    // 0.x answers: a bare challenge, the reason in the body.
    let res = publish_with(&hub, "not.a.token", &["a"]).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    assert!(matches!(
        Events::open(client().get(hub.hub_url()).query(&[("topic", "a")]))
            .await
            .frame()
            .await,
        Some(Frame::Retry(_))
    ));
}

/// A JWK Set server on 127.0.0.1:0 whose set can be swapped, counting its requests.
struct JwksServer {
    url: String,
    set: Arc<Mutex<Value>>,
    hits: Arc<std::sync::atomic::AtomicUsize>,
}

async fn jwks_server(initial: Value) -> JwksServer {
    use axum::routing::get;
    let set = Arc::new(Mutex::new(initial));
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (s, h) = (Arc::clone(&set), Arc::clone(&hits));
    let app = axum::Router::new().route(
        "/jwks",
        get(move || {
            let (s, h) = (Arc::clone(&s), Arc::clone(&h));
            async move {
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = s.lock().unwrap().to_string();
                ([("content-type", "application/jwk-set+json")], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    JwksServer { url, set, hits }
}

/// The public JWK of a private key in PEM, with `kid`.
fn jwk(alg: jsonwebtoken::Algorithm, private_pem: &str, kid: &str) -> Value {
    let key = match alg {
        jsonwebtoken::Algorithm::EdDSA => EncodingKey::from_ed_pem(private_pem.as_bytes()),
        _ => EncodingKey::from_ec_pem(private_pem.as_bytes()),
    }
    .unwrap();
    let mut jwk =
        serde_json::to_value(jsonwebtoken::jwk::Jwk::from_encoding_key(&key, alg).unwrap())
            .unwrap();
    jwk["kid"] = json!(kid);
    jwk
}

#[tokio::test]
async fn jwks_keys_rotate_on_first_use_and_unknown_kids_cannot_hammer_the_issuer() {
    let ed = fixture("ed25519_private.pem");
    let ec = fixture("ec256_private.pem");
    let server =
        jwks_server(json!({"keys": [jwk(jsonwebtoken::Algorithm::EdDSA, &ed, "k1")]})).await;
    let mut options = ssehub_auth::jwks::JwksOptions::default();
    options.min_refresh_interval = Duration::from_millis(1500);
    let source = ssehub_auth::JwksSource::with_options(&server.url, options).unwrap();
    source.refresh(true).await.unwrap();
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.authorizer = Authorizer::builder()
            .issuer(Issuer::new(ISSUER).jwks(source))
            .build()
            .unwrap();
    })
    .await;
    let token = |alg: Algorithm, pem: &str, kid: &str| {
        TokenSpec::new(ISSUER, aud(&hub))
            .publish([Matcher::any()])
            .key_id(kid)
            .sign(&KeyConfig::new(alg, pem))
            .unwrap()
    };
    let k1 = token(Algorithm::EdDSA, &ed, "k1");
    assert_eq!(publish_with(&hub, &k1, &["a"]).await.status(), 200);
    let hits = |s: &JwksServer| s.hits.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(hits(&server), 1);

    // The issuer rotates to an ES256 key: its first token is accepted on first use (one
    // refetch), and the retired key's tokens are refused.
    *server.set.lock().unwrap() = json!({"keys": [jwk(jsonwebtoken::Algorithm::ES256, &ec, "k2")]});
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let k2 = token(Algorithm::ES256, &ec, "k2");
    assert_eq!(publish_with(&hub, &k2, &["a"]).await.status(), 200);
    assert_eq!(hits(&server), 2);
    let res = publish_with(&hub, &token(Algorithm::EdDSA, &ed, "k1"), &["b"]).await;
    assert_eq!(res.status(), 401);

    // 40 tokens naming random kids, all at once: every one refused, at most one refetch.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let before = hits(&server);
    let sprayed = (0..40).map(|i| {
        let t = token(Algorithm::ES256, &ec, &format!("random-{i}"));
        let hub = &hub;
        async move { publish_with(hub, &t, &["a"]).await.status() }
    });
    let statuses = futures_util::future::join_all(sprayed).await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert!(
        hits(&server) - before <= 1,
        "{} refetches",
        hits(&server) - before
    );
    // The known key still works meanwhile.
    assert_eq!(publish_with(&hub, &k2, &["a"]).await.status(), 200);
}
