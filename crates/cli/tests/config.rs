//! `ssehub serve --config FILE` and `--print-config`, over the real binary: precedence
//! (flags > env > file > defaults), errors for unknown keys and bad values (exit 2), secrets
//! redacted, the printed config read back, and a hub that really runs with the file's key.

mod common;

use std::process::{Command, Output};

use common::{BIN, Served};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("SSEHUB_CONFIG");
    // The tests' own environment must not leak SSEHUB_* settings into the precedence checks.
    for (k, _) in std::env::vars() {
        if k.starts_with("SSEHUB_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied()).output().unwrap()
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// The printed line for `key`, e.g. `max-body = 4096  # env`.
fn line<'a>(printed: &'a str, key: &str) -> &'a str {
    printed
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no line for {key} in:\n{printed}"))
}

#[test]
fn flags_beat_env_beat_file_beat_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "ssehub.toml",
        r#"
addr = "127.0.0.1:3999"
max-body = 2048
history_size = 77
heartbeat = "5s"
drain-timeout = "2s"
memory = true
cors-origin = ["https://a.example", "https://b.example"]
"#,
    );
    let out = run(
        &[
            "serve",
            "--config",
            &file,
            "--history-size",
            "99",
            "--print-config",
        ],
        &[("SSEHUB_MAX_BODY", "4096"), ("SSEHUB_HEARTBEAT", "7s")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(line(&printed, "history-size"), "history-size = 99  # flag");
    assert_eq!(line(&printed, "max-body"), "max-body = 4096  # env");
    assert_eq!(line(&printed, "heartbeat"), "heartbeat = \"7s\"  # env");
    assert_eq!(line(&printed, "addr"), "addr = \"127.0.0.1:3999\"  # file");
    assert_eq!(
        line(&printed, "drain-timeout"),
        "drain-timeout = \"2s\"  # file"
    );
    assert_eq!(line(&printed, "memory"), "memory = true  # file");
    assert_eq!(
        line(&printed, "cors-origin"),
        "cors-origin = [\"https://a.example\", \"https://b.example\"]  # file"
    );
    assert_eq!(
        line(&printed, "durability"),
        "durability = \"batched\"  # default"
    );

    // The same file through SSEHUB_CONFIG instead of --config.
    let out = run(
        &["serve", "--print-config"],
        &[("SSEHUB_CONFIG", file.as_str())],
    );
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(line(&printed, "max-body"), "max-body = 2048  # file");
}

#[test]
fn the_printed_config_reads_back_as_the_same_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "serve",
            "--data-dir",
            "/tmp/ssehub-config-test",
            "--max-body",
            "5000",
            "--retain-age",
            "1h",
            "--cors-origin",
            "https://x.example",
            "--print-config",
        ],
        &[],
    );
    assert!(out.status.success());
    let first = String::from_utf8(out.stdout).unwrap();
    let file = write(&dir, "printed.toml", &first);
    let out = run(&["serve", "--config", &file, "--print-config"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = String::from_utf8(out.stdout).unwrap();
    let values = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split("  # ").next().unwrap().to_string())
            .collect()
    };
    assert_eq!(values(&first), values(&second));
    assert_eq!(line(&second, "max-body"), "max-body = 5000  # file");
}

#[test]
fn secrets_are_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "s.toml",
        "jwt-key = \"file-secret-0123456789abcdef\"\nredis = \"redis://app:hunter2@127.0.0.1:6379/0\"\n",
    );
    let out = run(
        &["serve", "--config", &file, "--print-config"],
        &[("SSEHUB_PUBLISHER_JWT_KEY", "env-secret-0123456789abcdef")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(!printed.contains("file-secret"), "{printed}");
    assert!(!printed.contains("env-secret"), "{printed}");
    assert!(!printed.contains("hunter2"), "{printed}");
    assert_eq!(
        line(&printed, "jwt-key"),
        "jwt-key = \"<redacted>\"  # file"
    );
    assert_eq!(
        line(&printed, "redis"),
        "redis = \"redis://app:<redacted>@127.0.0.1:6379/0\"  # file"
    );
}

#[test]
fn postgres_passwords_are_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "p.toml",
        "postgres = \"postgres://app:hunter2@127.0.0.1:5432/db\"\npostgres-schema = \"app_hub\"\n",
    );
    let out = run(&["serve", "--config", &file, "--print-config"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(!printed.contains("hunter2"), "{printed}");
    assert_eq!(
        line(&printed, "postgres"),
        "postgres = \"postgres://app:<redacted>@127.0.0.1:5432/db\"  # file"
    );
    assert_eq!(
        line(&printed, "postgres-schema"),
        "postgres-schema = \"app_hub\"  # file"
    );
    // A password in the query string: the whole value is hidden.
    let out = run(
        &["serve", "--print-config"],
        &[("SSEHUB_POSTGRES", "postgres://app@db/hub?password=hunter2")],
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(!printed.contains("hunter2"), "{printed}");
    assert_eq!(
        line(&printed, "postgres"),
        "postgres = \"<redacted>\"  # env"
    );
}

#[test]
fn bad_files_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("bogus = 1\n", "unknown key `bogus`"),
        (
            "addr = [\"a\", \"b\"]\n",
            "`addr` takes one value, not a list",
        ),
        ("addr = \n", "config file"),
        ("max-body = \"lots\"\n", "invalid value 'lots'"),
        ("[serve]\naddr = \"x\"\n", "unknown key `serve`"),
        (
            "max-body = { a = 1 }\n",
            "must be a string, number or boolean",
        ),
        ("help = true\n", "unknown key `help`"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let file = write(&dir, &format!("bad{i}.toml"), text);
        let out = run(&["serve", "--config", &file], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {stderr}");
        assert!(stderr.contains(want), "{text:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    let out = run(&["serve", "--config", "/nonexistent/ssehub.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the config file"));
}

#[test]
fn a_hub_runs_with_the_files_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = "key-from-the-config-file-0123456789";
    let file = write(
        &dir,
        "hub.toml",
        &format!("issuer = \"https://app.example\"\njwt-key = \"{key}\"\nmemory = true\n"),
    );
    let served = Served::start_modern(&["--config", &file], &[]);
    let hub = served.hub_url();
    let publish = |k: &str| {
        let token = run(
            &[
                "token",
                "--publish",
                "*",
                "--jwt-key",
                k,
                "--issuer",
                "https://app.example",
                "--hub",
                &hub,
            ],
            &[],
        );
        assert!(token.status.success(), "{token:?}");
        let token = String::from_utf8(token.stdout).unwrap();
        run(
            &[
                "publish",
                "--hub",
                &hub,
                "--topic",
                "t",
                "--token",
                token.trim(),
                "x",
            ],
            &[],
        )
    };
    let good = publish(key);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let bad = publish("some-other-key-0123456789abcdefgh");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("401"),
        "{bad:?}"
    );
}

#[test]
fn issuer_tables_are_checked_printed_redacted_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "issuers.toml",
        r#"
memory = true

[[issuer]]
id = "https://a.example"
jwt-key = "issuer-a-secret-0123456789abcdef"

[[issuer]]
id = "https://auth.example/realms/b"
publisher_jwt_key = "issuer-b-publisher-secret-0123456789"
subscriber-jwt-key = "issuer-b-subscriber-secret-0123456789"
jwt-algorithm = "HS512"
jwks-uri = "https://auth.example/realms/b/certs"
algorithms = ["HS512", "ES256"]
authorization-server = true
"#,
    );
    let out = run(&["serve", "--config", &file, "--print-config"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(!printed.contains("secret"), "{printed}");
    assert!(printed.contains("# issuer is not set\n"), "{printed}");
    let tables = &printed[printed.find("[[issuer]]").expect("no issuer table")..];
    assert_eq!(
        tables,
        "[[issuer]]  # file\n\
         id = \"https://a.example\"\n\
         jwt-key = \"<redacted>\"\n\
         \n\
         [[issuer]]  # file\n\
         id = \"https://auth.example/realms/b\"\n\
         publisher-jwt-key = \"<redacted>\"\n\
         subscriber-jwt-key = \"<redacted>\"\n\
         jwt-algorithm = \"HS512\"\n\
         jwks-uri = \"https://auth.example/realms/b/certs\"\n\
         algorithms = [\"HS512\", \"ES256\"]\n\
         authorization-server = true\n"
    );
    // What is printed reads back as the same configuration.
    let again = write(&dir, "printed.toml", &printed);
    let out = run(&["serve", "--config", &again, "--print-config"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reprinted = String::from_utf8(out.stdout).unwrap();
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split("  # ").next().unwrap().to_string())
            .collect()
    };
    assert_eq!(strip(&printed), strip(&reprinted));

    // --issuer (a string) is a flag's key like any other.
    let flag = write(
        &dir,
        "flag.toml",
        "issuer = \"https://c.example\"\njwt-key = \"k-0123456789abcdef\"\n",
    );
    let out = run(&["serve", "--config", &flag, "--print-config"], &[]);
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        line(&printed, "issuer"),
        "issuer = \"https://c.example\"  # file"
    );
    assert!(!printed.contains("[[issuer]]"), "{printed}");
}

#[test]
fn bad_issuer_tables_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[issuer]]\nid = \"a\"\njwt-key = \"k\"\nkey = \"x\"\n",
            "[[issuer]] number 1: unknown key `key` (an issuer's keys are id, jwt-key,",
        ),
        (
            "[[issuer]]\nid = \"a\"\njwt-key = \"k\"\n[[issuer]]\njwt-key = \"k\"\n",
            "[[issuer]] number 2: no `id`",
        ),
        (
            "[[issuer]]\nid = \"a\"\nalgorithms = \"HS256\"\n",
            "`algorithms` must be a list of algorithm names",
        ),
        (
            "[[issuer]]\nid = 7\n",
            "`id` must be a string, not a integer",
        ),
        (
            "[[issuer]]\nid = \"a\"\nauthorization-server = \"yes\"\n",
            "`authorization-server` must be true or false",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let file = write(&dir, &format!("bad-issuer{i}.toml"), text);
        let out = run(&["serve", "--config", &file, "--print-config"], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {stderr}");
        assert!(stderr.contains(want), "{text:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn log_format_json_from_the_file_gives_one_object_per_line() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "log.toml", "log-format = \"json\"\nmemory = true\n");
    let out = run(&["serve", "--config", &file, "--print-config"], &[]);
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        line(&printed, "log-format"),
        "log-format = \"json\"  # file"
    );

    let mut child = Command::new(BIN)
        .args(["serve", "--config", &file, "--addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env("SSEHUB_ISSUER", "https://app.example")
        .env("SSEHUB_JWT_KEY", "log-test-key-0123456789abcdefghij")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref().take(2) {
        let line = line.unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(v["level"], "INFO", "{line}");
        seen.push(v["message"].as_str().unwrap_or_default().to_string());
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter().any(|m| m.contains("ssehub listening")),
        "{seen:?}"
    );
}

#[test]
fn subscriptions_from_the_file_env_or_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "subs.toml", "subscriptions = true\nmemory = true\n");
    let out = run(&["serve", "--config", &file, "--print-config"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        line(&printed, "subscriptions"),
        "subscriptions = true  # file"
    );
    let out = run(
        &["serve", "--print-config"],
        &[("SSEHUB_SUBSCRIPTIONS", "true")],
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        line(&printed, "subscriptions"),
        "subscriptions = true  # env"
    );
    let out = run(&["serve", "--print-config"], &[]);
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        line(&printed, "subscriptions").starts_with("subscriptions = false"),
        "{printed}"
    );
}
