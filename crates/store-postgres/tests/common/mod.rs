//! What the PostgreSQL backend's test files share: the server to use, fresh schema names, a
//! guard that drops a schema, and a direct client for the SQL an application would run.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use ssehub_store_postgres::{PostgresBackend, PostgresOptions};

/// `SSEHUB_TEST_POSTGRES`, or the local PostgreSQL that `scripts/ensure-postgres` starts.
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

/// Options for `schema` on the test server, with a small pool (tests run in parallel on a
/// server with 100 connections).
pub fn options(schema: &str) -> PostgresOptions {
    let mut o = PostgresOptions::new(pg_url(), schema);
    o.pool_size = 4;
    o
}

/// Connects, failing the test (never skipping it) when PostgreSQL does not answer.
pub async fn backend(options: PostgresOptions) -> PostgresBackend {
    PostgresBackend::connect(options).await.unwrap_or_else(|e| {
        panic!("PostgreSQL must be running for these tests (scripts/ensure-postgres): {e}")
    })
}

/// A direct connection, as an application has.
pub async fn client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} must be running: {e}"));
    tokio::spawn(connection);
    client
}

/// Drops a schema when dropped (after its hubs).
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        drop_schema(&self.0);
    }
}

/// `DROP SCHEMA ... CASCADE`, on a thread of its own (a `Drop` may run inside a runtime).
pub fn drop_schema(schema: &str) {
    let schema = schema.to_owned();
    let url = pg_url();
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            if let Ok((client, connection)) =
                tokio_postgres::connect(&url, tokio_postgres::NoTls).await
            {
                tokio::spawn(connection);
                let _ = client
                    .batch_execute(&format!(
                        "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                    ))
                    .await;
            }
        });
    })
    .join();
}
