//! The PostgreSQL side of the CLI's cluster tests: which server, a fresh schema per test
//! (dropped when the test ends), and a private throwaway PostgreSQL a test may stop and start
//! (initdb + pg_ctl on a free port in a temporary directory; as the `postgres` user when the
//! tests run as root, since PostgreSQL refuses to run as root).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::Served;

/// `ssehub serve` as one node on the PostgreSQL schema `schema` of `url`, with `key` and
/// `extra` flags.
pub fn serve_node(key: &str, url: &str, schema: &str, extra: &[&str]) -> Served {
    let mut args = vec![
        "--jwt-key",
        key,
        "--postgres",
        url,
        "--postgres-schema",
        schema,
    ];
    args.extend_from_slice(extra);
    Served::start(&args, &[])
}

/// The PostgreSQL the tests use (`SSEHUB_TEST_POSTGRES`, default the machine's
/// 127.0.0.1:5432, which `scripts/ensure-postgres` starts).
pub fn pg_url() -> String {
    std::env::var("SSEHUB_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A schema name no other test (or test process) uses, so tests run in parallel.
pub fn schema_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000_000;
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs one statement on `url` and returns its rows: a short-lived client on a thread of its
/// own.
pub fn execute(url: &str, sql: &str) -> Result<Vec<tokio_postgres::Row>, String> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            client.query(&sql, &[]).await.map_err(|e| e.to_string())
        })
    })
    .join()
    .unwrap()
}

/// Runs several `;`-separated statements on `url` (no rows).
pub fn batch(url: &str, sql: &str) -> Result<(), String> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            client.batch_execute(&sql).await.map_err(|e| e.to_string())
        })
    })
    .join()
    .unwrap()
}

/// Fails the test (never skips it) when PostgreSQL does not answer.
pub fn require_postgres(url: &str) {
    if let Err(e) = execute(url, "SELECT 1") {
        panic!("PostgreSQL at {url} must be running (scripts/ensure-postgres): {e}");
    }
}

/// Drops a test schema when dropped: `Cleanup(url, schema)`.
pub struct Cleanup(pub String, pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = batch(
            &self.0,
            &format!(
                "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.1
            ),
        );
    }
}

/// A PostgreSQL server of the test's own, so it can be stopped and started again.
pub struct OwnPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
    as_postgres: bool,
    running: bool,
}

impl OwnPostgres {
    /// `initdb` in a temporary directory, then starts it on a free port (trust
    /// authentication, loopback only).
    pub fn start() -> OwnPostgres {
        let bin = pg_bin();
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown").arg("postgres").arg(dir.path()));
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut pg = OwnPostgres {
            bin,
            dir,
            port,
            as_postgres,
            running: false,
        };
        let data = pg.data();
        run(pg
            .command("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data));
        pg.restart();
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A PostgreSQL program, as the `postgres` user when we are root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        c
    }

    /// Starts the server (again) on the same port and data; returns once it answers.
    pub fn restart(&mut self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.dir.path().display()
        );
        run(self
            .command("pg_ctl")
            .args(["-w", "-t", "30", "-D"])
            .arg(self.data())
            .args(["-l"])
            .arg(self.dir.path().join("log"))
            .args(["-o", &options, "start"]));
        self.running = true;
        let deadline = Instant::now() + Duration::from_secs(20);
        while execute(&self.url(), "SELECT 1").is_err() {
            assert!(
                Instant::now() < deadline,
                "the test's PostgreSQL did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server at once, as a crash does (`pg_ctl stop -m immediate`: no checkpoint;
    /// the next start replays the WAL).
    pub fn kill(&mut self) {
        if self.running {
            run(self
                .command("pg_ctl")
                .args(["-w", "-D"])
                .arg(self.data())
                .args(["-m", "immediate", "stop"]));
            self.running = false;
        }
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a command, failing the test with its stderr when it fails.
fn run(c: &mut Command) {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Where `initdb` and `pg_ctl` are: `SSEHUB_TEST_PG_BIN`, else Debian's newest
/// `/usr/lib/postgresql/N/bin`, else `pg_config --bindir`.
fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("SSEHUB_TEST_PG_BIN") {
        return dir.into();
    }
    let debian = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(debian)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .max();
    if let Some(v) = newest {
        return debian.join(v.to_string()).join("bin");
    }
    let out = Command::new("pg_config").arg("--bindir").output().expect(
        "PostgreSQL's server programs (initdb, pg_ctl) must be installed (scripts/ensure-postgres)",
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
