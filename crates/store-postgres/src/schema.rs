//! The database side: names derived from the configured schema, and the versioned migrations
//! the hub applies when it connects (tables, indexes, the sequencer and the `publish`
//! function applications call). See the crate docs for what each object is for.
//!
//! Migrations run in one transaction under a transaction-scoped advisory lock, so several
//! nodes starting at once apply each version exactly once; `schema_version` records what is
//! applied. A database newer than this hub (a version it does not know) is refused.

use tokio_postgres::Client;

/// The highest schema version this crate knows.
pub(crate) const LATEST_VERSION: i32 = 1;

/// Longest schema name accepted: channel names (`{schema}.positioned`) must stay under
/// PostgreSQL's 63-byte identifier limit.
pub(crate) const MAX_SCHEMA_LEN: usize = 48;

/// Whether `name` is a schema name this crate accepts: lowercase ASCII letters, digits and
/// `_`, not starting with a digit, at most [`MAX_SCHEMA_LEN`] bytes. (Quoted everywhere, but
/// a plain name never needs quoting in an application's SQL either.)
pub(crate) fn valid_schema(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SCHEMA_LEN
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The SQL names of one schema's objects.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    /// The schema name as given.
    pub(crate) schema: String,
    /// `"schema"`, quoted for SQL.
    pub(crate) quoted: String,
    /// The channel the insert trigger notifies (applications' updates to order).
    pub(crate) pending: String,
    /// The channel the sequencer notifies (new positions to read).
    pub(crate) positioned: String,
}

impl Names {
    /// Names for a schema already checked with [`valid_schema`].
    pub(crate) fn new(schema: &str) -> Names {
        Names {
            schema: schema.to_owned(),
            quoted: format!("\"{schema}\""),
            pending: format!("{schema}.pending"),
            positioned: format!("{schema}.positioned"),
        }
    }

    /// `template` with `{s}` (the quoted schema), `{schema}` (its name as an SQL string),
    /// `{pending}` and `{positioned}` (channel names as SQL strings) filled in.
    pub(crate) fn sql(&self, template: &str) -> String {
        template
            .replace("{s}", &self.quoted)
            .replace("{schema}", &literal(&self.schema))
            .replace("{pending}", &literal(&self.pending))
            .replace("{positioned}", &literal(&self.positioned))
    }
}

/// An SQL string literal (the names are checked to be plain ASCII; quotes doubled anyway).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Version 1: the log, the retained copies, the sequencer, presence and subscriptions.
///
/// - `updates`: one row per update. `id` is the insert order; `pos` is NULL until the
///   sequencer gives the row its place in the commit order (dense: 1, 2, 3, ...).
///   `event_id` is the publisher's id (unique among retained rows). `bytes_before` (the sizes
///   of every earlier position) and `sequenced_at` serve retention by bytes and age.
/// - `state`: one row: the log's `epoch` (ids are `#{epoch}-{pos}`), the last position
///   given, the last position retention removed, the byte total, the last sequencing time.
/// - `latest`: per topic, a copy of its newest update (retained state outlives retention).
/// - `nodes`, `subscribers`: presence counts and active subscriptions of the live nodes.
const V1: &str = r#"
CREATE TABLE {s}.state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch bigint NOT NULL,
    last_pos bigint NOT NULL DEFAULT 0,
    trimmed_through bigint NOT NULL DEFAULT 0,
    total_bytes bigint NOT NULL DEFAULT 0,
    last_at timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO {s}.state (epoch) VALUES ((extract(epoch FROM clock_timestamp()) * 1000)::bigint);

CREATE TABLE {s}.updates (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pos bigint UNIQUE,
    topics text[] NOT NULL,
    data text NOT NULL DEFAULT '',
    type text,
    event_id text UNIQUE,
    retry_ms bigint,
    private boolean NOT NULL DEFAULT false,
    bytes_before bigint,
    sequenced_at timestamptz,
    CONSTRAINT topics_valid CHECK (
        array_ndims(topics) = 1 AND cardinality(topics) BETWEEN 1 AND 64
        AND array_position(topics, NULL) IS NULL AND array_position(topics, '') IS NULL),
    CONSTRAINT type_valid CHECK (type IS NULL OR type !~ '[\r\n]'),
    CONSTRAINT event_id_valid CHECK (event_id IS NULL OR (
        event_id <> '' AND event_id <> 'earliest' AND event_id !~ '[\r\n]'
        AND event_id !~ '^#?[0-9]+-[0-9]+$')),
    CONSTRAINT retry_valid CHECK (retry_ms IS NULL OR retry_ms >= 0)
);
-- The sequencer's queue: committed rows not ordered yet, in insert order.
CREATE INDEX updates_unpositioned ON {s}.updates (id) WHERE pos IS NULL;

CREATE TABLE {s}.latest (
    topic text PRIMARY KEY,
    pos bigint NOT NULL,
    topics text[] NOT NULL,
    data text NOT NULL,
    type text,
    event_id text,
    retry_ms bigint,
    private boolean NOT NULL
);

CREATE TABLE {s}.nodes (
    node text PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    total bigint NOT NULL DEFAULT 0,
    selectors jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE {s}.subscribers (
    node text NOT NULL,
    subscriber text NOT NULL,
    info jsonb NOT NULL,
    PRIMARY KEY (node, subscriber)
);

-- A statement that inserted updates wakes the sequencers (delivered at commit, never on
-- rollback). The hub's own connections set ssehub.hub = on and wake their node's sequencer
-- directly: NOTIFY serializes the commits of every notifying transaction of a database.
CREATE FUNCTION {s}.wake_sequencer() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF coalesce(current_setting('ssehub.hub', true), '') <> 'on' THEN
        PERFORM pg_notify({pending}, '');
    END IF;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER wake_sequencer AFTER INSERT ON {s}.updates
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.wake_sequencer();

-- One sequencing step: gives the committed unpositioned rows (oldest insert first, at most
-- `batch`) the next positions, copies them into `latest`, applies retention, and notifies the
-- readers. Serialized across nodes by a transaction-scoped advisory lock: every step sees the
-- commits of the previous ones and takes higher positions, so positions become visible in
-- order and a reader of `pos > last ORDER BY pos` never skips or repeats one. A node killed
-- mid-step just rolls back. Returns how many rows it positioned.
CREATE FUNCTION {s}.sequence(max_count bigint, max_age_ms bigint, max_bytes bigint,
                             batch integer DEFAULT 10000)
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    st record;
    n bigint;
    added bigint;
    last bigint;
    cut bigint;
BEGIN
    -- Cheap when idle (the safety-net poll): no lock unless there is work.
    IF NOT EXISTS (SELECT 1 FROM {s}.updates WHERE pos IS NULL) THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('ssehub.sequence:' || {schema}));
    -- Each statement below takes a new snapshot (read committed): it sees every commit made
    -- before the lock was granted, the previous step's included.
    SELECT * INTO st FROM {s}.state;
    WITH next AS (
        SELECT u.id, row_number() OVER (ORDER BY u.id) AS r,
               octet_length(u.data) + octet_length(array_to_string(u.topics, ''))
                   + coalesce(octet_length(u.event_id), 0) + coalesce(octet_length(u.type), 0)
                   AS size
        FROM {s}.updates u WHERE u.pos IS NULL ORDER BY u.id LIMIT batch
    ), numbered AS (
        SELECT id, r, size, sum(size) OVER (ORDER BY r) - size AS before FROM next
    ), done AS (
        UPDATE {s}.updates u
        SET pos = st.last_pos + numbered.r,
            bytes_before = st.total_bytes + numbered.before,
            sequenced_at = greatest(now(), st.last_at)
        FROM numbered WHERE u.id = numbered.id
        RETURNING u.pos, u.topics, u.data, u.type, u.event_id, u.retry_ms, u.private, numbered.size
    ), newest AS (
        INSERT INTO {s}.latest AS l (topic, pos, topics, data, type, event_id, retry_ms, private)
        SELECT DISTINCT ON (t.topic) t.topic, d.pos, d.topics, d.data, d.type, d.event_id,
               d.retry_ms, d.private
        FROM done d, unnest(d.topics) AS t(topic)
        ORDER BY t.topic, d.pos DESC
        ON CONFLICT (topic) DO UPDATE SET pos = excluded.pos, topics = excluded.topics,
            data = excluded.data, type = excluded.type, event_id = excluded.event_id,
            retry_ms = excluded.retry_ms, private = excluded.private
        WHERE l.pos < excluded.pos
    )
    SELECT count(*), coalesce(sum(size), 0) INTO n, added FROM done;
    IF n = 0 THEN
        RETURN 0;
    END IF;
    last := st.last_pos + n;
    cut := st.trimmed_through;
    IF max_count IS NOT NULL THEN
        cut := greatest(cut, last - max_count);
    END IF;
    -- Age and bytes grow with the position: what they remove is a prefix of the log, found
    -- among its oldest rows (at most 10,000 a step; the next step goes on).
    IF max_age_ms IS NOT NULL THEN
        cut := greatest(cut, coalesce((
            SELECT max(o.pos) FROM (
                SELECT pos, sequenced_at FROM {s}.updates
                WHERE pos > st.trimmed_through ORDER BY pos LIMIT 10000) o
            WHERE o.sequenced_at < now() - max_age_ms * interval '1 millisecond'), 0));
    END IF;
    IF max_bytes IS NOT NULL THEN
        -- The newest update always stays.
        cut := greatest(cut, least(last - 1, coalesce((
            SELECT max(o.pos) FROM (
                SELECT pos, bytes_before FROM {s}.updates
                WHERE pos > st.trimmed_through ORDER BY pos LIMIT 10000) o
            WHERE o.bytes_before < st.total_bytes + added - max_bytes), 0)));
    END IF;
    IF cut > st.trimmed_through THEN
        DELETE FROM {s}.updates WHERE pos > st.trimmed_through AND pos <= cut;
    END IF;
    UPDATE {s}.state SET last_pos = last, total_bytes = total_bytes + added,
        trimmed_through = greatest(trimmed_through, cut), last_at = greatest(now(), last_at);
    PERFORM pg_notify({positioned}, last::text);
    RETURN n;
END
$fn$;

-- Publishing from an application's own transaction: the update is ordered and delivered once
-- that transaction commits, never if it rolls back. Returns the row's id (its event id,
-- `#{epoch}-{pos}` unless `id` is given, exists only once it is ordered after the commit).
CREATE FUNCTION {s}.publish(topics text[], data text DEFAULT '', private boolean DEFAULT false,
                            type text DEFAULT NULL, id text DEFAULT NULL,
                            retry_ms bigint DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $fn$
#variable_conflict use_variable
DECLARE
    rid bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM unnest(topics) AS t(topic)
               WHERE lower(t.topic) LIKE '%/.well-known/mercure%') THEN
        RAISE EXCEPTION 'ssehub: topics under /.well-known/mercure are reserved for the hub'
            USING ERRCODE = 'check_violation';
    END IF;
    IF type = 'mercure' OR type LIKE 'ssehub.%' THEN
        RAISE EXCEPTION 'ssehub: the event type % is reserved for the hub', type
            USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO {s}.updates AS u (topics, data, private, type, event_id, retry_ms)
    VALUES (topics, coalesce(data, ''), coalesce(private, false), type, id, retry_ms)
    RETURNING u.id INTO rid;
    RETURN rid;
END
$fn$;
"#;

/// Every migration, oldest first: `(version, template)`.
const MIGRATIONS: &[(i32, &str)] = &[(1, V1)];

/// Applies the migrations `client`'s database lacks for `names`' schema, in one transaction
/// under an advisory lock. Returns the version the schema is at.
pub(crate) async fn migrate(client: &mut Client, names: &Names) -> Result<i32, String> {
    let err = |e: tokio_postgres::Error| crate::reason(&e);
    let tx = client.transaction().await.map_err(err)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("ssehub.migrate:{}", names.schema)],
    )
    .await
    .map_err(err)?;
    tx.batch_execute(&names.sql(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.schema_version (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now());",
    ))
    .await
    .map_err(err)?;
    let current: i32 = tx
        .query_one(
            &names.sql("SELECT coalesce(max(version), 0) FROM {s}.schema_version"),
            &[],
        )
        .await
        .map_err(err)?
        .get(0);
    if current > LATEST_VERSION {
        return Err(format!(
            "postgres: schema {} is at version {current}, newer than this hub knows ({LATEST_VERSION}); upgrade the hub",
            names.schema
        ));
    }
    for (version, template) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(&names.sql(template)).await.map_err(|e| {
            format!(
                "postgres: migration {version} failed: {}",
                crate::reason(&e)
            )
        })?;
        tx.execute(
            &names.sql("INSERT INTO {s}.schema_version (version) VALUES ($1)"),
            &[version],
        )
        .await
        .map_err(err)?;
        tracing::info!(schema = %names.schema, version, "postgres: applied a schema migration");
    }
    tx.commit().await.map_err(err)?;
    Ok(LATEST_VERSION.max(current))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_and_short() {
        for good in ["ssehub", "a", "_x", "app_1", &"s".repeat(MAX_SCHEMA_LEN)] {
            assert!(valid_schema(good), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "Upper",
            "with space",
            "a\"b",
            "a.b",
            "a-b",
            "caf\u{e9}",
            &"s".repeat(MAX_SCHEMA_LEN + 1),
        ] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }

    #[test]
    fn templates_are_filled_with_quoted_names_and_literals() {
        let n = Names::new("app");
        assert_eq!(
            n.sql("SELECT * FROM {s}.updates; NOTIFY {pending}; {positioned} {schema}"),
            "SELECT * FROM \"app\".updates; NOTIFY 'app.pending'; 'app.positioned' 'app'"
        );
        assert!(!n.sql(V1).contains("{s}"));
        assert!(!n.sql(V1).contains("{pending}"));
        assert!(n.positioned.len() < 64);
    }
}
