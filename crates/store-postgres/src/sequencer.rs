//! The node's sequencer task: runs sequencing steps (the SQL function `schema.sequence`, see
//! `schema.rs`) that give committed rows their positions in commit order. Any node may run a
//! step; an advisory lock in the function serializes them across nodes.
//!
//! A step runs when this node inserted rows (its publishers wake it directly), when an
//! application's commit notified `{schema}.pending` (through the listener), and every
//! [`SAFETY_POLL`] as a safety net (an idle step is one index probe, no lock). Wake-ups that
//! come while a step runs leave one permit, so they coalesce into one more step: under load a
//! step orders many rows at once, one commit for all of them.

use std::sync::Arc;

use ssehub_hub::storage::Sink;

use crate::storage::Node;
use crate::{BACKOFF_MAX, BACKOFF_MIN, SAFETY_POLL, SEQUENCE_BATCH};

/// Runs steps until the hub is gone.
pub(crate) async fn run(node: Arc<Node>, sink: Sink) {
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    loop {
        if !sink.is_alive() {
            return;
        }
        tokio::select! {
            () = node.wake_sequencer.notified() => {}
            () = tokio::time::sleep(SAFETY_POLL) => {}
        }
        loop {
            match node.db.sequence().await {
                Ok(n) => {
                    if failing {
                        tracing::info!("postgres sequencer reconnected");
                        failing = false;
                    }
                    backoff = BACKOFF_MIN;
                    if n > 0 {
                        // This node's reader need not wait for the notification's round trip.
                        node.wake_reader.notify_one();
                    }
                    if n < i64::from(SEQUENCE_BATCH) {
                        break;
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "postgres sequencer cannot order updates; retrying with backoff");
                    }
                    failing = true;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    if !sink.is_alive() {
                        return;
                    }
                }
            }
        }
    }
}
