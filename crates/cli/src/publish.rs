//! `ssehub publish`: posts one update to a hub and prints the id it was given.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use anyhow::Context as _;
use ssehub_auth::{Matcher, TokenSpec};

use crate::UsageError;
use crate::cli::PublishArgs;
use ssehub_client::error_chain;

use crate::endpoint::{first_line, mercure_url, tidy_http_error};

/// How long a token signed from `--jwt-key` stays valid: it is used at once, so this only has
/// to cover the request and clock skew between this machine and the hub.
const SIGNED_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);

pub async fn run(args: PublishArgs) -> anyhow::Result<()> {
    let url = mercure_url(&args.hub, "--hub URL")?;
    let data = match args.data.as_deref() {
        Some("-") => Some(read_stdin()?),
        Some(data) => Some(data.to_owned()),
        None => None,
    };
    let token = match (args.token, args.jwt_key) {
        (Some(token), _) => Some(token),
        (None, Some(key)) => {
            let key = crate::token::key_config(&args.jwt_algorithm, key)?;
            let sign_error = |e| UsageError(format!("cannot sign with --jwt-key: {e}"));
            let token = if args.legacy {
                let topics: Vec<&str> = args.topics.iter().map(String::as_str).collect();
                ssehub_auth::encode_token(&key, Some(&topics), None, Some(SIGNED_TOKEN_TTL))
                    .map_err(sign_error)?
            } else {
                let issuer = crate::token::required_issuer(
                    args.issuer.as_deref(),
                    "--legacy for a 0.x token",
                )?;
                let mut audiences = args.audiences.iter();
                let mut spec = match audiences.next() {
                    Some(first) => TokenSpec::new(issuer, first),
                    None => TokenSpec::new(
                        issuer,
                        crate::token::resource_identifier(&args.hub, "--hub URL")?,
                    ),
                };
                for audience in audiences {
                    spec = spec.audience(audience);
                }
                spec.ttl(SIGNED_TOKEN_TTL)
                    .publish(args.topics.iter().map(Matcher::exact))
                    .sign(&key)
                    .map_err(sign_error)?
            };
            Some(token)
        }
        (None, None) => None,
    };

    let retry = args.retry.map(|ms| ms.to_string());
    let mut form: Vec<(&str, &str)> = args.topics.iter().map(|t| ("topic", t.as_str())).collect();
    let optional = [
        ("data", data.as_deref()),
        ("type", args.event_type.as_deref()),
        ("id", args.id.as_deref()),
        ("retry", retry.as_deref()),
        ("private", args.private.then_some("on")),
    ];
    form.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));

    let http = reqwest::Client::builder()
        .user_agent(concat!("ssehub/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .context("cannot build the HTTP client")?;
    let mut request = http.post(url.clone()).form(&form);
    if let Some(token) = &token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| {
        let reason = tidy_http_error(&error_chain(&e));
        UsageError(format!("cannot reach the hub at {url}: {reason}"))
    })?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| anyhow::anyhow!("reading the hub's answer failed: {}", error_chain(&e)))?;
    if !status.is_success() {
        let reason = first_line(&body);
        let reason = if reason.is_empty() {
            status.canonical_reason().unwrap_or("")
        } else {
            reason
        };
        anyhow::bail!(
            "the hub refused the update: HTTP {}: {reason}",
            status.as_u16()
        );
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", body.trim_end())?;
    out.flush()?;
    Ok(())
}

fn read_stdin() -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut bytes)
        .context("cannot read the data from stdin")?;
    String::from_utf8(bytes)
        .map_err(|_| UsageError("the data on stdin is not valid UTF-8".to_owned()).into())
}
