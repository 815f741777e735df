//! `ssehub subscribe`: prints the events of a stream, as a browser's `EventSource` receives them.

use std::io::{self, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use ssehub_client::{Client, ClientError, ClientEvent, CloseReason, MessageEvent, ReconnectReason};

use crate::UsageError;
use crate::cli::SubscribeArgs;
use crate::endpoint::{parse_url, subscribe_url, tidy_http_error};

/// How long connecting (TCP and TLS) may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(args: SubscribeArgs) -> anyhow::Result<()> {
    // The 1.0 parameters, then the 0.x one (a 1.0 hub refuses it with a reason we show).
    let matchers: Vec<(&str, &str)> = args
        .matches
        .iter()
        .map(|m| ("match", m.as_str()))
        .chain(
            args.match_urlpatterns
                .iter()
                .map(|p| ("match_urlpattern", p.as_str())),
        )
        .chain(args.topics.iter().map(|t| ("topic", t.as_str())))
        .collect();
    let url = if matchers.is_empty() {
        parse_url(&args.url, "URL")?
    } else {
        subscribe_url(&args.url, &matchers)?
    };
    let mut builder = Client::builder(url.as_str()).connect_timeout(CONNECT_TIMEOUT);
    for header in &args.headers {
        let (name, value) = header.split_once(':').ok_or_else(|| {
            UsageError(format!(
                "invalid --header {header:?}: expected 'Name: value'"
            ))
        })?;
        builder = builder.header(name.trim(), value.trim()).map_err(usage)?;
    }
    if let Some(command) = &args.token_command {
        // Run once now, so a command that does not work stops us before any connection, with
        // its own reason; that token serves the first connection, later ones run it again.
        let first = token_from_command(command)
            .await
            .map_err(|e| UsageError(format!("--token-command failed: {e}")))?;
        let first = Arc::new(Mutex::new(Some(first)));
        let command = command.clone();
        builder = builder.token_provider(move || {
            let unused = first.lock().ok().and_then(|mut t| t.take());
            let command = command.clone();
            async move {
                match unused {
                    Some(token) => Ok(token),
                    None => token_from_command(&command)
                        .await
                        .map_err(|e| format!("--token-command failed: {e}")),
                }
            }
        });
    } else if let Some(token) = &args.token {
        builder = builder.bearer_token(token);
    }
    if let Some(id) = &args.last_event_id {
        builder = builder.last_event_id(id);
    }
    if args.no_reconnect {
        builder = builder.no_reconnect();
    }
    let client = builder.build().map_err(usage)?;

    let mut printer = Printer {
        json: args.json,
        out: io::stdout(),
        received: 0,
    };
    let outcome = match args.timeout {
        Some(limit) => tokio::time::timeout(limit, follow(&client, args.count, &mut printer))
            .await
            .unwrap_or(Outcome::TimedOut(limit)),
        None => follow(&client, args.count, &mut printer).await,
    };
    let received = printer.received;
    let of_count = |n: u64| match args.count {
        Some(count) => format!("{n} of {count} event{}", plural(count)),
        None => format!("{n} event{}", plural(n)),
    };
    match outcome {
        Outcome::Done | Outcome::StdoutClosed => Ok(()),
        Outcome::Ended if args.count.is_none() => Ok(()),
        Outcome::Ended => anyhow::bail!("the stream ended after {}", of_count(received)),
        Outcome::TimedOut(limit) => anyhow::bail!(
            "timed out after {} with {}",
            humantime::format_duration(limit),
            of_count(received)
        ),
        Outcome::Unreachable(reason) => {
            let reason = tidy_http_error(&reason);
            Err(UsageError(format!("cannot connect to {}: {reason}", client.url())).into())
        }
        Outcome::Failed(error) => Err(error.into()),
        Outcome::Lost(error) => {
            anyhow::bail!("connection lost after {}: {error}", of_count(received))
        }
        Outcome::Output(error) => Err(anyhow::Error::new(error).context("cannot write to stdout")),
    }
}

enum Outcome {
    /// `--count` events were printed.
    Done,
    /// The stream ended cleanly: `204 No Content`, or the end of the body with reconnection off.
    Ended,
    TimedOut(Duration),
    /// The first connection could not be made.
    Unreachable(String),
    /// The server refused the stream (status, content type), or another error ended it.
    Failed(ClientError),
    /// A connection that had opened failed, with reconnection off.
    Lost(String),
    /// Whoever reads our output is gone (`| head -1`): not an error.
    StdoutClosed,
    Output(io::Error),
}

async fn follow(client: &Client, count: Option<u64>, printer: &mut Printer) -> Outcome {
    let mut stream = client.stream();
    let mut opened = false;
    loop {
        let item = match stream.next().await {
            Some(item) => item,
            None => return Outcome::Ended,
        };
        match item {
            Ok(ClientEvent::Open { url, version }) => {
                opened = true;
                eprintln!("ssehub: connected to {url} ({version:?})");
            }
            Ok(ClientEvent::Message(event)) => {
                if let Err(error) = printer.print(&event) {
                    return if error.kind() == io::ErrorKind::BrokenPipe {
                        Outcome::StdoutClosed
                    } else {
                        Outcome::Output(error)
                    };
                }
                if count.is_some_and(|n| printer.received >= n) {
                    return Outcome::Done;
                }
            }
            Ok(ClientEvent::Reconnecting { delay, reason, .. }) => {
                let reason = match reason {
                    ReconnectReason::EndOfStream => "the stream ended".to_owned(),
                    ReconnectReason::ReadTimeout => "no data received".to_owned(),
                    ReconnectReason::Error(error) => tidy_http_error(&error),
                    other => format!("{other:?}"),
                };
                if !opened {
                    return Outcome::Unreachable(reason);
                }
                eprintln!(
                    "ssehub: {reason}; reconnecting in {:.1}s",
                    delay.as_secs_f64()
                );
            }
            Ok(ClientEvent::Closed(reason)) => {
                if reason == CloseReason::NoContent {
                    eprintln!("ssehub: the server answered 204 No Content: the stream is over");
                }
                return Outcome::Ended;
            }
            Ok(_) => {} // retry changes and comments (heartbeats)
            Err(error @ ClientError::Http(_)) if !opened => {
                return Outcome::Unreachable(error.to_string());
            }
            Err(error @ (ClientError::Http(_) | ClientError::ReadTimeout(_))) => {
                return Outcome::Lost(tidy_http_error(&error.to_string()));
            }
            Err(error) => return Outcome::Failed(error),
        }
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

struct Printer {
    json: bool,
    out: io::Stdout,
    received: u64,
}

#[derive(Serialize)]
struct JsonEvent<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    data: &'a str,
    id: &'a str,
}

impl Printer {
    /// Writes one event and flushes, so a reader sees it at once.
    fn print(&mut self, event: &MessageEvent) -> io::Result<()> {
        let mut out = self.out.lock();
        if self.json {
            let line = serde_json::to_string(&JsonEvent {
                event_type: &event.event_type,
                data: &event.data,
                id: &event.last_event_id,
            })?;
            writeln!(out, "{line}")?;
        } else {
            write_readable(&mut out, event)?;
        }
        out.flush()?;
        self.received += 1;
        Ok(())
    }
}

/// The readable form: the event's fields as `text/event-stream` lines (`event`, then `id` when
/// there is one, then one `data` line per line of data, without the space when the line is
/// empty), and a blank line.
fn write_readable(out: &mut impl Write, event: &MessageEvent) -> io::Result<()> {
    writeln!(out, "event: {}", event.event_type)?;
    if !event.last_event_id.is_empty() {
        writeln!(out, "id: {}", event.last_event_id)?;
    }
    for line in event.data.split('\n') {
        if line.is_empty() {
            writeln!(out, "data:")?;
        } else {
            writeln!(out, "data: {line}")?;
        }
    }
    writeln!(out)
}

/// How long `--token-command` may run.
const TOKEN_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `sh -c COMMAND` and returns its trimmed standard output, which must be one token.
async fn token_from_command(command: &str) -> Result<String, String> {
    let run = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(TOKEN_COMMAND_TIMEOUT, run)
        .await
        .map_err(|_| {
            format!(
                "it did not finish within {}",
                humantime::format_duration(TOKEN_COMMAND_TIMEOUT)
            )
        })?
        .map_err(|e| format!("cannot run sh: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = crate::endpoint::first_line(&stderr);
        let status = match output.status.code() {
            Some(code) => format!("exited with status {code}"),
            None => "was killed by a signal".to_owned(),
        };
        return Err(if reason.is_empty() {
            status
        } else {
            format!("{status}: {reason}")
        });
    }
    let token = String::from_utf8(output.stdout)
        .map_err(|_| "its output is not UTF-8".to_owned())?
        .trim()
        .to_owned();
    if token.is_empty() {
        return Err("it printed nothing (it must print the token)".to_owned());
    }
    if token.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(
            "its output is not one token (it holds spaces, several lines or control characters)"
                .to_owned(),
        );
    }
    Ok(token)
}

fn usage(error: ClientError) -> UsageError {
    UsageError(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, data: &str, id: &str) -> MessageEvent {
        MessageEvent {
            event_type: event_type.to_owned(),
            data: data.to_owned(),
            last_event_id: id.to_owned(),
        }
    }

    #[test]
    fn readable_form_labels_every_field_and_splits_data_lines() {
        let mut out = Vec::new();
        write_readable(&mut out, &event("greeting", "hello\nworld", "7")).unwrap();
        write_readable(&mut out, &event("message", "", "")).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "event: greeting\nid: 7\ndata: hello\ndata: world\n\nevent: message\ndata:\n\n"
        );
    }

    #[test]
    fn json_form_has_type_data_id_in_that_order() {
        let line = serde_json::to_string(&JsonEvent {
            event_type: "t",
            data: "a\"b\nc",
            id: "",
        })
        .unwrap();
        assert_eq!(line, r#"{"type":"t","data":"a\"b\nc","id":""}"#);
    }
}
