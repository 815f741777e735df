//! [`Waiters`]: this node's publishers waiting for the position of the row they committed.
//! The reader answers them as it reads rows; a row it read before its publisher started
//! waiting (another node ordered it at once) is found among the recently read ones.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// How many recently read rows are remembered for publishers that start waiting late.
const RECENT: usize = 8192;

/// Row id -> a waiting publisher, and the recently read rows' positions.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    waiting: HashMap<i64, oneshot::Sender<i64>>,
    recent: HashMap<i64, i64>,
    order: VecDeque<i64>,
}

/// What [`Waiters::wait`] gives.
#[derive(Debug)]
pub(crate) enum Wait {
    /// Already read: its position.
    Known(i64),
    /// Answered when the reader reads it.
    Pending(oneshot::Receiver<i64>),
}

impl Waiters {
    /// Waits for row `row`'s position.
    pub(crate) fn wait(&self, row: i64) -> Wait {
        let mut g = self.inner.lock();
        if let Some(&pos) = g.recent.get(&row) {
            return Wait::Known(pos);
        }
        let (tx, rx) = oneshot::channel();
        g.waiting.insert(row, tx);
        Wait::Pending(rx)
    }

    /// Stops waiting for `row` (the publisher gave up).
    pub(crate) fn forget(&self, row: i64) {
        self.inner.lock().waiting.remove(&row);
    }

    /// The reader read these `(row, position)` pairs.
    pub(crate) fn read(&self, rows: impl IntoIterator<Item = (i64, i64)>) {
        let mut g = self.inner.lock();
        for (row, pos) in rows {
            if let Some(tx) = g.waiting.remove(&row) {
                let _ = tx.send(pos);
            } else {
                g.recent.insert(row, pos);
                g.order.push_back(row);
                if g.order.len() > RECENT
                    && let Some(old) = g.order.pop_front()
                {
                    g.recent.remove(&old);
                }
            }
        }
    }

    /// Publishers waiting now (for tests and stats).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_is_answered_when_read_or_at_once_when_read_before() {
        let w = Waiters::default();
        let Wait::Pending(rx) = w.wait(10) else {
            panic!("not read yet")
        };
        w.read([(11, 1), (10, 2)]);
        assert_eq!(rx.await.unwrap(), 2);
        assert!(matches!(w.wait(11), Wait::Known(1)));
        let Wait::Pending(_rx) = w.wait(12) else {
            panic!("not read yet")
        };
        w.forget(12);
        assert_eq!(w.len(), 0);
        // The memory of read rows is bounded.
        w.read((100..100 + RECENT as i64 + 10).map(|r| (r, r)));
        assert!(matches!(w.wait(100), Wait::Pending(_)));
        assert!(matches!(w.wait(100 + RECENT as i64 + 9), Wait::Known(_)));
    }
}
