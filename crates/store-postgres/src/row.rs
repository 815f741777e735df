//! Rows of `updates` (and their copies in `latest`) as the hub takes them: decoded and encoded
//! once as the `text/event-stream` frame subscribers get.

use std::sync::Arc;
use std::time::Duration;

use ssehub_hub::storage::{Ordered, encode_update};
use tokio_postgres::Row;

/// The columns [`decode`] reads, in its order.
pub(crate) const UPDATE_COLUMNS: &str = "id, pos, topics, data, type, event_id, retry_ms, private";

/// One ordered update and the row it came from.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The row id (insert order; what a waiting publisher knows).
    pub(crate) row: i64,
    /// The position (commit order).
    pub(crate) pos: i64,
    /// The update as the hub takes it.
    pub(crate) ordered: Ordered,
}

/// Decodes [`UPDATE_COLUMNS`] starting at column `at`. `None` (with a warning) for a row with
/// no position or one that cannot be encoded (the table's checks refuse such rows; one from
/// an older or altered table is skipped, which changes no one's order).
pub(crate) fn decode(epoch: u64, row: &Row, at: usize) -> Option<Entry> {
    let get = |i: usize| at + i;
    let id: Option<i64> = row.try_get(get(0)).ok()?;
    let pos: Option<i64> = row.try_get(get(1)).ok()?;
    let (Some(id), Some(pos)) = (id, pos) else {
        return None;
    };
    let topics: Vec<String> = row.try_get(get(2)).ok()?;
    let data: String = row.try_get(get(3)).ok()?;
    let event_type: Option<String> = row.try_get(get(4)).ok()?;
    let publisher_id: Option<String> = row.try_get(get(5)).ok()?;
    let retry: Option<i64> = row.try_get(get(6)).ok()?;
    let private: bool = row.try_get(get(7)).ok()?;
    entry(
        epoch,
        id,
        pos,
        topics,
        data,
        event_type,
        publisher_id,
        retry,
        private,
    )
}

/// Builds the entry and its frame.
#[allow(clippy::too_many_arguments)]
fn entry(
    epoch: u64,
    row: i64,
    pos: i64,
    topics: Vec<String>,
    data: String,
    event_type: Option<String>,
    publisher_id: Option<String>,
    retry: Option<i64>,
    private: bool,
) -> Option<Entry> {
    if topics.is_empty() {
        tracing::warn!(pos, "postgres: skipping an update without topics");
        return None;
    }
    let id: Arc<str> = match &publisher_id {
        Some(p) => Arc::from(p.as_str()),
        None => Arc::from(crate::event_id(epoch, pos)),
    };
    let retry = retry.map(|ms| Duration::from_millis(ms.max(0) as u64));
    let frame = match encode_update(&id, event_type, retry, data) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(pos, error = %e, "postgres: skipping an update that cannot be encoded");
            return None;
        }
    };
    Some(Entry {
        row,
        pos,
        ordered: Ordered {
            position: crate::position(pos),
            id,
            publisher_id: publisher_id.is_some(),
            topics,
            private,
            frame,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_position_id_or_the_publishers() {
        let e = entry(
            7,
            3,
            42,
            vec!["a".into()],
            "x\ny".into(),
            Some("t".into()),
            None,
            Some(1500),
            false,
        )
        .unwrap();
        assert_eq!(&*e.ordered.id, "#7-42");
        assert!(!e.ordered.publisher_id);
        assert_eq!(
            std::str::from_utf8(&e.ordered.frame).unwrap(),
            "event: t\nid: #7-42\nretry: 1500\ndata: x\ndata: y\n\n"
        );
        assert_eq!(
            e.ordered.position,
            ssehub_hub::storage::Position::new(0, 42)
        );
        let p = entry(
            7,
            4,
            43,
            vec!["a".into()],
            "d".into(),
            None,
            Some("mine".into()),
            None,
            true,
        )
        .unwrap();
        assert_eq!(&*p.ordered.id, "mine");
        assert!(p.ordered.publisher_id && p.ordered.private);
        assert_eq!(&p.ordered.frame[..], b"id: mine\ndata: d\n\n");
        // The table refuses these; a row from elsewhere is skipped, not sent broken.
        assert!(entry(7, 5, 44, vec![], "d".into(), None, None, None, false).is_none());
        assert!(
            entry(
                7,
                5,
                44,
                vec!["a".into()],
                "d".into(),
                Some("a\nb".into()),
                None,
                None,
                false
            )
            .is_none()
        );
    }
}
