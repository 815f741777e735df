//! `ssehub serve --config FILE` and `--print-config`: every `serve` flag from a TOML file.
//!
//! Precedence is flags > environment (`SSEHUB_*`) > file > built-in defaults. The file's values
//! become the flags' defaults before clap parses the command line, so clap itself applies the
//! order (it takes a flag, else its variable, else its default) and every value goes through
//! the same parsing and validation as on the command line. Keys are the long flag names
//! (`max-body = 1048576`, `cors-origin = ["https://a.example"]`; `max_body` is accepted too); an unknown key, a table, or a list for a
//! flag that takes one value is an error, so a typo cannot silently leave a default in place.
//!
//! Trusted token issuers beyond the one of `--issuer` are `[[issuer]]` tables (see
//! [`IssuerTable`]); they have no flag, so they are kept aside and handed to `serve` as they are.
//!
//! `--print-config` prints the effective configuration as TOML that `--config` accepts, each
//! line with where its value came from; keys and other secrets are redacted.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command};

use crate::UsageError;

const CONFIG: &str = "config";
const PRINT_CONFIG: &str = "print_config";
const SERVE: &str = "serve";

/// The `serve` command with the config file's values in place.
#[derive(Debug)]
pub struct Configured {
    pub command: Command,
    /// The flags whose defaults the file set (for `--print-config`'s source column).
    pub from_file: Vec<String>,
    /// The file's `[[issuer]]` tables, in order.
    pub issuers: Vec<IssuerTable>,
}

/// One `[[issuer]]` table: a trusted issuer and its keys, like `--issuer` with its key flags.
///
/// ```toml
/// [[issuer]]
/// id = "https://app.example.com"
/// jwt-key = "a-long-random-secret"          # or publisher-jwt-key / subscriber-jwt-key
/// jwt-algorithm = "HS256"                   # of the keys above; default HS256
///
/// [[issuer]]
/// id = "https://auth.example.com/realms/app"
/// jwks-uri = "https://auth.example.com/realms/app/protocol/openid-connect/certs"
/// algorithms = ["RS256", "ES256"]           # default: the keys' algorithms (any asymmetric one for a JWK Set)
/// authorization-server = true               # advertised in the protected resource metadata
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IssuerTable {
    pub id: String,
    pub jwt_key: Option<String>,
    pub publisher_jwt_key: Option<String>,
    pub subscriber_jwt_key: Option<String>,
    pub jwt_algorithm: Option<String>,
    pub jwks_uri: Option<String>,
    pub algorithms: Option<Vec<String>>,
    pub authorization_server: bool,
}

impl std::fmt::Debug for IssuerTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |k: &Option<String>| k.as_ref().map(|_| "<redacted>");
        f.debug_struct("IssuerTable")
            .field("id", &self.id)
            .field("jwt_key", &redacted(&self.jwt_key))
            .field("publisher_jwt_key", &redacted(&self.publisher_jwt_key))
            .field("subscriber_jwt_key", &redacted(&self.subscriber_jwt_key))
            .field("jwt_algorithm", &self.jwt_algorithm)
            .field("jwks_uri", &self.jwks_uri)
            .field("algorithms", &self.algorithms)
            .field("authorization_server", &self.authorization_server)
            .finish()
    }
}

/// The keys of an `[[issuer]]` table.
const ISSUER_KEYS: [&str; 8] = [
    "id",
    "jwt-key",
    "publisher-jwt-key",
    "subscriber-jwt-key",
    "jwt-algorithm",
    "jwks-uri",
    "algorithms",
    "authorization-server",
];

/// The config-file key of the `[[issuer]]` tables (also the `--issuer` flag's key when its
/// value is a string).
const ISSUER: &str = "issuer";

/// Adds `--config` and `--print-config` to `serve` and, when a config file is named (by
/// `--config` or `SSEHUB_CONFIG`), makes its values the defaults of the flags it sets.
pub fn apply(command: Command, args: &[OsString]) -> Result<Configured, UsageError> {
    let command = command.mut_subcommand(SERVE, |serve| {
        serve
            .arg(
                Arg::new(CONFIG)
                    .long("config")
                    .env("SSEHUB_CONFIG")
                    .value_name("FILE")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help(
                        "TOML file with any of these flags as keys (`max-body = 1048576`); \
                         flags and SSEHUB_* variables take precedence over it",
                    ),
            )
            .arg(
                Arg::new(PRINT_CONFIG)
                    .long("print-config")
                    .action(clap::ArgAction::SetTrue)
                    .help("Print the effective configuration (secrets redacted) and exit"),
            )
    });
    let Some(path) = config_path(args) else {
        return Ok(Configured {
            command,
            from_file: Vec::new(),
            issuers: Vec::new(),
        });
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        UsageError(format!(
            "cannot read the config file {}: {e}",
            path.display()
        ))
    })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        UsageError(format!(
            "config file {}: {}",
            path.display(),
            e.message().trim()
        ))
    })?;
    let serve = command
        .find_subcommand(SERVE)
        .ok_or_else(|| UsageError("internal: no serve subcommand".into()))?;
    let mut defaults: Vec<(String, Vec<String>)> = Vec::new();
    let mut global_defaults: Vec<(String, Vec<String>)> = Vec::new();
    let mut issuers = Vec::new();
    for (key, value) in table {
        let long = key.replace('_', "-");
        if long == ISSUER && is_tables(&value) {
            issuers = issuer_tables(&path, value)?;
            continue;
        }
        let global = command
            .get_arguments()
            .find(|a| a.is_global_set() && a.get_long() == Some(long.as_str()));
        let arg = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()))
            .or(global)
            .filter(|a| !matches!(a.get_id().as_str(), CONFIG | PRINT_CONFIG | "help"))
            .ok_or_else(|| {
                UsageError(format!(
                    "config file {}: unknown key `{key}` (keys are the long flags of \
                     'ssehub serve --help', without the dashes in front)",
                    path.display()
                ))
            })?;
        let repeatable = matches!(arg.get_action(), clap::ArgAction::Append);
        let values = match value {
            toml::Value::Array(items) if repeatable => items
                .into_iter()
                .map(|v| scalar(&path, &key, v))
                .collect::<Result<Vec<_>, _>>()?,
            toml::Value::Array(_) => {
                return Err(UsageError(format!(
                    "config file {}: `{key}` takes one value, not a list",
                    path.display()
                )));
            }
            v => vec![scalar(&path, &key, v)?],
        };
        let entry = (arg.get_id().to_string(), values);
        if global.is_some() {
            global_defaults.push(entry);
        } else {
            defaults.push(entry);
        }
    }
    let from_file = defaults
        .iter()
        .chain(&global_defaults)
        .map(|(id, _)| id.clone())
        .collect();
    let with_default = |a: Arg, values: Vec<String>| {
        a.default_values(values.into_iter().map(clap::builder::OsStr::from))
    };
    let mut command = command.mut_subcommand(SERVE, |mut serve| {
        for (id, values) in defaults {
            serve = serve.mut_arg(id, |a| with_default(a, values));
        }
        serve
    });
    // Global flags (`--log-format`) live on the root command.
    for (id, values) in global_defaults {
        command = command.mut_arg(id, |a| with_default(a, values));
    }
    Ok(Configured {
        command,
        from_file,
        issuers,
    })
}

/// Whether `value` is an `[[issuer]]` array of tables (or a lone `[issuer]` table).
fn is_tables(value: &toml::Value) -> bool {
    match value {
        toml::Value::Table(_) => true,
        toml::Value::Array(items) => items.first().is_some_and(toml::Value::is_table),
        _ => false,
    }
}

/// The `[[issuer]]` tables, checked: known keys only, each of its type, an `id` in each.
fn issuer_tables(
    path: &std::path::Path,
    value: toml::Value,
) -> Result<Vec<IssuerTable>, UsageError> {
    let items = match value {
        toml::Value::Array(items) => items,
        table => vec![table],
    };
    let mut out = Vec::with_capacity(items.len());
    for (n, item) in items.into_iter().enumerate() {
        let at = |what: String| {
            UsageError(format!(
                "config file {}: [[issuer]] number {}: {what}",
                path.display(),
                n + 1
            ))
        };
        let toml::Value::Table(table) = item else {
            return Err(at(format!("must be a table, not a {}", item.type_str())));
        };
        let mut issuer = IssuerTable::default();
        let mut has_id = false;
        for (key, value) in table {
            let name = key.replace('_', "-");
            let string = |value: toml::Value| match value {
                toml::Value::String(s) => Ok(s),
                other => Err(at(format!(
                    "`{key}` must be a string, not a {}",
                    other.type_str()
                ))),
            };
            match name.as_str() {
                "id" => {
                    issuer.id = string(value)?;
                    has_id = true;
                }
                "jwt-key" => issuer.jwt_key = Some(string(value)?),
                "publisher-jwt-key" => issuer.publisher_jwt_key = Some(string(value)?),
                "subscriber-jwt-key" => issuer.subscriber_jwt_key = Some(string(value)?),
                "jwt-algorithm" => issuer.jwt_algorithm = Some(string(value)?),
                "jwks-uri" => issuer.jwks_uri = Some(string(value)?),
                "algorithms" => {
                    let toml::Value::Array(list) = value else {
                        return Err(at(format!(
                            "`{key}` must be a list of algorithm names, not a {}",
                            value.type_str()
                        )));
                    };
                    issuer.algorithms =
                        Some(list.into_iter().map(string).collect::<Result<_, _>>()?);
                }
                "authorization-server" => match value {
                    toml::Value::Boolean(b) => issuer.authorization_server = b,
                    other => {
                        return Err(at(format!(
                            "`{key}` must be true or false, not a {}",
                            other.type_str()
                        )));
                    }
                },
                _ => {
                    return Err(at(format!(
                        "unknown key `{key}` (an issuer's keys are {})",
                        ISSUER_KEYS.join(", ")
                    )));
                }
            }
        }
        if !has_id {
            return Err(at(
                "no `id` (the issuer identifier, which its tokens carry as `iss`)".to_owned(),
            ));
        }
        out.push(issuer);
    }
    Ok(out)
}

fn scalar(path: &std::path::Path, key: &str, value: toml::Value) -> Result<String, UsageError> {
    match value {
        toml::Value::String(s) => Ok(s),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(UsageError(format!(
            "config file {}: `{key}` must be a string, number or boolean, not a {}",
            path.display(),
            other.type_str()
        ))),
    }
}

/// The config file named on the command line of `serve`, or in `SSEHUB_CONFIG`. Looked up
/// before clap parses, because its values must be in place when clap does.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    if args.get(1).and_then(|a| a.to_str()) != Some(SERVE) {
        return None;
    }
    let mut iter = args.iter().skip(2);
    while let Some(arg) = iter.next() {
        let arg = arg.to_str()?;
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(p) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os("SSEHUB_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// With `--print-config`: the effective configuration of `serve`, as TOML.
pub fn printed(configured: &Configured, matches: &ArgMatches) -> Option<String> {
    let command = &configured.command;
    let (_, serve) = matches.subcommand().filter(|(name, _)| *name == SERVE)?;
    if !serve.get_flag(PRINT_CONFIG) {
        return None;
    }
    let spec = command.find_subcommand(SERVE)?;
    let mut out =
        String::from("# ssehub serve: effective configuration (flags > env > file > defaults)\n");
    // In name order: the file's values moved their flags to the end of clap's list.
    let globals = command.get_arguments().filter(|a| a.is_global_set());
    let mut args: Vec<(&Arg, &ArgMatches)> = spec
        .get_arguments()
        .map(|a| (a, serve))
        .chain(globals.map(|a| (a, matches)))
        .collect();
    args.sort_by_key(|(a, _)| a.get_long());
    for (arg, serve) in args {
        let id = arg.get_id().as_str();
        if matches!(id, CONFIG | PRINT_CONFIG | "help") || arg.get_long().is_none() {
            continue;
        }
        let key = arg.get_long().unwrap_or(id);
        // `issuer = "..."` and `[[issuer]]` tables cannot share a TOML document.
        let clash = key == ISSUER && !configured.issuers.is_empty();
        let source = match serve.value_source(id) {
            Some(_) if clash => {
                let value = serve
                    .get_raw(id)
                    .into_iter()
                    .flatten()
                    .next()
                    .map(|v| toml_string(&v.to_string_lossy()))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "# {key} = {value}  (from a flag or the environment; not valid beside the \
                     [[issuer]] tables below)\n"
                ));
                continue;
            }
            Some(ValueSource::CommandLine) => "flag",
            Some(ValueSource::EnvVariable) => "env",
            Some(ValueSource::DefaultValue) if configured.from_file.iter().any(|f| f == id) => {
                "file"
            }
            Some(ValueSource::DefaultValue) => "default",
            _ => {
                out.push_str(&format!("# {key} is not set\n"));
                continue;
            }
        };
        let values: Vec<String> = serve
            .get_raw(id)
            .into_iter()
            .flatten()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let secret = arg.is_hide_env_values_set();
        let rendered: Vec<String> = values
            .iter()
            .map(|v| {
                let url = [
                    "redis://",
                    "rediss://",
                    "redis+unix://",
                    "unix://",
                    "postgres://",
                    "postgresql://",
                ]
                .iter()
                .any(|scheme| v.starts_with(scheme))
                    // A password in the query (`?password=`) is not in the userinfo.
                    && !v.contains("password=");
                if secret && !url {
                    toml_string("<redacted>")
                } else {
                    // A URL (`--redis`, `--postgres`) stays readable with only its password hidden.
                    render(&redact_url(v))
                }
            })
            .collect();
        let value = if matches!(arg.get_action(), clap::ArgAction::Append) {
            format!("[{}]", rendered.join(", "))
        } else {
            rendered
                .into_iter()
                .next()
                .unwrap_or_else(|| toml_string(""))
        };
        out.push_str(&format!("{key} = {value}  # {source}\n"));
    }
    for issuer in &configured.issuers {
        out.push_str(&issuer_toml(issuer));
    }
    Some(out)
}

/// An `[[issuer]]` table as TOML, keys redacted.
fn issuer_toml(issuer: &IssuerTable) -> String {
    let mut out = String::from("\n[[issuer]]  # file\n");
    out.push_str(&format!("id = {}\n", toml_string(&issuer.id)));
    let secrets = [
        ("jwt-key", &issuer.jwt_key),
        ("publisher-jwt-key", &issuer.publisher_jwt_key),
        ("subscriber-jwt-key", &issuer.subscriber_jwt_key),
    ];
    for (key, value) in secrets {
        if value.is_some() {
            out.push_str(&format!("{key} = {}\n", toml_string("<redacted>")));
        }
    }
    for (key, value) in [
        ("jwt-algorithm", &issuer.jwt_algorithm),
        ("jwks-uri", &issuer.jwks_uri),
    ] {
        if let Some(value) = value {
            out.push_str(&format!("{key} = {}\n", toml_string(value)));
        }
    }
    if let Some(list) = &issuer.algorithms {
        let names: Vec<String> = list.iter().map(|a| toml_string(a)).collect();
        out.push_str(&format!("algorithms = [{}]\n", names.join(", ")));
    }
    if issuer.authorization_server {
        out.push_str("authorization-server = true\n");
    }
    out
}

/// Numbers and booleans bare, everything else as a TOML string.
fn render(v: &str) -> String {
    if v.parse::<i64>().is_ok() || v == "true" || v == "false" {
        v.to_string()
    } else {
        toml_string(v)
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `scheme://user:password@host` with the password replaced, for URLs such as `--redis`.
fn redact_url(v: &str) -> String {
    let Some(scheme_end) = v.find("://") else {
        return v.to_string();
    };
    let rest = &v[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return v.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:<redacted>{}",
            &v[..scheme_end + 3],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(
            redact_url("redis://user:secret@127.0.0.1:6379/0"),
            "redis://user:<redacted>@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("./ssehub-data"), "./ssehub-data");
    }

    #[test]
    fn config_path_is_found_only_for_serve() {
        let a = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_path(&a(&["ssehub", "serve", "--memory", "--config", "x.toml"])),
            Some(PathBuf::from("x.toml"))
        );
        assert_eq!(
            config_path(&a(&["ssehub", "serve", "--config=y.toml"])),
            Some(PathBuf::from("y.toml"))
        );
        assert_eq!(
            config_path(&a(&["ssehub", "publish", "--config", "x"])),
            None
        );
    }

    #[test]
    fn values_render_as_toml_that_reads_back() {
        assert_eq!(render("1048576"), "1048576");
        assert_eq!(render("true"), "true");
        assert_eq!(render("1h"), "\"1h\"");
        let back: toml::Table = format!("k = {}", render("a\"b'c")).parse().unwrap();
        assert_eq!(back["k"].as_str(), Some("a\"b'c"));
    }
}
