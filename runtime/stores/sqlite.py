"""`SqliteEventLog`: the embedded, durable `EventLog`, one SQLite database file.

Durability: the database runs in WAL mode. With `synchronous=NORMAL` (the default) a commit
survives the crash of any process, which is what the runtime promises; a power loss or an OS
crash may lose the last few commits (never corrupt the database). `durable=True` selects
`synchronous=FULL`, which fsyncs the WAL at every commit and survives power loss too, at a
large cost in throughput.

Concurrency: several processes may read and write one database (an engine and the CLI's
`aobc approve` appending to the same run); writers take the write lock up front
(`BEGIN IMMEDIATE`) and wait up to `busy_timeout` seconds for each other. Within a process the
log is thread-safe: each thread gets its own connection, opened on first use and kept until
`close()`. WAL needs shared memory, so the database must be on a local file system.

Schema: `MIGRATIONS[i]` takes the schema from version i to i + 1 (`PRAGMA user_version`).
Opening applies the missing ones in one transaction; a database written by a newer aobc is
refused rather than misread. Add columns by appending a migration, never by editing one.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import msgspec

from aobc.canonical import canonical_bytes
from aobc.runtime.stores.base import Conflict, Event, RunRecord

# Reads decode with msgspec: for the canonical JSON we store it gives exactly what json.loads
# gives, several times faster. Writes keep aobc.canonical, which also rejects NaN and sets.
_decode = msgspec.json.Decoder().decode


class SchemaVersionError(RuntimeError):
    """The database's schema is newer than this version of aobc understands."""


def _v1(conn: sqlite3.Connection) -> None:
    statements = [
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            namespace TEXT NOT NULL DEFAULT 'default',
            workflow TEXT NOT NULL,
            ir_hash TEXT NOT NULL,
            status TEXT NOT NULL,
            created REAL NOT NULL,
            updated REAL NOT NULL,
            parent TEXT,
            idempotency_key TEXT,
            labels TEXT NOT NULL DEFAULT '{}',
            first_events INTEGER NOT NULL DEFAULT 0,
            UNIQUE (namespace, idempotency_key)
        )""",
        "CREATE INDEX runs_by_created ON runs (created)",
        "CREATE INDEX runs_by_status ON runs (status, created)",
        "CREATE INDEX runs_by_workflow ON runs (workflow, created)",
        """CREATE TABLE event_log (
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            type TEXT NOT NULL,
            data TEXT NOT NULL,
            time REAL NOT NULL,
            PRIMARY KEY (run_id, seq)
        )""",
        # The log is the source of truth: nothing may rewrite history, not even a bug here.
        """CREATE TRIGGER event_log_no_update BEFORE UPDATE ON event_log
           BEGIN SELECT RAISE(ABORT, 'event_log is append-only'); END""",
        """CREATE TRIGGER event_log_no_delete BEFORE DELETE ON event_log
           BEGIN SELECT RAISE(ABORT, 'event_log is append-only'); END""",
        """CREATE TABLE patches (
            id TEXT PRIMARY KEY,
            namespace TEXT NOT NULL DEFAULT 'default',
            run_id TEXT,
            patch TEXT NOT NULL,
            status TEXT NOT NULL,
            detail TEXT NOT NULL,
            created REAL NOT NULL,
            updated REAL NOT NULL
        )""",
        "CREATE INDEX patches_by_run ON patches (run_id)",
        """CREATE TABLE artifacts (
            digest TEXT PRIMARY KEY,
            namespace TEXT NOT NULL DEFAULT 'default',
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            meta TEXT NOT NULL,
            created REAL NOT NULL
        )""",
        """CREATE TABLE memo (
            key TEXT PRIMARY KEY,
            output TEXT NOT NULL,
            created REAL NOT NULL
        )""",
    ]
    for statement in statements:
        conn.execute(statement)


Migration = Callable[[sqlite3.Connection], None]

#: Schema version i + 1 is what MIGRATIONS[i] leaves behind. Append only.
MIGRATIONS: list[Migration] = [_v1]

_RUN_COLUMNS: Final = (
    "run_id, workflow, ir_hash, status, created, updated, namespace, parent, idempotency_key,"
    " labels"
)


def _insert_run(conn: sqlite3.Connection, record: RunRecord, labels: str, first: int) -> None:
    """The run's row; `first`: how many of its events `create_run` wrote (IntegrityError
    when its id, or its idempotency key in its namespace, is taken)."""
    conn.execute(
        f"INSERT INTO runs ({_RUN_COLUMNS}, first_events) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            first,
        ),
    )


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


class SqliteEventLog:
    """An `EventLog` in one SQLite file; see the module docstring for the guarantees."""

    def __init__(
        self, path: str | Path, *, durable: bool = False, busy_timeout: float = 30.0
    ) -> None:
        if str(path) == ":memory:" or str(path).startswith("file:"):
            # Each thread has its own connection: an in-memory database would be one per thread.
            raise ValueError("SqliteEventLog needs a file path; use MemoryEventLog in memory")
        self.path = Path(path)
        self.durable = durable
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        try:
            conn = self._conn()
            self._enable_wal(conn)
            self._migrate(conn)
        except BaseException:
            self.close()
            raise

    # -- connections and transactions --------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions, we issue BEGIN IMMEDIATE ourselves.
        # check_same_thread=False only so that close() may close every thread's connection.
        # `timeout` is SQLite's busy timeout: how long to wait for another writer's lock.
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
            self._check_version(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if self._closed:
            raise ValueError(f"{self.path}: event log is closed")
        if conn is None:
            conn = self._connect()  # not under the lock: it may wait for a busy database
            with self._lock:
                if self._closed:
                    conn.close()
                    raise ValueError(f"{self.path}: event log is closed")
                self._connections.append(conn)
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the database's write lock from the start (so no
        other writer can slip in between our read of the last seq and our insert)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # Some errors (disk full, I/O) already rolled the transaction back.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Put the database in WAL mode (a property of the file, kept once set)."""
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.001
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as err:
                # Switching a new database needs an exclusive lock, and when other processes
                # opening it at the same moment hold shared ones, SQLite reports "locked" at
                # once rather than waiting (it would deadlock): so wait here, within the
                # busy timeout.
                primary = err.sqlite_errorcode & 0xFF  # extended codes (BUSY_RECOVERY...) too
                busy = primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                if not busy or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        if str(mode).lower() != "wal":
            raise RuntimeError(f"{self.path}: cannot use WAL mode (journal_mode is {mode})")

    def _check_version(self, conn: sqlite3.Connection) -> int:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise SchemaVersionError(
                f"{self.path}: the store has schema version {version}, but this aobc knows "
                f"versions up to {len(MIGRATIONS)}; upgrade aobc to open it"
            )
        return version

    def _migrate(self, conn: sqlite3.Connection) -> None:
        if self._check_version(conn) == len(MIGRATIONS):
            return
        with self._write():
            # Read again under the write lock: another process may have migrated meanwhile.
            version = self._check_version(conn)
            for migration in MIGRATIONS[version:]:
                migration(conn)
            conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    def __enter__(self) -> SqliteEventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the log ------------------------------------------------------------------------------

    def _insert(
        self, conn: sqlite3.Connection, run_id: str, last: int, encoded: list[tuple[str, str]]
    ) -> list[Event]:
        now = time.time()
        rows = [(run_id, last + i, t, d, now) for i, (t, d) in enumerate(encoded, start=1)]
        conn.executemany(
            "INSERT INTO event_log (run_id, seq, type, data, time) VALUES (?, ?, ?, ?, ?)", rows
        )
        # Decode what we stored, so that the caller sees exactly what `read` will return.
        return [Event(run_id, seq, t, _decode(d), now) for _, seq, t, d, _ in rows]

    def _read(
        self, conn: sqlite3.Connection, run_id: str, after: int, limit: int | None
    ) -> list[Event]:
        rows = conn.execute(
            "SELECT seq, type, data, time FROM event_log WHERE run_id = ? AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (run_id, after, -1 if limit is None else max(limit, 0)),
        )
        return [Event(run_id, seq, t, _decode(d), at) for seq, t, d, at in rows]

    def create_run(
        self, record: RunRecord, first: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[Event]:
        encoded = _encode_events(first)  # outside the lock: a bad event fails early
        labels = _json(record.labels)
        with self._write() as conn:
            if record.idempotency_key is not None:
                row = conn.execute(
                    "SELECT run_id, first_events FROM runs"
                    " WHERE namespace = ? AND idempotency_key = ?",
                    (record.namespace, record.idempotency_key),
                ).fetchone()
                if row is not None:
                    return self._read(conn, row[0], 0, row[1])
            try:
                _insert_run(conn, record, labels, len(encoded))
            except sqlite3.IntegrityError as err:
                raise Conflict(f"run {record.run_id!r} already exists") from err
            return self._insert(conn, record.run_id, 0, encoded)

    def create_finished(
        self, record: RunRecord, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[Event]:
        """Record a run that has already ended, whole and in one transaction: its record
        (with its final status) and its log, the first event being its `run.started`. Raise
        Conflict if its id, or its idempotency key in its namespace, is taken."""
        (stored,) = self.create_finished_many([(record, events)])
        if isinstance(stored, Exception):
            raise stored
        return stored

    def create_finished_many(
        self, runs: Sequence[tuple[RunRecord, Sequence[tuple[str, dict[str, Any]]]]]
    ) -> list[list[Event] | Exception]:
        """`create_finished` for several runs in one transaction (one fsync when durable:
        group commit). Each run's stored events, or what kept it out without touching the
        others: the Conflict of a taken id or key, the error of an event it cannot encode."""
        out: list[list[Event] | Exception] = []
        prepared: list[tuple[int, RunRecord, str, list[tuple[str, str]]]] = []
        for record, events in runs:
            try:
                prepared.append((len(out), record, _json(record.labels), _encode_events(events)))
                out.append([])
            except (TypeError, ValueError) as err:
                out.append(err)
        with self._write() as conn:
            for at, record, labels, encoded in prepared:
                try:
                    _insert_run(conn, record, labels, 1)
                except sqlite3.IntegrityError as err:
                    # The statement alone is undone; the transaction goes on with the others.
                    taken = Conflict(f"run {record.run_id!r} or its idempotency key is taken")
                    taken.__cause__ = err
                    out[at] = taken
                    continue
                out[at] = self._insert(conn, record.run_id, 0, encoded)
        return out

    def append(
        self,
        run_id: str,
        events: Sequence[tuple[str, dict[str, Any]]],
        *,
        expect_seq: int | None = None,
    ) -> list[Event]:
        encoded = _encode_events(events)
        with self._write() as conn:
            return self._append_in(conn, run_id, encoded, expect_seq)

    def append_ending(
        self,
        run_id: str,
        events: Sequence[tuple[str, dict[str, Any]]],
        status: str,
        *,
        expect_seq: int | None = None,
    ) -> list[Event]:
        """`append`, and set the run's status in the same transaction (a run's last events
        and its final status are then never seen apart, and cost one commit)."""
        encoded = _encode_events(events)
        with self._write() as conn:
            stored = self._append_in(conn, run_id, encoded, expect_seq)
            conn.execute(
                "UPDATE runs SET status = ?, updated = ? WHERE run_id = ?",
                (status, time.time(), run_id),
            )
            return stored

    def _append_in(
        self,
        conn: sqlite3.Connection,
        run_id: str,
        encoded: list[tuple[str, str]],
        expect_seq: int | None,
    ) -> list[Event]:
        """Append in the write transaction `conn` holds, after checking the run's last seq."""
        row = conn.execute(
            "SELECT (SELECT max(seq) FROM event_log WHERE run_id = ?1) FROM runs WHERE run_id = ?1",
            (run_id,),
        ).fetchone()
        if row is None:
            raise KeyError(f"no run {run_id!r}")
        last: int = row[0] or 0
        if expect_seq is not None and last != expect_seq:
            raise Conflict(f"run {run_id!r}: expected last seq {expect_seq}, found {last}")
        return self._insert(conn, run_id, last, encoded)

    def read(self, run_id: str, after: int = 0, limit: int | None = None) -> list[Event]:
        return self._read(self._conn(), run_id, after, limit)

    def last_seq(self, run_id: str) -> int:
        row = (
            self._conn()
            .execute("SELECT max(seq) FROM event_log WHERE run_id = ?", (run_id,))
            .fetchone()
        )
        return int(row[0] or 0)

    # -- runs -----------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord | None:
        row = (
            self._conn()
            .execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
            .fetchone()
        )
        return None if row is None else _run(row)

    def find_run(self, idempotency_key: str, *, namespace: str = "default") -> RunRecord | None:
        row = (
            self._conn()
            .execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE namespace = ? AND idempotency_key = ?",
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
        where = [f"{column} = ?" for column, value in filters.items() if value is not None]
        params: list[Any] = [value for value in filters.values() if value is not None]
        sql = f"SELECT {_RUN_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created DESC, rowid DESC LIMIT ?"
        return [_run(row) for row in self._conn().execute(sql, (*params, max(limit, 0)))]

    def set_status(self, run_id: str, status: str) -> None:
        cursor = self._conn().execute(
            "UPDATE runs SET status = ?, updated = ? WHERE run_id = ?",
            (status, time.time(), run_id),
        )
        if cursor.rowcount == 0:
            raise KeyError(f"no run {run_id!r}")

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
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
            " detail = excluded.detail, updated = excluded.updated,"
            " run_id = coalesce(patches.run_id, excluded.run_id)",
            (str(patch["id"]), run_id, _json(patch), status, _json(detail or {}), now, now),
        )

    def get_patch(self, patch_id: str) -> dict[str, Any] | None:
        row = (
            self._conn()
            .execute(
                "SELECT patch, run_id, status, detail, created, updated FROM patches WHERE id = ?",
                (patch_id,),
            )
            .fetchone()
        )
        return None if row is None else _patch(row)

    def list_patches(self, run_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT patch, run_id, status, detail, created, updated FROM patches"
        params: tuple[Any, ...] = ()
        if run_id is not None:
            sql, params = sql + " WHERE run_id = ?", (run_id,)
        return [_patch(row) for row in self._conn().execute(sql + " ORDER BY rowid", params)]

    def put_artifact(self, kind: str, digest: str, name: str, meta: dict[str, Any]) -> None:
        self._conn().execute(
            "INSERT INTO artifacts (digest, kind, name, meta, created) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (digest) DO NOTHING",
            (digest, kind, name, _json(meta), time.time()),
        )

    def get_artifact(self, digest: str) -> dict[str, Any] | None:
        row = (
            self._conn()
            .execute(
                "SELECT digest, kind, name, meta, created FROM artifacts WHERE digest = ?",
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
        row = self._conn().execute("SELECT output FROM memo WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def memo_put(self, key: str, output: str) -> None:
        self._conn().execute(
            "INSERT INTO memo (key, output, created) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET output = excluded.output,"
            " created = excluded.created",
            (key, output, time.time()),
        )
