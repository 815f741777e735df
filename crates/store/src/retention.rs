//! Background retention: a Tokio task that trims the log on a timer.
//!
//! The trim itself is blocking redb work, so each round runs on the blocking pool; it deletes in
//! small transactions ([`crate::LogOptions::trim_batch`]), so appends wait at most one batch.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::{Log, RetainPolicy};

/// Trims `log` to `policy` every `every` (first round immediately) until the task is aborted.
/// Errors are logged and retried next round: a full disk must not stop retention, which is
/// what frees space.
pub fn spawn_retention(log: Log, policy: RetainPolicy, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let log = log.clone();
            match tokio::task::spawn_blocking(move || log.trim(&policy)).await {
                Ok(Ok(report)) if report.removed > 0 => {
                    tracing::debug!(
                        removed = report.removed,
                        first_seq = report.first_seq,
                        "trimmed"
                    );
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "retention failed; retrying next round"),
                Err(e) => tracing::warn!(error = %e, "retention task failed"),
            }
        }
    })
}
