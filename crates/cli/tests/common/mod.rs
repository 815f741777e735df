//! `ssehub serve` as a child process for the CLI's integration tests: start it on port 0, read
//! its log lines, find its URL, stop it with SIGTERM or kill it with SIGKILL.
#![allow(dead_code)]

pub mod postgres;
pub mod redis;
pub mod sse;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ssehub");

pub struct Served {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// `ssehub serve --addr 127.0.0.1:0 --legacy-protocol ARGS...` with `ENV` set, logging at
    /// info: a hub that also speaks the 0.x protocol, for the tests written with 0.x tokens
    /// ([`all_rights_token`]).
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Served {
        let mut all = vec!["--legacy-protocol"];
        all.extend_from_slice(args);
        Served::start_modern(&all, env)
    }

    /// `ssehub serve --addr 127.0.0.1:0 ARGS...` with `ENV` set, logging at info: a Mercure 1.0
    /// hub (unless ARGS turn the legacy protocol on).
    pub fn start_modern(args: &[&str], env: &[(&str, &str)]) -> Served {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Served { child, lines }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first log line containing `needle` (fails after 15 s).
    pub fn wait_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// The hub's Mercure URL, from the "hub at" log line.
    pub fn hub_url(&self) -> String {
        after(&self.wait_line("hub at http://"), "hub at ").to_owned()
    }

    /// SIGTERM, then the exit status (fails if it takes over 10 s).
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "ssehub did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`.
    pub fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// The whitespace-delimited word after `marker` in `line`.
pub fn after<'a>(line: &'a str, marker: &str) -> &'a str {
    let start = line
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} not in {line:?}"))
        + marker.len();
    line[start..].split_whitespace().next().unwrap()
}

/// A 0.x HS256 token for `key` that may publish and subscribe to everything (for a hub started
/// with `--legacy-protocol`).
pub fn all_rights_token(key: &str) -> String {
    let key = ssehub_auth::KeyConfig {
        algorithm: ssehub_auth::Algorithm::HS256,
        key: key.into(),
    };
    ssehub_auth::encode_token(&key, Some(&["*"]), Some(&["*"]), None).unwrap()
}

/// A Mercure 1.0 HS256 token from `issuer`, signed with `key`, for the hub whose resource
/// identifier is `audience`, that may publish and subscribe to everything.
pub fn modern_all_rights_token(key: &str, issuer: &str, audience: &str) -> String {
    let key = ssehub_auth::KeyConfig::new(ssehub_auth::Algorithm::HS256, key);
    ssehub_auth::TokenSpec::new(issuer, audience)
        .publish([ssehub_auth::Matcher::any()])
        .subscribe([ssehub_auth::Matcher::any()], None)
        .sign(&key)
        .unwrap()
}

/// The token in a `publish:   curl ... Authorization: Bearer T'` (or `subscribe:`) line the hub
/// logs when it generated its key.
pub fn token_in_publish_line(line: &str) -> String {
    after(line, "Authorization: Bearer ")
        .trim_end_matches('\'')
        .to_owned()
}

/// Subscribes to `demo` on `hub_url`, checks the preamble, publishes `hello` with `token` and
/// checks that it arrives with the id the publish answered; returns the open subscription.
pub async fn hello_round_trip(
    client: &reqwest::Client,
    hub_url: &str,
    token: &str,
) -> reqwest::Response {
    let mut sub = client
        .get(format!("{hub_url}?match=demo"))
        .send()
        .await
        .unwrap();
    assert_eq!(sub.status(), 200);
    let first = sub.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"retry: 3000\n");
    let res = client
        .post(hub_url)
        .bearer_auth(token)
        .form(&[("topic", "demo"), ("data", "hello")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let id = res.text().await.unwrap();
    let event = sub.chunk().await.unwrap().unwrap();
    assert_eq!(event, format!("id: {id}\ndata: hello\n\n"));
    sub
}

/// The milliseconds of `line`, which must be exactly one `retry:` line with no blank line after
/// it (what a draining hub sends last).
pub fn retry_of(line: &str) -> u64 {
    line.strip_prefix("retry: ")
        .and_then(|r| r.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("not a retry line: {line:?}"))
        .parse()
        .unwrap()
}
