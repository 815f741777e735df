//! The command line: every subcommand's flags, each also settable from an `SSEHUB_*` variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Real-time server-to-browser push over plain HTTP with Server-Sent Events.
#[derive(Debug, Parser)]
#[command(name = "ssehub", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub: the Mercure protocol at /.well-known/mercure (GET subscribes, POST
    /// publishes) and /healthz.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SSEHUB_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// Key for both publisher and subscriber JWTs: the HS* shared secret, or for RS*/ES*/PS* a
    /// PEM public key (its text or a file path). Without any key, one is generated and a
    /// ready-to-paste publish command is logged.
    #[arg(long, env = "SSEHUB_JWT_KEY", hide_env_values = true)]
    pub jwt_key: Option<String>,

    /// Key for publisher JWTs (overrides --jwt-key for publishers).
    #[arg(long, env = "SSEHUB_PUBLISHER_JWT_KEY", hide_env_values = true)]
    pub publisher_jwt_key: Option<String>,

    /// Key for subscriber JWTs (overrides --jwt-key for subscribers).
    #[arg(long, env = "SSEHUB_SUBSCRIBER_JWT_KEY", hide_env_values = true)]
    pub subscriber_jwt_key: Option<String>,

    /// JWT algorithm: HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, PS256, PS384 or
    /// PS512. Tokens signed with any other algorithm are refused.
    #[arg(long, env = "SSEHUB_JWT_ALGORITHM", default_value = "HS256")]
    pub jwt_algorithm: String,

    /// Origin allowed to use the hub from a browser on another origin (CORS), with credentials
    /// so cookie auth works; repeat it, or give `*` for any origin (then without credentials).
    /// In the variable, separate origins with commas.
    #[arg(long = "cors-origin", env = "SSEHUB_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Interval of the heartbeat comment sent to idle subscribers (e.g. 15s, 500ms); 0 disables.
    #[arg(long, env = "SSEHUB_HEARTBEAT", default_value = "15s", value_parser = parse_duration)]
    pub heartbeat: Duration,

    /// Updates kept in memory for replay with Last-Event-ID (0 disables replay).
    #[arg(long, env = "SSEHUB_HISTORY_SIZE", default_value_t = 10_000)]
    pub history_size: usize,

    /// Refuse subscribers without a valid token (by default they receive public updates).
    #[arg(long, env = "SSEHUB_NO_ANONYMOUS")]
    pub no_anonymous: bool,

    /// Largest publish request body, in bytes; larger ones get 413.
    #[arg(long, env = "SSEHUB_MAX_BODY", default_value_t = 1024 * 1024)]
    pub max_body: usize,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 15s, 500ms, 1m)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
    }
}
