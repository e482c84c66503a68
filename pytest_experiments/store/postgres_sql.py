"""The PostgreSQL store's schema and statements, as text with ``{s}`` for the store's schema.

:class:`pytest_experiments.store.postgres.PostgresStore` fills in ``{s}`` through
``psycopg.sql.Identifier`` once per connection; every value is a ``%s`` parameter. No driver
is imported here.
"""

from __future__ import annotations

#: The version of the schema this code writes; a store of a newer one is refused.
SCHEMA_VERSION = 5
#: Written in the store's version table (a schema without it is not a store), and the
#: connections' ``application_name``.
APPLICATION = "pytest-experiments"
#: In the error of a fold whose journal another process folded further meanwhile
#: (``fold_offset_from``): no quote, brace or percent sign, as it is spliced into that statement.
GUARD_FAILED = "pytest-experiments: journal folded elsewhere, now at"

# Keys compare bytewise (COLLATE "C"), as SQLite compares text: the same order of runs
# started at the same instant, and sorts that do not go through the locale.
SCHEMA = (
    "CREATE TABLE {s}.store_version (application text NOT NULL, version integer NOT NULL)",
    """CREATE TABLE {s}.sessions (
        session_id   text COLLATE "C" PRIMARY KEY,
        started_at   double precision NOT NULL,
        finished_at  double precision,
        heartbeat_at double precision,
        host         text NOT NULL,
        pid          integer NOT NULL,
        exitstatus   integer,
        metadata     text NOT NULL DEFAULT '{{}}'
    )""",
    'CREATE TABLE {s}.code (sha256 text COLLATE "C" PRIMARY KEY, source text NOT NULL)',
    # The store's own order of run starts (see the module doc): one row, one lock.
    "CREATE TABLE {s}.run_sequence (id integer PRIMARY KEY CHECK (id = 1), last bigint NOT NULL)",
    "INSERT INTO {s}.run_sequence (id, last) VALUES (1, 0)",
    """CREATE TABLE {s}.runs (
        run_id        text COLLATE "C" PRIMARY KEY,
        seq           bigint NOT NULL,
        session_id    text COLLATE "C" NOT NULL,
        node_id       text COLLATE "C" NOT NULL,
        module        text COLLATE "C" NOT NULL,
        experiment    text COLLATE "C" NOT NULL,
        param_hash    text COLLATE "C" NOT NULL,
        params        text NOT NULL,
        logged_params text NOT NULL DEFAULT '{{}}',
        status        text NOT NULL,
        started_at    double precision NOT NULL,
        finished_at   double precision,
        duration      double precision,
        worker        text NOT NULL,
        host          text NOT NULL,
        pid           integer NOT NULL,
        pid_namespace text NOT NULL DEFAULT '',
        pid_started   text NOT NULL DEFAULT '',
        dir           text NOT NULL,
        code_sha256   text COLLATE "C",
        metrics       text NOT NULL DEFAULT '{{}}',
        result        text,
        metadata      text NOT NULL DEFAULT '{{}}',
        error_type    text,
        error_message text,
        traceback     text
    )""",
    # Claims and the latest run of a grid point go through it.
    "CREATE INDEX runs_by_grid_point ON {s}.runs (module, experiment, param_hash, started_at)",
    # JSON as text, not jsonb: jsonb has no NaN or infinity, which metrics and results hold.
    """CREATE TABLE {s}.metric_points (
        run_id text COLLATE "C" NOT NULL,
        name   text COLLATE "C" NOT NULL,
        seq    integer NOT NULL,
        step   bigint,
        value  double precision,
        PRIMARY KEY (run_id, name, seq)
    )""",
)
# Each entry takes a store from the version before it to its own, under the creation lock.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        # Tags (a JSON object of short strings) and notes (a JSON list of [time, text]) are read
        # with every listing, so they live in the run's row.
        "ALTER TABLE {s}.runs ADD COLUMN tags text NOT NULL DEFAULT '{{}}'",
        "ALTER TABLE {s}.runs ADD COLUMN notes text NOT NULL DEFAULT '[]'",
        # What xp.log_* wrote into the run folder: what a listing of the folder cannot know.
        """CREATE TABLE {s}.artifacts (
            run_id     text COLLATE "C" NOT NULL,
            name       text COLLATE "C" NOT NULL,
            size       bigint NOT NULL,
            media_type text,
            kind       text,
            PRIMARY KEY (run_id, name)
        )""",
    ),
    3: (
        # A continued run's earlier attempts (xp.pause, interrupted runs continued): the run's
        # row holds the current one. Written only when a run is continued, never per run.
        """CREATE TABLE {s}.run_attempts (
            run_id      text COLLATE "C" NOT NULL,
            attempt     integer NOT NULL,
            session_id  text COLLATE "C" NOT NULL,
            started_at  double precision NOT NULL,
            finished_at double precision,
            status      text NOT NULL,
            reason      text NOT NULL DEFAULT '',
            worker      text NOT NULL,
            host        text NOT NULL,
            pid         integer NOT NULL,
            PRIMARY KEY (run_id, attempt)
        )""",
    ),
    4: (
        # How far each journal (store/journal.py) is folded: moved in the fold's transaction.
        'CREATE TABLE IF NOT EXISTS {s}.journals (name text COLLATE "C" PRIMARY KEY, folded bigint NOT NULL)',
    ),
    5: (
        # (Each statement may meet its object made already, by a store taken back to an older
        # version by hand: as 4, it is made again or kept.)
        # Every change to a run, logged by the triggers below: a reader that keeps a frame of the
        # runs (frames/cache.py) reads the runs changed since and patches the frame. Unlike
        # SQLite's one writer, transactions here commit in another order than they draw numbers,
        # so a reader does not ask for the changes after the last number it saw, but for those of
        # every transaction its snapshot did not see: those running then (the snapshot's xip
        # list) and those that started after it (ids from its xmax on). Each row holds its
        # transaction's id for that, and a random mark by which a reader tells this store's
        # past from another's (a store dropped and made again under the same name).
        "CREATE TABLE IF NOT EXISTS {s}.change_log (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
        'run_id text COLLATE "C" NOT NULL, txid bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint), '
        "mark bigint NOT NULL DEFAULT (floor((random() - 0.5) * 9.2e18)::bigint))",
        "CREATE INDEX IF NOT EXISTS change_log_by_transaction ON {s}.change_log (txid)",
        # Its first row: a reader always finds a last change to note.
        "INSERT INTO {s}.change_log (run_id) VALUES ('')",
        # The newest transaction whose changes were pruned from the log (writers keep the last
        # CHANGES_KEPT): a frame kept from a snapshot that did not see it is built again.
        "CREATE TABLE IF NOT EXISTS {s}.change_log_pruned (id integer PRIMARY KEY CHECK (id = 1), txid bigint NOT NULL)",
        "INSERT INTO {s}.change_log_pruned (id, txid) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
        # Whether any run is stored as running (then nothing is kept: live statuses change
        # without the store) without a scan of every run.
        "CREATE INDEX IF NOT EXISTS runs_running ON {s}.runs (session_id) WHERE status = 'running'",
        # A row-level trigger: most statements change one run (a batch is a pipeline of them),
        # and a statement-level one's transition tables cost more than the row's insert.
        # An update logs the old run id too when it changed: a run renamed by hand is gone under it.
        "CREATE OR REPLACE FUNCTION {s}.log_run_change() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
        "IF TG_OP <> 'DELETE' THEN INSERT INTO {s}.change_log (run_id) VALUES (NEW.run_id); END IF; "
        "IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.run_id <> NEW.run_id) THEN "
        "INSERT INTO {s}.change_log (run_id) VALUES (OLD.run_id); END IF; RETURN NULL; END$$",
        "DROP TRIGGER IF EXISTS runs_changed ON {s}.runs",
        "CREATE TRIGGER runs_changed AFTER INSERT OR UPDATE OR DELETE ON {s}.runs "
        "FOR EACH ROW EXECUTE FUNCTION {s}.log_run_change()",
    ),
}

#: How many changes the change log keeps (a writer opening the store prunes older ones): a
#: frame kept before them is built again.
CHANGES_KEPT = 250_000

# What listings read of a run (the bulky result and traceback only by run()), and what
# liveness needs of its session, by position.
RUN_COLUMNS = (
    "run_id", "session_id", "node_id", "module", "experiment", "param_hash", "status", "started_at",
    "finished_at", "duration", "worker", "host", "pid", "pid_namespace", "dir", "code_sha256", "error_type",
    "error_message", "pid_started",
)  # fmt: skip
# The four JSON columns as one JSON array, decoded with one json.loads: for load() of many runs
# the per-call cost of four decodes a row is more than the decoding itself.
# Tags and notes too, from version 2 (a reader never migrates: a version-1 store has none).
_VALUES = (
    "'[' || r.params || ',' || r.logged_params || ',' || r.metrics || ',' || r.metadata || ',' || r.tags "
    "|| ',' || r.notes || ']'"
)
_VALUES_V1 = "'[' || r.params || ',' || r.logged_params || ',' || r.metrics || ',' || r.metadata || ',{{}},[]]'"
_COLUMNS = ", ".join(f"r.{column}" for column in RUN_COLUMNS)
_LIST = f"{_COLUMNS}, {_VALUES}, s.heartbeat_at, s.finished_at"
_LIST_V1 = f"{_COLUMNS}, {_VALUES_V1}, s.heartbeat_at, s.finished_at"
_WITH_SESSION = "LEFT JOIN {s}.sessions s ON s.session_id = r.session_id"
(RUN_ID, SESSION_ID, NODE_ID, MODULE, EXPERIMENT, PARAM_HASH, STATUS, STARTED, FINISHED, DURATION, WORKER,
 HOST, PID, PID_NAMESPACE, DIR, CODE, ERROR_TYPE, ERROR_MESSAGE, PID_STARTED, VALUES, HEARTBEAT,
 SESSION_FINISHED) = range(len(RUN_COLUMNS) + 3)  # fmt: skip
#: How many columns a listed run has (``run`` reads more after them).
LISTED = SESSION_FINISHED + 1

STATEMENTS = {
    "record_session": "INSERT INTO {s}.sessions (session_id, started_at, heartbeat_at, host, pid, metadata) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (session_id) DO NOTHING",
    "update_session_metadata": "UPDATE {s}.sessions SET metadata = %s WHERE session_id = %s",
    # The run's number comes from the counter in the same statement: no run without one.
    "start_run": "WITH next AS (UPDATE {s}.run_sequence SET last = last + 1 RETURNING last) "
    "INSERT INTO {s}.runs (seq, run_id, session_id, node_id, module, experiment, param_hash, params, status, "
    "started_at, worker, host, pid, pid_namespace, pid_started, dir) "
    "SELECT next.last, %s, %s, %s, %s, %s, %s, %s, 'running', %s, %s, %s, %s, %s, %s, %s FROM next",
    "lock_grid_point": "SELECT pg_advisory_xact_lock(%s)",
    "claimed_elsewhere": "SELECT r.session_id, r.seq > %s, r.status, r.host, r.pid, r.pid_namespace, r.pid_started, "
    "s.heartbeat_at, s.finished_at FROM {s}.runs r " + _WITH_SESSION + " "
    "WHERE r.module = %s AND r.experiment = %s AND r.param_hash = %s AND r.session_id != %s "
    "AND (r.status = 'running' OR r.seq > %s)",
    # A claim's insert, done only when no run of the grid point in another session is running
    # or after the mark (the counter is not advanced either then). Runs after "lock_grid_point"
    # in its transaction, so it sees every claimer of the point before us.
    "claim_if_free": "WITH next AS (UPDATE {s}.run_sequence SET last = last + 1 WHERE NOT EXISTS (SELECT FROM "
    "{s}.runs r WHERE r.module = %s AND r.experiment = %s AND r.param_hash = %s AND r.session_id != %s "
    "AND (r.status = 'running' OR r.seq > %s)) RETURNING last) "
    "INSERT INTO {s}.runs (seq, run_id, session_id, node_id, module, experiment, param_hash, params, status, "
    "started_at, worker, host, pid, pid_namespace, pid_started, dir) "
    "SELECT next.last, %s, %s, %s, %s, %s, %s, %s, 'running', %s, %s, %s, %s, %s, %s, %s FROM next",
    # claim_first: the locks of grid points (in ascending order: two claimers never wait for
    # each other in a circle), then, in a statement of its own (which sees every claimer that
    # held a lock before us), the runs of other sessions that keep each point from us (running,
    # or after the mark), and the run of the first point without any, inserted; the counter is
    # not advanced when there is none. One row at least: the first column is the 1-based place
    # of the point claimed (NULL: none), then a blocking run's place and what liveness needs.
    "lock_grid_points": "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k",
    "claim_first_free": "WITH c AS (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::text[], %s::text[], %s::double precision[], %s::text[]) WITH ORDINALITY "
    "AS c(run_id, node_id, module, experiment, param_hash, params, started_at, dir, n)), "
    "blocking AS (SELECT c.n, r.session_id, r.seq > %s, r.status, r.host, r.pid, r.pid_namespace, r.pid_started, "
    "s.heartbeat_at, s.finished_at FROM c JOIN {s}.runs r ON r.module = c.module AND r.experiment = c.experiment "
    "AND r.param_hash = c.param_hash " + _WITH_SESSION + " "
    "WHERE r.session_id != %s AND (r.status = 'running' OR r.seq > %s)), "
    "first AS (SELECT * FROM c WHERE c.n NOT IN (SELECT n FROM blocking) ORDER BY c.n LIMIT 1), "
    "next AS (UPDATE {s}.run_sequence SET last = last + 1 WHERE EXISTS (SELECT FROM first) RETURNING last), "
    "claimed AS (INSERT INTO {s}.runs (seq, run_id, session_id, node_id, module, experiment, param_hash, params, "
    "status, started_at, worker, host, pid, pid_namespace, pid_started, dir) "
    "SELECT next.last, first.run_id, %s, first.node_id, first.module, first.experiment, first.param_hash, "
    "first.params, 'running', first.started_at, %s, %s, %s, %s, %s, first.dir FROM next, first) "
    "SELECT (SELECT n FROM first), b.* FROM (SELECT) AS one LEFT JOIN blocking b ON true",
    # Continuing a run (continue_run): its grid point's latest run, with what liveness needs.
    "latest_of_point": "SELECT r.run_id, r.session_id, r.status, r.started_at, r.finished_at, r.worker, r.host, r.pid, "
    "r.pid_namespace, r.pid_started, s.heartbeat_at, s.finished_at, r.dir, r.metrics, r.logged_params, r.metadata, "
    "r.error_type, r.error_message FROM {s}.runs r " + _WITH_SESSION + " "
    "WHERE r.module = %s AND r.experiment = %s AND r.param_hash = %s ORDER BY r.started_at DESC, r.seq DESC LIMIT 1",
    "attempt_count": "SELECT count(*) FROM {s}.run_attempts WHERE run_id = %s",
    "add_attempt": "INSERT INTO {s}.run_attempts (run_id, attempt, session_id, started_at, finished_at, status, "
    "reason, worker, host, pid) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
    # A new number in the store's sequence: to a concurrent claimer the attempt started after its snapshot.
    "reopen_run": "WITH next AS (UPDATE {s}.run_sequence SET last = last + 1 RETURNING last) "
    "UPDATE {s}.runs SET seq = next.last, session_id = %s, node_id = %s, status = 'running', started_at = %s, "
    "finished_at = NULL, duration = NULL, worker = %s, host = %s, pid = %s, pid_namespace = %s, pid_started = %s, "
    "result = NULL, metadata = %s, error_type = NULL, error_message = NULL, traceback = NULL FROM next "
    "WHERE run_id = %s",
    "next_point_seq": "SELECT coalesce(max(seq) + 1, 0) FROM {s}.metric_points WHERE run_id = %s",
    "current_attempt": "SELECT r.session_id, r.status, r.started_at, r.finished_at, r.worker, r.host, r.pid, "
    "r.pid_namespace, r.pid_started, s.heartbeat_at, s.finished_at, r.metadata, r.error_type, r.error_message "
    "FROM {s}.runs r " + _WITH_SESSION + " WHERE r.run_id = %s",
    "attempts": "SELECT session_id, started_at, finished_at, status, reason, worker, host, pid "
    "FROM {s}.run_attempts WHERE run_id = %s ORDER BY attempt",
    "delete_attempts": "DELETE FROM {s}.run_attempts WHERE run_id = ANY(%s::text[])",
    "heartbeat": "UPDATE {s}.sessions SET heartbeat_at = %s WHERE session_id = %s AND finished_at IS NULL",
    # One statement (so one transaction and one round trip): the function's code when new,
    # the metric points (arrays, unnested), and the run's outcome.
    "finish_run": "WITH code AS (INSERT INTO {s}.code (sha256, source) SELECT %s::text, %s::text "
    "WHERE %s::text IS NOT NULL ON CONFLICT (sha256) DO NOTHING), "
    "points AS (INSERT INTO {s}.metric_points (run_id, name, seq, step, value) "
    "SELECT %s::text, * FROM unnest(%s::text[], %s::integer[], %s::bigint[], %s::double precision[]) "
    "ON CONFLICT (run_id, name, seq) DO UPDATE SET step = EXCLUDED.step, value = EXCLUDED.value) "
    "UPDATE {s}.runs SET status = %s, finished_at = %s, duration = %s, result = %s, metrics = %s, "
    "logged_params = %s, metadata = %s, code_sha256 = %s, error_type = %s, error_message = %s, traceback = %s "
    "WHERE run_id = %s",
    "finish_session": "WITH session AS (UPDATE {s}.sessions SET finished_at = %s, heartbeat_at = %s, "
    "exitstatus = %s WHERE session_id = %s) "
    "UPDATE {s}.runs SET status = 'interrupted', finished_at = %s, duration = %s - started_at "
    "WHERE session_id = %s AND status = 'running'",
    "history": "SELECT " + _LIST + " FROM {s}.runs r " + _WITH_SESSION + " "
    "WHERE (%s::text[] IS NULL OR r.experiment = ANY(%s::text[])) AND (%s::text IS NULL OR r.session_id = %s) "
    "ORDER BY r.started_at, r.seq",
    # The latest run of each grid point is chosen over narrow rows, then read in full.
    "latest": "SELECT " + _LIST + " FROM (SELECT DISTINCT ON (module, experiment, param_hash) run_id FROM {s}.runs "
    "WHERE (%s::text[] IS NULL OR experiment = ANY(%s::text[])) AND (%s::text IS NULL OR session_id = %s) "
    "ORDER BY module, experiment, param_hash, started_at DESC, seq DESC) latest JOIN {s}.runs r USING (run_id) "
    + _WITH_SESSION
    + " ORDER BY r.started_at, r.run_id",
    "mark": "SELECT last FROM {s}.run_sequence",
    "grid": "SELECT DISTINCT ON (r.module, r.experiment, r.param_hash) r.module, r.experiment, r.param_hash, "
    "r.status, r.code_sha256, r.host, r.pid, r.pid_namespace, r.pid_started, s.heartbeat_at, s.finished_at "
    "FROM {s}.runs r " + _WITH_SESSION + " "
    "ORDER BY r.module, r.experiment, r.param_hash, r.started_at DESC, r.seq DESC",
    "run": "SELECT " + _LIST + ", r.result, r.traceback, c.source, s.metadata FROM {s}.runs r " + _WITH_SESSION + " "
    "LEFT JOIN {s}.code c ON c.sha256 = r.code_sha256 WHERE r.run_id = %s",
    "series": "SELECT step, value FROM {s}.metric_points WHERE run_id = %s AND name = %s ORDER BY seq",
    "counts": "SELECT r.session_id, r.status, r.host, r.pid, r.pid_namespace, r.pid_started, s.heartbeat_at, "
    "s.finished_at, count(*) FROM {s}.runs r " + _WITH_SESSION + " WHERE (%s::text IS NULL OR r.session_id = %s) "
    "GROUP BY r.session_id, r.status, r.host, r.pid, r.pid_namespace, r.pid_started, s.heartbeat_at, s.finished_at",
    "sessions": "SELECT session_id, started_at, finished_at, host, pid, exitstatus, metadata FROM {s}.sessions "
    "ORDER BY started_at, session_id",
    "folders": "SELECT dir FROM {s}.runs WHERE run_id = ANY(%s::text[])",
    "delete_artifacts": "DELETE FROM {s}.artifacts WHERE run_id = ANY(%s::text[])",
    "artifacts": "SELECT name, size, media_type, kind FROM {s}.artifacts WHERE run_id = %s",
    "code_source": "SELECT source FROM {s}.code WHERE sha256 = %s",
    "add_artifacts": "INSERT INTO {s}.artifacts (run_id, name, size, media_type, kind) "
    "SELECT %s::text, * FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[]) "
    "ON CONFLICT (run_id, name) DO UPDATE SET size = EXCLUDED.size, media_type = EXCLUDED.media_type, "
    "kind = EXCLUDED.kind",
    # Merged: `pytest-experiments tag` may have tagged the run while it ran.
    # Folding a journal: one folder of a journal at a time, from its stored offset. The journal's
    # lock is a statement of its own, before the read of the offset: a statement reads what was
    # committed when it began, so a read in the lock's statement, after a wait for the lock,
    # would miss the offset that the folder before us committed as it let go.
    "journal_offsets": "SELECT name, folded FROM {s}.journals",
    "lock_journal": "SELECT pg_advisory_xact_lock(%s)",
    "journal_offset": "SELECT folded FROM {s}.journals WHERE name = %s",
    # A fold sent in one round trip (its lock, its records, then this) moves the offset on only
    # from the one it was read from: else it fails, and the fold's transaction with it, records
    # and all (another process folded the journal meanwhile). The failure is a cast of a marked
    # text (GUARD_FAILED), as plain SQL has no RAISE; it depends on the row read, so that the
    # planner cannot evaluate it ahead of the test.
    "fold_offset_from": "INSERT INTO {s}.journals (name, folded) SELECT %s, CASE WHEN g.folded = %s THEN %s "
    "ELSE ('" + GUARD_FAILED + " ' || g.folded)::bigint END "
    "FROM (SELECT coalesce((SELECT folded FROM {s}.journals WHERE name = %s), 0) AS folded) g "
    "ON CONFLICT (name) DO UPDATE SET folded = EXCLUDED.folded",
    "fold_offset": "INSERT INTO {s}.journals (name, folded) VALUES (%s, %s) "
    "ON CONFLICT (name) DO UPDATE SET folded = EXCLUDED.folded",
    "fold_start": "WITH next AS (UPDATE {s}.run_sequence SET last = last + 1 RETURNING last) "
    "INSERT INTO {s}.runs (seq, run_id, session_id, node_id, module, experiment, param_hash, params, status, "
    "started_at, worker, host, pid, pid_namespace, pid_started, dir) "
    "SELECT next.last, %s, %s, %s, %s, %s, %s, %s, 'running', %s, %s, %s, %s, %s, %s, %s FROM next "
    "ON CONFLICT (run_id) DO NOTHING",
    "fold_points": "INSERT INTO {s}.metric_points (run_id, name, seq, step, value) "
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::integer[], %s::bigint[], %s::double precision[]) "
    "ON CONFLICT (run_id, name, seq) DO UPDATE SET step = EXCLUDED.step, value = EXCLUDED.value",
    "fold_latest": "UPDATE {s}.runs SET metrics = (metrics::jsonb || %s::jsonb)::text "
    "WHERE run_id = %s AND status = 'running'",
    "merge_tags": "UPDATE {s}.runs SET tags = (tags::jsonb || %s::jsonb)::text WHERE run_id = %s",
    "tags_for_update": "SELECT tags FROM {s}.runs WHERE run_id = %s FOR UPDATE",
    "set_tags": "UPDATE {s}.runs SET tags = %s WHERE run_id = %s",
    "notes_for_update": "SELECT notes FROM {s}.runs WHERE run_id = %s FOR UPDATE",
    "set_notes": "UPDATE {s}.runs SET notes = %s WHERE run_id = %s",
    # One query for the points of any number of runs: a row per series, its points as arrays
    # (binary, exact), so that a run's id and a metric's name come once per series, not per point.
    "points": "SELECT run_id, name, array_agg(seq ORDER BY seq), array_agg(step ORDER BY seq), "
    "array_agg(value ORDER BY seq) FROM {s}.metric_points "
    "WHERE (%s::text[] IS NULL OR run_id = ANY(%s::text[])) AND (%s::text[] IS NULL OR name = ANY(%s::text[])) "
    "GROUP BY run_id, name ORDER BY run_id, name",
    "delete_points": "DELETE FROM {s}.metric_points WHERE run_id = ANY(%s::text[])",
    "delete_runs": "DELETE FROM {s}.runs WHERE run_id = ANY(%s::text[])",
    "version": "SELECT application, version FROM {s}.store_version",
    # load()'s kept frames (schema 5): in one snapshot, where it stands in the change log (see
    # MIGRATIONS[5]): the snapshot itself, the newest pruned transaction, whether any run is
    # stored as running, and the last change it sees with its mark.
    "change_state": "SELECT pg_current_snapshot()::text, "
    "(SELECT txid FROM {s}.change_log_pruned), EXISTS (SELECT FROM {s}.runs WHERE status = 'running'), "
    "l.seq, l.mark FROM (SELECT seq, mark FROM {s}.change_log ORDER BY seq DESC LIMIT 1) l",
    # The changes a snapshot did not see: of transactions running then (its xip list) or later
    # (from its xmax on). Not pg_visible_in_snapshot(), which the index on txid cannot serve.
    "changed_since": "SELECT DISTINCT run_id FROM {s}.change_log WHERE txid >= %s OR txid = ANY(%s::bigint[])",
    "change_marks": "SELECT seq, mark FROM {s}.change_log WHERE seq = ANY(%s::bigint[])",
    # The oldest changes, far behind (the last one stays), and the newest transaction pruned.
    "prune_changes": "WITH gone AS (DELETE FROM {s}.change_log WHERE seq <= (SELECT max(seq) FROM {s}.change_log) "
    "- %s RETURNING txid) UPDATE {s}.change_log_pruned SET txid = greatest(txid, (SELECT max(txid) FROM gone)) "
    "WHERE EXISTS (SELECT FROM gone)",
    # merge (issue 10): copies from another store; what is here already stays as it is.
    "add_session_copy": "INSERT INTO {s}.sessions (session_id, started_at, finished_at, heartbeat_at, host, pid, "
    "exitstatus, metadata) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (session_id) DO NOTHING",
    "add_code_copy": "INSERT INTO {s}.code (sha256, source) VALUES (%s, %s) ON CONFLICT (sha256) DO NOTHING",
    "add_run_copy": "WITH next AS (UPDATE {s}.run_sequence SET last = last + 1 RETURNING last) "
    "INSERT INTO {s}.runs (seq, run_id, session_id, node_id, module, experiment, param_hash, params, logged_params, "
    "status, started_at, finished_at, duration, worker, host, pid, dir, code_sha256, metrics, result, metadata, "
    "error_type, error_message, traceback, tags, notes) SELECT next.last, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
    "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s FROM next ON CONFLICT (run_id) DO NOTHING",
    "add_points_copy": "INSERT INTO {s}.metric_points (run_id, name, seq, step, value) "
    "SELECT %s::text, * FROM unnest(%s::text[], %s::integer[], %s::bigint[], %s::double precision[]) "
    "ON CONFLICT (run_id, name, seq) DO NOTHING",
}


def _listed(version: int, metadata: bool) -> str:
    """A run's fields as ``columns.LISTED`` lays them out, with who runs it when it is stored as
    running (for liveness), and with its metadata or not."""
    tags = "r.tags" if version >= 2 else "'{{}}'"
    process = (
        "CASE WHEN r.status = 'running' THEN json_build_array(r.host, r.pid, r.pid_namespace, r.pid_started, "
        "s.heartbeat_at, s.finished_at)::text END"
    )
    return (
        "r.run_id, r.session_id, r.node_id, r.module, r.experiment, r.status, r.started_at, r.finished_at, "
        f"r.duration, r.worker, r.dir, r.error_type, r.error_message, r.params, r.logged_params, r.metrics, "
        f"{tags}, {process}, {'r.metadata' if metadata else 'NULL::text'}"
    )


def _run_columns(history: bool, version: int, metadata: bool) -> str:
    """What ``run_columns`` reads (``columns.LISTED``): the latest runs or all."""
    listed = _listed(version, metadata)
    if history:
        return (
            f"SELECT {listed} FROM {{s}}.runs r {_WITH_SESSION} WHERE (%s::text[] IS NULL OR r.experiment = ANY(%s::text[])) "
            "ORDER BY r.started_at, r.seq"
        )
    # No ORDER BY: columns.run_columns orders the latest runs by start time and run id (the
    # server's sort of the whole rows cost a third of the query).
    return (
        f"SELECT {listed} FROM (SELECT DISTINCT ON (module, experiment, param_hash) run_id FROM {{s}}.runs "
        "WHERE (%s::text[] IS NULL OR experiment = ANY(%s::text[])) "
        "ORDER BY module, experiment, param_hash, started_at DESC, seq DESC) latest JOIN {s}.runs r USING (run_id) "
        f"{_WITH_SESSION}"
    )


#: ``run_columns`` statements by (history, schema version, metadata).
COLUMN_READS = {
    (history, version, metadata): _run_columns(history, version, metadata)
    for history in (False, True)
    for version in (1, 2)
    for metadata in (False, True)
}

#: What ``run_changes`` reads (schema 5 on): each run as ``run_columns`` lists it, then its number
#: in the store's order (``seq``, which breaks ties of start time) and its parameters' hash. Keys:
#: every run, each grid point's newest, or the runs of a list of ids.
_CHANGED = f"{_listed(2, False)}, r.seq, r.param_hash"
CHANGE_READS = {
    "changes_history": f"SELECT {_CHANGED} FROM {{s}}.runs r {_WITH_SESSION} ORDER BY r.started_at, r.seq",
    "changes_latest": f"SELECT {_CHANGED} FROM (SELECT DISTINCT ON (module, experiment, param_hash) run_id FROM {{s}}.runs "
    "ORDER BY module, experiment, param_hash, started_at DESC, seq DESC) latest JOIN {s}.runs r USING (run_id) "
    f"{_WITH_SESSION}",
    "changes_changed": f"SELECT {_CHANGED} FROM {{s}}.runs r {_WITH_SESSION} WHERE r.run_id = ANY(%s::text[]) "
    "ORDER BY r.started_at, r.seq",
}
STATEMENTS.update(CHANGE_READS)

#: The listing statements for a version-1 store, which has no tags or notes columns.
STATEMENTS_V1 = {
    key: text.replace(_LIST, _LIST_V1) for key, text in STATEMENTS.items() if key in ("history", "latest", "run")
}
