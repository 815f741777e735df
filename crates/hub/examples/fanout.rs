//! In-process fan-out ceiling of the hub core (no HTTP): N subscribers drained by tasks, one
//! publisher as fast as possible. A development aid; the real figures come from `bench/`.
//!
//! `cargo run --release -p ssehub-hub --example fanout -- 5000 200000`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures_util::StreamExt;
use ssehub_hub::{Hub, Subscription, Update};

fn main() {
    let mut args = std::env::args().skip(1);
    let subs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let events: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let hub = Hub::builder().heartbeat(None).history_size(100_000).build();
        let bytes = Arc::new(AtomicU64::new(0));
        for _ in 0..subs {
            let mut s = hub.subscribe(Subscription::new().topic("t").unwrap()).unwrap();
            let bytes = bytes.clone();
            tokio::spawn(async move {
                while let Some(b) = s.next().await {
                    bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                }
            });
        }
        let data = "x".repeat(80);
        let start = Instant::now();
        for i in 0..events {
            hub.publish(Update::new("t", data.as_str())).await.unwrap();
            if i % 64 == 0 {
                tokio::task::yield_now().await;
            }
        }
        hub.close();
        while hub.subscriber_count() > 0 {
            tokio::task::yield_now().await;
        }
        let secs = start.elapsed().as_secs_f64();
        let stats = hub.stats();
        println!(
            "{subs} subscribers, {events} events: {:.0} deliveries/s, {:.2} s, lagged {}, lag closes {}, {} MB out",
            (stats.deliveries + stats.replayed) as f64 / secs,
            secs,
            stats.lagged,
            stats.lag_closes,
            bytes.load(Ordering::Relaxed) / 1_000_000
        );
    });
}
