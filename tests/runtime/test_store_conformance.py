"""The store conformance suite: every backend of `aobc.runtime.stores` must pass it.

Each test takes the `stores` fixture, which is parametrized over `BACKENDS`: the embedded ones
(SQLite and a directory; memory) and the distributed one (Postgres, S3, Kafka, Redis on real
servers, marked `integration`; each test gets its own Postgres schema, key prefixes and
topics). A backend is one entry in that table, with the capabilities it has; a test that needs a
capability runs only on the backends that have it. A few tests at the end check what only one
backend has (on-disk corruption, SQLite triggers and migrations, the in-memory bus's buffers and
the in-memory cache's LRU).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aobc.runtime.stores import sqlite as sqlite_module
from aobc.runtime.stores.base import (
    CAS,
    Bus,
    Cache,
    Conflict,
    CorruptObject,
    EventLog,
    RunRecord,
)
from aobc.runtime.stores.config import RedisLocation
from aobc.runtime.stores.embedded import EmbeddedStores, default_store_dir
from aobc.runtime.stores.kafka import KafkaBus, KafkaSettings
from aobc.runtime.stores.localcas import LocalCAS
from aobc.runtime.stores.memory import (
    MemoryBus,
    MemoryCache,
    MemoryCAS,
    MemoryEventLog,
)
from aobc.runtime.stores.postgres import PostgresEventLog
from aobc.runtime.stores.redis import RedisCache
from aobc.runtime.stores.s3 import S3CAS
from aobc.runtime.stores.sqlite import SchemaVersionError, SqliteEventLog

# -- backends ---------------------------------------------------------------------------------


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Stores:
    """What a test gets: one backend's four stores, and how to reopen them."""

    backend: str
    events: EventLog
    cas: CAS
    bus: Bus
    cache: Cache
    clock: FakeClock
    reopen: Callable[[], Stores] | None  # None: the backend keeps nothing across a close
    close: Callable[[], None]


@dataclass(frozen=True)
class Backend:
    """How to open a backend in a fresh temporary directory, and what it can do."""

    open: Callable[[Path, FakeClock, pytest.FixtureRequest], Stores]
    durable: bool  # data survives close + reopen
    fake_clock: bool  # the cache's TTLs run on the injected clock
    cache_evicts_lru: bool  # the cache is a bounded LRU, size given below
    cache_entries: int = 3
    servers: bool = False  # needs real servers: the tests are marked `integration`


def _open_sqlite(
    directory: Path, clock: FakeClock, _: pytest.FixtureRequest | None = None
) -> Stores:
    embedded = EmbeddedStores.open(directory)
    cache = MemoryCache(BACKENDS["sqlite"].cache_entries, clock=clock)
    return Stores(
        "sqlite",
        embedded.events,
        embedded.cas,
        embedded.bus,
        cache,
        clock,
        lambda: _open_sqlite(directory, clock),
        embedded.close,
    )


def _open_memory(directory: Path, clock: FakeClock, _: pytest.FixtureRequest) -> Stores:
    embedded = EmbeddedStores.memory()
    cache = MemoryCache(BACKENDS["memory"].cache_entries, clock=clock)
    return Stores(
        "memory",
        embedded.events,
        embedded.cas,
        embedded.bus,
        cache,
        clock,
        None,
        embedded.close,
    )


@pytest.fixture(scope="session")
def shared_s3_cas(s3_url: str) -> Iterator[S3CAS]:
    cas = S3CAS(s3_url)
    yield cas
    cas.close()


def _open_distributed(directory: Path, clock: FakeClock, request: pytest.FixtureRequest) -> Stores:
    """Postgres, S3, Kafka and Redis, isolated from other tests by a name of their own: a
    Postgres schema, an S3 key prefix, a topic and group prefix, a cache key prefix."""
    urls = {
        kind: request.getfixturevalue(f"{kind}_url")
        for kind in ("postgres", "kafka", "s3", "redis")
    }
    shared_cas: S3CAS = request.getfixturevalue("shared_s3_cas")
    name = f"t{uuid.uuid4().hex[:12]}"

    def open_all() -> Stores:
        events = PostgresEventLog(urls["postgres"], schema=name)
        cas = shared_cas.child(name)  # a boto3 client takes 0.1-0.3 s to make
        bus = KafkaBus(
            KafkaSettings(
                urls["kafka"].removeprefix("kafka://"),
                prefix=f"{name}.",
                default_partitions=6,
                session_timeout_ms=1000,  # Tansu joins a group after half of it
                heartbeat_interval_ms=200,
            )
        )
        cache = RedisCache(RedisLocation(urls["redis"], prefix=f"{name}:"))

        def close() -> None:
            bus.close()
            events.close()
            cache.close()

        return Stores("distributed", events, cas, bus, cache, clock, open_all, close)

    def drop_schema() -> None:
        with PostgresEventLog(urls["postgres"], schema=name, migrate=False) as log:
            log._conn().execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

    request.addfinalizer(drop_schema)
    return open_all()


BACKENDS: dict[str, Backend] = {
    "sqlite": Backend(_open_sqlite, durable=True, fake_clock=True, cache_evicts_lru=True),
    "memory": Backend(_open_memory, durable=False, fake_clock=True, cache_evicts_lru=True),
    "distributed": Backend(
        _open_distributed, durable=True, fake_clock=False, cache_evicts_lru=False, servers=True
    ),
}


def _params(names: list[str]) -> list[Any]:
    return [
        pytest.param(name, marks=pytest.mark.integration) if BACKENDS[name].servers else name
        for name in names
    ]


@pytest.fixture(params=_params(sorted(BACKENDS)))
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    opened = BACKENDS[request.param].open(tmp_path, FakeClock(), request)
    try:
        yield opened
    finally:
        opened.close()


def backends_with(capability: str, value: bool = True) -> pytest.MarkDecorator:
    """Run a test only on the backends whose `capability` is `value` (no skips: the rest are
    not collected, so a skipped test can never hide a missing one)."""
    names = sorted(name for name, b in BACKENDS.items() if getattr(b, capability) == value)
    return pytest.mark.parametrize("stores", _params(names), indirect=True)


def record(run_id: str, **fields: Any) -> RunRecord:
    values: dict[str, Any] = {
        "workflow": "wf",
        "ir_hash": "ir1",
        "status": "running",
        "created": 100.0,
        "updated": 100.0,
    }
    values.update(fields)
    return RunRecord(run_id=run_id, **values)


def ev(n: int, prefix: str = "e") -> list[tuple[str, dict[str, Any]]]:
    return [(f"{prefix}.{i}", {"i": i}) for i in range(n)]


# -- the event log ---------------------------------------------------------------------------


def test_protocols_are_implemented(stores: Stores) -> None:
    assert isinstance(stores.events, EventLog)
    assert isinstance(stores.cas, CAS)
    assert isinstance(stores.bus, Bus)
    assert isinstance(stores.cache, Cache)


def test_append_assigns_gapless_sequence_and_reads_back_in_order(stores: Stores) -> None:
    log = stores.events
    first = log.create_run(record("r1"), [("run.started", {"n": 0})])
    assert [(e.run_id, e.seq, e.type, e.data) for e in first] == [
        ("r1", 1, "run.started", {"n": 0})
    ]
    appended = list(first)
    for size in (1, 3, 0, 5, 1):
        batch = log.append("r1", ev(size, f"b{size}"))
        assert [e.seq for e in batch] == list(range(len(appended) + 1, len(appended) + size + 1))
        appended += batch
    assert log.last_seq("r1") == len(appended) == 11
    # What append returned is exactly what read returns.
    assert log.read("r1") == appended
    assert log.read("r1", after=4) == appended[4:]
    assert log.read("r1", after=4, limit=2) == appended[4:6]
    assert log.read("r1", after=11) == []
    assert log.read("r1", limit=0) == []
    assert all(e.time > 0 for e in appended)


def test_runs_have_separate_sequences(stores: Stores) -> None:
    log = stores.events
    log.create_run(record("a"), ev(2))
    log.create_run(record("b"), [])
    assert log.append("b", ev(1))[0].seq == 1
    assert log.append("a", ev(1))[0].seq == 3
    assert [e.seq for e in log.read("b")] == [1]


def test_unknown_run_reads_empty_and_refuses_writes(stores: Stores) -> None:
    log = stores.events
    assert log.read("nope") == []
    assert log.last_seq("nope") == 0
    assert log.get_run("nope") is None
    with pytest.raises(KeyError):
        log.append("nope", ev(1))
    with pytest.raises(KeyError):
        log.set_status("nope", "failed")


def test_data_is_stored_as_json(stores: Stores) -> None:
    log = stores.events
    log.create_run(record("r"), [])
    (stored,) = log.append("r", [("t", {"tuple": (1, 2), "nested": {"b": 1, "a": [None]}})])
    assert stored.data == {"tuple": [1, 2], "nested": {"a": [None], "b": 1}}
    (keyed,) = log.append("r", [("t", {"k": {1: "one"}, "z": 1.5, "a": True})])
    assert keyed.data == {"k": {"1": "one"}, "z": 1.5, "a": True}
    assert list(keyed.data) == ["a", "k", "z"]  # canonical JSON: sorted keys
    original = {"list": [1]}
    log.append("r", [("t", original)])
    original["list"].append(2)  # the log kept its own copy
    read = log.read("r")
    assert read[2].data == {"list": [1]}
    read[2].data["list"].append(3)  # and so does every reader
    assert log.read("r")[2].data == {"list": [1]}
    assert read[1].data == keyed.data


@pytest.mark.parametrize(
    "bad",
    [
        {"x": float("nan")},
        {"x": {1, 2}},
        {"x": object()},
        {"x": [float("-inf")]},
        {"x": b"bytes"},
        {"x": datetime.datetime(2024, 1, 1)},
        {"x": frozenset()},
    ],
)
def test_batch_with_bad_event_appends_nothing(stores: Stores, bad: dict[str, Any]) -> None:
    log = stores.events
    log.create_run(record("r"), ev(1))
    with pytest.raises((TypeError, ValueError)):
        log.append("r", [*ev(2), ("bad", bad), *ev(2)])
    assert log.last_seq("r") == 1
    with pytest.raises((TypeError, ValueError)):
        log.create_run(record("r2"), [*ev(1), ("bad", bad)])
    assert log.get_run("r2") is None
    assert log.append("r", ev(2))[-1].seq == 3


# Text that UTF-8 can encode (no lone surrogates), which is all a JSON log can hold.
_text = st.text(st.characters(codec="utf-8"))
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)


@settings(
    deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.dictionaries(_text, _json_values, max_size=5))
def test_any_json_data_round_trips(stores: Stores, data: dict[str, Any]) -> None:
    log = stores.events
    if log.get_run("rt") is None:
        log.create_run(record("rt"), [])
    (stored,) = log.append("rt", [("t", data)])
    assert stored.data == data
    assert log.read("rt", after=stored.seq - 1) == [stored]


def test_expect_seq_detects_a_concurrent_append(stores: Stores) -> None:
    log = stores.events
    log.create_run(record("r"), [])
    assert log.append("r", ev(2), expect_seq=0)[-1].seq == 2
    assert log.append("r", ev(1), expect_seq=2)[-1].seq == 3
    with pytest.raises(Conflict):
        log.append("r", ev(5), expect_seq=2)  # someone appended seq 3 meanwhile
    with pytest.raises(Conflict):
        log.append("r", ev(1), expect_seq=4)
    assert log.last_seq("r") == 3


def test_concurrent_appends_from_threads_are_gapless(stores: Stores) -> None:
    log = stores.events
    log.create_run(record("r"), [])
    writers, per_writer = 4, 25
    start = threading.Barrier(writers)

    def write(w: int) -> None:
        start.wait()
        for i in range(per_writer):
            log.append("r", [("w", {"w": w, "i": i})] * (1 + i % 3))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = log.read("r")
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len(events) == writers * sum(1 + i % 3 for i in range(per_writer))
    for w in range(writers):  # each writer's batches landed whole and in its own order
        mine = [e.data["i"] for e in events if e.data["w"] == w]
        assert mine == [i for i in range(per_writer) for _ in range(1 + i % 3)]


def test_optimistic_writers_from_threads_never_lose_an_event(stores: Stores) -> None:
    log = stores.events
    log.create_run(record("r"), [])
    writers, per_writer = 4, 10
    conflicts = [0] * writers

    def write(w: int) -> None:
        for i in range(per_writer):
            while True:
                try:
                    log.append("r", [("w", {"w": w, "i": i})], expect_seq=log.last_seq("r"))
                    break
                except Conflict:
                    conflicts[w] += 1

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = log.read("r")
    assert [e.seq for e in events] == list(range(1, writers * per_writer + 1))
    for w in range(writers):
        assert [e.data["i"] for e in events if e.data["w"] == w] == list(range(per_writer))


# -- runs -------------------------------------------------------------------------------------


def test_create_run_stores_the_record(stores: Stores) -> None:
    log = stores.events
    rec = record("r", parent="p", labels={"team": "x"}, namespace="ns", idempotency_key="k")
    log.create_run(rec, ev(2))
    assert log.get_run("r") == rec
    assert log.find_run("k", namespace="ns") == rec
    assert log.find_run("k") is None  # keys are per namespace
    with pytest.raises(Conflict):
        log.create_run(record("r"), ev(1))  # the id is taken
    assert log.last_seq("r") == 2


def test_create_run_with_a_known_idempotency_key_returns_the_existing_run(
    stores: Stores,
) -> None:
    log = stores.events
    first = log.create_run(record("r1", idempotency_key="k"), ev(2))
    log.append("r1", ev(3))
    again = log.create_run(record("r2", idempotency_key="k"), ev(1))
    assert again == first  # the first events of r1, not all of them
    assert log.get_run("r2") is None
    found = log.find_run("k")
    assert found is not None and found.run_id == "r1"
    # The same key in another namespace is another run.
    other = log.create_run(record("r3", idempotency_key="k", namespace="t2"), ev(1))
    assert other[0].run_id == "r3"


def test_create_run_is_idempotent_between_racing_threads(stores: Stores) -> None:
    log = stores.events
    racers = 8
    start = threading.Barrier(racers)
    results: list[list[Any]] = [[] for _ in range(racers)]

    def create(i: int) -> None:
        start.wait()
        results[i] = log.create_run(record(f"r{i}", idempotency_key="same"), ev(2))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winner = results[0][0].run_id
    assert all(r == results[0] for r in results)
    assert [r.run_id for r in log.list_runs()] == [winner]
    assert log.last_seq(winner) == 2


def test_list_runs_newest_first_with_filters(stores: Stores) -> None:
    log = stores.events
    log.create_run(record("a", created=1.0, workflow="w1", status="succeeded"), [])
    log.create_run(record("b", created=3.0, workflow="w2", status="running"), [])
    log.create_run(record("c", created=2.0, workflow="w1", status="running", namespace="n"), [])
    log.create_run(record("d", created=3.0, workflow="w1", status="failed"), [])

    def ids(**filters: Any) -> list[str]:
        return [r.run_id for r in log.list_runs(**filters)]

    assert ids() == ["d", "b", "c", "a"]  # equal times: the later created first
    assert ids(limit=2) == ["d", "b"]
    assert ids(workflow="w1") == ["d", "c", "a"]
    assert ids(status="running") == ["b", "c"]
    assert ids(status="running", workflow="w1") == ["c"]
    assert ids(namespace="n") == ["c"]
    assert ids(namespace="default", workflow="w1") == ["d", "a"]
    assert ids(status="cancelled") == []


def test_set_status_changes_status_and_updated(stores: Stores) -> None:
    log = stores.events
    log.create_run(record("r", created=100.0, updated=100.0), [])
    log.set_status("r", "succeeded")
    run = log.get_run("r")
    assert run is not None
    assert run.status == "succeeded"
    assert run.created == 100.0
    assert run.updated > 100.0
    assert [r.run_id for r in log.list_runs(status="succeeded")] == ["r"]
    assert log.list_runs(status="running") == []


# -- patches, artifacts, memo ----------------------------------------------------------------


def test_patches_round_trip_and_update(stores: Stores) -> None:
    log = stores.events
    assert log.get_patch("p1") is None
    patch = {"id": "p1", "ops": [{"op": "add", "path": "/x", "value": 1}]}
    log.record_patch("r1", patch, "pending")
    got = log.get_patch("p1")
    assert got is not None
    assert (got["patch"], got["run_id"], got["status"], got["detail"]) == (
        patch,
        "r1",
        "pending",
        {},
    )
    assert got["created"] == got["updated"]
    log.record_patch("r1", patch, "applied", {"version": "v2"})
    again = log.get_patch("p1")
    assert again is not None
    assert (again["status"], again["detail"]) == ("applied", {"version": "v2"})
    assert again["created"] == got["created"] and again["updated"] >= got["updated"]

    log.record_patch(None, {"id": "p2"}, "proposed")
    log.record_patch("r2", {"id": "p3"}, "refused", {"why": "no"})
    log.record_patch("r2", {"id": "p2"}, "pending")  # gains the run id it lacked
    assert [p["patch"]["id"] for p in log.list_patches()] == ["p1", "p2", "p3"]
    assert [p["patch"]["id"] for p in log.list_patches("r2")] == ["p2", "p3"]
    assert log.list_patches("r9") == []
    with pytest.raises(ValueError, match="id"):
        log.record_patch("r1", {"ops": []}, "proposed")


def test_artifacts_round_trip_and_first_record_stays(stores: Stores) -> None:
    log = stores.events
    assert log.get_artifact("d1") is None
    log.put_artifact("ir", "d1", "flow", {"workflow": "w", "n": 1})
    log.put_artifact("ir", "d1", "other", {})  # same digest: idempotent
    got = log.get_artifact("d1")
    assert got is not None
    assert {k: got[k] for k in ("digest", "kind", "name", "meta")} == {
        "digest": "d1",
        "kind": "ir",
        "name": "flow",
        "meta": {"workflow": "w", "n": 1},
    }
    assert got["created"] > 0


def test_memo_round_trip(stores: Stores) -> None:
    log = stores.events
    assert log.memo_get("k") is None
    log.memo_put("k", "out1")
    assert log.memo_get("k") == "out1"
    log.memo_put("k", "out2")
    assert log.memo_get("k") == "out2"


@backends_with("durable")
def test_everything_survives_reopening(stores: Stores) -> None:
    assert stores.reopen is not None
    stores.events.create_run(record("r", idempotency_key="k"), ev(3))
    stores.events.set_status("r", "waiting")
    stores.events.record_patch("r", {"id": "p"}, "pending")
    stores.events.put_artifact("ir", "d", "n", {})
    stores.events.memo_put("m", "o")
    digest = stores.cas.put(b"blob")
    before = stores.events.read("r")
    stores.close()
    reopened = stores.reopen()
    try:
        assert reopened.events.read("r") == before
        run = reopened.events.find_run("k")
        assert run is not None and run.status == "waiting"
        assert reopened.events.get_patch("p") is not None
        assert reopened.events.get_artifact("d") is not None
        assert reopened.events.memo_get("m") == "o"
        assert reopened.cas.get(digest) == b"blob"
        assert reopened.events.append("r", ev(1))[0].seq == 4
    finally:
        reopened.close()


# -- CAS ----------------------------------------------------------------------------------------


def test_cas_put_get_has(stores: Stores) -> None:
    cas = stores.cas
    digest = cas.put(b"hello")
    assert digest == hashlib.sha256(b"hello").hexdigest()
    assert cas.has(digest)
    assert cas.get(digest) == b"hello"
    assert cas.put(b"hello") == digest  # idempotent
    assert cas.get(digest) == b"hello"
    empty = cas.put(b"")
    assert cas.get(empty) == b""
    big = bytes(range(256)) * 1000
    assert cas.get(cas.put(big)) == big


@pytest.mark.parametrize("digest", ["0" * 64, "abc", "../../etc/passwd", "A" * 64, ""])
def test_cas_absent_or_malformed_digest(stores: Stores, digest: str) -> None:
    assert not stores.cas.has(digest)
    with pytest.raises(KeyError):
        stores.cas.get(digest)


def test_cas_concurrent_puts_of_the_same_object(stores: Stores) -> None:
    data = b"x" * 100_000
    start = threading.Barrier(4)
    digests: list[str] = []

    def put() -> None:
        start.wait()
        for _ in range(20):
            digests.append(stores.cas.put(data))

    threads = [threading.Thread(target=put) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(digests) == {hashlib.sha256(data).hexdigest()}
    assert stores.cas.get(digests[0]) == data


# -- cache --------------------------------------------------------------------------------------


def test_cache_round_trip(stores: Stores) -> None:
    cache = stores.cache
    assert cache.get("k") is None
    cache.set("k", b"v1")
    assert cache.get("k") == b"v1"
    cache.set("k", b"v2")
    assert cache.get("k") == b"v2"


@backends_with("fake_clock")
def test_cache_ttl_expires_on_the_clock(stores: Stores) -> None:
    cache = stores.cache
    cache.set("short", b"s", ttl=10)
    cache.set("long", b"l", ttl=100)
    cache.set("forever", b"f")
    stores.clock.advance(9.9)
    assert cache.get("short") == b"s"
    stores.clock.advance(0.1)
    assert cache.get("short") is None
    assert cache.get("long") == b"l"
    stores.clock.advance(1000)
    assert cache.get("long") is None
    assert cache.get("forever") == b"f"
    cache.set("short", b"again", ttl=5)  # a new set starts a new TTL
    assert cache.get("short") == b"again"


@backends_with("fake_clock", False)
def test_cache_ttl_expires_in_real_time(stores: Stores) -> None:
    cache = stores.cache
    cache.set("short", b"s", ttl=0.3)
    cache.set("forever", b"f")
    assert cache.get("short") == b"s"
    deadline = time.monotonic() + TIMEOUT
    while cache.get("short") is not None:  # expiry is the server's: poll for it
        assert time.monotonic() < deadline, "the entry never expired"
        time.sleep(0.05)
    assert cache.get("forever") == b"f"
    cache.set("gone", b"g", ttl=0)  # a non-positive TTL expires at once
    assert cache.get("gone") is None


@backends_with("cache_evicts_lru")
def test_cache_evicts_least_recently_used(stores: Stores) -> None:
    cache, size = stores.cache, BACKENDS[stores.backend].cache_entries
    for i in range(size):
        cache.set(f"k{i}", b"v")
    assert cache.get("k0") == b"v"  # k0 is now the most recently used
    cache.set("new", b"v")
    assert cache.get("k1") is None  # so k1 was evicted
    assert cache.get("k0") == b"v"
    assert cache.get("new") == b"v"


# -- bus ------------------------------------------------------------------------------------------

TIMEOUT = 10.0  # a safety net against a hang, never a way to synchronize


async def take(subscription: AsyncIterator[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return [await asyncio.wait_for(anext(subscription), TIMEOUT) for _ in range(n)]


async def take_from_any(
    subscriptions: list[AsyncIterator[dict[str, Any]]], n: int
) -> list[list[dict[str, Any]]]:
    """Read n messages in all from several members of a group, in arrival order per member."""
    got: list[list[dict[str, Any]]] = [[] for _ in subscriptions]
    pending = {asyncio.ensure_future(anext(s)): i for i, s in enumerate(subscriptions)}
    try:
        while sum(map(len, got)) < n:
            done, _ = await asyncio.wait(
                pending, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            assert done, "timed out waiting for messages"
            for task in done:
                i = pending.pop(task)
                got[i].append(task.result())
                pending[asyncio.ensure_future(anext(subscriptions[i]))] = i
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return got


def test_bus_every_group_gets_every_message_in_order(stores: Stores) -> None:
    async def main() -> None:
        bus = stores.bus
        a, b = bus.subscribe("t", "ga"), bus.subscribe("t", "gb")
        other = bus.subscribe("other", "ga")
        for i in range(5):
            await bus.publish("t", "run1", {"i": i})
        await bus.publish("other", "run1", {"other": True})
        assert await take(a, 5) == [{"i": i} for i in range(5)]
        assert await take(b, 5) == [{"i": i} for i in range(5)]
        assert await take(other, 1) == [{"other": True}]

    asyncio.run(main())


def test_bus_group_members_share_messages_and_keys_stay_together(stores: Stores) -> None:
    async def main() -> None:
        bus = stores.bus
        members = [bus.subscribe("jobs", "workers") for _ in range(3)]
        audit = bus.subscribe("jobs", "audit")
        keys = [f"run{k}" for k in range(12)]
        sent: list[dict[str, Any]] = [{"key": key, "i": i} for i in range(4) for key in keys]
        for message in sent:
            await bus.publish("jobs", message["key"], message)
        got = await take_from_any(list(members), len(sent))
        # Each message reached exactly one member...
        assert sorted((m["key"], m["i"]) for part in got for m in part) == sorted(
            (m["key"], m["i"]) for m in sent
        )
        # ...each key one member only, in order.
        for key in keys:
            holders = [part for part in got if any(m["key"] == key for m in part)]
            assert len(holders) == 1
            assert [m["i"] for m in holders[0] if m["key"] == key] == [0, 1, 2, 3]
        # And the other group got them all, each key's in order (Kafka orders per partition).
        audited = await take(audit, len(sent))
        for key in keys:
            assert [m for m in audited if m["key"] == key] == [m for m in sent if m["key"] == key]
        assert len(audited) == len(sent)

    asyncio.run(main())


def test_bus_messages_are_copies(stores: Stores) -> None:
    async def main() -> None:
        bus = stores.bus
        a, b = bus.subscribe("t", "a"), bus.subscribe("t", "b")
        message = {"list": [1]}
        await bus.publish("t", "k", message)
        message["list"].append(2)
        (got_a,) = await take(a, 1)
        got_a["list"].append(3)
        assert await take(b, 1) == [{"list": [1]}]

    asyncio.run(main())


def test_bus_subscription_registers_before_iteration(stores: Stores) -> None:
    async def main() -> None:
        bus = stores.bus
        sub = bus.subscribe("t", "g")  # not yet iterated
        await bus.publish("t", "k", {"n": 1})
        assert await take(sub, 1) == [{"n": 1}]

    asyncio.run(main())


# -- embedded-only: local CAS on disk -------------------------------------------------------------


def test_local_cas_layout_and_atomic_files(tmp_path: Path) -> None:
    cas = LocalCAS(tmp_path / "cas")
    digest = cas.put(b"data")
    assert cas.path(digest) == tmp_path / "cas" / digest[:2] / digest[2:]
    assert cas.path(digest).read_bytes() == b"data"
    assert [p.name for p in (tmp_path / "cas" / digest[:2]).iterdir()] == [digest[2:]]
    with pytest.raises(ValueError, match="not a sha256"):
        cas.path("../x")
    durable = LocalCAS(tmp_path / "durable", fsync=True)
    assert durable.get(durable.put(b"synced")) == b"synced"


def test_local_cas_detects_a_flipped_byte(tmp_path: Path) -> None:
    cas = LocalCAS(tmp_path)
    data = b"some precious bytes"
    digest = cas.put(data)
    path = cas.path(digest)
    damaged = bytearray(path.read_bytes())
    damaged[3] ^= 0x01
    path.write_bytes(bytes(damaged))
    with pytest.raises(CorruptObject, match=f"object {digest} is corrupt") as caught:
        cas.get(digest)
    assert isinstance(caught.value, KeyError)
    # The bad copy is set aside for inspection, and the object reads as absent...
    (quarantined,) = (tmp_path / "quarantine").iterdir()
    assert quarantined.read_bytes() == bytes(damaged)
    assert not cas.has(digest)
    with pytest.raises(KeyError, match="no object"):
        cas.get(digest)
    # ...until it is put again.
    assert cas.put(data) == digest
    assert cas.get(digest) == data


def test_local_cas_rewrites_a_truncated_object_on_put(tmp_path: Path) -> None:
    cas = LocalCAS(tmp_path)
    digest = cas.put(b"0123456789")
    cas.path(digest).write_bytes(b"01234")
    cas.put(b"0123456789")
    assert cas.get(digest) == b"0123456789"


def test_memory_cas_and_local_cas_agree(tmp_path: Path) -> None:
    local, memory = LocalCAS(tmp_path), MemoryCAS()
    for blob in (b"", b"a", bytes(1000)):
        assert local.put(blob) == memory.put(blob)


# -- embedded-only: SQLite ----------------------------------------------------------------------


def test_sqlite_event_log_is_append_only(tmp_path: Path) -> None:
    path = tmp_path / "aobc.db"
    with SqliteEventLog(path) as log:
        log.create_run(record("r"), ev(2))
    raw = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("UPDATE event_log SET type = 'forged' WHERE seq = 1")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("DELETE FROM event_log")
        raw.rollback()
    finally:
        raw.close()
    with SqliteEventLog(path) as log:
        assert [e.type for e in log.read("r")] == ["e.0", "e.1"]


def test_sqlite_settings(tmp_path: Path) -> None:
    with SqliteEventLog(tmp_path / "a.db") as log:
        conn = log._conn()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(sqlite_module.MIGRATIONS)
        columns = {
            table: {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            for table in ("runs", "patches", "artifacts")
        }
        assert all("namespace" in names for names in columns.values())
    with SqliteEventLog(tmp_path / "b.db", durable=True) as log:
        assert log._conn().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with pytest.raises(ValueError, match="file path"):
        SqliteEventLog(":memory:")


def test_sqlite_each_thread_has_its_own_connection(tmp_path: Path) -> None:
    with SqliteEventLog(tmp_path / "a.db") as log:
        log.create_run(record("r"), [])
        seen: list[sqlite3.Connection] = []

        def work() -> None:
            seen.append(log._conn())
            log.append("r", ev(1))

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        assert seen[0] is not log._conn()
        assert log.last_seq("r") == 1
    with pytest.raises(ValueError, match="closed"):
        log.read("r")


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "aobc.db"
    SqliteEventLog(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {len(sqlite_module.MIGRATIONS) + 1}")
    raw.close()
    with pytest.raises(SchemaVersionError, match="upgrade aobc"):
        SqliteEventLog(path)


def test_sqlite_applies_new_migrations_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "aobc.db"
    with SqliteEventLog(path) as log:
        log.create_run(record("r"), ev(1))
    calls: list[int] = []

    def add_priority(conn: sqlite3.Connection) -> None:
        calls.append(1)
        conn.execute("ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0")

    monkeypatch.setattr(sqlite_module, "MIGRATIONS", [*sqlite_module.MIGRATIONS, add_priority])
    for _ in range(2):
        with SqliteEventLog(path) as log:
            conn = log._conn()
            assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
            assert conn.execute("SELECT priority FROM runs").fetchall() == [(0,)]
            assert log.last_seq("r") == 1
    assert calls == [1]


def test_sqlite_failed_migration_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "aobc.db"
    SqliteEventLog(path).close()

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE runs ADD COLUMN half INTEGER")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(sqlite_module, "MIGRATIONS", [*sqlite_module.MIGRATIONS, broken])
    with pytest.raises(RuntimeError, match="migration bug"):
        SqliteEventLog(path)
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
        assert "half" not in {row[1] for row in raw.execute("PRAGMA table_info(runs)")}
    finally:
        raw.close()


# -- embedded-only: the in-memory bus and cache ---------------------------------------------------


def test_memory_bus_publish_waits_while_a_buffer_is_full() -> None:
    async def main() -> None:
        bus = MemoryBus(maxsize=2)
        sub = bus.subscribe("t", "g")
        await bus.publish("t", "k", {"i": 0})
        await bus.publish("t", "k", {"i": 1})
        third = asyncio.ensure_future(bus.publish("t", "k", {"i": 2}))
        for _ in range(5):
            await asyncio.sleep(0)  # let the publisher run as far as it can
        assert not third.done()
        assert await take(sub, 1) == [{"i": 0}]
        await asyncio.wait_for(third, TIMEOUT)
        assert await take(sub, 2) == [{"i": 1}, {"i": 2}]

    asyncio.run(main())


def test_memory_bus_leaving_member_hands_over_its_messages() -> None:
    async def main() -> None:
        bus = MemoryBus()
        a, b = bus.subscribe("t", "g"), bus.subscribe("t", "g")
        for i in range(20):
            await bus.publish("t", f"k{i}", {"i": i})
        a_first = await take(a, 1)
        a.close()
        with pytest.raises(StopAsyncIteration):
            await anext(a)
        rest = await take(b, 19)
        assert sorted(m["i"] for m in a_first + rest) == list(range(20))
        b.close()
        await bus.publish("t", "k", {"lost": True})  # no group left: nobody to deliver to
        late = bus.subscribe("t", "g")
        await bus.publish("t", "k", {"i": 99})
        assert await take(late, 1) == [{"i": 99}]

    asyncio.run(main())


def test_memory_bus_close_ends_iterations() -> None:
    async def main() -> None:
        bus = MemoryBus()
        sub = bus.subscribe("t", "g")
        reader = asyncio.ensure_future(take(sub, 1))
        await asyncio.sleep(0)
        bus.close()
        with pytest.raises(StopAsyncIteration):
            await reader
        with pytest.raises(RuntimeError, match="closed"):
            await bus.publish("t", "k", {})
        async with MemoryBus().subscribe("t", "g") as scoped:
            assert scoped.group == "g"

    asyncio.run(main())


def test_memory_cache_byte_budget_and_non_positive_ttl() -> None:
    clock = FakeClock()
    cache = MemoryCache(100, max_bytes=10, clock=clock)
    cache.set("a", b"12345")
    cache.set("b", b"12345")
    cache.set("c", b"1")  # over budget: a goes
    assert cache.get("a") is None and cache.get("b") == b"12345" and cache.get("c") == b"1"
    cache.set("huge", b"x" * 11)  # never fits
    assert cache.get("huge") is None and len(cache) == 2
    cache.set("b", b"v", ttl=0)  # expires at once, and replaces the old value
    assert cache.get("b") is None
    cache.delete("c")
    assert len(cache) == 0
    defaulted = MemoryCache(default_ttl=5, clock=clock)
    defaulted.set("k", b"v")
    clock.advance(5)
    assert defaulted.get("k") is None


def test_memory_cache_is_thread_safe() -> None:
    cache = MemoryCache(50)
    start = threading.Barrier(4)

    def churn(t: int) -> None:
        start.wait()
        for i in range(2000):
            cache.set(f"{t}-{i % 80}", b"v" * (i % 7))
            cache.get(f"{(t + 1) % 4}-{i % 80}")

    threads = [threading.Thread(target=churn, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 50


# -- embedded bundle ------------------------------------------------------------------------------


def test_embedded_store_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with EmbeddedStores.open(tmp_path / "store") as embedded:
        assert (tmp_path / "store" / "aobc.db").is_file()
        assert (tmp_path / "store" / "cas").is_dir()
        assert embedded.dir == tmp_path / "store"
    assert EmbeddedStores.memory().dir is None
    monkeypatch.setenv("AOBC_STORE", str(tmp_path / "elsewhere"))
    assert default_store_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("AOBC_STORE")
    monkeypatch.chdir(tmp_path)
    assert default_store_dir() == tmp_path / ".aobc"


def test_memory_event_log_refuses_use_after_close() -> None:
    log = MemoryEventLog()
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.read("r")
