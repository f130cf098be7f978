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

import concurrent.futures
import contextlib
import functools
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, LiteralString, Protocol

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


def _v3(schema: sql.Composable) -> list[sql.Composable]:
    """Direct publishing and small blobs (see `OutboxRelay` and `PostgresBlobs`)."""
    raw: list[LiteralString] = [
        # A row its writer publishes itself right after the commit: no relay needs waking
        # for it (the relay's sweep publishes it only if its writer died before Kafka had it).
        "ALTER TABLE {s}.outbox ADD COLUMN direct boolean NOT NULL DEFAULT false",
        "DROP TRIGGER outbox_notify ON {s}.outbox",
        """CREATE TRIGGER outbox_notify AFTER INSERT ON {s}.outbox
           FOR EACH ROW WHEN (NOT NEW.direct) EXECUTE FUNCTION {s}.aobc_outbox_notify()""",
        # The CAS's small objects (node outputs of a few KiB): written in the transaction that
        # records them, read in one round trip, where S3 costs milliseconds per put.
        """CREATE TABLE {s}.blobs (
            digest text PRIMARY KEY,
            data bytea NOT NULL,
            created double precision NOT NULL
        )""",
    ]
    return [sql.SQL(statement).format(s=schema) for statement in raw]


#: Schema version i + 1 is what MIGRATIONS[i] leaves behind. Append only.
MIGRATIONS: list[Any] = [_v1, _v2, _v3]

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
# A coordinator's append (runtime/remote.py) in one autocommit statement: the lease check
# (FOR SHARE: a takeover, which updates the lease row, waits for this commit), the events and
# their outbox messages, all or nothing. One round trip instead of five (BEGIN, check, append,
# outbox, COMMIT). `base` is NULL when nothing was written: the lease was lost, or a conflict.
_APPEND_LEASED: Final = """
WITH lease AS (
    SELECT 1 FROM run_leases
    WHERE run_id = %(root)s AND owner = %(owner)s AND epoch = %(epoch)s FOR SHARE
), r AS (
    UPDATE runs SET last_seq = last_seq + %(n)s,
        status = coalesce(%(status)s::text, status),
        updated = CASE WHEN %(status)s::text IS NULL THEN updated ELSE %(now)s END
    WHERE run_id = %(run)s AND EXISTS (SELECT 1 FROM lease) {condition}
    RETURNING last_seq - %(n)s AS base
), ev AS (
    INSERT INTO event_log (run_id, seq, type, data, time)
    SELECT %(run)s, r.base + e.ord, e.type, e.data::json, %(now)s
    FROM r, unnest(%(types)s::text[], %(datas)s::text[]) WITH ORDINALITY AS e(type, data, ord)
    RETURNING seq
), ob AS (
    INSERT INTO outbox (topic, key, payload, created, direct)
    SELECT m.topic, m.key, m.payload, %(now)s, m.direct
    FROM r, unnest(
        %(topics)s::text[], %(keys)s::text[], %(payloads)s::text[], %(directs)s::bool[]
    ) WITH ORDINALITY AS m(topic, key, payload, direct, ord)
    ORDER BY m.ord
    RETURNING id
)
SELECT (SELECT base FROM r), (SELECT count(*) FROM ev), (SELECT array_agg(id ORDER BY id) FROM ob)
"""
_APPEND_LEASED_ANY: Final = _APPEND_LEASED.format(condition="")
_APPEND_LEASED_EXPECT: Final = _APPEND_LEASED.format(condition="AND last_seq = %(expect)s")
# Rows are inserted, and their ids drawn, in the order of the arrays (ORDER BY ord), and
# RETURNING gives them back in that order.
_SEND_DIRECT: Final = """
INSERT INTO outbox (topic, key, payload, created, direct)
SELECT m.topic, m.key, m.payload, %s, true
FROM unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS m(topic, key, payload, ord)
ORDER BY m.ord
RETURNING id
"""
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


class Publisher(Protocol):
    """Publishes outbox rows right after the transaction that wrote them commits."""

    def publish(self, rows: Sequence[tuple[int, str, str | None, str]]) -> None:
        """(outbox id, topic, key, payload) rows, committed, in commit order."""


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """A message to publish once the transaction that wrote it commits."""

    topic: str  # logical topic name (see kafka.KafkaSettings)
    key: str | None  # the run id, usually
    message: dict[str, Any]
    # Written like any other, but not handed to the publisher: its writer means to retire it
    # (delete it) itself, and a relay's sweep publishes it only if that has not happened
    # `grace` seconds after its `created` (an eager job: runtime/eager.py). Only
    # `append_leased` writes held messages; it reports their ids to `kept`.
    held: bool = False


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

    def put_blob(self, digest: str, data: bytes) -> None:
        """Store a small CAS object with this transaction (see `PostgresBlobs`)."""
        self._log._put_blob(self._conn, digest, data)

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
        # Set by a relay in direct mode: messages are published by the writer at commit.
        self.publisher: Publisher | None = None
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
        with self._committing(conn):
            yield PostgresTransaction(self, conn)

    @contextmanager
    def _committing(self, conn: psycopg.Connection[Any]) -> Iterator[None]:
        """`conn.transaction()`, then the hand-over of its outbox rows to the publisher once
        (and only if) the outermost transaction committed."""
        local = self._local
        depth = getattr(local, "depth", 0)
        if depth == 0:
            local.unsent = []
        local.depth = depth + 1
        try:
            with conn.transaction():
                yield
        except BaseException:
            if depth == 0:
                local.unsent = []
            raise
        finally:
            local.depth = depth
        if depth == 0 and local.unsent:
            rows, local.unsent = local.unsent, []
            if self.publisher is not None:
                self.publisher.publish(rows)

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
        if self.publisher is None:
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO outbox (topic, key, payload, created) VALUES (%s, %s, %s, %s)",
                    [(m.topic, m.key, _json(m.message), now) for m in messages],
                )
            return
        # Direct: one statement for every message, and the ids back, for the publisher.
        topics = [m.topic for m in messages]
        keys = [m.key for m in messages]
        payloads = [_json(m.message) for m in messages]
        ids = conn.execute(_SEND_DIRECT, (now, topics, keys, payloads)).fetchall()
        self._local.unsent.extend(
            (id_, t, k, p) for (id_,), t, k, p in zip(ids, topics, keys, payloads, strict=True)
        )

    def hand_over(self, rows: Sequence[tuple[int, str, str | None, str]]) -> None:
        """Rows a caller's own committed statement put in the outbox (with `direct` set
        when `publisher` is): published now by the publisher, else by a relay's sweep."""
        if self.publisher is not None and rows:
            self.publisher.publish(rows)

    def _put_blob(self, conn: psycopg.Connection[Any], digest: str, data: bytes) -> None:
        conn.execute(
            "INSERT INTO blobs (digest, data, created) VALUES (%s, %s, %s)"
            " ON CONFLICT (digest) DO NOTHING",
            (digest, data, time.time()),
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
        with self._committing(conn):
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
        with self._committing(conn):
            appended = self._append(conn, run_id, encoded, expect_seq)
            self._send(conn, messages)
            return appended

    def append_leased(
        self,
        run_id: str,
        events: Sequence[tuple[str, dict[str, Any]]],
        *,
        lease: tuple[str, str, int],
        expect_seq: int | None = None,
        messages: Sequence[OutboundMessage] = (),
        status: str | None = None,
    ) -> list[Event] | None:
        """As `append(..., messages=...)`, in one statement, and only while the `run_leases`
        row (root run id, owner, epoch) exists: None when it does not (nothing written).
        `status`: the run's new status, set in the same statement (its final one, with its
        last events)."""
        encoded = _encode_events(events)
        if not encoded:  # nothing to number: the general path
            if any(m.held for m in messages):
                raise ValueError("a held message goes with the events that explain it")
            with self.transaction() as tx:
                if not self._leased(tx._conn, lease):
                    return None
                stored = tx.append(run_id, events, expect_seq=expect_seq)
                self._send(tx._conn, messages)
                if status is not None:
                    tx.set_status(run_id, status)
                return stored
        conn = self._conn()
        now = time.time()
        topics = [m.topic for m in messages]
        keys = [m.key for m in messages]
        payloads = [_json(m.message) for m in messages]
        row = conn.execute(
            _APPEND_LEASED_ANY if expect_seq is None else _APPEND_LEASED_EXPECT,
            {
                "root": lease[0],
                "owner": lease[1],
                "epoch": lease[2],
                "run": run_id,
                "n": len(encoded),
                "now": now,
                "types": [t for t, _ in encoded],
                "datas": [d for _, d in encoded],
                "expect": expect_seq,
                "topics": topics,
                "keys": keys,
                "payloads": payloads,
                "directs": [self.publisher is not None or m.held for m in messages],
                "status": status,
            },
        ).fetchone()
        assert row is not None
        base, _count, ids = row
        if base is None:
            if not self._leased(conn, lease):
                return None
            found = conn.execute(
                "SELECT last_seq FROM runs WHERE run_id = %s", (run_id,)
            ).fetchone()
            if found is None:
                raise KeyError(f"no run {run_id!r}")
            raise Conflict(f"run {run_id!r}: expected last seq {expect_seq}, found {found[0]}")
        if ids:
            rows = list(zip(ids, topics, keys, payloads, strict=True))
            self.hand_over([r for r, m in zip(rows, messages, strict=True) if not m.held])
            held = [(m, r[0]) for r, m in zip(rows, messages, strict=True) if m.held]
            if held:
                self.kept(held)
        return [
            Event(run_id, base + i, t, _decode(d), now) for i, (t, d) in enumerate(encoded, start=1)
        ]

    def kept(self, held: Sequence[tuple[OutboundMessage, int]]) -> None:
        """Held messages (`OutboundMessage.held`) an append committed, with their outbox ids."""
        raise NotImplementedError("held messages need a log that retires them")

    @staticmethod
    def _leased(conn: psycopg.Connection[Any], lease: tuple[str, str, int]) -> bool:
        return (
            conn.execute(
                "SELECT 1 FROM run_leases WHERE run_id = %s AND owner = %s AND epoch = %s"
                " FOR SHARE",
                lease,
            ).fetchone()
            is not None
        )

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
    """Publishes the outbox to Kafka, and deletes what Kafka acknowledged. Two ways, which one
    relay may combine:

    - **Sweeping** (`relay_once`, and the thread's loop, woken by a NOTIFY at each commit):
      the oldest rows in id order, a batch at a time. Any number of relays may run; one at a
      time sweeps (it holds an advisory lock), so each key's messages are published in the
      order they were written. A batch whose publishing partly failed is deleted only up to its
      first failure, and the rest is published again (duplicates, never reorders).
    - **Direct** (`direct=True`): the relay becomes its log's `publisher`. The rows this
      process writes are marked `direct` (no NOTIFY wakes anyone for them) and are produced by
      the writing thread as soon as their transaction commits, without waiting for Kafka; the
      relay's deleter thread deletes the acknowledged ones in batches (one DELETE for the
      acknowledgements of `delete_every` seconds). This takes the relay's wake-up (a NOTIFY,
      measured 0.7-0.9 ms), its SELECT, its wait for Kafka's acknowledgement (~2 ms) and its
      DELETE off the path of every message.
      A direct row is swept like any other once it is `grace` seconds old: its writer died
      between the commit and Kafka's acknowledgement, or Kafka refused it. So nothing is lost,
      and what a sweep publishes twice carries the same id. Order: one writer publishes its
      messages in commit order through one idempotent producer, so one writer's messages to a
      key keep their order (a run's jobs all come from the coordinator holding its lease);
      only a dead writer's swept leftovers may arrive after newer messages of the same key.

    Each message carries the id `{schema}.outbox.{row id}` in its `aobc-id` header: published
    again after a crash, it is recognized as the same message.

    Run it in threads (`start()` / `stop()`) or call `relay_once()` yourself.
    """

    def __init__(
        self,
        log: PostgresEventLog,
        bus: KafkaBus,
        *,
        batch: int = 500,
        idle_wait: float = 1.0,
        direct: bool = False,
        grace: float = 5.0,
        delete_every: float = 0.05,
    ) -> None:
        self.log = log
        self.bus = bus
        self.batch = batch
        self.idle_wait = idle_wait  # the longest wait for a NOTIFY before looking anyway
        self.direct = direct
        self.grace = grace  # seconds before a direct row counts as its writer's leftover
        self.delete_every = delete_every  # seconds between deletes of acknowledged rows
        self.published = 0
        self._conn: psycopg.Connection[Any] | None = None
        self._leader = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._deleter: threading.Thread | None = None
        self._prefix = f"{log.schema}.outbox."
        # Direct: acknowledged row ids waiting for the deleter, and rows still in flight.
        self._acked: list[int] = []
        self._in_flight = 0
        self._cond = threading.Condition()
        self.error: BaseException | None = None  # what stopped the thread, if anything

    # -- direct ---------------------------------------------------------------------------------

    def publish(self, rows: Sequence[tuple[int, str, str | None, str]]) -> None:
        """`Publisher.publish`: produce committed rows now; delete them once acknowledged.
        Never raises: the rows are committed, and what cannot be produced now is swept."""
        for id_, topic, key, payload in rows:
            try:
                future = self.bus.produce(
                    topic, key, payload.encode("utf-8"), id=f"{self._prefix}{id_}"
                )
            except Exception as err:  # the bus is closing, a topic cannot be created...
                self.error = err
                continue
            with self._cond:
                self._in_flight += 1
            future.add_done_callback(functools.partial(self._on_ack, id_))

    def _on_ack(self, id_: int, future: concurrent.futures.Future[None]) -> None:
        error = future.exception()
        with self._cond:
            self._in_flight -= 1
            if error is None:
                self._acked.append(id_)
                self.published += 1
            self._cond.notify_all()
        if error is not None:  # left in the outbox: the sweep publishes it after `grace`
            self.error = error

    def _delete_acked(self) -> None:
        while True:
            with self._cond:
                while not self._acked and not self._stop.is_set():
                    self._cond.wait(1.0)
                if not self._acked:
                    return  # stopping, and nothing left to delete
            # Let acknowledgements gather: a DELETE per message would cost a statement (and
            # two wake-ups) per message, for rows nobody waits for.
            self._stop.wait(self.delete_every)
            with self._cond:
                ids, self._acked = self._acked, []
            try:
                self.log._conn().execute("DELETE FROM outbox WHERE id = ANY(%s)", (ids,))
            except Exception as err:  # Postgres away: keep them, try again
                self.error = err
                with self._cond:
                    self._acked[:0] = ids
                if self._stop.wait(0.2):
                    return  # left in the outbox: a sweep publishes them again, same ids
            with self._cond:
                self._cond.notify_all()  # for `settle`

    def settle(self, timeout: float) -> bool:
        """Wait until every direct row is acknowledged and deleted; False on time-out."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._in_flight or self._acked:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    # -- sweeping -------------------------------------------------------------------------------

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
        """Publish one batch (if this relay leads); returns how many messages it published.
        Direct rows younger than `grace` are their writers' to publish."""
        conn = self._connection()
        if not self._lead(conn):
            return 0
        before = time.time() - self.grace
        rows = conn.execute(
            "SELECT id, topic, key, payload FROM outbox WHERE NOT direct OR created < %s"
            " ORDER BY id LIMIT %s",
            (before, self.batch),
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
        return self.bus.produce_batch(
            [
                (topic, key, payload.encode("utf-8"), f"{self._prefix}{id_}")
                for id_, topic, key, payload in rows
            ]
        )

    def _delete(self, conn: psycopg.Connection[Any], ids: list[int]) -> None:
        conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", (ids,))

    def drain(self, timeout: float = 30.0) -> None:
        """Publish until nothing is due (tests, shutdown): this relay's direct rows in flight,
        then every row a sweep takes. Other live writers' young direct rows are theirs."""
        deadline = time.monotonic() + timeout
        if self.direct:
            self.settle(timeout)
        while self._due():
            if time.monotonic() > deadline:
                raise TimeoutError("the outbox did not drain in time")
            if not self.relay_once():
                self._wait(0.05)

    def _due(self) -> int:
        row = (
            self.log._conn()
            .execute(
                "SELECT count(*) FROM outbox WHERE NOT direct OR created < %s",
                (time.time() - self.grace,),
            )
            .fetchone()
        )
        return 0 if row is None else int(row[0])

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
        if self.direct:
            self.log.publisher = self
            self._deleter = threading.Thread(
                target=self._delete_acked, name="aobc-outbox-deleter", daemon=True
            )
            self._deleter.start()
        self._thread = threading.Thread(target=self._run, name="aobc-outbox-relay", daemon=True)
        self._thread.start()
        return self

    def stop(self, settle: float = 5.0) -> None:
        """Stop; a direct relay first gives what it produced `settle` seconds to be
        acknowledged and deleted (what is left is swept later, under the same ids)."""
        if self.log.publisher is self:
            self.log.publisher = None  # later writes are swept (NOTIFY) like anyone's
        if self.direct and self._deleter is not None:
            self.settle(settle)
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._deleter is not None:
            self._deleter.join()
            self._deleter = None
        if self._thread is not None:
            # Wake it from its wait for a NOTIFY (it may wait `idle_wait` seconds).
            with contextlib.suppress(psycopg.Error, ValueError, StoreUnavailable):
                self.log._conn().execute(
                    "SELECT pg_notify(%s, 'stop')", (f"{self.log.schema}.outbox",)
                )
            self._thread.join()
            self._thread = None
        if self._conn is not None:
            # Unlock before closing: the server frees a closed session's locks only once its
            # backend has exited, which a relay taking over could still beat.
            if self._leader:
                with contextlib.suppress(psycopg.Error):
                    self._conn.execute(
                        "SELECT pg_advisory_unlock(hashtext(%s))",
                        (f"aobc-relay:{self.log.schema}",),
                    )
                self._leader = False
            self._conn.close()  # another relay takes over
            self._conn = None
