//! `ssehub token`, `ssehub publish` and `ssehub subscribe` as real processes, against a real
//! `ssehub serve` (and, where the hub cannot produce the case, a scripted SSE server over TCP).
//! Every process is bounded in time: a hang fails the test instead of stalling the suite.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_ssehub");
const KEY: &str = "commands-test-secret-0123456789abcdef";
/// The longest any process may take.
const LIMIT: Duration = Duration::from_secs(15);

/// `ssehub ARGS`, isolated from any `SSEHUB_*` variable of the environment running the tests.
fn ssehub(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("RUST_LOG", "off");
    for var in [
        "SSEHUB_HUB",
        "SSEHUB_TOKEN",
        "SSEHUB_JWT_KEY",
        "SSEHUB_JWT_ALGORITHM",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// A running process with its output collected by threads.
struct Proc {
    child: Option<Child>,
    stderr: mpsc::Receiver<String>,
    /// stderr lines already taken from the channel.
    seen: Vec<String>,
    stdout: Option<JoinHandle<String>>,
}

#[derive(Debug)]
struct Out {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Out {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// stderr, asserted to be exactly one non-empty line.
    fn one_line_error(&self) -> &str {
        let line = self.stderr.strip_suffix('\n').unwrap_or(&self.stderr);
        assert!(
            !line.is_empty() && !line.contains('\n') && line.starts_with("ssehub: "),
            "want one error line, got {:?}",
            self.stderr
        );
        assert!(!line.contains("panicked"), "{line}");
        line
    }
}

impl Proc {
    fn spawn(cmd: &mut Command, stdin: Option<&[u8]>) -> Proc {
        let mut child = cmd
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input).unwrap();
        }
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            text
        });
        let err = child.stderr.take().unwrap();
        let (tx, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child: Some(child),
            stderr,
            seen: Vec::new(),
            stdout: Some(stdout),
        }
    }

    /// Drops the read end of stdout, so the process's next write fails with a broken pipe.
    fn spawn_with_stdout_closed(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let err = child.stderr.take().unwrap();
        let (tx, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Proc {
            child: Some(child),
            stderr,
            seen: Vec::new(),
            stdout: None,
        }
    }

    /// The first stderr line containing `needle`.
    fn wait_line(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.stderr.recv_timeout(left).unwrap_or_else(|_| {
                panic!("no stderr line with {needle:?}; so far: {:?}", self.seen)
            });
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Waits for the exit (killing the process and failing after [`LIMIT`]).
    fn finish(mut self) -> Out {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the process did not exit within {LIMIT:?}; stderr: {:?}",
                    self.seen
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stdout = self
            .stdout
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default();
        // The stderr thread ends at EOF, which follows the exit.
        let mut lines = std::mem::take(&mut self.seen);
        while let Ok(line) = self.stderr.recv_timeout(LIMIT) {
            lines.push(line);
        }
        let stderr = lines.iter().map(|l| format!("{l}\n")).collect();
        Out {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `ssehub ARGS` to completion.
fn run(args: &[&str]) -> Out {
    Proc::spawn(&mut ssehub(args), None).finish()
}

/// Runs `ssehub ARGS` with `input` on stdin.
fn run_with_stdin(args: &[&str], input: &[u8]) -> Out {
    Proc::spawn(&mut ssehub(args), Some(input)).finish()
}

/// A `ssehub serve --jwt-key KEY` on a free port.
struct Hub {
    _proc: Proc,
    /// `http://127.0.0.1:PORT`
    base: String,
    /// `http://127.0.0.1:PORT/.well-known/mercure`
    endpoint: String,
}

impl Hub {
    fn start() -> Hub {
        let mut cmd = ssehub(&[
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--memory",
            "--jwt-key",
            KEY,
        ]);
        cmd.env("RUST_LOG", "info");
        let mut proc = Proc::spawn(&mut cmd, None);
        let line = proc.wait_line("hub at http://");
        let start = line.find("hub at ").unwrap() + "hub at ".len();
        let endpoint = line[start..].split_whitespace().next().unwrap().to_owned();
        let base = endpoint
            .strip_suffix("/.well-known/mercure")
            .unwrap()
            .to_owned();
        Hub {
            _proc: proc,
            base,
            endpoint,
        }
    }

    /// Publishes with a `*` publisher token; returns the id printed.
    fn publish(&self, args: &[&str]) -> String {
        let mut all = vec!["publish", "--hub", &self.base, "--jwt-key", KEY];
        all.extend_from_slice(args);
        let out = run(&all);
        assert_eq!(out.code(), Some(0), "{args:?}: {out:?}");
        let id = out.stdout.strip_suffix('\n').unwrap().to_owned();
        assert!(!id.is_empty() && !id.contains('\n'), "{out:?}");
        id
    }

    /// Starts `ssehub subscribe ARGS` and returns once it is connected.
    fn subscriber(&self, args: &[&str]) -> Proc {
        let mut proc = Proc::spawn(&mut ssehub(args), None);
        proc.wait_line("ssehub: connected to");
        proc
    }
}

fn token(args: &[&str]) -> String {
    let mut all = vec!["token", "--jwt-key", KEY];
    all.extend_from_slice(args);
    let out = run(&all);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout.matches('\n').count(), 1, "{out:?}");
    out.stdout.trim_end().to_owned()
}

fn claims(token: &str) -> Value {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims.clear();
    let key = jsonwebtoken::DecodingKey::from_secret(KEY.as_bytes());
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn token_prints_a_signed_mercure_jwt_that_the_hub_accepts() {
    let publisher = token(&["--publish", "*"]);
    assert_eq!(claims(&publisher)["mercure"], json!({"publish": ["*"]}));
    assert!(
        claims(&publisher).get("exp").is_none(),
        "no --ttl, no expiry"
    );

    let both = token(&[
        "--publish",
        "a",
        "--publish",
        "b/{id}",
        "--subscribe",
        "*",
        "--ttl",
        "1h",
    ]);
    let both = claims(&both);
    assert_eq!(
        both["mercure"],
        json!({"publish": ["a", "b/{id}"], "subscribe": ["*"]})
    );
    let exp = both["exp"].as_u64().unwrap();
    assert!(exp.abs_diff(now() + 3600) <= 5, "exp {exp}");

    // The key and algorithm also come from the environment.
    let out = Proc::spawn(
        ssehub(&["token", "--subscribe", "x"])
            .env("SSEHUB_JWT_KEY", KEY)
            .env("SSEHUB_JWT_ALGORITHM", "HS256"),
        None,
    )
    .finish();
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(
        claims(out.stdout.trim_end())["mercure"],
        json!({"subscribe": ["x"]})
    );

    // The hub takes the token.
    let hub = Hub::start();
    let out = run(&[
        "publish", "--hub", &hub.base, "--topic", "t", "--token", &publisher, "hi",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(!out.stdout.trim().is_empty());
}

#[test]
fn publish_prints_the_id_with_data_from_the_argument_or_stdin() {
    let hub = Hub::start();
    let publisher = token(&["--publish", "*"]);
    let base_args = [
        "publish", "--hub", &hub.base, "--topic", "books", "--token", &publisher,
    ];

    let mut args = base_args.to_vec();
    args.extend(["--id", "book-1", "--type", "created", "from the argument"]);
    let out = run(&args);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, "book-1\n");

    // `-` reads stdin byte for byte; the endpoint URL itself works as --hub too.
    let out = run_with_stdin(
        &[
            "publish",
            "--hub",
            &hub.endpoint,
            "--topic",
            "books",
            "--token",
            &publisher,
            "-",
        ],
        "line one\nline two\n".as_bytes(),
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    let generated = out.stdout.strip_suffix('\n').unwrap();
    assert!(
        !generated.is_empty() && !generated.contains('\n'),
        "{out:?}"
    );

    // From the environment, no data, to two topics, private, with --retry.
    let out = Proc::spawn(
        ssehub(&[
            "publish",
            "--topic",
            "books",
            "--topic",
            "other",
            "--private",
            "--retry",
            "250",
        ])
        .env("SSEHUB_HUB", &hub.base)
        .env("SSEHUB_TOKEN", &publisher),
        None,
    )
    .finish();
    assert_eq!(out.code(), Some(0), "{out:?}");
    let private_id = out.stdout.trim_end().to_owned();

    // What the hub stored, replayed to a subscriber allowed to see private updates.
    let subscriber = token(&["--subscribe", "*"]);
    let out = run(&[
        "subscribe",
        &hub.base,
        "--topic",
        "books",
        "--token",
        &subscriber,
        "--last-event-id",
        "earliest",
        "--json",
        "--count",
        "3",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(
        json_lines(&out.stdout),
        [
            json!({"type": "created", "data": "from the argument", "id": "book-1"}),
            json!({"type": "message", "data": "line one\nline two\n", "id": generated}),
            json!({"type": "message", "data": "", "id": private_id}),
        ]
    );
}

#[test]
fn publish_refusals_exit_1_with_the_hubs_reason() {
    let hub = Hub::start();
    let cases: [(&[&str], &str); 4] = [
        (&["--token", "not.a.jwt"], "HTTP 401: invalid token"),
        (&[], "HTTP 401: a publisher token is required"),
        (&["--jwt-key", "another-key"], "HTTP 401: invalid token"),
        (
            &["--token", &token(&["--publish", "elsewhere"])],
            "HTTP 403: the token may not publish",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec!["publish", "--hub", &hub.base, "--topic", "t"];
        args.extend_from_slice(extra);
        args.push("data");
        let out = run(&args);
        assert_eq!(out.code(), Some(1), "{extra:?}: {out:?}");
        assert_eq!(out.stdout, "");
        let line = out.one_line_error();
        assert!(
            line.starts_with("ssehub: the hub refused the update: "),
            "{line}"
        );
        assert!(line.contains(want), "{extra:?}: {line}");
    }
    // A duplicate id is refused too.
    hub.publish(&["--topic", "t", "--id", "same"]);
    let out = run(&[
        "publish",
        "--hub",
        &hub.base,
        "--topic",
        "t",
        "--id",
        "same",
        "--jwt-key",
        KEY,
    ]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.one_line_error().contains("HTTP 409"), "{out:?}");
}

#[test]
fn subscribe_json_count_prints_exactly_that_many_lines_then_exits_0() {
    let hub = Hub::start();
    let sub = hub.subscriber(&[
        "subscribe",
        &hub.base,
        "--topic",
        "news",
        "--json",
        "--count",
        "2",
    ]);
    hub.publish(&["--topic", "elsewhere", "not for us"]);
    let first = hub.publish(&[
        "--topic",
        "news",
        "--type",
        "headline",
        "--id",
        "n1",
        "{\"a\":1}",
    ]);
    assert_eq!(first, "n1");
    let second = hub.publish(&["--topic", "news", "two\nlines"]);
    hub.publish(&["--topic", "news", "after the count"]);

    let started = Instant::now();
    let out = sub.finish();
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(out.stdout.lines().count(), 2, "{out:?}");
    assert_eq!(
        json_lines(&out.stdout),
        [
            json!({"type": "headline", "data": "{\"a\":1}", "id": "n1"}),
            json!({"type": "message", "data": "two\nlines", "id": second}),
        ]
    );
}

#[test]
fn subscribe_timeout_exits_1_when_the_events_do_not_come() {
    let hub = Hub::start();
    let started = Instant::now();
    let out = run(&[
        "subscribe",
        &hub.base,
        "--topic",
        "quiet",
        "--timeout",
        "300ms",
        "--json",
    ]);
    let took = started.elapsed();
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr
            .contains("ssehub: timed out after 300ms with 0 events\n"),
        "{out:?}"
    );

    // With --count, the message says how far it got.
    let sub = hub.subscriber(&[
        "subscribe",
        &hub.base,
        "--topic",
        "q",
        "--count",
        "2",
        "--timeout",
        "2s",
    ]);
    hub.publish(&["--topic", "q", "only one"]);
    let out = sub.finish();
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stdout.contains("data: only one"), "{out:?}");
    assert!(
        out.stderr.contains("timed out after 2s with 1 of 2 events"),
        "{out:?}"
    );
}

#[test]
fn last_event_id_replays_what_came_after_it() {
    let hub = Hub::start();
    let ids: Vec<String> = ["one", "two", "three"]
        .iter()
        .map(|d| hub.publish(&["--topic", "log", d]))
        .collect();
    let out = run(&[
        "subscribe",
        &hub.endpoint,
        "--topic",
        "log",
        "--last-event-id",
        &ids[0],
        "--json",
        "--count",
        "2",
        "--timeout",
        "10s",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(
        json_lines(&out.stdout),
        [
            json!({"type": "message", "data": "two", "id": ids[1]}),
            json!({"type": "message", "data": "three", "id": ids[2]}),
        ]
    );
}

#[test]
fn readable_output_labels_each_field_and_connection_notes_go_to_stderr() {
    let hub = Hub::start();
    let mut sub = hub.subscriber(&["subscribe", &hub.base, "--topic", "r", "--count", "2"]);
    hub.publish(&[
        "--topic",
        "r",
        "--type",
        "greeting",
        "--id",
        "r-1",
        "hello\nworld",
    ]);
    hub.publish(&["--topic", "r", "--id", "r-2", ""]);
    let connected = sub.wait_line("connected");
    assert!(
        connected.contains(&hub.endpoint) && connected.contains("topic=r"),
        "{connected}"
    );
    let out = sub.finish();
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        "event: greeting\nid: r-1\ndata: hello\ndata: world\n\nevent: message\nid: r-2\ndata:\n\n"
    );
}

#[test]
fn a_refused_subscription_exits_1_with_the_hubs_reason() {
    let hub = Hub::start();
    let out = run(&[
        "subscribe",
        &hub.base,
        "--topic",
        "t",
        "--token",
        "not.a.jwt",
    ]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let line = out.one_line_error();
    assert!(
        line.contains("answered HTTP 401") && line.contains("invalid token"),
        "{line}"
    );

    // Without --topic, the URL is used as is: here the hub says a topic is missing.
    let out = run(&["subscribe", &hub.endpoint]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.one_line_error().contains("HTTP 400") && out.stderr.contains("missing topic"));
}

#[test]
fn closing_stdout_ends_subscribe_quietly() {
    let hub = Hub::start();
    let mut sub =
        Proc::spawn_with_stdout_closed(&mut ssehub(&["subscribe", &hub.base, "--topic", "p"]));
    sub.wait_line("connected");
    hub.publish(&["--topic", "p", "nobody reads this"]);
    let out = sub.finish();
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(!out.stderr.contains("panicked"), "{out:?}");
}

#[test]
fn unreachable_hosts_bad_urls_and_bad_flags_exit_2_with_one_line() {
    let closed = format!("http://127.0.0.1:{}", closed_port());
    let cases: [(&[&str], &str); 18] = [
        (&["subscribe", &closed, "--topic", "t"], "cannot connect to"),
        (
            &["subscribe", &closed, "--topic", "t", "--no-reconnect"],
            "cannot connect to",
        ),
        (
            &[
                "publish", "--hub", &closed, "--topic", "t", "--token", "x", "d",
            ],
            "cannot reach the hub",
        ),
        (&["subscribe", "not a url"], "invalid URL"),
        (
            &["subscribe", "ftp://example.com/x"],
            "scheme must be http or https",
        ),
        (&["subscribe", "nowhere", "--topic", "t"], "invalid hub URL"),
        (
            &["publish", "--hub", "127.0.0.1:3000", "--topic", "t", "d"],
            "invalid --hub URL",
        ),
        (
            &["subscribe", &closed, "--header", "no colon"],
            "invalid --header",
        ),
        (
            &["subscribe", &closed, "--header", "bad name: v"],
            "invalid header",
        ),
        (&["subscribe", &closed, "--count", "0"], "--count"),
        (&["subscribe", &closed, "--timeout", "soon"], "--timeout"),
        (&["subscribe", &closed, "--bogus"], "--bogus"),
        (&["subscribe"], "<URL>"),
        (&["publish", "--hub", &closed, "d"], "--topic"),
        (&["token", "--jwt-key", KEY], "--publish"),
        (&["token", "--publish", "*"], "--jwt-key"),
        (
            &[
                "token",
                "--jwt-key",
                KEY,
                "--publish",
                "*",
                "--jwt-algorithm",
                "XX1",
            ],
            "XX1",
        ),
        (
            &[
                "token",
                "--jwt-key",
                "not a pem",
                "--publish",
                "*",
                "--jwt-algorithm",
                "RS256",
            ],
            "--jwt-key",
        ),
    ];
    for (args, want) in cases {
        let started = Instant::now();
        let out = run(args);
        assert_eq!(out.code(), Some(2), "{args:?}: {out:?}");
        assert!(started.elapsed() < Duration::from_secs(10), "{args:?}");
        assert_eq!(out.stdout, "", "{args:?}");
        let line = out.one_line_error();
        assert!(line.contains(want), "{args:?}: {line}");
    }
}

#[test]
fn help_lists_every_flag_of_the_three_commands() {
    for (command, flags) in [
        (
            "subscribe",
            &[
                "--topic",
                "--last-event-id",
                "--header",
                "--token",
                "--json",
                "--count",
                "--timeout",
                "--no-reconnect",
                "SSEHUB_HUB",
                "SSEHUB_TOKEN",
            ][..],
        ),
        (
            "publish",
            &[
                "--hub",
                "--topic",
                "--type",
                "--id",
                "--retry",
                "--private",
                "--token",
                "--jwt-key",
                "[DATA]",
                "SSEHUB_HUB",
                "SSEHUB_TOKEN",
                "SSEHUB_JWT_KEY",
            ],
        ),
        (
            "token",
            &[
                "--jwt-key",
                "--jwt-algorithm",
                "--publish",
                "--subscribe",
                "--ttl",
                "SSEHUB_JWT_KEY",
            ],
        ),
    ] {
        let out = run(&[command, "--help"]);
        assert_eq!(out.code(), Some(0), "{out:?}");
        for flag in flags {
            assert!(
                out.stdout.contains(flag),
                "{command} --help lacks {flag}:\n{}",
                out.stdout
            );
        }
    }
}

/// A scripted SSE server: the n-th connection gets the n-th body (200, `text/event-stream`,
/// delimited by closing the connection); it records each request head. After the script it
/// stops accepting, so further connection attempts are refused.
fn scripted_server(bodies: Vec<&'static str>) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let (tx, requests) = mpsc::channel();
    std::thread::spawn(move || {
        for body in bodies {
            let (mut socket, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8];
            while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = tx.send(String::from_utf8_lossy(&head).to_lowercase());
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n{body}"
            );
            let _ = socket.write_all(response.as_bytes());
        }
    });
    (url, requests)
}

#[test]
fn subscribe_reconnects_like_a_browser_with_the_last_event_id() {
    let (url, requests) = scripted_server(vec![
        "retry: 50\n\ndata: first\n\nid: 7\nevent: named\ndata: second\n\ndata: cut off",
        "data: third\n\n",
    ]);
    let out = run(&["subscribe", &url, "--json", "--count", "3"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(
        json_lines(&out.stdout),
        [
            json!({"type": "message", "data": "first", "id": ""}),
            json!({"type": "named", "data": "second", "id": "7"}),
            json!({"type": "message", "data": "third", "id": "7"}),
        ]
    );
    assert!(
        out.stderr.contains("the stream ended; reconnecting in"),
        "{out:?}"
    );
    let first = requests.recv_timeout(LIMIT).unwrap();
    assert!(first.contains("accept: text/event-stream") && !first.contains("last-event-id"));
    let second = requests.recv_timeout(LIMIT).unwrap();
    assert!(second.contains("last-event-id: 7\r\n"), "{second}");
}

#[test]
fn no_reconnect_exits_at_the_end_of_the_stream() {
    let (url, requests) = scripted_server(vec!["data: a\ndata: b\n\n", "data: never\n\n"]);
    let out = run(&["subscribe", &url, "--no-reconnect", "-H", "X-Extra:  yes "]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, "event: message\ndata: a\ndata: b\n\n");
    let request = requests.recv_timeout(LIMIT).unwrap();
    assert!(request.contains("\r\nx-extra: yes\r\n"), "{request}");

    // Short of --count, the end of the stream is a failure.
    let (url, _requests) = scripted_server(vec!["data: only\n\n"]);
    let out = run(&[
        "subscribe",
        &url,
        "--no-reconnect",
        "--count",
        "2",
        "--json",
    ]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert_eq!(
        json_lines(&out.stdout),
        [json!({"type": "message", "data": "only", "id": ""})]
    );
    assert!(
        out.stderr.contains("the stream ended after 1 of 2 events"),
        "{out:?}"
    );
}
