//! Presence across the nodes of a shared log: one task per hub exchanges this node's
//! subscriber counts for the other live nodes' through the storage's
//! [`Cluster`](crate::storage::Cluster) channel, every [`Cluster::presence_every`]. On an
//! error only this node counts until the next successful exchange. A storage without a
//! cluster channel starts no task.

use std::sync::Weak;

use crate::hub::{Hub, Inner};
#[cfg(doc)]
use crate::storage::Cluster;

/// The presence exchange task (started by the builder when the storage has a cluster).
pub(crate) async fn exchange(hub: Weak<Inner>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = hub.upgrade() else { return };
        let (closed, total, selectors) = {
            let st = inner.state.lock();
            let selectors: Vec<(String, usize)> = st
                .selector_counts
                .iter()
                .map(|(k, &n)| (k.to_string(), n))
                .collect();
            (st.closed, st.subs.len(), selectors)
        };
        let Some(cluster) = inner.storage.cluster() else {
            return;
        };
        // The futures hold no reference to the hub: do not keep it alive across the await.
        let exchanged = if closed {
            let leave = cluster.leave();
            drop(inner);
            leave.await;
            return;
        } else {
            let exchange = cluster.exchange_presence(total, selectors);
            drop(inner);
            exchange.await
        };
        let Some(inner) = hub.upgrade() else { return };
        match exchanged {
            Ok(remote) => {
                // This node's list expired (the log's server restarted, or this node stalled
                // past its TTL) while it has subscribers, or missed a change while the cluster
                // was unreachable: write it again.
                let dirty = inner
                    .subs_dirty
                    .swap(false, std::sync::atomic::Ordering::Relaxed);
                if inner.tracker.get().is_some() && (dirty || (!remote.subs_alive && total > 0)) {
                    Hub {
                        inner: inner.clone(),
                    }
                    .queue_resync();
                }
                *inner.remote.lock() = remote;
            }
            Err(e) => {
                // The others cannot be counted now: count this node alone rather than nodes
                // that may have died meanwhile.
                tracing::debug!(error = %e, "cluster: presence refresh failed");
                *inner.remote.lock() = Default::default();
            }
        }
    }
}
