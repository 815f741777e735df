//! The node's listener: one connection of its own (outside the pool) that `LISTEN`s on
//! `{schema}.pending` and `{schema}.positioned` and wakes the sequencer and the reader. When
//! the connection drops it reconnects with backoff, and wakes both once it listens again:
//! notifications sent while it was not listening are lost, the rows are not.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use ssehub_hub::storage::Sink;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::storage::Node;
use crate::{BACKOFF_MAX, BACKOFF_MIN, reason};

/// Listens until the hub is gone.
pub(crate) async fn listen_loop(node: Arc<Node>, sink: Sink) {
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    loop {
        if !sink.is_alive() {
            return;
        }
        match listen_once(&node, &sink, &mut failing).await {
            Ok(()) => return,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "postgres listener lost its connection; reconnecting with backoff");
                }
                failing = true;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
        if !failing {
            backoff = BACKOFF_MIN;
        }
    }
}

/// One connection's life: `Ok` once the hub is gone, `Err` when the connection failed.
async fn listen_once(node: &Arc<Node>, sink: &Sink, failing: &mut bool) -> Result<(), String> {
    let db = &node.db;
    let (client, mut connection) =
        tokio::time::timeout(db.options.timeout, db.config.connect(NoTls))
            .await
            .map_err(|_| "postgres: no answer while connecting".to_owned())?
            .map_err(|e| reason(&e))?;
    // The connection is driven here, in this task's select below: its messages are the
    // notifications, and its end is this connection's end.
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let listen = format!(
        "LISTEN \"{}\"; LISTEN \"{}\"",
        db.names.pending, db.names.positioned
    );
    let listening = client.batch_execute(&listen);
    tokio::pin!(listening);
    let mut listened = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            r = &mut listening, if !listened => {
                r.map_err(|e| reason(&e))?;
                listened = true;
                if *failing {
                    tracing::info!("postgres listener reconnected");
                    *failing = false;
                }
                // Whatever was notified while nobody listened.
                node.wake_sequencer.notify_one();
                node.wake_reader.notify_one();
            }
            m = messages.next() => match m {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if n.channel() == db.names.pending {
                        node.wake_sequencer.notify_one();
                    } else if n.channel() == db.names.positioned {
                        node.wake_reader.notify_one();
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(reason(&e)),
                None => return Err("postgres: the listening connection closed".into()),
            },
            _ = tick.tick() => {
                if !sink.is_alive() {
                    return Ok(());
                }
            }
        }
    }
}
