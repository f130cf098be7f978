"""The four store interfaces every runtime backend implements.

- `EventLog`: the append-only log of every run's events, plus the small tables folded from
  it (runs, patches, artifacts, memoized outputs). The log is the source of truth: run
  state is a fold over its events.
- `CAS`: immutable blobs by sha256 (workflow versions, patches, IR, node outputs).
- `Bus`: topics of messages keyed by run id (jobs, results, events for live timelines).
- `Cache`: a fast, lossy map (memoized outputs, compiled IR). Losing it costs only speed.

Every backend passes the same suite, `tests/runtime/test_store_conformance.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol, runtime_checkable

import msgspec

from aobc import errorcodes
from aobc.errorcodes import ErrorCode

# Records the runtime makes once per event or per run are msgspec Structs, not frozen
# dataclasses: made on the hot path of every run, a frozen dataclass's __init__ (one
# object.__setattr__ per field) costs ~1 us, a Struct's ~0.1 us. And they are not tracked by
# the cyclic garbage collector (`gc=False`): they hold strings, numbers and JSON data, which
# can never lead back to them, and a store keeps one or more per run, each of which the
# collector would otherwise walk again and again as the heap grows (~1 us per tiny run).


class Event(msgspec.Struct, frozen=True, gc=False):
    """One entry of a run's log. `seq` is 1, 2, 3... per run, with no gaps.

    `data` is stored as canonical JSON (`aobc.canonical`): it must be JSON-encodable (no NaN
    or infinities), and what `append` returns is exactly what `read` returns later (the
    decoded JSON, so tuples come back as lists and integer keys as strings)."""

    run_id: str
    seq: int
    type: str
    data: dict[str, Any]
    time: float  # seconds since the epoch, when appended

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "seq": self.seq,
            "type": self.type,
            "time": self.time,
            **self.data,
        }


class RunRecord(msgspec.Struct, frozen=True, gc=False):
    """The row a run keeps beside its log: what it runs and how it ended, for listings."""

    run_id: str
    workflow: str  # workflow name
    ir_hash: str  # the IR the run started on
    status: str  # running | waiting | succeeded | failed | cancelled
    created: float
    updated: float
    namespace: str = "default"
    parent: str | None = None  # the run that started this one (composite, replay)
    idempotency_key: str | None = None  # unique within a namespace
    labels: dict[str, Any] = msgspec.field(default_factory=dict)


class Conflict(Exception):
    """An append raced another writer (the expected sequence number was taken), or a new
    run's id is already taken."""


class StoreError(RuntimeError):
    """A distributed store failed in a way its caller should report, with a stable `code`
    (aobc.errorcodes) for tools and logs."""

    code: ErrorCode = errorcodes.STORE_REFUSED

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{super().__str__()}  [{self.code}]"


class StoreUnavailable(StoreError):
    """A store did not answer within its retry budget (an outage, not a bad request)."""

    code = errorcodes.STORE_UNAVAILABLE


class CorruptObject(KeyError):
    """A CAS object's bytes no longer hash to its digest.

    A KeyError, because a corrupt object is as good as absent: code that recomputes or
    refetches on KeyError recovers, and the backend forgets the bad copy (so `has` is False
    and `put` writes a good one) after reporting it."""

    def __str__(self) -> str:
        # KeyError quotes its argument (it expects a key); this one carries a sentence.
        return str(self.args[0]) if self.args else "corrupt object"


@runtime_checkable
class EventLog(Protocol):
    """Durable, append-only, per-run event sequences and the tables derived from them.

    Reading a run that does not exist gives no events (`read` is [] and `last_seq` 0);
    writing to one (`append`, `set_status`) raises KeyError.

    Optional, used by the engine when a log has them (the embedded logs do):
    `append_ending(run_id, events, status, *, expect_seq)`, an append that sets the run's
    final status in the same transaction; and `create_finished(record, events)`, a run that
    already ended recorded whole (record with its final status, log from `run.started`) in
    one transaction, Conflict if its id or idempotency key is taken; and
    `record_finished(record, events)`, the same for a caller that would not read the stored
    events (so it returns none), each event as (type, data, the data's canonical JSON or
    None) (so it need not encode what the caller has encoded already)."""

    def create_run(
        self, record: RunRecord, first: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[Event]:
        """Create a run and append its first events atomically. With an idempotency key
        that already names a run in the record's namespace, return that run's first events
        instead (race-free between processes); the caller tells the two cases apart by the
        events' `run_id` or with `find_run`. Raise Conflict if `record.run_id` is taken."""
        ...

    def append(
        self,
        run_id: str,
        events: Sequence[tuple[str, dict[str, Any]]],
        *,
        expect_seq: int | None = None,
    ) -> list[Event]:
        """Append events in one transaction. With `expect_seq`, raise Conflict unless the
        log's last sequence number is exactly that (optimistic concurrency)."""
        ...

    def read(self, run_id: str, after: int = 0, limit: int | None = None) -> list[Event]:
        """The events with `seq > after`, in order, at most `limit` of them."""
        ...

    def last_seq(self, run_id: str) -> int: ...

    def get_run(self, run_id: str) -> RunRecord | None: ...

    def find_run(self, idempotency_key: str, *, namespace: str = "default") -> RunRecord | None:
        """The run created with this idempotency key in this namespace, if any."""
        ...

    def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        namespace: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Runs newest first (by `created`; among equal times, the last created first).
        A filter left None matches every run."""
        ...

    def set_status(self, run_id: str, status: str) -> None:
        """Change a run's status and set its `updated` to now."""
        ...

    def record_patch(
        self,
        run_id: str | None,
        patch: dict[str, Any],
        status: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record a patch (its `to_json()` form, with "id") and its decision: `proposed`,
        `pending` (awaiting a human), `applied` or `refused`. Recording again updates the
        status and detail of the same patch id (and sets a run id that was None)."""
        ...

    def get_patch(self, patch_id: str) -> dict[str, Any] | None:
        """{"patch": ..., "run_id", "status", "detail", "created", "updated"} or None;
        `detail` is {} when none was given."""
        ...

    def list_patches(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Patches (all, or one run's) in the `get_patch` form, in the order first recorded."""
        ...

    def put_artifact(self, kind: str, digest: str, name: str, meta: dict[str, Any]) -> None:
        """Record a content-addressed artifact (workflow version, IR, patch) by its hash.
        Idempotent: the first record of a digest stays."""
        ...

    def get_artifact(self, digest: str) -> dict[str, Any] | None:
        """{"digest", "kind", "name", "meta", "created"} or None."""
        ...

    def memo_get(self, key: str) -> str | None:
        """The output hash memoized under a cache key (pure nodes across runs)."""
        ...

    def memo_put(self, key: str, output: str) -> None:
        """Memoize an output hash; a later put of the same key replaces it."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class CAS(Protocol):
    """Immutable blobs addressed by the sha256 of their bytes."""

    def put(self, data: bytes) -> str:
        """Store `data`; returns its hex sha256. Writes are atomic and idempotent."""
        ...

    def get(self, digest: str) -> bytes:
        """The bytes of `digest`; KeyError when absent (a malformed digest is never
        present). The content is checked on read: CorruptObject when it does not match."""
        ...

    def has(self, digest: str) -> bool: ...


@runtime_checkable
class Bus(Protocol):
    """Topics of messages, each keyed (partitioned) by run id.

    Every consumer group subscribed to a topic gets each message once, delivered to one of
    its subscribers; messages with the same key go to the same subscriber of a group, in
    the order one publisher published them, while the group's membership is unchanged.
    Messages are JSON: each subscriber gets its own decoded copy."""

    async def publish(self, topic: str, key: str, message: dict[str, Any]) -> None: ...

    def subscribe(self, topic: str, group: str) -> AsyncIterator[dict[str, Any]]:
        """Join `group` on `topic` now (not at the first iteration), so that a message
        published after this call returns is delivered."""
        ...


@runtime_checkable
class Cache(Protocol):
    """A lossy key-value cache: anything may vanish at any time."""

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store `value`; with `ttl`, it expires after that many seconds."""
        ...
