//! `ssehub token`: prints a signed Mercure JWT.

use std::io::Write as _;

use ssehub_auth::{Algorithm, KeyConfig};

use crate::UsageError;
use crate::cli::TokenArgs;

pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    let key = key_config(&args.jwt_algorithm, args.jwt_key)?;
    let publish: Vec<&str> = args.publish.iter().map(String::as_str).collect();
    let subscribe: Vec<&str> = args.subscribe.iter().map(String::as_str).collect();
    let token = ssehub_auth::encode_token(
        &key,
        (!publish.is_empty()).then_some(&publish[..]),
        (!subscribe.is_empty()).then_some(&subscribe[..]),
        args.ttl,
    )
    .map_err(|e| UsageError(format!("cannot sign with --jwt-key: {e}")))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{token}")?;
    out.flush()?;
    Ok(())
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
