//! `ssehub serve` on its durable log, as real processes: a restart replays exactly what a
//! subscriber missed, and `kill -9` in the middle of concurrent publishing loses no
//! acknowledged update and leaves no garbage.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::Served;

/// The (id, data) of acknowledged publishes, in acknowledgement order.
type Acked = Vec<(String, String)>;

const KEY: &str = "durable-test-secret-durable-test-secret";

/// `ssehub serve` on the durable log in `dir`, and its Mercure URL.
fn start(dir: &Path) -> (Served, String) {
    let dir = dir.to_str().unwrap();
    let served = Served::start(
        &["--heartbeat", "0", "--jwt-key", KEY, "--data-dir", dir],
        &[],
    );
    let url = served.hub_url();
    (served, url)
}

fn token() -> String {
    common::all_rights_token(KEY)
}

async fn publish(client: &reqwest::Client, url: &str, data: &str) -> Result<String, String> {
    let res = client
        .post(url)
        .bearer_auth(token())
        .form(&[("topic", "t"), ("data", data)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !res.status().is_success() {
        return Err(res.status().to_string());
    }
    res.text().await.map_err(|e| e.to_string())
}

/// Subscribes to `t` with this `Last-Event-ID` and reads `(id, data)` pairs until `until` says
/// so, then checks that nothing else arrives for a moment.
async fn replay(
    url: &str,
    last_event_id: &str,
    until: impl Fn(&[(String, String)], &str) -> bool,
) -> Vec<(String, String)> {
    let client = reqwest::Client::new();
    let mut res = client
        .get(format!("{url}?topic=t"))
        .header("Last-Event-ID", last_event_id)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let head = res.headers()["last-event-id"].to_str().unwrap().to_owned();
    let mut buf = String::new();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !until(&events, &head) {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, res.chunk())
            .await
            .expect("replay timed out")
            .unwrap()
            .expect("stream ended");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let (mut id, mut data) = (None, None);
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(v.to_owned());
                } else {
                    assert!(
                        line.starts_with(':') || line.starts_with("retry:") || line.is_empty(),
                        "unexpected line {line:?}"
                    );
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                events.push((id, data));
            }
        }
    }
    if let Ok(Ok(Some(more))) = tokio::time::timeout(Duration::from_millis(300), res.chunk()).await
    {
        panic!("more than expected: {more:?}");
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_event_id_from_before_a_restart_replays_exactly_the_missed_updates() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (hub, url) = start(dir.path());
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(publish(&client, &url, &format!("u{i}")).await.unwrap());
    }
    tokio::task::spawn_blocking(move || assert!(hub.terminate().success()))
        .await
        .unwrap();

    let (_hub, url) = start(dir.path());
    for i in 5..7 {
        ids.push(publish(&client, &url, &format!("u{i}")).await.unwrap());
    }
    let seq = |id: &str| id.rsplit_once('-').unwrap().1.parse::<u64>().unwrap();
    assert!(seq(&ids[5]) > seq(&ids[4]), "ids keep increasing: {ids:?}");
    assert_eq!(
        ids[5].split('-').next(),
        ids[0].split('-').next(),
        "same epoch"
    );

    let events = replay(&url, &ids[1], |ev, _| ev.len() >= 5).await;
    let want: Vec<(String, String)> = (2..7).map(|i| (ids[i].clone(), format!("u{i}"))).collect();
    assert_eq!(events, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_no_acknowledged_update_and_leaves_no_garbage() {
    const PUBLISHERS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    // Per publisher, the (id, data) of every acknowledged publish, in acknowledgement order.
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::new(Mutex::new(vec![Vec::new(); PUBLISHERS]));
    let mut next_n = [0u64; PUBLISHERS];
    for kill_after in [
        Duration::from_millis(150),
        Duration::from_millis(400),
        Duration::from_millis(900),
    ] {
        let (hub, url) = start(dir.path());
        let mut tasks = Vec::new();
        for (p, start) in next_n.iter().enumerate() {
            let (url, acked, start) = (url.clone(), acked.clone(), *start);
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut n = start;
                loop {
                    let data = format!("p{p}-{n}");
                    n += 1;
                    match publish(&client, &url, &data).await {
                        Ok(id) => acked.lock().unwrap()[p].push((id, data)),
                        Err(_) => return n,
                    }
                }
            }));
        }
        tokio::time::sleep(kill_after).await;
        tokio::task::spawn_blocking(move || hub.crash())
            .await
            .unwrap();
        for (p, t) in tasks.into_iter().enumerate() {
            next_n[p] = t.await.unwrap();
        }
    }

    let (_hub, url) = start(dir.path());
    let events = replay(&url, "earliest", |ev, head| {
        ev.last().is_some_and(|(id, _)| id == head)
    })
    .await;
    let acked = acked.lock().unwrap();
    let total: usize = acked.iter().map(Vec::len).sum();
    assert!(total > 20, "too few publishes to mean anything: {total}");

    // No garbage: every event is whole and one of ours, and no id repeats.
    let mut by_id = HashMap::new();
    for (i, (id, data)) in events.iter().enumerate() {
        let (p, n) = data
            .strip_prefix('p')
            .and_then(|d| d.split_once('-'))
            .unwrap_or_else(|| panic!("garbage event {data:?}"));
        assert!(p.parse::<usize>().unwrap() < PUBLISHERS && n.parse::<u64>().is_ok());
        assert!(
            by_id.insert(id.clone(), (i, data.clone())).is_none(),
            "{id} twice"
        );
    }
    // Every acknowledged update exactly once, with its data, in acknowledgement order.
    for per in acked.iter() {
        let mut last = None;
        for (id, data) in per {
            let (pos, got) = by_id.get(id).unwrap_or_else(|| panic!("acked {id} lost"));
            assert_eq!(got, data, "{id}");
            assert!(last < Some(*pos), "{id} out of order");
            last = Some(*pos);
        }
    }
    // At most a few committed-but-unacknowledged updates (in flight at each kill) besides.
    assert!(
        events.len() - total <= 3 * PUBLISHERS,
        "{} extra",
        events.len() - total
    );
}

/// `--cache-size` bounds what the hub holds of the log in memory; what falls out of the ring
/// is read back from disk, so replay is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_size_bounds_the_ring_and_replay_reads_the_rest_from_disk() {
    const N: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(
        &[
            "--heartbeat",
            "0",
            "--jwt-key",
            KEY,
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--metrics",
            "--cache-size",
            "64KiB",
        ],
        &[],
    );
    let url = served.hub_url();
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..N {
        // 4 KiB each: 60 of them are ~240 KiB, several times the ring's 28 KiB share (7/16).
        let data = format!("u{i}-{}", "x".repeat(4096));
        ids.push(publish(&client, &url, &data).await.unwrap());
    }
    let metrics = client
        .get(url.replace("/.well-known/mercure", "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gauge = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from {metrics}"))
    };
    let cached = gauge("ssehub_cache_bytes");
    assert!(
        cached > 4096.0 && cached <= 28.0 * 1024.0,
        "the ring holds {cached} bytes; its share of --cache-size 64KiB is 28 KiB"
    );
    assert_eq!(
        gauge("ssehub_retained_updates"),
        N as f64,
        "the log keeps all"
    );

    // From the first id: 59 updates, most of them older than the ring, in order and whole.
    let events = replay(&url, &ids[0], |ev, _| ev.len() >= N - 1).await;
    let want: Vec<(String, String)> = (1..N)
        .map(|i| (ids[i].clone(), format!("u{i}-{}", "x".repeat(4096))))
        .collect();
    assert_eq!(events, want);
}

#[test]
fn a_bad_cache_size_is_a_usage_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .args(["serve", "--cache-size", "64 parsecs"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--cache-size") && err.contains("unknown unit 'parsecs'"),
        "{err}"
    );
}
