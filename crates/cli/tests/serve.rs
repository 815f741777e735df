//! `ssehub serve` as a real process: flags, the generated-key curl line, publish/subscribe over
//! TCP, and a clean exit on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ssehub");

struct Served {
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
    fn start(args: &[&str]) -> Served {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(["--addr", "127.0.0.1:0", "--memory"])
            .args(args)
            .env("RUST_LOG", "info")
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

    /// The first log line containing `needle` (fails after 10 s).
    fn wait_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
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

    fn terminate(mut self) -> std::process::ExitStatus {
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
}

fn after<'a>(line: &'a str, marker: &str) -> &'a str {
    let start = line
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} not in {line:?}"))
        + marker.len();
    line[start..].split_whitespace().next().unwrap()
}

#[tokio::test]
async fn generated_key_curl_line_works_and_sigterm_exits_zero() {
    let served = Served::start(&[]);
    let listening = served.wait_line("hub at http://");
    let hub_url = after(&listening, "hub at ").to_owned();
    let publish_line = served.wait_line("publish:   curl");
    let token = after(&publish_line, "Authorization: Bearer ")
        .trim_end_matches('\'')
        .to_owned();

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut sub = client
        .get(format!("{hub_url}?topic=demo"))
        .send()
        .await
        .unwrap();
    assert_eq!(sub.status(), 200);
    let first = sub.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b":\nretry: 3000\n\n");

    let res = client
        .post(&hub_url)
        .bearer_auth(&token)
        .form(&[("topic", "demo"), ("data", "hello")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let id = res.text().await.unwrap();
    let event = sub.chunk().await.unwrap().unwrap();
    assert_eq!(event, format!("id: {id}\ndata: hello\n\n"));

    let status = tokio::task::spawn_blocking(move || served.terminate())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    // The stream ended cleanly rather than being cut.
    assert_eq!(sub.chunk().await.unwrap(), None);
}

#[tokio::test]
async fn flags_also_come_from_the_environment() {
    let mut child = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("SSEHUB_JWT_KEY", "from-env-secret")
        .env("SSEHUB_NO_ANONYMOUS", "true")
        .env("SSEHUB_MEMORY", "true")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let served = Served { child, lines };
    let listening = served.wait_line("hub at http://");
    let hub_url = after(&listening, "hub at ").to_owned();
    let client = reqwest::Client::new();
    // --no-anonymous from the environment: a subscriber without a token is refused.
    let res = client
        .get(format!("{hub_url}?topic=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        tokio::task::spawn_blocking(move || served.terminate())
            .await
            .unwrap()
            .code(),
        Some(0)
    );
}

#[test]
fn help_lists_every_flag() {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--addr",
        "--jwt-key",
        "--publisher-jwt-key",
        "--subscriber-jwt-key",
        "--jwt-algorithm",
        "--cors-origin",
        "--heartbeat",
        "--history-size",
        "--no-anonymous",
        "--max-body",
        "--data-dir",
        "--memory",
        "--retain-count",
        "--retain-age",
        "--retain-bytes",
        "--durability",
        "SSEHUB_DATA_DIR",
        "SSEHUB_DURABILITY",
        "[default: ./ssehub-data]",
        "[default: batched]",
        "SSEHUB_ADDR",
        "SSEHUB_MAX_BODY",
        "[default: 127.0.0.1:3000]",
        "[default: 15s]",
        "[default: 1048576]",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn bad_flags_exit_2_with_one_clear_line() {
    for args in [
        &["serve", "--heartbeat", "soon"][..],
        &["serve", "--addr", "nowhere"],
        &["serve", "--jwt-algorithm", "XX999"],
        &["serve", "--jwt-algorithm", "RS256"],
        &[
            "serve",
            "--jwt-algorithm",
            "RS256",
            "--jwt-key",
            "not a pem",
        ],
        &["serve", "--bogus"],
    ] {
        let out = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
