//! `ssehub token`: prints a signed Mercure 1.0 access token (or, with `--legacy`, a 0.x one).

use std::io::Write as _;

use ssehub_auth::{Algorithm, DEFAULT_TTL, KeyConfig, Matcher, TokenSpec};

use crate::UsageError;
use crate::cli::TokenArgs;
use crate::endpoint::mercure_url;

pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    let key = key_config(&args.jwt_algorithm, args.jwt_key.clone())?;
    let token = if args.legacy {
        legacy_token(&args, &key)?
    } else {
        modern_token(&args, &key)?
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{token}")?;
    out.flush()?;
    Ok(())
}

/// A 1.0 token: `typ: at+jwt`, `iss`, `aud`, `exp` and the other RFC 9068 claims, with one
/// `publish` and one `subscribe` authorization detail.
fn modern_token(args: &TokenArgs, key: &KeyConfig) -> Result<String, UsageError> {
    let issuer = required_issuer(args.issuer.as_deref(), "--legacy for a 0.x token")?;
    let audiences = if args.audiences.is_empty() {
        let hub = args.hub.as_deref().ok_or_else(|| {
            UsageError(
                "--audience URI is required (the hub's resource identifier, e.g. \
                 https://hub.example.com/.well-known/mercure), or --hub URL to use the hub's"
                    .to_owned(),
            )
        })?;
        vec![resource_identifier(hub, "--hub URL")?]
    } else {
        args.audiences.clone()
    };
    if let Some(empty) = audiences.iter().find(|a| a.is_empty()) {
        return Err(UsageError(format!("--audience {empty:?} is empty")));
    }
    let payload = match &args.payload {
        None => None,
        Some(_) if args.subscribe.is_empty() && args.subscribe_urlpattern.is_empty() => {
            return Err(UsageError(
                "--payload goes with a subscribe grant: add --subscribe or --subscribe-urlpattern"
                    .to_owned(),
            ));
        }
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value @ serde_json::Value::Object(_)) => Some(value),
            Ok(_) => return Err(UsageError("--payload must be a JSON object".to_owned())),
            Err(e) => return Err(UsageError(format!("--payload is not JSON: {e}"))),
        },
    };
    let matchers = |exact: &[String], patterns: &[String]| -> Vec<Matcher> {
        exact
            .iter()
            .map(Matcher::exact)
            .chain(patterns.iter().map(Matcher::urlpattern))
            .collect()
    };
    let mut spec = TokenSpec::new(issuer, &audiences[0])
        .ttl(args.ttl.unwrap_or(DEFAULT_TTL))
        .publish(matchers(&args.publish, &args.publish_urlpattern))
        .subscribe(
            matchers(&args.subscribe, &args.subscribe_urlpattern),
            payload,
        );
    for audience in &audiences[1..] {
        spec = spec.audience(audience);
    }
    if let Some(subject) = &args.subject {
        spec = spec.subject(subject);
    }
    if let Some(client_id) = &args.client_id {
        spec = spec.client_id(client_id);
    }
    if let Some(kid) = &args.kid {
        spec = spec.key_id(kid);
    }
    spec.sign(key)
        .map_err(|e| UsageError(format!("cannot sign with --jwt-key: {e}")))
}

/// A 0.x token: the `mercure` claim with selectors; `exp` only with `--ttl`.
fn legacy_token(args: &TokenArgs, key: &KeyConfig) -> Result<String, UsageError> {
    let publish: Vec<&str> = args.publish.iter().map(String::as_str).collect();
    let subscribe: Vec<&str> = args.subscribe.iter().map(String::as_str).collect();
    ssehub_auth::encode_token(
        key,
        (!publish.is_empty()).then_some(&publish[..]),
        (!subscribe.is_empty()).then_some(&subscribe[..]),
        args.ttl,
    )
    .map_err(|e| UsageError(format!("cannot sign with --jwt-key: {e}")))
}

/// `--issuer`, which a 1.0 token cannot do without; `alternative` says what else would do.
pub fn required_issuer<'a>(
    issuer: Option<&'a str>,
    alternative: &str,
) -> Result<&'a str, UsageError> {
    match issuer {
        Some("") => Err(UsageError("--issuer must not be empty".to_owned())),
        Some(issuer) => Ok(issuer),
        None => Err(UsageError(format!(
            "--issuer ID is required: the token's `iss`, an issuer the hub trusts with this key \
             (its --issuer), or {alternative}"
        ))),
    }
}

/// The resource identifier of the hub at `hub` (its base URL or its Mercure endpoint): the
/// endpoint's URL without query or fragment, which is what the hub derives from a request
/// to that host.
pub fn resource_identifier(hub: &str, what: &str) -> Result<String, UsageError> {
    let mut url = mercure_url(hub, what)?;
    url.set_query(None);
    url.set_fragment(None);
    Ok(url.into())
}

/// The signing key from `--jwt-algorithm` and `--jwt-key`.
pub fn key_config(algorithm: &str, key: String) -> Result<KeyConfig, UsageError> {
    let algorithm: Algorithm = algorithm
        .parse()
        .map_err(|_| UsageError(format!("unknown --jwt-algorithm {algorithm:?}")))?;
    if key.is_empty() {
        return Err(UsageError("--jwt-key is empty".to_owned()));
    }
    Ok(KeyConfig { algorithm, key })
}
