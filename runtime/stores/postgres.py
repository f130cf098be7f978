"""`PostgresEventLog`: the distributed runtime's `EventLog`, on PostgreSQL through psycopg 3.

The same guarantees as `SqliteEventLog` (gapless per-run sequences, Conflict, idempotency keys,
JSON round trips) for many processes on many machines, plus two things a distributed runtime
needs:

- **The outbox.** A state change and the messages it causes are written in one transaction
  (`transaction()`, or `append(..., messages=...)`): the messages go to the `outbox` table,
  and `OutboxRelay` publishes them to Kafka and deletes them once Kafka has them. So nothing
  is lost between the database and the bus: a crash before the commit loses both, a crash
  after it loses neither. A relay that crashes between publishing and deleting publishes
  again, with the same `aobc-id`: delivery is at least once, and consumers drop duplicates.
- **The inbox.** `claim(consumer, message_id)` in the same transaction as a message's effect
  makes that effect happen once, however often the message is delivered.

Schema: `MIGRATIONS[i]` takes a schema from version i to i + 1 (`aobc_schema_version`);
opening applies the missing ones in one transaction under an advisory lock, so processes
starting together migrate once. Every table lives in the configured schema (`?schema=` in the
URL), so several deployments, or tests, share one database. `event_log` is append-only: a
trigger refuses UPDATE, DELETE and TRUNCATE. JSON columns are `json`, not `jsonb`: `json`
keeps the text as written, so what `append` returns is exactly what `read` returns.

Appending is one statement (a data-modifying CTE bumps `runs.last_seq` under the run's row
lock and inserts the events), so a single append costs one round trip, and concurrent writers
of one run queue on the row lock rather than conflict.

Connections: one per thread, opened on first use, in autocommit mode (each plain method is
one implicit transaction); a connection that broke (server restart) is replaced on next use.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, LiteralString

import msgspec
import psycopg
from psycopg import sql
from psycopg.types.string import TextLoader

from aobc.canonical import canonical_bytes
from aobc.runtime.stores.base import Conflict, Event, RunRecord, StoreUnavailable
from aobc.runtime.stores.config import parse_postgres_url

if TYPE_CHECKING:
    from aobc.runtime.stores.kafka import KafkaBus

_decode = msgspec.json.Decoder().decode


class SchemaVersionError(RuntimeError):
    """The database's schema is newer than this version of aobc understands."""


def _v1(schema: sql.Composable) -> list[sql.Composable]:
    s = schema
    raw: list[LiteralString] = [
        """CREATE TABLE {s}.runs (
            run_id text PRIMARY KEY,
            ord bigint GENERATED ALWAYS AS IDENTITY,
            namespace text NOT NULL DEFAULT 'default',
            workflow text NOT NULL,
            ir_hash text NOT NULL,
            status text NOT NULL,
            created double precision NOT NULL,
            updated double precision NOT NULL,
            parent text,
            idempotency_key text,
            labels json NOT NULL DEFAULT '{{}}',
            first_events integer NOT NULL DEFAULT 0,
            last_seq bigint NOT NULL DEFAULT 0,
            UNIQUE (namespace, idempotency_key)
        )""",
        "CREATE INDEX runs_by_created ON {s}.runs (created DESC, ord DESC)",
        "CREATE INDEX runs_by_status ON {s}.runs (status, created DESC, ord DESC)",
        "CREATE INDEX runs_by_workflow ON {s}.runs (workflow, created DESC, ord DESC)",
        """CREATE TABLE {s}.event_log (
            run_id text NOT NULL,
            seq bigint NOT NULL,
            type text NOT NULL,
            data json NOT NULL,
            time double precision NOT NULL,
            PRIMARY KEY (run_id, seq)
        )""",
        # The log is the source of truth: nothing may rewrite history, not even a bug here.
        """CREATE FUNCTION {s}.aobc_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION 'event_log is append-only'; END $$""",
        """CREATE TRIGGER event_log_append_only BEFORE UPDATE OR DELETE ON {s}.event_log
           FOR EACH ROW EXECUTE FUNCTION {s}.aobc_append_only()""",
        """CREATE TRIGGER event_log_no_truncate BEFORE TRUNCATE ON {s}.event_log
           FOR EACH STATEMENT EXECUTE FUNCTION {s}.aobc_append_only()""",
        """CREATE TABLE {s}.patches (
            id text PRIMARY KEY,
            ord bigint GENERATED ALWAYS AS IDENTITY,
            namespace text NOT NULL DEFAULT 'default',
            run_id text,
            patch json NOT NULL,
            status text NOT NULL,
            detail json NOT NULL,
            created double precision NOT NULL,
            updated double precision NOT NULL
        )""",
        "CREATE INDEX patches_by_run ON {s}.patches (run_id, ord)",
        """CREATE TABLE {s}.artifacts (
            digest text PRIMARY KEY,
            namespace text NOT NULL DEFAULT 'default',
            kind text NOT NULL,
            name text NOT NULL,
            meta json NOT NULL,
            created double precision NOT NULL
        )""",
        """CREATE TABLE {s}.memo (
            key text PRIMARY KEY,
            output text NOT NULL,
            created double precision NOT NULL
        )""",
        # Messages written with a state change, waiting for the relay to publish them.
        """CREATE TABLE {s}.outbox (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            topic text NOT NULL,
            key text,
            payload text NOT NULL,
            created double precision NOT NULL
        )""",
        # Wake the relay at commit (NOTIFY is transactional), rather than have it poll.
        """CREATE FUNCTION {s}.aobc_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN PERFORM pg_notify(TG_TABLE_SCHEMA || '.outbox', ''); RETURN NULL; END $$""",
        """CREATE TRIGGER outbox_notify AFTER INSERT ON {s}.outbox
           FOR EACH STATEMENT EXECUTE FUNCTION {s}.aobc_outbox_notify()""",
        # Messages whose effect is done, per consumer: a redelivery finds its id here.
        """CREATE TABLE {s}.inbox (
            consumer text NOT NULL,
            message_id text NOT NULL,
            time double precision NOT NULL,
            PRIMARY KEY (consumer, message_id)
        )""",
    ]
    return [sql.SQL(statement).format(s=s) for statement in raw]


def _v2(schema: sql.Composable) -> list[sql.Composable]:
    """The distributed processes' tables (runtime/coordinator.py, runtime/worker.py)."""
    raw: list[LiteralString] = [
        # Which coordinator drives a run. Taking a lease bumps `epoch`; a coordinator's
        # appends check its (owner, epoch) in their transaction, so one that lost its lease
        # (paused, partitioned) can write nothing more: fencing without trusting clocks.
        """CREATE TABLE {s}.run_leases (
            run_id text PRIMARY KEY,
            owner text NOT NULL,
            epoch bigint NOT NULL,
            expires double precision NOT NULL
        )""",
        # A job's result by its dedup key, written with the worker's inbox claim: a job
        # delivered again (or issued again by a restarted coordinator) is answered from here.
        """CREATE TABLE {s}.job_results (
            key text PRIMARY KEY,
            message text NOT NULL,
            created double precision NOT NULL
        )""",
    ]
    return [sql.SQL(statement).format(s=schema) for statement in raw]


#: Schema version i + 1 is what MIGRATIONS[i] leaves behind. Append only.
MIGRATIONS: list[Any] = [_v1, _v2]

_RUN_COLUMNS: Final = (
    "run_id, workflow, ir_hash, status, created, updated, namespace, parent, idempotency_key,"
    " labels"
)

_APPEND: Final = """
WITH r AS (
    UPDATE runs SET last_seq = last_seq + %(n)s
    WHERE run_id = %(run)s {condition}
    RETURNING last_seq - %(n)s AS base
)
INSERT INTO event_log (run_id, seq, type, data, time)
SELECT %(run)s, r.base + e.ord, e.type, e.data::json, %(now)s
FROM r, unnest(%(types)s::text[], %(datas)s::text[]) WITH ORDINALITY AS e(type, data, ord)
RETURNING seq
"""
_APPEND_ANY: Final = _APPEND.format(condition="")
_APPEND_EXPECT: Final = _APPEND.format(condition="AND last_seq = %(expect)s")


def _json(value: Any) -> str:
    return canonical_bytes(value).decode("utf-8")


def _encode_events(events: Sequence[tuple[str, dict[str, Any]]]) -> list[tuple[str, str]]:
    return [(type_, _json(data)) for type_, data in events]


def _run(row: Sequence[Any]) -> RunRecord:
    return RunRecord(
        run_id=row[0],
        workflow=row[1],
        ir_hash=row[2],
        status=row[3],
        created=row[4],
        updated=row[5],
        namespace=row[6],
        parent=row[7],
        idempotency_key=row[8],
        labels=_decode(row[9]),
    )


def _patch(row: Sequence[Any]) -> dict[str, Any]:
    return {
        "patch": _decode(row[0]),
        "run_id": row[1],
        "status": row[2],
        "detail": _decode(row[3]),
        "created": row[4],
        "updated": row[5],
    }


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """A message to publish once the transaction that wrote it commits."""

    topic: str  # logical topic name (see kafka.KafkaSettings)
    key: str | None  # the run id, usually
    message: dict[str, Any]


class PostgresTransaction:
    """One transaction's writes: events, status, outbound messages and inbox claims commit
    together or not at all. Get one from `PostgresEventLog.transaction()`."""

    def __init__(self, log: PostgresEventLog, conn: psycopg.Connection[Any]) -> None:
        self._log = log
        self._conn = conn

    def append(
        self,
        run_id: str,
        events: Sequence[tuple[str, dict[str, Any]]],
        *,
        expect_seq: int | None = None,
    ) -> list[Event]:
        return self._log._append(self._conn, run_id, _encode_events(events), expect_seq)

    def set_status(self, run_id: str, status: str) -> None:
        self._log._set_status(self._conn, run_id, status)

    def send(self, topic: str, key: str | None, message: dict[str, Any]) -> None:
        """Publish `message` once this transaction commits (through the outbox)."""
        self._log._send(self._conn, [OutboundMessage(topic, key, message)])

    def execute(self, query: LiteralString, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one more statement in this transaction; its rows (empty for none)."""
        cursor = self._conn.execute(query, params)
        return cursor.fetchall() if cursor.description is not None else []

    def claim(self, consumer: str, message_id: str) -> bool:
        """Record that `consumer` handles `message_id` here; False if it already did (a
        duplicate delivery: do nothing, and acknowledge the message)."""
        row = self._conn.execute(
            "INSERT INTO inbox (consumer, message_id, time) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING RETURNING 1",
            (consumer, message_id, time.time()),
        ).fetchone()
        return row is not None


class PostgresEventLog:
    """An `EventLog` in PostgreSQL; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        connect_timeout: float = 10.0,
        migrate: bool = True,
    ) -> None:
        location = parse_postgres_url(url)
        self.dsn = location.dsn
        self.schema = schema or location.schema
        self.connect_timeout = connect_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[psycopg.Connection[Any]] = []
        self._closed = False
        try:
            if migrate:
                self._migrate()
            else:
                self._check_version(self._conn())
        except BaseException:
            self.close()
            raise

    # -- connections --------------------------------------------------------------------------

    def connect(self) -> psycopg.Connection[Any]:
        """A new autocommit connection to this log's schema (the caller closes it)."""
        try:
            conn = psycopg.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=max(1, round(self.connect_timeout)),
                options=f"-c search_path={self.schema}",
            )
        except psycopg.OperationalError as err:
            raise StoreUnavailable(f"postgres is unreachable: {err}".strip()) from err
        # json columns come back as their text, decoded by msgspec (faster, and exact).
        conn.adapters.register_loader("json", TextLoader)
        return conn

    def _conn(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise ValueError("event log is closed")
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is not None and not conn.broken and not conn.closed:
            return conn
        conn = self.connect()
        with self._lock:
            if self._closed:
                conn.close()
                raise ValueError("event log is closed")
            self._connections.append(conn)
        self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[PostgresTransaction]:
        """A transaction for several writes (and outbound messages) that commit together."""
        conn = self._conn()
        with conn.transaction():
            yield PostgresTransaction(self, conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    def __enter__(self) -> PostgresEventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ---------------------------------------------------------------------------------

    def _check_version(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f"{self.schema}.aobc_schema_version",)
        ).fetchone()
        if row is None or not row[0]:
            return 0
        found = conn.execute(
            sql.SQL("SELECT version FROM {}.aobc_schema_version").format(
                sql.Identifier(self.schema)
            )
        ).fetchone()
        version = 0 if found is None else int(found[0])
        if version > len(MIGRATIONS):
            raise SchemaVersionError(
                f"postgres schema {self.schema!r} has version {version}, but this aobc knows "
                f"versions up to {len(MIGRATIONS)}; upgrade aobc to open it"
            )
        return version

    def _migrate(self) -> None:
        conn = self._conn()
        if self._check_version(conn) == len(MIGRATIONS):
            return
        schema = sql.Identifier(self.schema)
        with conn.transaction():
            # Processes starting together: one migrates, the others wait and find it done.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"aobc:{self.schema}",))
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.aobc_schema_version (version integer)"
                ).format(schema)
            )
            version = self._check_version(conn)
            for migration in MIGRATIONS[version:]:
                for statement in migration(schema):
                    conn.execute(statement)
            conn.execute(sql.SQL("DELETE FROM {}.aobc_schema_version").format(schema))
            conn.execute(
                sql.SQL("INSERT INTO {}.aobc_schema_version VALUES (%s)").format(schema),
                (len(MIGRATIONS),),
            )

    # -- the log --------------------------------------------------------------------------------

    def _append(
        self,
        conn: psycopg.Connection[Any],
        run_id: str,
        encoded: list[tuple[str, str]],
        expect_seq: int | None,
    ) -> list[Event]:
        if not encoded:
            row = conn.execute("SELECT last_seq FROM runs WHERE run_id = %s", (run_id,)).fetchone()
            if row is None:
                raise KeyError(f"no run {run_id!r}")
            if expect_seq is not None and row[0] != expect_seq:
                raise Conflict(f"run {run_id!r}: expected last seq {expect_seq}, found {row[0]}")
            return []
        now = time.time()
        params = {
            "run": run_id,
            "n": len(encoded),
            "now": now,
            "types": [t for t, _ in encoded],
            "datas": [d for _, d in encoded],
            "expect": expect_seq,
        }
        seqs = [
            row[0]
            for row in conn.execute(
                _APPEND_ANY if expect_seq is None else _APPEND_EXPECT, params
            ).fetchall()
        ]
        if not seqs:
            row = conn.execute("SELECT last_seq FROM runs WHERE run_id = %s", (run_id,)).fetchone()
            if row is None:
                raise KeyError(f"no run {run_id!r}")
            raise Conflict(f"run {run_id!r}: expected last seq {expect_seq}, found {row[0]}")
        base = min(seqs) - 1
        # Decode what we stored, so that the caller sees exactly what `read` will return.
        return [
            Event(run_id, base + i, t, _decode(d), now) for i, (t, d) in enumerate(encoded, start=1)
        ]

    def _send(self, conn: psycopg.Connection[Any], messages: Sequence[OutboundMessage]) -> None:
        if not messages:
            return
        now = time.time()
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO outbox (topic, key, payload, created) VALUES (%s, %s, %s, %s)",
                [(m.topic, m.key, _json(m.message), now) for m in messages],
            )

    def _read(
        self, conn: psycopg.Connection[Any], run_id: str, after: int, limit: int | None
    ) -> list[Event]:
        rows = conn.execute(
            "SELECT seq, type, data, time FROM event_log WHERE run_id = %s AND seq > %s"
            " ORDER BY seq LIMIT %s",
            (run_id, after, None if limit is None else max(limit, 0)),
        ).fetchall()
        return [Event(run_id, seq, t, _decode(d), at) for seq, t, d, at in rows]

    def create_run(
        self,
        record: RunRecord,
        first: Sequence[tuple[str, dict[str, Any]]],
        *,
        messages: Sequence[OutboundMessage] = (),
    ) -> list[Event]:
        encoded = _encode_events(first)  # before the transaction: a bad event fails early
        labels = _json(record.labels)
        conn = self._conn()
        with conn.transaction():
            inserted = conn.execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}, first_events, last_seq)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING RETURNING run_id",
                (
                    record.run_id,
                    record.workflow,
                    record.ir_hash,
                    record.status,
                    record.created,
                    record.updated,
                    record.namespace,
                    record.parent,
                    record.idempotency_key,
                    labels,
                    len(encoded),
                    0,
                ),
            ).fetchone()
            if inserted is None:
                # Either the idempotency key names a run (committed: a racing creator's
                # insert waited for it) or the run id is taken.
                if record.idempotency_key is not None:
                    row = conn.execute(
                        "SELECT run_id, first_events FROM runs"
                        " WHERE namespace = %s AND idempotency_key = %s",
                        (record.namespace, record.idempotency_key),
                    ).fetchone()
                    if row is not None:
                        return self._read(conn, row[0], 0, row[1])
                raise Conflict(f"run {record.run_id!r} already exists")
            events = self._append(conn, record.run_id, encoded, None)
            self._send(conn, messages)
            return events

    def append(
        self,
        run_id: str,
        events: Sequence[tuple[str, dict[str, Any]]],
        *,
        expect_seq: int | None = None,
        messages: Sequence[OutboundMessage] = (),
    ) -> list[Event]:
        """As `EventLog.append`; `messages` are published once the events are committed."""
        encoded = _encode_events(events)
        conn = self._conn()
        if not messages:
            return self._append(conn, run_id, encoded, expect_seq)
        with conn.transaction():
            appended = self._append(conn, run_id, encoded, expect_seq)
            self._send(conn, messages)
            return appended

    def read(self, run_id: str, after: int = 0, limit: int | None = None) -> list[Event]:
        return self._read(self._conn(), run_id, after, limit)

    def last_seq(self, run_id: str) -> int:
        row = (
            self._conn()
            .execute("SELECT last_seq FROM runs WHERE run_id = %s", (run_id,))
            .fetchone()
        )
        return 0 if row is None else int(row[0])

    # -- runs -----------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord | None:
        row = (
            self._conn()
            .execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = %s", (run_id,))
            .fetchone()
        )
        return None if row is None else _run(row)

    def find_run(self, idempotency_key: str, *, namespace: str = "default") -> RunRecord | None:
        row = (
            self._conn()
            .execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE namespace = %s AND idempotency_key = %s",
                (namespace, idempotency_key),
            )
            .fetchone()
        )
        return None if row is None else _run(row)

    def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        namespace: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        filters = {"status": status, "workflow": workflow, "namespace": namespace}
        where = [
            sql.SQL("{} = %s").format(sql.Identifier(column))
            for column, value in filters.items()
            if value is not None
        ]
        params: list[Any] = [value for value in filters.values() if value is not None]
        query: sql.Composable = sql.SQL(f"SELECT {_RUN_COLUMNS} FROM runs")
        if where:
            query = sql.SQL(" ").join([query, sql.SQL("WHERE"), sql.SQL(" AND ").join(where)])
        query = sql.SQL(" ").join([query, sql.SQL("ORDER BY created DESC, ord DESC LIMIT %s")])
        rows = self._conn().execute(query, (*params, max(limit, 0))).fetchall()
        return [_run(row) for row in rows]

    def _set_status(self, conn: psycopg.Connection[Any], run_id: str, status: str) -> None:
        cursor = conn.execute(
            "UPDATE runs SET status = %s, updated = %s WHERE run_id = %s",
            (status, time.time(), run_id),
        )
        if cursor.rowcount == 0:
            raise KeyError(f"no run {run_id!r}")

    def set_status(self, run_id: str, status: str) -> None:
        self._set_status(self._conn(), run_id, status)

    # -- patches, artifacts, memo -----------------------------------------------------------

    def record_patch(
        self,
        run_id: str | None,
        patch: dict[str, Any],
        status: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        if "id" not in patch:
            raise ValueError("a patch to record needs an 'id'")
        now = time.time()
        self._conn().execute(
            "INSERT INTO patches (id, run_id, patch, status, detail, created, updated)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
            " detail = excluded.detail, updated = excluded.updated,"
            " run_id = coalesce(patches.run_id, excluded.run_id)",
            (str(patch["id"]), run_id, _json(patch), status, _json(detail or {}), now, now),
        )

    def get_patch(self, patch_id: str) -> dict[str, Any] | None:
        row = (
            self._conn()
            .execute(
                "SELECT patch, run_id, status, detail, created, updated FROM patches WHERE id = %s",
                (patch_id,),
            )
            .fetchone()
        )
        return None if row is None else _patch(row)

    def list_patches(self, run_id: str | None = None) -> list[dict[str, Any]]:
        columns = "SELECT patch, run_id, status, detail, created, updated FROM patches"
        if run_id is None:
            rows = self._conn().execute(f"{columns} ORDER BY ord").fetchall()
        else:
            rows = (
                self._conn()
                .execute(f"{columns} WHERE run_id = %s ORDER BY ord", (run_id,))
                .fetchall()
            )
        return [_patch(row) for row in rows]

    def put_artifact(self, kind: str, digest: str, name: str, meta: dict[str, Any]) -> None:
        self._conn().execute(
            "INSERT INTO artifacts (digest, kind, name, meta, created)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (digest) DO NOTHING",
            (digest, kind, name, _json(meta), time.time()),
        )

    def get_artifact(self, digest: str) -> dict[str, Any] | None:
        row = (
            self._conn()
            .execute(
                "SELECT digest, kind, name, meta, created FROM artifacts WHERE digest = %s",
                (digest,),
            )
            .fetchone()
        )
        if row is None:
            return None
        return {
            "digest": row[0],
            "kind": row[1],
            "name": row[2],
            "meta": _decode(row[3]),
            "created": row[4],
        }

    def memo_get(self, key: str) -> str | None:
        row = self._conn().execute("SELECT output FROM memo WHERE key = %s", (key,)).fetchone()
        return None if row is None else str(row[0])

    def memo_put(self, key: str, output: str) -> None:
        self._conn().execute(
            "INSERT INTO memo (key, output, created) VALUES (%s, %s, %s)"
            " ON CONFLICT (key) DO UPDATE SET output = excluded.output,"
            " created = excluded.created",
            (key, output, time.time()),
        )

    # -- the outbox -------------------------------------------------------------------------

    def send(self, messages: Sequence[OutboundMessage]) -> None:
        """Queue messages in the outbox on their own (no state change with them)."""
        with self.transaction() as tx:
            self._send(tx._conn, messages)

    def outbox_size(self) -> int:
        row = self._conn().execute("SELECT count(*) FROM outbox").fetchone()
        return 0 if row is None else int(row[0])


class OutboxRelay:
    """Publishes the outbox to Kafka in commit order, and deletes what Kafka acknowledged.

    Any number of relays may run; one at a time is active (it holds an advisory lock), so
    each key's messages are published in the order they were written. Each message carries
    the id `{schema}.outbox.{row id}` in its `aobc-id` header: published again after a crash,
    it is recognized as the same message. A batch whose publishing partly failed is deleted
    only up to its first failure, and the rest is published again (duplicates, never reorders).

    Run it in a thread (`start()` / `stop()`) or call `relay_once()` yourself.
    """

    def __init__(
        self,
        log: PostgresEventLog,
        bus: KafkaBus,
        *,
        batch: int = 500,
        idle_wait: float = 1.0,
    ) -> None:
        self.log = log
        self.bus = bus
        self.batch = batch
        self.idle_wait = idle_wait  # the longest wait for a NOTIFY before looking anyway
        self.published = 0
        self._conn: psycopg.Connection[Any] | None = None
        self._leader = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None  # what stopped the thread, if anything

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.broken or self._conn.closed:
            self._leader = False
            self._conn = self.log.connect()
            channel = sql.Identifier(f"{self.log.schema}.outbox")
            self._conn.execute(sql.SQL("LISTEN {}").format(channel))
        return self._conn

    def _lead(self, conn: psycopg.Connection[Any]) -> bool:
        if not self._leader:
            row = conn.execute(
                "SELECT pg_try_advisory_lock(hashtext(%s))", (f"aobc-relay:{self.log.schema}",)
            ).fetchone()
            self._leader = bool(row and row[0])
        return self._leader

    def relay_once(self) -> int:
        """Publish one batch (if this relay leads); returns how many messages it published."""
        conn = self._connection()
        if not self._lead(conn):
            return 0
        rows = conn.execute(
            "SELECT id, topic, key, payload FROM outbox ORDER BY id LIMIT %s", (self.batch,)
        ).fetchall()
        if not rows:
            return 0
        results = self._publish(rows)
        done = 0
        for error in results:
            if error is not None:
                break
            done += 1
        if done:
            self._delete(conn, [row[0] for row in rows[:done]])
        self.published += done
        if done < len(rows):
            failed = results[done]
            assert failed is not None
            raise failed
        return done

    def _publish(self, rows: list[tuple[Any, ...]]) -> list[BaseException | None]:
        prefix = f"{self.log.schema}.outbox."
        return self.bus.produce_batch(
            [
                (topic, key, payload.encode("utf-8"), f"{prefix}{id_}")
                for id_, topic, key, payload in rows
            ]
        )

    def _delete(self, conn: psycopg.Connection[Any], ids: list[int]) -> None:
        conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", (ids,))

    def drain(self, timeout: float = 30.0) -> None:
        """Publish until the outbox is empty (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self.log.outbox_size():
            if time.monotonic() > deadline:
                raise TimeoutError("the outbox did not drain in time")
            if not self.relay_once():
                self._wait(0.05)

    def _wait(self, timeout: float) -> None:
        conn = self._connection()
        for _ in conn.notifies(timeout=timeout, stop_after=1):
            pass

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            try:
                if self.relay_once() == 0:
                    self._wait(self.idle_wait)
                backoff = 0.05
            except Exception as err:  # Kafka or Postgres away: try again, more slowly
                self.error = err
                if self._conn is not None and not self._conn.closed:
                    self._conn.close()
                self._conn = None
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)

    def start(self) -> OutboxRelay:
        self._thread = threading.Thread(target=self._run, name="aobc-outbox-relay", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # Wake it from its wait for a NOTIFY (it may wait `idle_wait` seconds).
            with contextlib.suppress(psycopg.Error, ValueError, StoreUnavailable):
                self.log._conn().execute(
                    "SELECT pg_notify(%s, 'stop')", (f"{self.log.schema}.outbox",)
                )
            self._thread.join()
            self._thread = None
        if self._conn is not None:
            self._conn.close()  # releases the advisory lock: another relay takes over
            self._conn = None
