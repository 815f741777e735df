//! The `ssehub` binary: parses the command line and hands over to the subcommand.

mod cli;
mod config_file;
mod endpoint;
mod issuers;
mod publish;
mod serve;
mod subscribe;
mod token;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A mistake in how the command was invoked, or in what it points at (a bad flag or URL, a
/// host that cannot be reached): reported on stderr in one line, with exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let configured = match config_file::apply(cli::Cli::command(), &args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ssehub: {e}");
            return ExitCode::from(2);
        }
    };
    let parsed = configured
        .command
        .clone()
        .try_get_matches_from(&args)
        .and_then(|m| cli::Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let cli = match parsed {
        Ok((_, matches)) if config_file::printed(&configured, &matches).is_some() => {
            print!(
                "{}",
                config_file::printed(&configured, &matches).unwrap_or_default()
            );
            return ExitCode::SUCCESS;
        }
        Ok((cli, _)) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            e.exit()
        }
        Err(e) => {
            eprintln!("ssehub: {}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    let issuer_tables = configured.issuers;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        cli::LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // One JSON object per line, its fields at the top level, for log collectors.
        cli::LogFormat::Json => logs.json().flatten_event(true).with_ansi(false).init(),
    }
    // While this is the only thread: each later doubling of the descriptor table would wait
    // for an RCU grace period in the middle of accepting (ssehub_server::presize_fd_table).
    // 65,536 slots are 512 KiB of kernel memory; past them the table grows on demand.
    ssehub_server::presize_fd_table(1 << 16);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ssehub: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Spawned, not run by `block_on` on this thread: `serve`'s accept loop then runs on a
    // runtime worker beside the connection tasks it spawns, instead of waking another thread
    // for every accepted connection (docs/DESIGN.md, "Runtime").
    let result = runtime.block_on(async {
        tokio::spawn(async move {
            match cli.command {
                cli::Command::Serve(args) => serve::run(args, issuer_tables).await,
                cli::Command::Subscribe(args) => subscribe::run(args).await,
                cli::Command::Publish(args) => publish::run(args).await,
                cli::Command::Token(args) => token::run(args),
            }
        })
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("the command's task failed: {e}")))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<UsageError>() => {
            eprintln!("ssehub: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("ssehub: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Clap's error message (which spans several lines: the error, tips, usage) as one line: the
/// error itself, then where to find help.
fn one_line(error: &clap::Error) -> String {
    let text = error.to_string();
    let message: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|line| !line.is_empty())
        .collect();
    let message = message.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    // There are no options before the subcommand other than --help and --version.
    let subcommand = std::env::args()
        .nth(1)
        .filter(|arg| ["serve", "subscribe", "publish", "token"].contains(&arg.as_str()));
    match subcommand {
        Some(sub) => format!("{message} (see 'ssehub {sub} --help')"),
        None => format!("{message} (see 'ssehub --help')"),
    }
}
