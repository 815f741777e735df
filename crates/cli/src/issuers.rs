//! Who `ssehub serve` trusts to sign tokens: the `--issuer` with its key flags, the config
//! file's `[[issuer]]` tables, the 0.x keys of `--legacy-protocol`, or, with no key at all, a
//! development issuer whose key is generated for the run.
//!
//! Mercure 1.0 binds every key to the issuer identifier (`iss`) it verifies, so a key without an
//! issuer is a mistake in modern mode: it is refused at start with what to add, rather than
//! accepted and then refusing every token.

use std::collections::HashSet;

use ssehub_auth::{Algorithm, Authorizer, Issuer, JwksSource, KeyConfig};

use crate::UsageError;
use crate::cli::ServeArgs;
use crate::config_file::IssuerTable;

/// The issuer of the key `serve` generates when it is given none.
pub const DEV_ISSUER: &str = "urn:ssehub:dev";

/// The verified-token configuration of a hub, ready to serve.
pub struct Trust {
    pub authorizer: Authorizer,
    /// JWK Sets to keep fresh (their refreshers are spawned once the runtime serves).
    pub jwks: Vec<JwksSource>,
    /// The key generated for this run when none was given.
    pub generated: Option<KeyConfig>,
    /// The trusted issuers' identifiers, in configuration order, for the startup log.
    pub issuers: Vec<String>,
}

/// Builds the authorizer from the flags and the `[[issuer]]` tables.
pub fn trust(args: &ServeArgs, tables: &[IssuerTable]) -> Result<Trust, UsageError> {
    let legacy = args.legacy_protocol;
    let algorithm = parse_algorithm(&args.jwt_algorithm, "--jwt-algorithm")?;
    let key = |k: &Option<String>| {
        k.as_ref().map(|k| KeyConfig {
            algorithm,
            key: k.clone(),
        })
    };
    let publisher = key(&args.publisher_jwt_key).or_else(|| key(&args.jwt_key));
    let subscriber = key(&args.subscriber_jwt_key).or_else(|| key(&args.jwt_key));
    let static_keys = publisher.is_some() || subscriber.is_some();

    let mut builder = Authorizer::builder().legacy(legacy);
    let mut jwks = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let mut generated = None;

    match &args.issuer {
        Some(id) => {
            if id.is_empty() {
                return Err(UsageError("--issuer must not be empty".into()));
            }
            if !static_keys && args.jwks_uri.is_none() {
                return Err(UsageError(format!(
                    "--issuer {id:?} has no key: add --jwt-key (or --publisher-jwt-key and \
                     --subscriber-jwt-key) or --jwks-uri"
                )));
            }
            let mut issuer = Issuer::new(id.clone());
            issuer = with_keys(
                issuer,
                publisher.clone(),
                subscriber.clone(),
                args.jwt_key.is_some(),
            );
            if let Some(uri) = &args.jwks_uri {
                let source = jwks_source(uri, "--jwks-uri")?;
                jwks.push(source.clone());
                issuer = issuer.jwks(source);
            }
            builder = builder.issuer(issuer);
            ids.push(id.clone());
        }
        None if args.jwks_uri.is_some() => {
            return Err(UsageError(
                "--jwks-uri needs --issuer ID: the issuer (`iss` of the tokens) whose keys the set holds"
                    .into(),
            ));
        }
        None if static_keys && !legacy => {
            let flag = if args.jwt_key.is_some() {
                "--jwt-key"
            } else if args.publisher_jwt_key.is_some() {
                "--publisher-jwt-key"
            } else {
                "--subscriber-jwt-key"
            };
            return Err(UsageError(format!(
                "{flag} is given without --issuer: add --issuer ID (the `iss` of the tokens the \
                 key verifies), or --legacy-protocol to accept 0.x tokens"
            )));
        }
        None => {}
    }
    // 0.x tokens name no issuer: in legacy mode the flag keys verify them, as before 1.0.
    if legacy && static_keys {
        builder = builder.legacy_keys(publisher.clone(), subscriber.clone());
    }

    for table in tables {
        let (issuer, source) = table_issuer(table)?;
        jwks.extend(source);
        builder = builder.issuer(issuer);
        ids.push(table.id.clone());
    }
    let mut seen = HashSet::new();
    if let Some(twice) = ids.iter().find(|id| !seen.insert(id.as_str())) {
        return Err(UsageError(format!(
            "issuer {twice:?} is configured twice (--issuer and the [[issuer]] tables need \
             distinct ids)"
        )));
    }

    if ids.is_empty() && !static_keys {
        if !algorithm.is_hmac() {
            return Err(UsageError(format!(
                "--jwt-algorithm {algorithm} needs --jwt-key"
            )));
        }
        let key = KeyConfig::new(algorithm, random_secret());
        builder = if legacy {
            builder.legacy_keys(Some(key.clone()), Some(key.clone()))
        } else {
            ids.push(DEV_ISSUER.to_owned());
            builder.issuer(Issuer::new(DEV_ISSUER).key(key.clone()))
        };
        generated = Some(key);
    }

    let authorizer = builder
        .build()
        .map_err(|e| UsageError(format!("invalid JWT key: {e}")))?;
    Ok(Trust {
        authorizer,
        jwks,
        generated,
        issuers: ids,
    })
}

/// An issuer with the static keys of the flags (or a table): one key for both roles when
/// `shared` is the only one given, else a key per role.
fn with_keys(
    mut issuer: Issuer,
    publisher: Option<KeyConfig>,
    subscriber: Option<KeyConfig>,
    shared: bool,
) -> Issuer {
    match (publisher, subscriber) {
        (Some(p), Some(s)) if shared && p.key == s.key => issuer.key(p),
        (p, s) => {
            if let Some(p) = p {
                issuer = issuer.publisher_key(p);
            }
            if let Some(s) = s {
                issuer = issuer.subscriber_key(s);
            }
            issuer
        }
    }
}

/// An `[[issuer]]` table as an [`Issuer`], and its JWK Set if it has one.
fn table_issuer(table: &IssuerTable) -> Result<(Issuer, Option<JwksSource>), UsageError> {
    let what = |field: &str| format!("[[issuer]] {:?} {field}", table.id);
    if table.id.is_empty() {
        return Err(UsageError("[[issuer]]: `id` must not be empty".into()));
    }
    let algorithm = match &table.jwt_algorithm {
        Some(name) => parse_algorithm(name, &what("jwt-algorithm"))?,
        None => Algorithm::HS256,
    };
    let key = |k: &Option<String>| k.as_ref().map(|k| KeyConfig::new(algorithm, k.clone()));
    let publisher = key(&table.publisher_jwt_key).or_else(|| key(&table.jwt_key));
    let subscriber = key(&table.subscriber_jwt_key).or_else(|| key(&table.jwt_key));
    if publisher.is_none() && subscriber.is_none() && table.jwks_uri.is_none() {
        return Err(UsageError(format!(
            "[[issuer]] {:?} has no key: give it jwt-key (or publisher-jwt-key and \
             subscriber-jwt-key) or jwks-uri",
            table.id
        )));
    }
    let mut issuer = with_keys(
        Issuer::new(table.id.clone()),
        publisher,
        subscriber,
        table.jwt_key.is_some(),
    )
    .authorization_server(table.authorization_server);
    if let Some(names) = &table.algorithms {
        let list = names
            .iter()
            .map(|n| parse_algorithm(n, &what("algorithms")))
            .collect::<Result<Vec<_>, _>>()?;
        if list.is_empty() {
            return Err(UsageError(format!(
                "{} is empty: list the algorithms its tokens may use",
                what("algorithms")
            )));
        }
        issuer = issuer.algorithms(list);
    }
    let source = match &table.jwks_uri {
        Some(uri) => {
            let source = jwks_source(uri, &what("jwks-uri"))?;
            issuer = issuer.jwks(source.clone());
            Some(source)
        }
        None => None,
    };
    Ok((issuer, source))
}

/// Parses an algorithm name; `what` says where it was given (`--jwt-algorithm`, or an issuer
/// table's field).
fn parse_algorithm(name: &str, what: &str) -> Result<Algorithm, UsageError> {
    name.parse().map_err(|_| {
        UsageError(format!(
            "{what}: unknown algorithm {name:?} (expected one of HS256, HS384, HS512, RS256, \
             RS384, RS512, ES256, ES384, PS256, PS384, PS512, EdDSA)"
        ))
    })
}

fn jwks_source(uri: &str, what: &str) -> Result<JwksSource, UsageError> {
    JwksSource::new(uri).map_err(|e| UsageError(format!("invalid {what} {uri:?}: {e}")))
}

fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
