//! Throughput of the log as the hub will use it: group-commit appends from 1, 16 and 256
//! concurrent appenders (records/s and fsyncs/s), and replay of 100,000 records.
//!
//! Usage: `store_bench <dir>`; prints one `name value unit` line per figure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ssehub_store::{CommitterOptions, GroupCommitter, Log, LogOptions, Record};

fn record(n: u64) -> Record {
    let data = "x".repeat(100 + (n % 150) as usize);
    Record::new(
        vec![format!("https://example.com/books/{}", n % 100)],
        format!("id: 1-{n}\ndata: {data}\n\n"),
    )
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: store_bench <dir>");
    let _ = std::fs::remove_dir_all(&dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let log = Log::open(&dir, LogOptions::default()).unwrap();
        for appenders in [1usize, 16, 256] {
            let c =
                Arc::new(GroupCommitter::new(log.clone(), CommitterOptions::default()).unwrap());
            let before = c.stats();
            let run_for = Duration::from_secs(2);
            let start = Instant::now();
            let tasks: Vec<_> = (0..appenders)
                .map(|a| {
                    let c = c.clone();
                    tokio::spawn(async move {
                        let mut n = a as u64;
                        while start.elapsed() < run_for {
                            c.append(record(n)).await.unwrap();
                            n += 1;
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            let secs = start.elapsed().as_secs_f64();
            let s = c.stats();
            let (recs, commits) = (s.records - before.records, s.commits - before.commits);
            println!(
                "append_{appenders}_appenders {:.0} rec/s",
                recs as f64 / secs
            );
            println!(
                "fsyncs_{appenders}_appenders {:.0} commits/s",
                commits as f64 / secs
            );
            println!(
                "batch_{appenders}_appenders {:.1} rec/commit",
                recs as f64 / commits as f64
            );
            Arc::try_unwrap(c).unwrap().shutdown().await;
        }
        // Top up to at least 100,000 records, then replay them in pages as the hub would.
        while log.len() < 100_000 {
            let batch: Vec<_> = (0..1000).map(record).collect();
            log.append_batch(&batch).unwrap();
        }
        let from = log.next_seq() - 100_000;
        let start = Instant::now();
        let mut seq = from;
        let mut bytes = 0;
        while seq < log.next_seq() {
            let page = log.read_from(seq, 1024).unwrap();
            bytes += page.iter().map(|r| r.record.frame.len()).sum::<usize>();
            seq = page.last().unwrap().seq + 1;
        }
        let ms = start.elapsed().as_secs_f64() * 1e3;
        println!("replay_100k {ms:.1} ms");
        println!("replay_100k_bytes {:.1} MB", bytes as f64 / 1e6);
    });
    let _ = std::fs::remove_dir_all(&dir);
}
