"""Latency and throughput of the distributed stores, on real servers.

    .venv/bin/python benchmarks/stores.py            # starts the servers itself
    AOBC_TEST_POSTGRES=postgresql://... .venv/bin/python benchmarks/stores.py   # or uses yours

Prints, per store: Postgres appends (single event, one round trip; batches of 100), Kafka
publish throughput (pipelined), consume throughput and round-trip time (publish -> a
subscriber has it), S3 put/get of 1 KiB and 1 MiB, Redis get/set. Percentiles are over the
samples of one run; on a shared 2-core machine compare runs from the same sitting only.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import time
import uuid
from collections.abc import Callable, Iterator

from aobc.canonical import canonical_bytes
from aobc.runtime.stores.base import RunRecord
from aobc.runtime.stores.kafka import KafkaBus, KafkaSettings
from aobc.runtime.stores.postgres import PostgresEventLog
from aobc.runtime.stores.redis import RedisCache
from aobc.runtime.stores.s3 import S3CAS
from aobc.testing.services import LAUNCHERS, Service, external, launch_all


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    return (
        f"p50 {pct(0.5):7.3f} ms  p95 {pct(0.95):7.3f} ms  p99 {pct(0.99):7.3f} ms"
        f"  (n={len(samples)})"
    )


def _time(action: Callable[[], object], n: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        action()
    samples = []
    for _ in range(n):
        began = time.perf_counter()
        action()
        samples.append(time.perf_counter() - began)
    return samples


def bench_postgres(url: str, n: int) -> None:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    log = PostgresEventLog(url, schema=schema)
    try:
        log.create_run(RunRecord("r", "wf", "ir", "running", 1.0, 1.0), [])
        event = [("node.done", {"node": "n", "output": "0" * 64})]
        print(f"postgres append, 1 event:       {_ms(_time(lambda: log.append('r', event), n))}")
        batch = event * 100
        samples = _time(lambda: log.append("r", batch), max(20, n // 20), warmup=5)
        per_event = statistics.median(samples) / 100 * 1e6
        print(f"postgres append, 100 events:    {_ms(samples)}  = {per_event:.1f} us/event")
        print(f"postgres read, last 10 events:  {_ms(_time(lambda: log.read('r', 0, 10), n))}")
    finally:
        log._conn().execute(f'DROP SCHEMA "{schema}" CASCADE')
        log.close()


def bench_kafka(url: str, n: int) -> None:
    bus = KafkaBus(
        KafkaSettings(
            url.removeprefix("kafka://"),
            prefix=f"bench{uuid.uuid4().hex[:8]}.",
            session_timeout_ms=1000,
            heartbeat_interval_ms=200,
            poll_interval=0.005,
        )
    )

    async def main() -> None:
        sub = bus.subscribe("node.results", "bench")
        value = canonical_bytes({"node": "n", "output": "0" * 64})
        await asyncio.wrap_future(bus.produce("node.results", "warm", value))
        await asyncio.wait_for(anext(sub), 30)  # the group has joined
        # Throughput: pipelined produce, then consume everything.
        began = time.perf_counter()
        futures = [bus.produce("node.results", f"run{i % 64}", value) for i in range(n * 10)]
        for future in futures:
            await asyncio.wrap_future(future)
        produced = time.perf_counter() - began
        print(f"kafka produce (acks=all):       {n * 10 / produced:9.0f} msg/s")
        began = time.perf_counter()
        for _ in range(n * 10):
            await asyncio.wait_for(anext(sub), 30)
        consumed = time.perf_counter() - began
        print(f"kafka consume (after produce):  {n * 10 / consumed:9.0f} msg/s")
        # Round trip: publish one, wait until the subscriber has it.
        samples = []
        for i in range(min(n, 500)):
            began = time.perf_counter()
            await bus.publish("node.results", f"run{i % 64}", {"i": i})
            await asyncio.wait_for(anext(sub), 30)
            samples.append(time.perf_counter() - began)
        print(f"kafka publish->receive RTT:     {_ms(samples)}")
        publish = []
        for i in range(min(n, 500)):
            began = time.perf_counter()
            await bus.publish("node.results", f"run{i % 64}", {"i": i})
            publish.append(time.perf_counter() - began)
        print(f"kafka publish (until acked):    {_ms(publish)}")
        await sub.aclose()

    try:
        asyncio.run(main())
    finally:
        bus.close()


def _put_next(cas: S3CAS, blobs: Iterator[bytes]) -> None:
    cas.put(next(blobs))


def bench_s3(url: str, n: int) -> None:
    cas = S3CAS(url).child(f"bench-{uuid.uuid4().hex[:8]}")
    try:
        for size, label in ((1024, "1 KiB"), (1 << 20, "1 MiB")):
            count = n if size < 1 << 20 else max(10, n // 20)
            blobs = [uuid.uuid4().bytes * (size // 16) for _ in range(count + 5)]
            puts = _time(functools.partial(_put_next, cas, iter(blobs)), count, warmup=5)
            print(f"s3 put {label}:                  {_ms(puts)}")
            gets = _time(functools.partial(cas.get, cas.put(blobs[0])), count, warmup=5)
            print(f"s3 get {label}:                  {_ms(gets)}")
    finally:
        cas.close()


def bench_redis(url: str, n: int) -> None:
    cache = RedisCache(url)
    try:
        value = b"x" * 256
        print(f"redis set 256 B:                {_ms(_time(lambda: cache.set('k', value), n))}")
        print(f"redis get 256 B (hit):          {_ms(_time(lambda: cache.get('k'), n))}")
        print(f"redis get (miss):               {_ms(_time(lambda: cache.get('nope'), n))}")
    finally:
        cache.close()


BENCHES = {"postgres": bench_postgres, "kafka": bench_kafka, "s3": bench_s3, "redis": bench_redis}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="samples per latency measurement")
    parser.add_argument("--only", choices=sorted(BENCHES), action="append")
    args = parser.parse_args(argv)
    kinds = args.only or list(BENCHES)
    ours: dict[str, Service] = {}
    try:
        began = time.perf_counter()
        ours = launch_all([k for k in kinds if external(k) is None and k in LAUNCHERS])
        for kind, service in ours.items():
            print(f"started {kind} in {service.startup_seconds:.2f} s ({service.url})")
        print(f"servers ready after {time.perf_counter() - began:.1f} s\n")
        for kind in kinds:
            url = external(kind) or ours[kind].url
            BENCHES[kind](url, args.n)
    finally:
        for service in ours.values():
            service.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
