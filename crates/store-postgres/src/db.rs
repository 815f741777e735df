//! [`Db`]: one backend's connection pool and every statement the hub runs (inserting updates,
//! sequencing steps, pages, resolving ids, retained copies, presence and subscriber lists),
//! each exchange bounded by the configured timeout.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use ssehub_hub::{PublishError, Update};
use tokio_postgres::{NoTls, Row};

use crate::row::{Entry, UPDATE_COLUMNS, decode};
use crate::schema::{self, Names};
use crate::{PAGE, PRESENCE_TTL, PostgresOptions, PostgresStorageError, SEQUENCE_BATCH, reason};

pub(crate) use ssehub_hub::StoredChange as SubsChange;

/// The statements, with the schema filled in once.
struct Sql {
    insert: String,
    insert_set: String,
    insert_del: String,
    sequence: String,
    page_after: String,
    page_at: String,
    resolve: String,
    latest: String,
    presence: String,
    leave: String,
    sub_set: String,
    sub_del: String,
    subs_clear: String,
    subs_fill: String,
    subscriptions: String,
    position_of_row: String,
}

impl Sql {
    fn new(n: &Names) -> Sql {
        let insert = "INSERT INTO {s}.updates (topics, data, type, event_id, retry_ms, private) \
                      VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING RETURNING id";
        let cols = UPDATE_COLUMNS;
        Sql {
            insert: n.sql(insert),
            insert_set: n.sql(&format!(
                "WITH ins AS ({insert}), sub AS (INSERT INTO {{s}}.subscribers (node, subscriber, info) \
                 VALUES ($7, $8, $9::text::jsonb) ON CONFLICT (node, subscriber) DO UPDATE SET info = excluded.info) \
                 SELECT id FROM ins"
            )),
            insert_del: n.sql(&format!(
                "WITH ins AS ({insert}), sub AS (DELETE FROM {{s}}.subscribers WHERE node = $7 AND subscriber = $8) \
                 SELECT id FROM ins"
            )),
            sequence: n.sql("SELECT {s}.sequence($1, $2, $3, $4)"),
            page_after: n.sql(&format!(
                "SELECT {cols} FROM {{s}}.updates WHERE pos > $1 ORDER BY pos LIMIT $2"
            )),
            page_at: n.sql(&format!(
                "SELECT {cols} FROM {{s}}.updates WHERE pos >= $1 ORDER BY pos LIMIT $2"
            )),
            resolve: n.sql(
                "SELECT s.last_pos, s.trimmed_through, \
                 (SELECT u.pos FROM {s}.updates u WHERE u.event_id = $1 AND u.pos IS NOT NULL), \
                 o.pos, o.event_id \
                 FROM {s}.state s LEFT JOIN LATERAL (SELECT pos, event_id FROM {s}.updates \
                 WHERE pos > s.trimmed_through ORDER BY pos LIMIT 1) o ON true",
            ),
            latest: n.sql(
                "SELECT s.last_pos, l.topic, l.id, l.pos, l.topics, l.data, l.type, l.event_id, \
                 l.retry_ms, l.private FROM {s}.state s LEFT JOIN \
                 (SELECT 0::bigint AS id, * FROM {s}.latest) l ON l.pos <= s.last_pos",
            ),
            presence: n.sql(
                "WITH prev AS (SELECT expires_at > now() AS alive FROM {s}.nodes WHERE node = $1), \
                 gone AS (DELETE FROM {s}.nodes WHERE expires_at < now() AND node <> $1 RETURNING node), \
                 purge AS (DELETE FROM {s}.subscribers s USING gone WHERE s.node = gone.node), \
                 up AS (INSERT INTO {s}.nodes (node, expires_at, total, selectors) \
                   VALUES ($1, now() + $2::float8 * interval '1 millisecond', $3, $4::text::jsonb) \
                   ON CONFLICT (node) DO UPDATE SET expires_at = excluded.expires_at, \
                   total = excluded.total, selectors = excluded.selectors) \
                 SELECT coalesce((SELECT alive FROM prev), false), \
                 coalesce((SELECT jsonb_agg(jsonb_build_array(n.total, n.selectors))::text \
                   FROM {s}.nodes n WHERE n.node <> $1 AND n.expires_at > now()), '[]')",
            ),
            leave: n.sql(
                "WITH gone AS (DELETE FROM {s}.nodes WHERE node = $1) \
                 DELETE FROM {s}.subscribers WHERE node = $1",
            ),
            sub_set: n.sql(
                "INSERT INTO {s}.subscribers (node, subscriber, info) VALUES ($1, $2, $3::text::jsonb) \
                 ON CONFLICT (node, subscriber) DO UPDATE SET info = excluded.info",
            ),
            sub_del: n.sql("DELETE FROM {s}.subscribers WHERE node = $1 AND subscriber = $2"),
            subs_clear: n.sql("DELETE FROM {s}.subscribers WHERE node = $1"),
            subs_fill: n.sql(
                "INSERT INTO {s}.subscribers (node, subscriber, info) \
                 SELECT $1, x->>'subscriber', x FROM jsonb_array_elements($2::text::jsonb) x \
                 ON CONFLICT (node, subscriber) DO UPDATE SET info = excluded.info",
            ),
            subscriptions: n.sql(
                "SELECT (SELECT last_pos FROM {s}.state), \
                 coalesce(array_agg(s.info::text), '{}') FROM {s}.subscribers s \
                 WHERE s.node = $1 OR EXISTS (SELECT 1 FROM {s}.nodes n \
                   WHERE n.node = s.node AND n.expires_at > now())",
            ),
            position_of_row: n.sql("SELECT pos FROM {s}.updates WHERE id = $1"),
        }
    }
}

/// One page of the log.
#[derive(Debug)]
pub(crate) struct Page {
    /// The updates, in order.
    pub(crate) entries: Vec<Entry>,
    /// The first and last positions read.
    pub(crate) first: Option<i64>,
    pub(crate) last: Option<i64>,
    /// As many rows as asked for: there may be more.
    pub(crate) full: bool,
}

/// What resolving a `Last-Event-ID` needs, read in one statement (one snapshot).
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// The newest position given.
    pub(crate) last_pos: i64,
    /// Everything up to here was removed by retention.
    pub(crate) trimmed_through: i64,
    /// The position of the asked publisher id, when retained.
    pub(crate) publisher_pos: Option<i64>,
    /// The oldest retained update: its position and publisher id.
    pub(crate) oldest: Option<(i64, Option<String>)>,
}

/// One backend's pool and statements.
pub(crate) struct Db {
    pool: Pool,
    /// For the listener's own connection (outside the pool).
    pub(crate) config: tokio_postgres::Config,
    pub(crate) names: Names,
    pub(crate) options: PostgresOptions,
    /// Hub ids are `#{epoch}-{pos}`.
    pub(crate) epoch: u64,
    /// The newest position when this backend connected, and its update's id.
    start: (i64, Option<Arc<str>>),
    sql: Sql,
}

impl Db {
    /// Parses the URL, opens the pool, migrates the schema and reads where the log stands.
    pub(crate) async fn connect(
        options: PostgresOptions,
        names: Names,
    ) -> Result<Db, PostgresStorageError> {
        let mut config = tokio_postgres::Config::from_str(&options.url)
            .map_err(|e| PostgresStorageError::Url(crate::one_line(&e.to_string())))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("ssehub");
        }
        // Rows this hub inserts do not NOTIFY (see the insert trigger): the hub wakes its own
        // sequencer.
        let startup = match config.get_options() {
            Some(o) if !o.is_empty() => format!("{o} -c ssehub.hub=on"),
            _ => "-c ssehub.hub=on".to_owned(),
        };
        let mut pooled = config.clone();
        pooled.options(&startup);
        let manager = Manager::from_config(
            pooled,
            NoTls,
            ManagerConfig {
                // A connection the server closed (a restart) is noticed by its task and not
                // handed out again; no extra round trip per checkout.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.timeout))
            .create_timeout(Some(options.timeout))
            .recycle_timeout(Some(options.timeout))
            .build()
            .map_err(|e| PostgresStorageError::Postgres(format!("postgres: {e}")))?;
        let sql = Sql::new(&names);
        let timeout = options.timeout;
        let mut db = Db {
            pool,
            config,
            names,
            options,
            epoch: 0,
            start: (0, None),
            sql,
        };
        let (epoch, start) = tokio::time::timeout(timeout * 4, db.prepare())
            .await
            .map_err(|_| {
                PostgresStorageError::Postgres(format!(
                    "postgres: no answer within {} ms while connecting",
                    (timeout * 4).as_millis()
                ))
            })?
            .map_err(PostgresStorageError::Postgres)?;
        db.epoch = epoch;
        db.start = start;
        Ok(db)
    }

    /// Migrates, then reads the epoch and the newest position with its id.
    async fn prepare(&self) -> Result<(u64, (i64, Option<Arc<str>>)), String> {
        let mut client = self.pool.get().await.map_err(|e| pool_reason(&e))?;
        schema::migrate(&mut client, &self.names).await?;
        let row = client
            .query_one(
                &self.names.sql(
                    "SELECT s.epoch, s.last_pos, u.event_id, u.pos FROM {s}.state s \
                     LEFT JOIN {s}.updates u ON u.pos = s.last_pos",
                ),
                &[],
            )
            .await
            .map_err(|e| reason(&e))?;
        let epoch = row.get::<_, i64>(0).max(0) as u64;
        let last: i64 = row.get(1);
        let publisher: Option<String> = row.get(2);
        let id = match (publisher, last) {
            (Some(p), _) => Some(Arc::from(p.as_str())),
            (None, 0) => None,
            (None, pos) => Some(Arc::from(crate::event_id(epoch, pos))),
        };
        Ok((epoch, (last, id)))
    }

    /// The newest position when this backend connected, and its update's id.
    pub(crate) fn start_point(&self) -> (i64, Option<Arc<str>>) {
        self.start.clone()
    }

    /// Runs one exchange with a pooled connection, bounded by the timeout; the error is a
    /// one-line reason.
    async fn with<T, F, Fut>(&self, f: F) -> Result<T, String>
    where
        F: FnOnce(deadpool_postgres::Object) -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let run = async {
            let client = self.pool.get().await.map_err(|e| pool_reason(&e))?;
            f(client).await
        };
        match tokio::time::timeout(self.options.timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "postgres: no answer within {} ms",
                self.options.timeout.as_millis()
            )),
        }
    }

    /// Runs a prepared (cached) statement and returns its rows.
    async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, String> {
        self.with(|client| async move {
            let stmt = client.prepare_cached(sql).await.map_err(|e| reason(&e))?;
            client.query(&stmt, params).await.map_err(|e| reason(&e))
        })
        .await
    }

    /// Inserts an update (and applies `change` to `node`'s subscriber list in the same
    /// statement); returns its row id once committed. Not ordered yet: see the sequencer.
    pub(crate) async fn insert(
        &self,
        update: &Update,
        node: &str,
        change: Option<&SubsChange>,
    ) -> Result<i64, PublishError> {
        let topics: Vec<&str> = update.topics().iter().map(String::as_str).collect();
        let retry = update
            .retry_duration()
            .map(|r| i64::try_from(r.as_millis()).unwrap_or(i64::MAX));
        let (data, kind, id, private) = (
            update.data_str(),
            update.event_type_str(),
            update.id_str(),
            update.is_private(),
        );
        type Param<'p> = &'p (dyn tokio_postgres::types::ToSql + Sync);
        let base: [Param<'_>; 6] = [&topics, &data, &kind, &id, &retry, &private];
        let rows = match change {
            None => self.rows(&self.sql.insert, &base).await,
            Some(SubsChange::Set(sub, info)) => {
                let mut p: Vec<Param<'_>> = base.to_vec();
                p.extend::<[Param<'_>; 3]>([&node, sub, info]);
                self.rows(&self.sql.insert_set, &p).await
            }
            Some(SubsChange::Del(sub)) => {
                let mut p: Vec<Param<'_>> = base.to_vec();
                p.extend::<[Param<'_>; 2]>([&node, sub]);
                self.rows(&self.sql.insert_del, &p).await
            }
        }
        .map_err(PublishError::Unavailable)?;
        match rows.first() {
            Some(row) => Ok(row.get(0)),
            // ON CONFLICT DO NOTHING: a retained update has this publisher id.
            None => Err(PublishError::DuplicateId),
        }
    }

    /// One sequencing step (see `schema.sequence`); returns how many rows it ordered.
    pub(crate) async fn sequence(&self) -> Result<i64, String> {
        let o = &self.options;
        let count = o.max_count.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let age = o
            .max_age
            .map(|a| i64::try_from(a.as_millis()).unwrap_or(i64::MAX));
        let bytes = o.max_bytes.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let rows = self
            .rows(&self.sql.sequence, &[&count, &age, &bytes, &SEQUENCE_BATCH])
            .await?;
        Ok(rows.first().map_or(0, |r| r.get(0)))
    }

    /// Where row `id` was ordered: `Ok(None)` while unordered, `Err` when it is gone.
    pub(crate) async fn position_of_row(&self, id: i64) -> Result<Option<i64>, String> {
        let rows = self.rows(&self.sql.position_of_row, &[&id]).await?;
        match rows.first() {
            Some(r) => Ok(r.get(0)),
            None => {
                Err("postgres: the update was removed by retention before it was ordered".into())
            }
        }
    }

    /// Up to `count` updates after `after` (or from it, `inclusive`), in order.
    pub(crate) async fn page(
        &self,
        after: i64,
        count: usize,
        inclusive: bool,
    ) -> Result<Page, String> {
        let limit = count.clamp(1, PAGE) as i64;
        let sql = if inclusive {
            &self.sql.page_at
        } else {
            &self.sql.page_after
        };
        let rows = self.rows(sql, &[&after, &limit]).await?;
        // Positions come from the raw rows, so a row `decode` skips still advances.
        let pos = |r: &Row| r.try_get::<_, i64>(1).ok();
        Ok(Page {
            first: rows.first().and_then(pos),
            last: rows.last().and_then(pos),
            full: rows.len() as i64 == limit,
            entries: rows
                .iter()
                .filter_map(|r| decode(self.epoch, r, 0))
                .collect(),
        })
    }

    /// The log's bounds and a publisher id's position, in one snapshot.
    pub(crate) async fn snapshot(&self, publisher_id: &str) -> Result<Snapshot, String> {
        let rows = self.rows(&self.sql.resolve, &[&publisher_id]).await?;
        let row = rows
            .first()
            .ok_or_else(|| "postgres: the state row is missing".to_owned())?;
        let oldest_pos: Option<i64> = row.get(3);
        Ok(Snapshot {
            last_pos: row.get(0),
            trimmed_through: row.get(1),
            publisher_pos: row.get(2),
            oldest: oldest_pos.map(|p| (p, row.get(4))),
        })
    }

    /// The newest position, and the retained copy of each topic's newest update with its
    /// topic (any order).
    pub(crate) async fn latest(&self) -> Result<(i64, Vec<(String, Entry)>), String> {
        let rows = self.rows(&self.sql.latest, &[]).await?;
        let last = rows.first().map_or(0, |r| r.get::<_, i64>(0));
        let copies = rows
            .iter()
            .filter_map(|r| {
                let topic: Option<String> = r.get(1);
                Some((topic?, decode(self.epoch, r, 2)?))
            })
            .collect();
        Ok((last, copies))
    }

    /// Writes this node's counts (`selectors` as a JSON object) and returns whether its
    /// entry was still alive and the other live nodes' `[total, {selector: count}]` JSON.
    pub(crate) async fn exchange_presence(
        &self,
        node: &str,
        total: i64,
        selectors: String,
    ) -> Result<(bool, String), String> {
        let ttl = PRESENCE_TTL.as_millis() as f64;
        let rows = self
            .rows(&self.sql.presence, &[&node, &ttl, &total, &selectors])
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| "postgres: empty presence reply".to_owned())?;
        Ok((row.get(0), row.get(1)))
    }

    /// Removes this node from presence and its subscriber list (a clean shutdown).
    pub(crate) async fn leave(&self, node: &str) -> Result<(), String> {
        self.rows(&self.sql.leave, &[&node]).await.map(drop)
    }

    /// Applies one change to this node's subscriber list.
    pub(crate) async fn record_change(
        &self,
        node: &str,
        change: &SubsChange,
    ) -> Result<(), String> {
        match change {
            SubsChange::Set(sub, info) => self.rows(&self.sql.sub_set, &[&node, sub, info]).await,
            SubsChange::Del(sub) => self.rows(&self.sql.sub_del, &[&node, sub]).await,
        }
        .map(drop)
    }

    /// Replaces this node's whole subscriber list (`all`: a JSON array of subscribers), in
    /// one transaction.
    pub(crate) async fn rewrite_subscriptions(
        &self,
        node: &str,
        all: String,
    ) -> Result<(), String> {
        let (clear, fill) = (&self.sql.subs_clear, &self.sql.subs_fill);
        self.with(|mut client| async move {
            let tx = client.transaction().await.map_err(|e| reason(&e))?;
            tx.execute(clear.as_str(), &[&node])
                .await
                .map_err(|e| reason(&e))?;
            tx.execute(fill.as_str(), &[&node, &all])
                .await
                .map_err(|e| reason(&e))?;
            tx.commit().await.map_err(|e| reason(&e))
        })
        .await
    }

    /// The newest position and every live node's subscribers (their JSON), in one snapshot.
    pub(crate) async fn subscriptions(&self, node: &str) -> Result<(i64, Vec<String>), String> {
        let rows = self.rows(&self.sql.subscriptions, &[&node]).await?;
        let row = rows
            .first()
            .ok_or_else(|| "postgres: empty subscriptions reply".to_owned())?;
        Ok((row.get(0), row.get(1)))
    }
}

/// A pool error as a one-line reason.
fn pool_reason(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => reason(e),
        deadpool_postgres::PoolError::Timeout(_) => {
            "postgres: no connection within the timeout".into()
        }
        other => format!("postgres: {}", crate::one_line(&other.to_string())),
    }
}
