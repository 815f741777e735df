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
/// The issuer the test hubs trust with [`KEY`].
const ISSUER: &str = "https://app.commands.test";
/// The longest any process may take.
const LIMIT: Duration = Duration::from_secs(15);

/// `ssehub ARGS`, isolated from any `SSEHUB_*` variable of the environment running the tests.
fn ssehub(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("RUST_LOG", "off");
    for var in [
        "SSEHUB_HUB",
        "SSEHUB_TOKEN",
        "SSEHUB_TOKEN_COMMAND",
        "SSEHUB_JWT_KEY",
        "SSEHUB_JWT_ALGORITHM",
        "SSEHUB_ISSUER",
        "SSEHUB_LEGACY_PROTOCOL",
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
        self.wait_nth_line(needle, 1)
    }

    /// The `n`-th stderr line containing `needle` (from 1).
    fn wait_nth_line(&mut self, needle: &str, n: usize) -> String {
        let found = |seen: &[String]| {
            seen.iter()
                .filter(|l| l.contains(needle))
                .nth(n - 1)
                .cloned()
        };
        if let Some(line) = found(&self.seen) {
            return line;
        }
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.stderr.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no stderr line number {n} with {needle:?}; so far: {:?}",
                    self.seen
                )
            });
            self.seen.push(line);
            if let Some(line) = found(&self.seen) {
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

/// A `ssehub serve --issuer ISSUER --jwt-key KEY` (or a 0.x hub) on a free port.
struct Hub {
    _proc: Proc,
    /// `http://127.0.0.1:PORT`
    base: String,
    /// `http://127.0.0.1:PORT/.well-known/mercure`
    endpoint: String,
}

impl Hub {
    /// A Mercure 1.0 hub trusting [`ISSUER`] with [`KEY`].
    fn start() -> Hub {
        Hub::start_with(&["--issuer", ISSUER, "--jwt-key", KEY])
    }

    /// A hub that also speaks 0.x, with [`KEY`] as its 0.x key.
    fn start_legacy() -> Hub {
        Hub::start_with(&["--legacy-protocol", "--jwt-key", KEY])
    }

    fn start_with(args: &[&str]) -> Hub {
        let mut all = vec!["serve", "--addr", "127.0.0.1:0", "--memory"];
        all.extend_from_slice(args);
        let mut cmd = ssehub(&all);
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

    /// Publishes with a token signed by `ssehub publish --jwt-key` for exactly these topics;
    /// returns the id printed.
    fn publish(&self, args: &[&str]) -> String {
        let mut all = vec![
            "publish",
            "--hub",
            &self.base,
            "--issuer",
            ISSUER,
            "--jwt-key",
            KEY,
        ];
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

/// `ssehub token --jwt-key KEY --issuer ISSUER ARGS`: a 1.0 token (ARGS give its audience).
fn token(args: &[&str]) -> String {
    let mut all = vec!["token", "--jwt-key", KEY, "--issuer", ISSUER];
    all.extend_from_slice(args);
    token_of(&all)
}

/// `ssehub token --legacy --jwt-key KEY ARGS`: a 0.x token.
fn legacy_token(args: &[&str]) -> String {
    let mut all = vec!["token", "--legacy", "--jwt-key", KEY];
    all.extend_from_slice(args);
    token_of(&all)
}

fn token_of(args: &[&str]) -> String {
    let out = run(args);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout.matches('\n').count(), 1, "{out:?}");
    out.stdout.trim_end().to_owned()
}

/// The verified claims of an HS256 token signed with [`KEY`] (the audience is not checked).
fn claims(token: &str) -> Value {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_aud = false;
    let key = jsonwebtoken::DecodingKey::from_secret(KEY.as_bytes());
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims
}

/// The decoded (unverified) header of a token.
fn header(token: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    serde_json::to_value(header).unwrap()
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
fn token_legacy_prints_a_0x_jwt_that_a_legacy_hub_accepts() {
    let publisher = legacy_token(&["--publish", "*"]);
    assert_eq!(claims(&publisher)["mercure"], json!({"publish": ["*"]}));
    assert!(
        claims(&publisher).get("exp").is_none(),
        "no --ttl, no expiry"
    );

    let both = legacy_token(&[
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
        ssehub(&["token", "--legacy", "--subscribe", "x"])
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

    // A hub with --legacy-protocol takes the token; a 1.0 hub does not.
    let hub = Hub::start_legacy();
    let out = run(&[
        "publish", "--hub", &hub.base, "--topic", "t", "--token", &publisher, "hi",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(!out.stdout.trim().is_empty());
    // So does a token `ssehub publish --legacy --jwt-key` signs.
    let out = run(&[
        "publish",
        "--hub",
        &hub.base,
        "--topic",
        "t",
        "--legacy",
        "--jwt-key",
        KEY,
        "hi",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");

    let modern = Hub::start();
    let out = run(&[
        "publish",
        "--hub",
        &modern.base,
        "--topic",
        "t",
        "--token",
        &publisher,
        "hi",
    ]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.one_line_error().contains("HTTP 401"), "{out:?}");
}

#[test]
fn token_prints_a_1_0_access_token_with_every_rfc9068_claim() {
    let hub = Hub::start();
    let before = now();
    let publisher = token(&["--hub", &hub.base, "--publish", "*"]);
    let header = header(&publisher);
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(header["alg"], "HS256", "{header}");
    assert!(header.get("kid").is_none_or(Value::is_null), "{header}");
    let c = claims(&publisher);
    assert_eq!(c["iss"], ISSUER);
    // --hub gives the hub's resource identifier (its Mercure URL) as the audience.
    assert_eq!(c["aud"], hub.endpoint.as_str());
    assert_eq!(
        c["client_id"], ISSUER,
        "the issuer is the client by default"
    );
    assert!(c["sub"].as_str().unwrap().starts_with("urn:uuid:"), "{c}");
    assert!(c["jti"].as_str().unwrap().starts_with("urn:uuid:"), "{c}");
    let iat = c["iat"].as_u64().unwrap();
    assert!(iat >= before && iat <= now(), "{c}");
    // The default lifetime is one hour, and `exp` is always there.
    assert_eq!(c["exp"].as_u64().unwrap(), iat + 3600, "{c}");
    assert_eq!(
        c["authorization_details"],
        json!([{
            "type": "https://mercure.rocks/authorization-detail",
            "actions": ["publish"],
            "topics": [{"match": "*"}],
        }])
    );
    assert!(c.get("mercure").is_none(), "{c}");

    // Every option.
    let full = token(&[
        "--audience",
        "https://a.example/.well-known/mercure",
        "--audience",
        "https://b.example/.well-known/mercure",
        "--publish",
        "https://example.com/books/1",
        "--publish-urlpattern",
        "https://example.com/authors/:id",
        "--subscribe",
        "*",
        "--subscribe-urlpattern",
        "https://example.com/books/:id",
        "--payload",
        r#"{"tenant": "t1"}"#,
        "--ttl",
        "2m",
        "--sub",
        "user-42",
        "--client-id",
        "https://app.example",
        "--kid",
        "key-2026",
    ]);
    assert_eq!(header_kid(&full), "key-2026");
    let c = claims(&full);
    assert_eq!(
        c["aud"],
        json!([
            "https://a.example/.well-known/mercure",
            "https://b.example/.well-known/mercure"
        ])
    );
    assert_eq!(c["sub"], "user-42");
    assert_eq!(c["client_id"], "https://app.example");
    assert_eq!(c["exp"].as_u64().unwrap(), c["iat"].as_u64().unwrap() + 120);
    assert_eq!(
        c["authorization_details"],
        json!([
            {
                "type": "https://mercure.rocks/authorization-detail",
                "actions": ["publish"],
                "topics": [
                    {"match": "https://example.com/books/1"},
                    {"match": "https://example.com/authors/:id", "match_type": "urlpattern"},
                ],
            },
            {
                "type": "https://mercure.rocks/authorization-detail",
                "actions": ["subscribe"],
                "topics": [
                    {"match": "*"},
                    {"match": "https://example.com/books/:id", "match_type": "urlpattern"},
                ],
                "payload": {"tenant": "t1"},
            },
        ])
    );

    // Issuer, key and hub also come from the environment.
    let out = Proc::spawn(
        ssehub(&["token", "--subscribe", "x"])
            .env("SSEHUB_JWT_KEY", KEY)
            .env("SSEHUB_ISSUER", ISSUER)
            .env("SSEHUB_HUB", &hub.base),
        None,
    )
    .finish();
    assert_eq!(out.code(), Some(0), "{out:?}");
    let c = claims(out.stdout.trim_end());
    assert_eq!(
        (c["iss"].as_str(), c["aud"].as_str()),
        (Some(ISSUER), Some(hub.endpoint.as_str()))
    );

    // The hub takes the publisher token.
    let out = run(&[
        "publish", "--hub", &hub.base, "--topic", "t", "--token", &publisher, "hi",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(!out.stdout.trim().is_empty());
    // A token for another hub is refused: the audience is checked.
    let elsewhere = token(&[
        "--audience",
        "https://other.example/.well-known/mercure",
        "--publish",
        "*",
    ]);
    let out = run(&[
        "publish", "--hub", &hub.base, "--topic", "t", "--token", &elsewhere, "hi",
    ]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.one_line_error().contains("HTTP 401: invalid token"),
        "{out:?}"
    );
}

fn header_kid(token: &str) -> String {
    header(token)["kid"].as_str().unwrap().to_owned()
}

#[test]
fn publish_prints_the_id_with_data_from_the_argument_or_stdin() {
    let hub = Hub::start();
    let publisher = token(&["--hub", &hub.base, "--publish", "*"]);
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
    let subscriber = token(&["--hub", &hub.base, "--subscribe", "*"]);
    let out = run(&[
        "subscribe",
        &hub.base,
        "--match",
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
    let cases: [(&[&str], &str); 5] = [
        (&["--token", "not.a.jwt"], "HTTP 401: invalid token"),
        (&[], "HTTP 401: a publisher token is required"),
        (
            &["--issuer", ISSUER, "--jwt-key", "another-key"],
            "HTTP 401: invalid token",
        ),
        (
            &["--issuer", "https://untrusted.example", "--jwt-key", KEY],
            "HTTP 401: invalid token",
        ),
        (
            &[
                "--token",
                &token(&["--hub", &hub.base, "--publish", "elsewhere"]),
            ],
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
        "--issuer",
        ISSUER,
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
        "--match",
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
        "--match",
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
        "--match",
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
        "--match",
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
    let mut sub = hub.subscriber(&["subscribe", &hub.base, "--match", "r", "--count", "2"]);
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
        connected.contains(&hub.endpoint) && connected.contains("?match=r"),
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
        "--match",
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

    // Without --topic, the URL is used as is: here the hub says a topic is missing (a 1.0 hub
    // asks for the `match` parameter, a 0.x one for `topic`).
    let out = run(&["subscribe", &hub.endpoint]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let line = out.one_line_error();
    assert!(
        line.contains("HTTP 400")
            && (line.contains("missing match parameter") || line.contains("missing topic")),
        "{line}"
    );
    let legacy = Hub::start_legacy();
    let out = run(&["subscribe", &legacy.endpoint]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let line = out.one_line_error();
    assert!(
        line.contains("HTTP 400") && line.contains("missing topic parameter"),
        "{line}"
    );

    // --topic is the 0.x parameter: a 1.0 hub refuses it, and the user reads the hub's reason
    // whole (what to use instead, and the switch that brings topic= back).
    let out = run(&["subscribe", &hub.base, "--topic", "t", "--no-reconnect"]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let line = out.one_line_error();
    assert!(
        line.contains("answered HTTP 400")
            && line.contains("topic= is the pre-1.0 subscribe parameter")
            && line.contains("match=<topic>")
            && line.contains("match_urlpattern=<pattern>")
            && line.contains("--legacy-protocol"),
        "{line}"
    );
    // So is a pattern that does not compile, with the hub's reason too.
    let out = run(&["subscribe", &hub.base, "--match-urlpattern", "/books/(("]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let line = out.one_line_error();
    assert!(
        line.contains("answered HTTP 400") && line.contains("match_urlpattern"),
        "{line}"
    );
}

#[test]
fn subscribe_match_urlpattern_receives_the_topics_the_pattern_matches() {
    let hub = Hub::start();
    // Relative patterns resolve against the hub's URL; --match and --match-urlpattern combine.
    let mut sub = hub.subscriber(&[
        "subscribe",
        &hub.base,
        "--match-urlpattern",
        "/books/:id",
        "--match-urlpattern",
        "https://example.com/authors/:name",
        "--match",
        "urn:exact",
        "--json",
        "--count",
        "3",
    ]);
    let connected = sub.wait_line("connected");
    assert!(
        connected.contains(
            "?match=urn%3Aexact&match_urlpattern=%2Fbooks%2F%3Aid\
                            &match_urlpattern=https%3A%2F%2Fexample.com%2Fauthors%2F%3Aname"
        ),
        "{connected}"
    );
    let book = format!("{}/books/1", hub.base);
    hub.publish(&[
        "--topic",
        &format!("{}/books/1/reviews", hub.base),
        "no: two segments",
    ]);
    hub.publish(&["--topic", "https://example.com/books/2", "no: another host"]);
    hub.publish(&["--topic", &book, "book"]);
    hub.publish(&["--topic", "urn:exact:not", "no: exact means exact"]);
    hub.publish(&["--topic", "https://example.com/authors/ada", "author"]);
    hub.publish(&["--topic", "urn:exact", "exact"]);
    let out = sub.finish();
    assert_eq!(out.code(), Some(0), "{out:?}");
    let data: Vec<Value> = json_lines(&out.stdout)
        .into_iter()
        .map(|line| line["data"].clone())
        .collect();
    assert_eq!(data, [json!("book"), json!("author"), json!("exact")]);
}

#[test]
fn subscribe_topic_works_with_a_legacy_hub_and_its_uri_templates() {
    let hub = Hub::start_legacy();
    let mut sub = hub.subscriber(&[
        "subscribe",
        &hub.base,
        "--topic",
        "https://example.com/books/{id}",
        "--json",
        "--count",
        "1",
    ]);
    assert!(
        sub.wait_line("connected")
            .contains("?topic=https%3A%2F%2Fexample.com%2Fbooks%2F%7Bid%7D"),
        "{:?}",
        sub.seen
    );
    for (topic, data) in [
        ("https://example.com/authors/1", "no"),
        ("https://example.com/books/1", "yes"),
    ] {
        let out = run(&[
            "publish",
            "--hub",
            &hub.base,
            "--topic",
            topic,
            "--legacy",
            "--jwt-key",
            KEY,
            data,
        ]);
        assert_eq!(out.code(), Some(0), "{out:?}");
    }
    let out = sub.finish();
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(json_lines(&out.stdout)[0]["data"], "yes", "{out:?}");
}

#[test]
fn closing_stdout_ends_subscribe_quietly() {
    let hub = Hub::start();
    let mut sub =
        Proc::spawn_with_stdout_closed(&mut ssehub(&["subscribe", &hub.base, "--match", "p"]));
    sub.wait_line("connected");
    hub.publish(&["--topic", "p", "nobody reads this"]);
    let out = sub.finish();
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(!out.stderr.contains("panicked"), "{out:?}");
}

#[test]
fn unreachable_hosts_bad_urls_and_bad_flags_exit_2_with_one_line() {
    let closed = format!("http://127.0.0.1:{}", closed_port());
    let cases: [(&[&str], &str); 27] = [
        (&["subscribe", &closed, "--match", "t"], "cannot connect to"),
        (
            &["subscribe", &closed, "--match", "t", "--no-reconnect"],
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
        (&["subscribe", "nowhere", "--match", "t"], "invalid hub URL"),
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
                "--issuer",
                ISSUER,
                "--audience",
                "https://hub.example/.well-known/mercure",
                "--publish",
                "*",
                "--jwt-algorithm",
                "RS256",
            ],
            "--jwt-key",
        ),
        // A 1.0 token needs an issuer and an audience.
        (
            &[
                "token",
                "--jwt-key",
                KEY,
                "--hub",
                &closed,
                "--publish",
                "*",
            ],
            "--issuer ID is required",
        ),
        (
            &[
                "token",
                "--jwt-key",
                KEY,
                "--issuer",
                ISSUER,
                "--publish",
                "*",
            ],
            "--audience URI is required",
        ),
        (
            &[
                "token",
                "--jwt-key",
                KEY,
                "--issuer",
                ISSUER,
                "--hub",
                "nowhere",
                "--publish",
                "*",
            ],
            "invalid --hub URL",
        ),
        (
            &[
                "token",
                "--jwt-key",
                KEY,
                "--issuer",
                ISSUER,
                "--hub",
                &closed,
                "--subscribe",
                "*",
                "--payload",
                "[1]",
            ],
            "--payload must be a JSON object",
        ),
        (
            &[
                "token",
                "--jwt-key",
                KEY,
                "--issuer",
                ISSUER,
                "--hub",
                &closed,
                "--publish",
                "*",
                "--payload",
                "{}",
            ],
            "--payload goes with a subscribe grant",
        ),
        (
            &[
                "token",
                "--jwt-key",
                KEY,
                "--legacy",
                "--publish-urlpattern",
                "/books/:id",
            ],
            "--legacy",
        ),
        (
            &[
                "publish",
                "--hub",
                &closed,
                "--topic",
                "t",
                "--jwt-key",
                KEY,
                "d",
            ],
            "--issuer ID is required",
        ),
        (
            &[
                "subscribe",
                &closed,
                "--token-command",
                "echo nope >&2; exit 3",
            ],
            "--token-command failed: exited with status 3: nope",
        ),
        (
            &["subscribe", &closed, "--token-command", "true"],
            "--token-command failed: it printed nothing",
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
                "--match",
                "--match-urlpattern",
                "--topic",
                "--legacy-protocol",
                "--last-event-id",
                "--header",
                "--token",
                "--json",
                "--count",
                "--timeout",
                "--no-reconnect",
                "--token-command",
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
                "--issuer",
                "--audience",
                "--legacy",
                "[DATA]",
                "SSEHUB_HUB",
                "SSEHUB_TOKEN",
                "SSEHUB_JWT_KEY",
                "SSEHUB_ISSUER",
            ],
        ),
        (
            "token",
            &[
                "--jwt-key",
                "--jwt-algorithm",
                "--publish",
                "--subscribe",
                "--publish-urlpattern",
                "--subscribe-urlpattern",
                "--issuer",
                "--audience",
                "--hub",
                "--payload",
                "--sub",
                "--client-id",
                "--kid",
                "--legacy",
                "--ttl",
                "SSEHUB_JWT_KEY",
                "SSEHUB_ISSUER",
                "EdDSA",
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

#[test]
fn subscribe_token_command_reconnects_with_a_fresh_token_after_the_hub_closes_at_exp() {
    let hub = Hub::start();
    let dir = tempfile::tempdir().unwrap();
    let minted = dir.path().join("tokens");
    // Each run mints a subscriber token valid for 2 s, and notes it.
    let command = format!(
        "'{BIN}' token --jwt-key '{KEY}' --issuer '{ISSUER}' --hub '{}' --subscribe '*' --ttl 2s \
         | tee -a '{}'",
        hub.base,
        minted.display()
    );
    let started = Instant::now();
    let mut sub = hub.subscriber(&[
        "subscribe",
        &hub.base,
        "--match",
        "live",
        "--token-command",
        &command,
        "--json",
        "--count",
        "2",
        "--timeout",
        "14s",
    ]);
    // Private updates reach only a subscriber whose token allows them.
    let before = hub.publish(&["--topic", "live", "--private", "--id", "before", "one"]);
    // The hub ends the stream at the token's `exp`; the client reconnects with a fresh token.
    let ended = sub.wait_line("reconnecting in");
    assert!(ended.contains("the stream ended"), "{ended}");
    sub.wait_nth_line("ssehub: connected to", 2);
    let reconnected = started.elapsed();
    assert!(reconnected < Duration::from_secs(10), "{reconnected:?}");
    let after = hub.publish(&["--topic", "live", "--private", "--id", "after", "two"]);
    let out = sub.finish();
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(
        json_lines(&out.stdout),
        [
            json!({"type": "message", "data": "one", "id": before}),
            json!({"type": "message", "data": "two", "id": after}),
        ]
    );
    // Two connections, two different tokens, each from the command and each short-lived.
    let tokens: Vec<String> = std::fs::read_to_string(&minted)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(tokens.len() >= 2, "{tokens:?}");
    assert_ne!(tokens[0], tokens[1]);
    for token in &tokens {
        let c = claims(token);
        assert_eq!(c["exp"].as_u64().unwrap(), c["iat"].as_u64().unwrap() + 2);
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
