"""In-process stores: the bus and cache of the embedded runtime, and an event log and CAS for
tests and for runs that need no durability.

- `MemoryEventLog`, `MemoryCAS`: the semantics of `SqliteEventLog` and `LocalCAS` (gapless
  sequences, Conflict, idempotency keys, JSON round trips), held in dicts; thread-safe.
- `MemoryBus`: asyncio topics with consumer groups. Each group gets every message published
  while it has members, and gives it to one member, chosen by the message's key (crc32 of the
  key modulo the number of members), so one key's messages reach one member in order.
- `MemoryCache`: an LRU map with optional TTLs on a monotonic clock; thread-safe.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from aobc.canonical import canonical_bytes
from aobc.runtime.stores.base import Conflict, Event, RunRecord

# Reads decode with msgspec: for the canonical JSON we store it gives exactly what json.loads
# gives, several times faster. Writes keep aobc.canonical, which also rejects NaN and sets.
_decode = msgspec.json.Decoder().decode
_encode_sorted = msgspec.json.Encoder(order="sorted").encode


def _json(value: Any) -> str:
    # The durable stores keep JSON: encoding here too gives the same errors for bad data and
    # the same isolation (no caller can mutate what was stored, or what another reader got).
    return canonical_bytes(value).decode("utf-8")


def _encoded(value: Any) -> tuple[str, Any]:
    """`value` as stored JSON text, and the decoded copy a reader gets: what `_json` and
    `_decode` give, an order of magnitude faster for the events of every run.

    msgspec encodes more than JSON (sets, tuples, datetimes, dataclasses...) and writes NaN
    as null, so its result is kept only when decoding it gives back a value equal to
    `value`; anything else (including tuples and integer keys, which canonical JSON accepts
    and turns into lists and strings) goes through `_json`, which raises the durable
    stores' errors for bad data or encodes what they accept.
    """
    try:
        data = _encode_sorted(value)
    except Exception:  # a type msgspec does not know, an int beyond 64 bits...
        data = None
    if data is not None:
        copy = _decode(data)
        if copy == value:
            return data.decode("utf-8"), copy
    text = _json(value)
    return text, _decode(text)


# -- event log ------------------------------------------------------------------------------


_replace = msgspec.structs.replace  # RunRecord is a msgspec Struct


class _Run(msgspec.Struct, gc=False):
    """A run in the log. Not tracked by the garbage collector (see `base.RunRecord`): what
    it holds never leads back to it."""

    record: RunRecord  # labels are kept as JSON in `labels`, and the record's dict is dropped
    labels: str
    first: int  # how many events create_run appended
    events: list[tuple[str, str, float]]  # (type, data as JSON, time); seq is index + 1


@dataclass(slots=True)
class _Patch:
    patch: str
    run_id: str | None
    status: str
    detail: str
    created: float
    updated: float

    def to_json(self) -> dict[str, Any]:
        return {
            "patch": _decode(self.patch),
            "run_id": self.run_id,
            "status": self.status,
            "detail": _decode(self.detail),
            "created": self.created,
            "updated": self.updated,
        }


class MemoryEventLog:
    """An `EventLog` in process memory: gone when the process ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}  # in creation order
        self._keys: dict[tuple[str, str], str] = {}  # (namespace, idempotency key) -> run id
        self._patches: dict[str, _Patch] = {}  # in the order first recorded
        self._artifacts: dict[str, dict[str, Any]] = {}
        self._memo: dict[str, str] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("event log is closed")

    @staticmethod
    def _encode_events(
        events: Sequence[tuple[str, dict[str, Any]]],
    ) -> list[tuple[str, str, Any]]:
        return [(t, *_encoded(data)) for t, data in events]

    @staticmethod
    def _events(run_id: str, run: _Run, after: int, limit: int | None) -> list[Event]:
        after = max(after, 0)
        end = None if limit is None else after + max(limit, 0)
        return [
            Event(run_id, seq, t, _decode(d), at)
            for seq, (t, d, at) in enumerate(run.events[after:end], start=after + 1)
        ]

    @staticmethod
    def _record(run: _Run) -> RunRecord:
        return _replace(run.record, labels=_decode(run.labels))

    def _append(self, run_id: str, run: _Run, encoded: list[tuple[str, str, Any]]) -> list[Event]:
        now = time.time()
        last = len(run.events)
        run.events += [(t, d, now) for t, d, _ in encoded]
        # The decoded copies made while encoding: exactly what `read` gives later.
        return [
            Event(run_id, seq, t, copy, now)
            for seq, (t, _, copy) in enumerate(encoded, start=last + 1)
        ]

    def create_run(
        self, record: RunRecord, first: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[Event]:
        encoded = self._encode_events(first)
        labels = _encoded(record.labels)[0]
        key = record.idempotency_key
        with self._lock:
            self._check_open()
            if key is not None and (record.namespace, key) in self._keys:
                existing_id = self._keys[record.namespace, key]
                existing = self._runs[existing_id]
                return self._events(existing_id, existing, 0, existing.first)
            if record.run_id in self._runs:
                raise Conflict(f"run {record.run_id!r} already exists")
            run = _Run(_replace(record, labels={}), labels, len(encoded), [])
            self._runs[record.run_id] = run
            if key is not None:
                self._keys[record.namespace, key] = record.run_id
            return self._append(record.run_id, run, encoded)

    def create_finished(
        self, record: RunRecord, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[Event]:
        """Record a run that has already ended, whole: its record (with its final status)
        and its log, the first event being its `run.started`. Raise Conflict if its id, or
        its idempotency key in its namespace, is taken."""
        encoded = self._encode_events(events)
        record, labels = self._labels(record)
        with self._lock:
            run = self._add_finished(record, labels, [])
            return self._append(record.run_id, run, encoded)

    def record_finished(
        self, record: RunRecord, events: Sequence[tuple[str, dict[str, Any], str | None]]
    ) -> None:
        """`create_finished` for a caller that does not read the stored events back. Each
        event comes with its data's canonical JSON (`aobc.canonical`), stored as given, or
        None for the log to encode the data."""
        now = time.time()
        stored = []
        for t, data, text in events:  # (a loop: a comprehension costs a call in 3.11)
            stored.append((t, _encoded(data)[0] if text is None else text, now))
        record, labels = self._labels(record) if record.labels else (record, "{}")
        with self._lock:
            self._add_finished(record, labels, stored)

    @staticmethod
    def _labels(record: RunRecord) -> tuple[RunRecord, str]:
        """The record to keep (without its labels) and its labels as JSON."""
        if record.labels:
            return _replace(record, labels={}), _encoded(record.labels)[0]
        return record, "{}"  # and the record's own empty dict is never read (see `_Run`)

    def _add_finished(
        self, record: RunRecord, labels: str, events: list[tuple[str, str, float]]
    ) -> _Run:
        """A new run that has ended, with `events` (holding the lock); Conflict if its id or
        its key is taken."""
        key = record.idempotency_key
        self._check_open()
        if record.run_id in self._runs:
            raise Conflict(f"run {record.run_id!r} already exists")
        if key is not None:
            if (record.namespace, key) in self._keys:
                raise Conflict(f"idempotency key {key!r} is taken in {record.namespace!r}")
            self._keys[record.namespace, key] = record.run_id
        run = self._runs[record.run_id] = _Run(record, labels, 1, events)
        return run

    def append(
        self,
        run_id: str,
        events: Sequence[tuple[str, dict[str, Any]]],
        *,
        expect_seq: int | None = None,
    ) -> list[Event]:
        encoded = self._encode_events(events)
        with self._lock:
            self._check_open()
            run = self._runs.get(run_id)
            if run is None:
                raise KeyError(f"no run {run_id!r}")
            last = len(run.events)
            if expect_seq is not None and last != expect_seq:
                raise Conflict(f"run {run_id!r}: expected last seq {expect_seq}, found {last}")
            return self._append(run_id, run, encoded)

    def read(self, run_id: str, after: int = 0, limit: int | None = None) -> list[Event]:
        with self._lock:
            self._check_open()
            run = self._runs.get(run_id)
            return [] if run is None else self._events(run_id, run, after, limit)

    def last_seq(self, run_id: str) -> int:
        with self._lock:
            self._check_open()
            run = self._runs.get(run_id)
            return 0 if run is None else len(run.events)

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            self._check_open()
            run = self._runs.get(run_id)
            return None if run is None else self._record(run)

    def find_run(self, idempotency_key: str, *, namespace: str = "default") -> RunRecord | None:
        with self._lock:
            self._check_open()
            run_id = self._keys.get((namespace, idempotency_key))
            return None if run_id is None else self._record(self._runs[run_id])

    def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        namespace: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        with self._lock:
            self._check_open()
            runs = [
                (order, run)
                for order, run in enumerate(self._runs.values())
                if (status is None or run.record.status == status)
                and (workflow is None or run.record.workflow == workflow)
                and (namespace is None or run.record.namespace == namespace)
            ]
            runs.sort(key=lambda item: (item[1].record.created, item[0]), reverse=True)
            return [self._record(run) for _, run in runs[: max(limit, 0)]]

    def set_status(self, run_id: str, status: str) -> None:
        with self._lock:
            self._check_open()
            run = self._runs.get(run_id)
            if run is None:
                raise KeyError(f"no run {run_id!r}")
            run.record = _replace(run.record, status=status, updated=time.time())

    def record_patch(
        self,
        run_id: str | None,
        patch: dict[str, Any],
        status: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        if "id" not in patch:
            raise ValueError("a patch to record needs an 'id'")
        body, detail_json, now = _json(patch), _json(detail or {}), time.time()
        with self._lock:
            self._check_open()
            existing = self._patches.get(str(patch["id"]))
            if existing is None:
                self._patches[str(patch["id"])] = _Patch(
                    body, run_id, status, detail_json, now, now
                )
            else:
                existing.status, existing.detail, existing.updated = status, detail_json, now
                if existing.run_id is None:
                    existing.run_id = run_id

    def get_patch(self, patch_id: str) -> dict[str, Any] | None:
        with self._lock:
            self._check_open()
            patch = self._patches.get(patch_id)
            return None if patch is None else patch.to_json()

    def list_patches(self, run_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            self._check_open()
            return [
                p.to_json() for p in self._patches.values() if run_id is None or p.run_id == run_id
            ]

    def put_artifact(self, kind: str, digest: str, name: str, meta: dict[str, Any]) -> None:
        meta_json = _json(meta)
        with self._lock:
            self._check_open()
            self._artifacts.setdefault(
                digest,
                {
                    "digest": digest,
                    "kind": kind,
                    "name": name,
                    "meta": meta_json,
                    "created": time.time(),
                },
            )

    def get_artifact(self, digest: str) -> dict[str, Any] | None:
        with self._lock:
            self._check_open()
            artifact = self._artifacts.get(digest)
            return None if artifact is None else {**artifact, "meta": _decode(artifact["meta"])}

    def memo_get(self, key: str) -> str | None:
        with self._lock:
            self._check_open()
            return self._memo.get(key)

    def memo_put(self, key: str, output: str) -> None:
        with self._lock:
            self._check_open()
            self._memo[key] = output

    def close(self) -> None:
        with self._lock:
            self._closed = True


# -- CAS ---------------------------------------------------------------------------------------


class MemoryCAS:
    """A `CAS` in process memory. Bytes objects are immutable, so reads are not re-hashed."""

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            self._objects.setdefault(digest, bytes(data))
        return digest

    def get(self, digest: str) -> bytes:
        with self._lock:
            data = self._objects.get(digest)
        if data is None:
            raise KeyError(f"no object {digest}")
        return data

    def has(self, digest: str) -> bool:
        with self._lock:
            return digest in self._objects


# -- bus ----------------------------------------------------------------------------------------


def _slot(key: str, members: int) -> int:
    # crc32, not hash(): str hashes change from one process to the next.
    return zlib.crc32(key.encode("utf-8")) % members


class Subscription(AsyncIterator[dict[str, Any]]):
    """One member of a consumer group. Iterate it, and close it when done (or use it with
    `async with`): a member that stops reading without closing keeps receiving its share of
    the group's messages, and once its buffer is full, blocks the publishers."""

    def __init__(self, bus: MemoryBus, topic: str, group: str) -> None:
        self.topic = topic
        self.group = group
        self._bus = bus
        self._buffer: deque[tuple[str, str]] = deque()  # (key, message as JSON)
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            if self._waiter is not None:
                raise RuntimeError("a subscription is read by one task at a time")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        _, payload = self._buffer.popleft()
        self._bus._freed()
        message: dict[str, Any] = _decode(payload)
        return message

    def _deliver(self, key: str, payload: str) -> None:
        self._buffer.append((key, payload))
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def close(self) -> None:
        """Leave the group. Messages still buffered here go to the group's other members (or
        are dropped with the group, if this was its last member); iteration ends."""
        if not self._closed:
            self._closed = True
            self._bus._leave(self)
            self._wake()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class MemoryBus:
    """A `Bus` within one process and one event loop (it is not thread-safe: from another
    thread, publish through `asyncio.run_coroutine_threadsafe`).

    Delivery: a group exists while it has members, and gets the messages published meanwhile;
    nothing is retained for a group with no members, so subscribe before publishing (the
    durable record is the event log; the bus only carries work and notifications).

    Buffers are bounded: each member holds at most `maxsize` undelivered messages, and
    `publish` waits while the member a message is routed to is full (backpressure, never
    loss). When a member leaves, its buffered messages move to the remaining members, which
    may then briefly hold more than `maxsize`.
    """

    def __init__(self, maxsize: int = 1000) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._topics: dict[str, dict[str, list[Subscription]]] = {}  # topic -> group -> members
        self._space: list[asyncio.Future[None]] = []  # publishers waiting for a full buffer
        self._closed = False

    def subscribe(self, topic: str, group: str) -> Subscription:
        if self._closed:
            raise RuntimeError("bus is closed")
        subscription = Subscription(self, topic, group)
        self._topics.setdefault(topic, {}).setdefault(group, []).append(subscription)
        return subscription

    async def publish(self, topic: str, key: str, message: dict[str, Any]) -> None:
        if self._closed:
            raise RuntimeError("bus is closed")
        payload = _json(message)
        groups = self._topics.get(topic)
        if not groups:
            return
        for group in list(groups):
            # Route again after every wait: members may have come or gone meanwhile.
            while members := groups.get(group):
                target = members[_slot(key, len(members))]
                if len(target._buffer) < self.maxsize:
                    target._deliver(key, payload)
                    break
                waiter = asyncio.get_running_loop().create_future()
                self._space.append(waiter)
                await waiter

    def _freed(self) -> None:
        """A buffer shrank: let waiting publishers try again."""
        waiters, self._space = self._space, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _leave(self, subscription: Subscription) -> None:
        groups = self._topics.get(subscription.topic, {})
        members = groups.get(subscription.group, [])
        if subscription in members:
            members.remove(subscription)
        if members:
            for key, payload in subscription._buffer:
                members[_slot(key, len(members))]._deliver(key, payload)
        else:
            groups.pop(subscription.group, None)
        subscription._buffer.clear()
        self._freed()

    def close(self) -> None:
        """End every subscription (their iterations stop) and refuse further use."""
        self._closed = True
        for groups in list(self._topics.values()):
            for members in list(groups.values()):
                for subscription in list(members):
                    subscription.close()
        self._topics.clear()
        self._freed()


# -- cache --------------------------------------------------------------------------------------


class MemoryCache:
    """A `Cache`: least-recently-used eviction beyond `max_entries` entries (and `max_bytes`
    bytes of values, if set), and expiry after a TTL measured on `clock` (a monotonic clock, so
    wall-clock jumps do not expire everything; tests inject a fake one). Expired entries are
    dropped when next looked up, or evicted as least recently used. Thread-safe."""

    def __init__(
        self,
        max_entries: int = 4096,
        *,
        max_bytes: int | None = None,
        default_ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.default_ttl = default_ttl
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            value, expires = entry
            if expires is not None and self._clock() >= expires:
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return value

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        ttl = self.default_ttl if ttl is None else ttl
        value = bytes(value)
        with self._lock:
            self._drop(key)
            if ttl is not None and ttl <= 0:
                return
            if self.max_bytes is not None and len(value) > self.max_bytes:
                return  # it would evict everything and still not fit
            self._entries[key] = (value, None if ttl is None else self._clock() + ttl)
            self._bytes += len(value)
            while len(self._entries) > self.max_entries or (
                self.max_bytes is not None and self._bytes > self.max_bytes
            ):
                _, (evicted, _) = self._entries.popitem(last=False)
                self._bytes -= len(evicted)

    def delete(self, key: str) -> None:
        with self._lock:
            self._drop(key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[0])
