//! `ssehub serve --postgres` as real processes on a real PostgreSQL: nodes on one schema agree
//! on ids and order and replay each other's updates; a node killed with `-9` while publishers
//! hammer it loses nothing acknowledged; a PostgreSQL restart gives publishers one-line 503s,
//! keeps subscribers connected and delivers everything once it is back; conflicting storage
//! flags are usage errors (exit 2).
//!
//! The shared PostgreSQL is 127.0.0.1:5432 (or `SSEHUB_TEST_POSTGRES`); each test uses its own
//! schema. These tests fail, not skip, when it does not answer: run `scripts/ensure-postgres`
//! first. The restart test runs a private PostgreSQL of its own (initdb + pg_ctl in a
//! temporary directory, on a free port) and stops it with `pg_ctl stop -m immediate`.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::Served;
use common::postgres::{
    Cleanup, OwnPostgres, execute, pg_url, require_postgres, schema_name, serve_node,
};
use common::sse::{Got, Sse};

const KEY: &str = "postgres-test-secret-postgres-test-0123";

fn node(url: &str, schema: &str, heartbeat: &str) -> (Served, String) {
    let served = serve_node(KEY, url, schema, &["--heartbeat", heartbeat]);
    let hub = served.hub_url();
    (served, hub)
}

fn token() -> String {
    common::all_rights_token(KEY)
}

/// `Ok(id)`, or `Err((status, reason))` (status 0: no HTTP answer).
async fn publish(client: &reqwest::Client, url: &str, data: &str) -> Result<String, (u16, String)> {
    let res = client
        .post(url)
        .bearer_auth(token())
        .form(&[("topic", "t"), ("data", data)])
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| (0, e.to_string()))?;
    let status = res.status().as_u16();
    let body = res.text().await.map_err(|e| (0, e.to_string()))?;
    if status == 200 {
        Ok(body)
    } else {
        Err((status, body))
    }
}

/// The position a hub id `#{epoch}-{pos}` names.
fn pos(id: &str) -> u64 {
    id.strip_prefix('#')
        .and_then(|i| i.split_once('-'))
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("not a hub id: {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_deliver_the_same_updates_in_the_same_order_and_replay_each_others() {
    let url = pg_url();
    require_postgres(&url);
    let schema = schema_name("clitest");
    let _c = Cleanup(url.clone(), schema.clone());
    let nodes: Vec<_> = (0..2).map(|_| node(&url, &schema, "0")).collect();
    let mut subs = Vec::new();
    for (_, hub) in &nodes {
        subs.push(Sse::open(hub, None).await);
    }
    // Two publishers per node, all at once.
    let mut tasks = Vec::new();
    for (n, (_, hub)) in nodes.iter().enumerate() {
        for t in 0..2 {
            let hub = hub.clone();
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut acked = Vec::new();
                for i in 0..20 {
                    let data = format!("n{n}-{t}-{i}");
                    acked.push((publish(&client, &hub, &data).await.unwrap(), data));
                }
                acked
            }));
        }
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let mut first: Option<Vec<(String, String)>> = None;
    for s in &mut subs {
        let got = s.take(acked.len()).await;
        s.quiet().await;
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(&got, f, "every node: same updates, same order, same ids"),
        }
    }
    let got = first.unwrap();
    // Exactly the acknowledged updates, with the ids their publishers were given, in order.
    let mut want = acked.clone();
    want.sort_by_key(|(id, _)| pos(id));
    assert_eq!(got, want);
    // Replay on one node from an id the other answered, and from the start.
    let mut from_id = Sse::open(&nodes[1].1, Some(&want[9].0)).await;
    assert_eq!(from_id.take(want.len() - 10).await, want[10..]);
    from_id.quiet().await;
    let mut earliest = Sse::open(&nodes[0].1, Some("earliest")).await;
    assert_eq!(earliest.take(want.len()).await, want);
    earliest.quiet().await;
    // A clean shutdown is not held up by the node's tasks.
    drop((subs, from_id, earliest));
    for (served, _) in nodes {
        let status = tokio::task::spawn_blocking(move || served.terminate())
            .await
            .unwrap();
        assert!(status.success(), "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_kill_9_under_load_loses_nothing_acknowledged() {
    let url = pg_url();
    require_postgres(&url);
    let schema = schema_name("clitest");
    let _c = Cleanup(url.clone(), schema.clone());
    let (a, hub_a) = node(&url, &schema, "0");
    let (_b, hub_b) = node(&url, &schema, "0");
    let mut sub = Sse::open(&hub_b, None).await;

    // Four publishers on node a until it dies.
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let failed: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut publishers = Vec::new();
    for p in 0..4 {
        let (acked, failed, hub_a) = (acked.clone(), failed.clone(), hub_a.clone());
        publishers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0.. {
                let data = format!("p{p}-{i}");
                match publish(&client, &hub_a, &data).await {
                    Ok(id) => acked.lock().unwrap().push((id, data)),
                    Err(_) => {
                        // The node died: this one may or may not have been committed.
                        failed.lock().unwrap().push(data);
                        return;
                    }
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 150 {
        assert!(Instant::now() < deadline, "publishing is too slow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::task::spawn_blocking(move || a.crash())
        .await
        .unwrap();
    for p in publishers {
        p.await.unwrap();
    }
    let mut acked = acked.lock().unwrap().clone();
    let failed: HashSet<String> = failed.lock().unwrap().iter().cloned().collect();
    acked.sort_by_key(|(id, _)| pos(id));

    // Node b delivers every acknowledged update, once, in order; the only others are
    // publishes cut by the kill that had committed (node b orders those a left unordered).
    let mut want = acked.iter().peekable();
    let mut delivered = Vec::new();
    while want.peek().is_some() {
        match sub.next(Duration::from_secs(20)).await {
            Got::Event(id, data) => {
                if want.peek().is_some_and(|w| (&w.0, &w.1) == (&id, &data)) {
                    want.next();
                } else {
                    assert!(
                        failed.contains(&data),
                        "unexpected {id} {data}, waiting for {:?}",
                        want.peek()
                    );
                }
                delivered.push((id, data));
            }
            Got::End => panic!("node b's stream ended"),
        }
    }
    // Then whatever else committed, and nothing more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rows = execute(
        &url,
        &format!("SELECT count(*) FROM \"{schema}\".updates WHERE pos IS NOT NULL"),
    )
    .unwrap();
    let in_db: i64 = rows[0].get(0);
    while (delivered.len() as i64) < in_db {
        match sub.next(Duration::from_secs(10)).await {
            Got::Event(id, data) => {
                assert!(failed.contains(&data), "unexpected {id} {data}");
                delivered.push((id, data));
            }
            Got::End => panic!("node b's stream ended"),
        }
    }
    sub.quiet().await;
    let positions: Vec<u64> = delivered.iter().map(|(id, _)| pos(id)).collect();
    assert_eq!(positions, (1..=in_db as u64).collect::<Vec<_>>(), "no gap");
    let unordered = execute(
        &url,
        &format!("SELECT count(*) FROM \"{schema}\".updates WHERE pos IS NULL"),
    )
    .unwrap();
    assert_eq!(
        unordered[0].get::<_, i64>(0),
        0,
        "everything committed is ordered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_gives_503s_and_subscribers_get_everything_once_it_returns() {
    let mut pg = tokio::task::spawn_blocking(OwnPostgres::start)
        .await
        .unwrap();
    let (node, hub) = node(&pg.url(), "ssehub", "200ms");
    let mut sub = Sse::open(&hub, None).await;

    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let refused: Arc<Mutex<Vec<(String, u16, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (acked, refused, stop, hub) =
            (acked.clone(), refused.clone(), stop.clone(), hub.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let data = format!("u{i}");
                i += 1;
                match publish(&client, &hub, &data).await {
                    Ok(id) => acked.lock().unwrap().push((id, data)),
                    Err((status, reason)) => refused.lock().unwrap().push((data, status, reason)),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let mut got = sub.take(20).await;
    pg = tokio::task::spawn_blocking(move || {
        pg.kill();
        pg
    })
    .await
    .unwrap();
    let acked_before = acked.lock().unwrap().len();
    // Down for a while: the subscriber stays connected and keeps getting heartbeats.
    let heartbeats = sub.heartbeats;
    let down_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < down_until {
        match tokio::time::timeout(Duration::from_millis(100), sub.res.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                sub.buf.push_str(std::str::from_utf8(&chunk).unwrap());
                sub.take_heartbeats();
            }
            Ok(Ok(None) | Err(_)) => {
                panic!("the subscriber was disconnected while PostgreSQL was down")
            }
            Err(_) => {}
        }
    }
    assert!(
        sub.heartbeats >= heartbeats + 3,
        "heartbeats continued while PostgreSQL was down"
    );
    {
        let refused = refused.lock().unwrap();
        assert!(
            !refused.is_empty(),
            "publishes were refused while PostgreSQL was down"
        );
        for (data, status, reason) in refused.iter() {
            assert_eq!(*status, 503, "{data}: {reason}");
            assert!(
                reason.contains("postgres"),
                "the reason says why: {reason:?}"
            );
            assert_eq!(reason.trim_end().lines().count(), 1, "one line: {reason:?}");
        }
    }
    let acked_while_down = acked.lock().unwrap().len() - acked_before;
    assert!(
        acked_while_down <= 1,
        "{acked_while_down} publishes acknowledged while PostgreSQL was down"
    );

    pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .unwrap();
    // Publishing works again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < acked_before + acked_while_down + 20 {
        assert!(
            Instant::now() < deadline,
            "publishing did not resume after PostgreSQL returned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    publisher.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    let refused: HashSet<String> = refused
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.0.clone())
        .collect();

    // Everything acknowledged, once, in order. A publish refused because PostgreSQL died
    // before answering may still have been committed (the usual ambiguity): such extras are
    // allowed, nothing else.
    let acked_data: HashSet<&str> = acked.iter().map(|(_, d)| d.as_str()).collect();
    let mut want = acked.iter();
    let mut next_want = want.next();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(w) = next_want {
        assert!(Instant::now() < deadline, "not delivered: {w:?}");
        if got.is_empty() {
            match sub.next(Duration::from_secs(20)).await {
                Got::Event(id, data) => got.push((id, data)),
                Got::End => panic!("the subscriber's stream ended"),
            }
        }
        let (id, data) = got.remove(0);
        if (&id, &data) == (&w.0, &w.1) {
            next_want = want.next();
        } else {
            assert!(
                refused.contains(&data) && !acked_data.contains(data.as_str()),
                "unexpected {id} {data}, waiting for {w:?}"
            );
        }
    }
    assert!(got.is_empty(), "duplicates or extras: {got:?}");
    sub.quiet().await;
    // The node said what happened. The LISTEN connection is held open, so the stop always cuts
    // it; the reader only notices when it tries a read during the outage (it may have been
    // waiting for a notification the whole time), so its lines are not required.
    node.wait_line("postgres listener lost its connection; reconnecting with backoff");
    node.wait_line("postgres listener reconnected");
    drop(pg);
}

/// `ssehub serve ARGS` with a storage that cannot start: its exit code and stderr.
fn serve_fails(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(common::BIN)
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--legacy-protocol",
            "--jwt-key",
            KEY,
        ])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ssehub serve {args:?} kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code(), stderr)
}

#[test]
fn conflicting_or_invalid_postgres_flags_are_usage_errors() {
    let url = "postgres://postgres@127.0.0.1:1/postgres";
    for (extra, says) in [
        (
            &["--redis", "redis://127.0.0.1:1"][..],
            "cannot be used with",
        ),
        (&["--memory"][..], "cannot be used with"),
        (&["--durability", "sync"][..], "cannot be used with"),
        (
            &["--postgres-schema", "Not-Valid"][..],
            "invalid PostgreSQL schema name",
        ),
    ] {
        let mut args = vec!["--postgres", url];
        args.extend_from_slice(extra);
        let (code, stderr) = serve_fails(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    }
    let (code, stderr) = serve_fails(&["--postgres", "postgres://[broken"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("invalid PostgreSQL URL"), "{stderr}");
    // Valid flags, no server: the reason, and a failure that is not a usage error.
    let (code, stderr) = serve_fails(&["--postgres", url]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot use PostgreSQL (--postgres)"),
        "{stderr}"
    );
}
