"""Faults at the level of the distributed stores, on real servers: Redis stopped mid-use, S3
unavailable for a while, a duplicate Kafka delivery, a poison message, an outbox relay that
crashes between publishing and deleting; and Kafka's priority consumption."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import confluent_kafka
import pytest

from aobc import errorcodes
from aobc.canonical import canonical_bytes
from aobc.runtime.stores.base import RunRecord, StoreUnavailable
from aobc.runtime.stores.kafka import (
    REASON_HEADER,
    SOURCE_HEADER,
    KafkaBus,
    KafkaSettings,
    PriorityConsumer,
)
from aobc.runtime.stores.postgres import OutboundMessage, OutboxRelay, PostgresEventLog
from aobc.runtime.stores.redis import RedisCache
from aobc.runtime.stores.s3 import S3CAS
from aobc.testing.pytest_services import Servers
from aobc.testing.services import RedisServer

pytestmark = pytest.mark.integration

TIMEOUT = 15.0  # a safety net against a hang, never a way to synchronize


def _name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def wait_until(condition: Any, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def bus(kafka_url: str) -> Iterator[KafkaBus]:
    kafka = KafkaBus(
        KafkaSettings(
            kafka_url.removeprefix("kafka://"),
            prefix=f"{_name()}.",
            default_partitions=3,
            session_timeout_ms=1000,
            heartbeat_interval_ms=200,
        )
    )
    yield kafka
    kafka.close()


@pytest.fixture
def log(postgres_url: str) -> Iterator[PostgresEventLog]:
    schema = _name()
    events = PostgresEventLog(postgres_url, schema=schema)
    yield events
    events._conn().execute(f'DROP SCHEMA "{schema}" CASCADE')
    events.close()


async def take(subscription: Any, n: int) -> list[dict[str, Any]]:
    return [await asyncio.wait_for(anext(subscription), TIMEOUT) for _ in range(n)]


def read_raw(bus: KafkaBus, physical_topic: str, n: int) -> list[confluent_kafka.Message]:
    """n messages of a physical topic, from the start, with their headers (a plain consumer:
    what is on the topic, whatever aobc's subscriptions would make of it)."""
    consumer = confluent_kafka.Consumer(
        {**bus.consumer_config(f"raw-{_name()}"), "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([physical_topic])
    got: list[confluent_kafka.Message] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while len(got) < n and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                got.append(message)
    finally:
        consumer.close()
    return got


def headers(message: confluent_kafka.Message) -> dict[str, str]:
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in pairs}


def record(run_id: str) -> RunRecord:
    return RunRecord(run_id, "wf", "ir", "running", 1.0, 1.0)


# -- Redis ------------------------------------------------------------------------------------


def test_cache_degrades_to_misses_when_redis_stops_and_recovers() -> None:
    with RedisServer() as server:
        cache = RedisCache(server.url, timeout=0.2, max_backoff=0.2)
        computed: list[str] = []

        def memoized(key: str) -> bytes:
            # What the runtime does with the cache: look up, else compute and remember.
            hit = cache.get(key)
            if hit is not None:
                return hit
            computed.append(key)
            value = f"output of {key}".encode()
            cache.set(key, value)
            return value

        assert memoized("a") == b"output of a"
        assert memoized("a") == b"output of a"
        assert computed == ["a"]
        server.stop()
        began = time.monotonic()
        for _ in range(50):
            assert memoized("a") == b"output of a"  # recomputed, still correct
        elapsed = time.monotonic() - began
        assert computed == ["a"] * 51
        # Bounded: one timeout-or-refusal, then the open circuit skips calls outright.
        assert elapsed < 2.0, elapsed
        assert cache.stats.errors >= 1 and cache.stats.skipped >= 1
        server.start()  # same port, same data (append-only file)
        wait_until(lambda: cache.get("a") == b"output of a", "the cache to reconnect")
        cache.set("b", b"2")
        assert cache.get("b") == b"2"
        cache.close()


def test_cache_on_a_hung_redis_waits_one_timeout_at_most() -> None:
    with RedisServer() as server:
        cache = RedisCache(server.url, timeout=0.2, max_backoff=1.0)
        cache.set("k", b"v")
        with server.paused():
            began = time.monotonic()
            assert cache.get("k") is None
            cache.set("k", b"other")
            assert cache.get("k") is None
            assert time.monotonic() - began < 1.0
        wait_until(lambda: cache.get("k") == b"v", "the cache to come back")
        cache.close()


# -- S3 -----------------------------------------------------------------------------------------


def test_s3_outage_retries_then_raises_a_coded_error(servers: Servers) -> None:
    server = servers.own("s3")
    cas = S3CAS(server.url, retry_budget=1.5, timeout=0.3).child(_name())
    digest = cas.put(b"before the outage")
    with server.paused():
        began = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            cas.put(b"during the outage")
        elapsed = time.monotonic() - began
        with pytest.raises(StoreUnavailable):
            cas.get(digest)
    assert caught.value.code is errorcodes.STORE_UNAVAILABLE
    message = str(caught.value)
    assert "did not answer" in message and "127.0.0.1" in message
    assert "[store-unavailable]" in message
    assert 1.0 <= elapsed < 5.0, elapsed
    assert cas.retries >= 2
    assert cas.get(digest) == b"before the outage"


def test_s3_outage_shorter_than_the_budget_is_ridden_out(servers: Servers) -> None:
    server = servers.own("s3")
    cas = S3CAS(server.url, retry_budget=20.0, timeout=0.3).child(_name())
    result: list[str] = []
    server.pause()
    try:
        writer = threading.Thread(target=lambda: result.append(cas.put(b"patient")))
        writer.start()
        wait_until(lambda: cas.retries >= 2, "the put to retry")
    finally:
        server.resume()
    writer.join(TIMEOUT)
    assert not writer.is_alive()
    assert result and cas.get(result[0]) == b"patient"


# -- Kafka ------------------------------------------------------------------------------------


def test_duplicate_delivery_has_no_second_effect(bus: KafkaBus, log: PostgresEventLog) -> None:
    async def main() -> None:
        deduped = bus.subscribe("node.results", "coordinator", dedup=1000)
        raw = bus.subscribe("node.results", "auditor")
        first, second = canonical_bytes({"node": "a"}), canonical_bytes({"node": "b"})
        # The same message twice (a producer retry, a relay restart), then another.
        for value, message_id in ((first, "m1"), (first, "m1"), (second, "m2")):
            await asyncio.wrap_future(bus.produce("node.results", "run1", value, id=message_id))
        assert await take(deduped, 2) == [{"node": "a"}, {"node": "b"}]
        # Without the in-memory filter (another process, after a rebalance), the durable
        # claim in Postgres keeps the effect single.
        log.create_run(record("run1"), [])
        for _ in range(3):
            delivery = await asyncio.wait_for(raw.next_delivery(), TIMEOUT)
            assert delivery.id is not None
            with log.transaction() as tx:
                if tx.claim("coordinator", delivery.id):
                    tx.append("run1", [("node.done", delivery.message)])
        assert [e.data for e in log.read("run1")] == [{"node": "a"}, {"node": "b"}]

    asyncio.run(main())


def test_poison_message_goes_to_the_dead_letter_topic_and_the_partition_moves(
    bus: KafkaBus,
) -> None:
    async def main() -> None:
        sub = bus.subscribe("node.jobs.high", "workers")
        poison = b"\xff\xfe not json"
        await asyncio.wrap_future(bus.produce("node.jobs.high", "run1", poison, id="bad"))
        await bus.publish("node.jobs.high", "run1", {"job": 1})
        await bus.publish("node.jobs.high", "run1", {"job": 2})
        assert await take(sub, 1) == [{"job": 1}]  # the same partition, past the poison
        # A message the subscriber itself cannot handle goes the same way, with its reason.
        delivery = await asyncio.wait_for(sub.next_delivery(), TIMEOUT)
        assert delivery.message == {"job": 2}
        await sub.dead_letter(delivery, "no handler for job 2")
        await bus.publish("node.jobs.high", "run1", {"job": 3})
        assert await take(sub, 1) == [{"job": 3}]
        await sub.aclose()

        dead = read_raw(bus, bus.settings.physical("node.jobs.high") + ".dead", 2)
        assert [m.value() for m in dead] == [poison, canonical_bytes({"job": 2})]
        reasons = [headers(m)[REASON_HEADER] for m in dead]
        assert reasons[0].startswith("not a JSON object")
        assert reasons[1] == "no handler for job 2"
        assert all(
            headers(m)[SOURCE_HEADER].startswith(bus.settings.physical("node.jobs.high"))
            for m in dead
        )
        assert headers(dead[0])["aobc-id"] == "bad"
        # The dead letters were committed: the group, rejoining, gets job 3 again (handed
        # over, never marked done: at least once) and what came after.
        again = bus.subscribe("node.jobs.high", "workers")
        await bus.publish("node.jobs.high", "run1", {"job": 4})
        assert await take(again, 2) == [{"job": 3}, {"job": 4}]

    asyncio.run(main())


def test_priority_consumer_prefers_high_and_never_starves_low(bus: KafkaBus) -> None:
    async def main() -> None:
        for i in range(12):
            await bus.publish("node.jobs.high", f"run{i % 3}", {"p": "high", "i": i})
        for i in range(3):
            await bus.publish("node.jobs.low", f"run{i}", {"p": "low", "i": i})
        consumer = PriorityConsumer.for_jobs(bus, "workers", ("high", "medium", "low"))
        high, _medium, low = consumer.subscriptions
        # Start from a known state: every message fetched (a new group reads from the start).
        wait_until(lambda: high.buffered == 12 and low.buffered == 3, "the fetches")
        order = []
        for _ in range(15):
            delivery = await asyncio.wait_for(consumer.next_delivery(), TIMEOUT)
            order.append(delivery.message["p"][0])
            consumer.ack(delivery)
        # Strict priority, but the low queue gets a turn after 4 picks passed it by.
        assert "".join(order) == "hhhhl" * 3
        await bus.publish("node.jobs.medium", "run1", {"p": "medium", "i": 0})
        delivery = await asyncio.wait_for(consumer.next_delivery(), TIMEOUT)
        assert delivery.message["p"] == "medium"  # the others are empty: no waiting
        consumer.ack(delivery)
        await consumer.aclose()

    asyncio.run(main())


def test_priority_consumer_needs_manual_commits(bus: KafkaBus) -> None:
    sub = bus.subscribe("node.jobs.low", "w")
    try:
        with pytest.raises(ValueError, match="manual"):
            PriorityConsumer([sub])
    finally:
        sub.close()


# -- Postgres: the outbox ------------------------------------------------------------------------


class CrashingRelay(OutboxRelay):
    """A relay that dies after Kafka has the messages and before it deletes them."""

    def _delete(self, conn: Any, ids: list[int]) -> None:
        raise SystemExit("relay crashed")


def test_state_change_and_messages_commit_together(log: PostgresEventLog) -> None:
    log.create_run(record("r"), [])

    def fail_midway() -> None:
        with log.transaction() as tx:
            tx.append("r", [("node.done", {"n": 1})])
            tx.send("node.jobs.high", "r", {"job": "next"})
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_midway()
    assert log.last_seq("r") == 0 and log.outbox_size() == 0
    with log.transaction() as tx:
        tx.append("r", [("node.done", {"n": 1})])
        tx.send("node.jobs.high", "r", {"job": "next"})
        tx.set_status("r", "waiting")
    assert log.last_seq("r") == 1 and log.outbox_size() == 1
    run = log.get_run("r")
    assert run is not None and run.status == "waiting"


def test_outbox_relay_crash_still_publishes_exactly_once_downstream(
    bus: KafkaBus, log: PostgresEventLog
) -> None:
    async def main() -> None:
        deduped = bus.subscribe("node.jobs.medium", "workers", dedup=1000)
        log.create_run(record("r"), [])
        log.append(
            "r",
            [("node.done", {"node": "a"})],
            messages=[OutboundMessage("node.jobs.medium", "r", {"job": i}) for i in range(3)],
        )
        crashing = CrashingRelay(log, bus)
        with pytest.raises(SystemExit):
            crashing.relay_once()
        crashing.stop()
        assert log.outbox_size() == 3  # published, but not deleted
        relay = OutboxRelay(log, bus)
        relay.drain()
        relay.stop()
        assert log.outbox_size() == 0
        # Downstream: at least once on the topic, exactly once past the dedup key.
        assert await take(deduped, 3) == [{"job": 0}, {"job": 1}, {"job": 2}]
        on_topic = read_raw(bus, bus.settings.physical("node.jobs.medium"), 6)
        ids = sorted(headers(m)["aobc-id"] for m in on_topic)
        assert len(ids) == 6 and len(set(ids)) == 3  # each id twice

    asyncio.run(main())


def test_one_relay_leads_at_a_time(bus: KafkaBus, log: PostgresEventLog) -> None:
    first, second = OutboxRelay(log, bus), OutboxRelay(log, bus)
    log.send([OutboundMessage("node.results", "r", {"n": 1})])
    assert first.relay_once() == 1
    log.send([OutboundMessage("node.results", "r", {"n": 2})])
    assert second.relay_once() == 0  # the first one holds the lock
    first.stop()  # its connection closes: the lock is free
    assert second.relay_once() == 1
    second.stop()


def test_running_relay_publishes_on_commit(bus: KafkaBus, log: PostgresEventLog) -> None:
    async def main() -> None:
        sub = bus.subscribe("workflow.events", "timeline")
        relay = OutboxRelay(log, bus, idle_wait=30.0).start()  # only a NOTIFY wakes it soon
        try:
            log.create_run(
                record("r"),
                [("run.started", {})],
                messages=[OutboundMessage("workflow.events", "r", {"type": "run.started"})],
            )
            assert await take(sub, 1) == [{"type": "run.started"}]
        finally:
            await asyncio.to_thread(relay.stop)

    asyncio.run(main())


def test_event_log_rejects_rewrites(log: PostgresEventLog) -> None:
    import psycopg

    log.create_run(record("r"), [("a", {})])
    conn = log._conn()
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        conn.execute("UPDATE event_log SET type = 'forged'")
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        conn.execute("DELETE FROM event_log")
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        conn.execute("TRUNCATE event_log")
    assert [e.type for e in log.read("r")] == ["a"]
