"""The distributed runtime's processes on real servers: `aobc deploy`, `aobc start`, a
coordinator and workers as subprocesses, with the faults of issue 5 (a worker and the
coordinator SIGKILLed mid-run, a duplicate job delivery)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from aobc.backend.aobir import write
from aobc.backend.lower import lower
from aobc.frontend import load_text
from aobc.runtime.driver import idempotency_key
from aobc.runtime.engine import Engine, EngineOptions, Stores
from aobc.runtime.stores.distributed import kafka_settings
from aobc.runtime.stores.embedded import EmbeddedStores
from aobc.runtime.stores.kafka import KafkaBus
from aobc.runtime.stores.postgres import PostgresEventLog

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TIMEOUT = 60.0  # a safety net against a hang, never a way to synchronize
FAST_GROUPS = ["--session-timeout-ms", "1000", "--heartbeat-ms", "200"]

WORKFLOW = """
workflow dist {
  output last = c3
  output joined = j
  output items = fan
  c1 = function "dist_fns:step" { effect: effectful }
  c2 = function "dist_fns:gate" { effect: effectful }
  c3 = function "dist_fns:step" { effect: effectful }
  f1 = function "dist_fns:step" { effect: effectful }
  f2 = function "dist_fns:step" { effect: effectful }
  f3 = function "dist_fns:step" { effect: effectful }
  f4 = function "dist_fns:step" { effect: effectful }
  j = function "dist_fns:step" { effect: effectful }
  fan = map [1, 2, 3] {
    concurrency: 3
    body: function "dist_fns:item" { effect: effectful, args: { item: "${item}" } }
  }
  c1 -> c2 -> c3
  c1 -> f1 -> j
  c1 -> f2 -> j
  c1 -> f3 -> j
  c1 -> f4 -> j
  c1 -> fan
}
"""
EFFECTS = 8 + 3  # function nodes, plus the map's items


def wait_until(condition: Any, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _with(url: str, param: str) -> str:
    return url + ("&" if "?" in url else "?") + param


@dataclass
class Cluster:
    """One test's slice of the servers (its own schema, prefixes), and its processes."""

    dir: Path
    env: dict[str, str]
    postgres: str
    kafka: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.dir / f"{args[0]}-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "aobc", *args],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def coordinator(self, name: str = "c1", eager: int = 0) -> subprocess.Popen[bytes]:
        return self.spawn(
            "coordinator", "--name", name, "--lease-ttl", "3", "--poll", "0.2", *FAST_GROUPS,
            "--eager", str(eager), "--path", str(HERE),
        )  # fmt: skip

    def worker(self, concurrency: int = 4) -> subprocess.Popen[bytes]:
        return self.spawn(
            "worker", "--concurrency", str(concurrency), "--path", str(HERE), *FAST_GROUPS
        )

    def aobc(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "aobc", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode().strip()

    def log(self) -> PostgresEventLog:
        return PostgresEventLog(self.postgres)

    def status(self, run_id: str) -> str | None:
        with self.log() as events:
            record = events.get_run(run_id)
        return None if record is None else record.status

    def effects(self) -> list[tuple[str, str, str]]:
        path = Path(self.env["AOBC_TEST_EFFECTS"])
        if not path.exists():
            return []
        return [tuple(line.split()) for line in path.read_text().splitlines()]  # type: ignore[misc]

    def stop(self) -> list[int | None]:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=TIMEOUT))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
        return codes


@pytest.fixture
def cluster(
    tmp_path: Path, kafka_url: str, postgres_url: str, s3_url: str, redis_url: str
) -> Iterator[Cluster]:
    name = f"d{uuid.uuid4().hex[:10]}"
    postgres = _with(postgres_url, f"schema={name}")
    kafka = _with(kafka_url, f"prefix={name}.")
    gate = tmp_path / "gate"
    gate.mkdir()
    env = {
        **os.environ,
        "AOBC_POSTGRES_URL": postgres,
        "AOBC_KAFKA_URL": kafka,
        "AOBC_S3_URL": f"{s3_url.rstrip('/')}/{name}",
        "AOBC_REDIS_URL": _with(redis_url, f"prefix={name}:"),
        "AOBC_TEST_EFFECTS": str(tmp_path / "effects.txt"),
        "AOBC_TEST_GATE": str(gate),
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    c = Cluster(tmp_path, env, postgres, kafka)
    try:
        yield c
    finally:
        c.stop()
        with PostgresEventLog(postgres) as events:
            events._conn().execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture(scope="module")
def embedded_outputs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """What the embedded runtime answers for WORKFLOW (the gate open)."""
    scratch = tmp_path_factory.mktemp("embedded")
    (scratch / "release").touch()
    old = {k: os.environ.get(k) for k in ("AOBC_TEST_EFFECTS", "AOBC_TEST_GATE")}
    os.environ["AOBC_TEST_EFFECTS"] = str(scratch / "effects.txt")
    os.environ["AOBC_TEST_GATE"] = str(scratch)
    try:
        with EmbeddedStores.memory() as st:
            engine = Engine(Stores(st.events, st.cas), EngineOptions(search_path=[str(HERE)]))

            async def go() -> Any:
                try:
                    return await engine.start(lower(load_text(WORKFLOW, "dist.aob")), {})
                finally:
                    await engine.close()

            result = asyncio.run(go())
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert result.status == "succeeded", result.error
    return result.outputs


def deploy(c: Cluster) -> str:
    path = c.dir / "dist.aobir"
    write(path, lower(load_text(WORKFLOW, "dist.aob")))
    digest = c.aobc("deploy", str(path))
    assert len(digest) == 64
    return digest


def outputs(c: Cluster, run_id: str) -> Any:
    from aobc.runtime.state import RunState

    with c.log() as events:
        return RunState.fold(run_id, events.read(run_id)).output_value


def assert_one_effect_per_key(c: Cluster, run_id: str, *, exactly_once: bool = True) -> None:
    """Every effect carries the one idempotency key of its (run, node, item); with
    `exactly_once`, no effect ran twice either."""
    effects = c.effects()
    keys = Counter(key for _, _, key in effects)
    assert len(keys) == EFFECTS, effects
    assert len({(node, item) for node, item, _ in effects}) == EFFECTS, effects
    if exactly_once:
        assert all(n == 1 for n in keys.values()), keys
    for node, item, key in effects:
        assert key == idempotency_key(run_id, node, None if item == "None" else int(item))


def test_runs_across_a_coordinator_and_two_workers_like_the_embedded_runtime(
    cluster: Cluster, embedded_outputs: Any
) -> None:
    (Path(cluster.env["AOBC_TEST_GATE"]) / "release").touch()
    digest = deploy(cluster)
    cluster.coordinator()
    workers = [cluster.worker(), cluster.worker()]
    run_id = cluster.aobc("start", digest)
    wait_until(lambda: cluster.status(run_id) == "succeeded", "the run to succeed")
    assert outputs(cluster, run_id) == embedded_outputs
    assert_one_effect_per_key(cluster, run_id)
    # SIGTERM: each worker stops taking jobs and exits cleanly.
    for w in workers:
        w.send_signal(signal.SIGTERM)
    assert [w.wait(timeout=TIMEOUT) for w in workers] == [0, 0]


def test_a_worker_killed_mid_job_has_its_job_redelivered_and_completed(
    cluster: Cluster, embedded_outputs: Any
) -> None:
    gate = Path(cluster.env["AOBC_TEST_GATE"])
    digest = deploy(cluster)
    cluster.coordinator()
    cluster.worker()
    cluster.worker()
    run_id = cluster.aobc("start", digest)
    wait_until((gate / "started").exists, "a worker to block in c2")
    os.kill(int((gate / "started").read_text()), signal.SIGKILL)
    (gate / "release").touch()
    wait_until(lambda: cluster.status(run_id) == "succeeded", "the run to succeed")
    assert outputs(cluster, run_id) == embedded_outputs
    # The killed worker may have finished other effects without recording them: those ran
    # again elsewhere, at least once, and always under their one key.
    assert_one_effect_per_key(cluster, run_id, exactly_once=False)
    c2 = [key for node, _, key in cluster.effects() if node == "c2"]
    assert c2 == [idempotency_key(run_id, "c2")]  # killed before its effect: it ran once


def test_a_restarted_coordinator_resumes_the_run(cluster: Cluster, embedded_outputs: Any) -> None:
    gate = Path(cluster.env["AOBC_TEST_GATE"])
    digest = deploy(cluster)
    first = cluster.coordinator("c1")
    cluster.worker()
    run_id = cluster.aobc("start", digest)
    wait_until((gate / "started").exists, "a worker to block in c2")
    first.kill()
    first.wait()
    (gate / "release").touch()
    cluster.coordinator("c1")
    wait_until(lambda: cluster.status(run_id) == "succeeded", "the run to succeed")
    assert outputs(cluster, run_id) == embedded_outputs
    assert_one_effect_per_key(cluster, run_id)
    with cluster.log() as events:
        started = [e.data for e in events.read(run_id) if e.type == "node.started"]
    assert [d["attempt"] for d in started if d["node"] == "c2"] == [1, 2]


def test_a_duplicate_job_delivery_has_no_second_effect(cluster: Cluster) -> None:
    (Path(cluster.env["AOBC_TEST_GATE"]) / "release").touch()
    digest = deploy(cluster)
    cluster.coordinator()
    cluster.worker()
    run_id = cluster.aobc("start", digest)
    wait_until(lambda: cluster.status(run_id) == "succeeded", "the run to succeed")
    before = cluster.effects()
    key = idempotency_key(run_id, "c1")
    index = [n.id for n in lower(load_text(WORKFLOW, "dist.aob")).nodes].index("c1")
    job = {
        "v": 1, "run": run_id, "node": "c1", "item": None, "index": index, "ir": digest,
        "kind": "function", "attempt": 1, "key": key, "inputs": {},
        "deadline": time.time() + 60,
    }  # fmt: skip
    bus = KafkaBus(
        kafka_settings(cluster.kafka, session_timeout_ms=1000, heartbeat_interval_ms=200)
    )
    try:

        async def deliver_twice_and_count_answers() -> int:
            results = bus.subscribe("node.results", f"observer-{uuid.uuid4().hex[:6]}")
            try:
                await bus.publish("node.jobs.medium", run_id, job)
                await bus.publish("node.jobs.medium", run_id, job)
                answers = 0
                while answers < 3:  # the run's own answer, then one per duplicate
                    message = await asyncio.wait_for(anext(results), TIMEOUT)
                    answers += message.get("key") == key
                return answers
            finally:
                await results.aclose()

        assert asyncio.run(deliver_twice_and_count_answers()) == 3
    finally:
        bus.close()
    assert cluster.effects() == before


def test_losing_redis_mid_run_costs_only_speed(cluster: Cluster, embedded_outputs: Any) -> None:
    # A Redis of this test's own, stopped while a worker holds a job; that worker is then
    # killed, so its job goes to a new worker that has never seen the IR: it must find it
    # with Redis gone (the CAS), and the run must finish exactly as the embedded runtime's.
    from aobc.testing.services import RedisServer

    gate = Path(cluster.env["AOBC_TEST_GATE"])
    with RedisServer() as redis:
        cluster.env["AOBC_REDIS_URL"] = redis.url
        digest = deploy(cluster)
        cluster.coordinator()
        cluster.worker()
        run_id = cluster.aobc("start", digest)
        wait_until((gate / "started").exists, "a worker to block in c2")
        redis.stop()
        os.kill(int((gate / "started").read_text()), signal.SIGKILL)
        cluster.worker()
        (gate / "release").touch()
        wait_until(lambda: cluster.status(run_id) == "succeeded", "the run to succeed")
    assert outputs(cluster, run_id) == embedded_outputs
    assert_one_effect_per_key(cluster, run_id, exactly_once=False)
    c2 = [key for node, _, key in cluster.effects() if node == "c2"]
    assert c2 == [idempotency_key(run_id, "c2")]


@pytest.mark.parametrize("mode", ["freeze", "fresh"])
def test_replay_under_the_coordinator(cluster: Cluster, embedded_outputs: Any, mode: str) -> None:
    (Path(cluster.env["AOBC_TEST_GATE"]) / "release").touch()
    digest = deploy(cluster)
    cluster.coordinator()
    cluster.worker()
    run_id = cluster.aobc("start", digest)
    wait_until(lambda: cluster.status(run_id) == "succeeded", "the run to succeed")
    before = Counter(node for node, _, _ in cluster.effects())
    report = json.loads(
        cluster.aobc("replay", run_id, "--from", "c2", "--mode", mode, "--output", "json")
    )
    assert report["result"]["status"] == "succeeded"
    replay_id = report["result"]["run"]
    assert outputs(cluster, replay_id) == embedded_outputs
    redone = {d["node"] for d in report["divergence"]}
    after = Counter(node for node, _, _ in cluster.effects()) - before
    if mode == "freeze":
        # c2 and what depends on it run again; everything else keeps its recorded output.
        assert redone == {"c2", "c3"}
        assert after == Counter({"c2": 1, "c3": 1})
    else:
        assert redone >= {"c1", "c2", "c3", "j", "fan"}
        assert sum(after.values()) == EFFECTS
    with cluster.log() as events:
        assert events.get_run(replay_id).parent == run_id  # type: ignore[union-attr]


# --- eager jobs: the coordinator runs ready jobs itself (runtime/eager.py) -------------------


def ran_by(c: Cluster, run_id: str) -> dict[str, str]:
    """Which process recorded each (non-item) node's result: the worker's or coordinator's name."""
    with c.log() as events:
        rows = events._conn().execute("SELECT message FROM job_results").fetchall()
    found = [json.loads(message) for (message,) in rows]
    return {r["node"]: r["worker"] for r in found if r["run"] == run_id and r["item"] is None}


def job_rows(c: Cluster) -> int:
    with c.log() as events:
        row = (
            events._conn()
            .execute("SELECT count(*) FROM outbox WHERE topic LIKE 'node.jobs.%%'")
            .fetchone()
        )
    return int(row[0]) if row else 0


def test_eager_jobs_run_in_the_coordinator_like_the_embedded_runtime(
    cluster: Cluster, embedded_outputs: Any
) -> None:
    (Path(cluster.env["AOBC_TEST_GATE"]) / "release").touch()
    digest = deploy(cluster)
    cluster.coordinator("c1", eager=2)
    cluster.worker()
    run_id = cluster.aobc("start", digest)
    wait_until(lambda: cluster.status(run_id) == "succeeded", "the run to succeed")
    assert outputs(cluster, run_id) == embedded_outputs
    assert_one_effect_per_key(cluster, run_id)
    by = ran_by(cluster, run_id)
    assert len(by) == 8  # every function node answered once
    # c1 is alone when it starts: it runs in the coordinator; f1..f4 and c2 are ready
    # together, more than its 2 slots: the rest went to the worker.
    assert by["c1"] == "c1"
    assert 0 < sum(who == "c1" for who in by.values()) < 8
    # A retired job leaves no row behind; the others' rows go once Kafka acknowledged them.
    wait_until(lambda: job_rows(cluster) == 0, "the outbox to empty")


def test_a_coordinator_killed_mid_eager_job_has_it_run_by_a_worker(
    cluster: Cluster, embedded_outputs: Any
) -> None:
    gate = Path(cluster.env["AOBC_TEST_GATE"])
    digest = deploy(cluster)
    first = cluster.coordinator("c1", eager=8)
    cluster.worker()
    run_id = cluster.aobc("start", digest)
    wait_until((gate / "started").exists, "c2 to block")
    assert int((gate / "started").read_text()) == first.pid  # c2 runs in the coordinator
    (gate / "started").unlink()
    first.kill()
    first.wait()
    (gate / "release").touch()
    # Its held job row is published by a relay's sweep once its grace has passed, and a
    # worker runs it; the restarted coordinator takes its answer from there.
    cluster.coordinator("c1", eager=8)
    wait_until(lambda: cluster.status(run_id) == "succeeded", "the run to succeed")
    assert outputs(cluster, run_id) == embedded_outputs
    assert_one_effect_per_key(cluster, run_id, exactly_once=False)
    c2 = [key for node, _, key in cluster.effects() if node == "c2"]
    assert c2 == [idempotency_key(run_id, "c2")]  # killed before its effect: it ran once
    assert ran_by(cluster, run_id)["c2"] != "c1"


def test_sigterm_lets_eager_jobs_finish_before_the_coordinator_exits(
    cluster: Cluster, embedded_outputs: Any
) -> None:
    gate = Path(cluster.env["AOBC_TEST_GATE"])
    digest = deploy(cluster)
    first = cluster.coordinator("c1", eager=8)
    cluster.worker()
    run_id = cluster.aobc("start", digest)
    wait_until((gate / "started").exists, "c2 to block")
    assert int((gate / "started").read_text()) == first.pid
    first.send_signal(signal.SIGTERM)
    log = cluster.dir / "coordinator-0.log"
    wait_until(lambda: "eager job(s) may finish" in log.read_text(), "the coordinator to drain")
    assert first.poll() is None  # it waits for c2
    (gate / "release").touch()
    assert first.wait(timeout=TIMEOUT) == 0
    cluster.coordinator("c1", eager=8)
    wait_until(lambda: cluster.status(run_id) == "succeeded", "the run to succeed")
    assert outputs(cluster, run_id) == embedded_outputs
    assert_one_effect_per_key(cluster, run_id)
    assert ran_by(cluster, run_id)["c2"] == "c1"  # finished where it began


def test_a_worker_whose_broker_is_gone_still_exits_on_sigterm(cluster: Cluster) -> None:
    # Leaving a group or flushing a producer with the broker gone can block for as long as
    # librdkafka retries: the shutdown deadline bounds it (the work not acknowledged is
    # delivered again to others, as after a crash).
    from aobc.cli.cluster import SHUTDOWN_CUT
    from aobc.testing.services import KafkaServer

    with KafkaServer() as kafka:
        cluster.env["AOBC_KAFKA_URL"] = kafka.url
        worker = cluster.spawn(
            "worker", "--drain-timeout", "1", "--shutdown-timeout", "4", "--path", str(HERE),
            *FAST_GROUPS,
        )  # fmt: skip
        log = cluster.dir / "worker-0.log"
        wait_until(lambda: "ready" in log.read_text(), "the worker to start")
        kafka.stop()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=TIMEOUT) in (0, SHUTDOWN_CUT)


MAP_WORKFLOW = """
workflow m {
  output items = fan
  fan = map [1, 2] {
    concurrency: 1
    body: function "dist_fns:item_gate" { effect: effectful, args: { item: "${item}" } }
  }
}
"""


def test_a_map_item_in_flight_when_the_coordinator_restarts_runs_once(cluster: Cluster) -> None:
    gate = Path(cluster.env["AOBC_TEST_GATE"])
    path = cluster.dir / "m.aobir"
    write(path, lower(load_text(MAP_WORKFLOW, "m.aob")))
    digest = cluster.aobc("deploy", str(path))
    first = cluster.coordinator("c1")
    cluster.worker()
    run_id = cluster.aobc("start", digest)
    wait_until((gate / "started").exists, "the first item to block on a worker")
    first.kill()
    first.wait()
    # The restarted coordinator starts the map again; the item whose job is out is not sent
    # a second time (the worker would run it again beside the first).
    cluster.coordinator("c1")
    with cluster.log() as events:
        wait_until(
            lambda: sum(e.type == "node.started" for e in events.read(run_id)) == 2,
            "the map to start again",
        )
    (gate / "release").touch()
    wait_until(lambda: cluster.status(run_id) == "succeeded", "the run to succeed")
    assert outputs(cluster, run_id) == {"items": [10, 20]}
    assert sorted(item for _, item, _ in cluster.effects()) == ["0", "1"]
    # Whether a second job would have run depends on where it was queued; that there is none
    # does not: one job per item was ever produced.
    assert jobs_produced(cluster) == 2


def jobs_produced(c: Cluster) -> int:
    """Messages ever produced to node.jobs.medium: the sum of its partitions' end offsets."""
    import confluent_kafka

    settings = kafka_settings(c.kafka)
    topic = settings.physical("node.jobs.medium")
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": settings.bootstrap, "group.id": f"count-{uuid.uuid4().hex[:6]}"}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=TIMEOUT).topics[topic].partitions
        return sum(
            consumer.get_watermark_offsets(
                confluent_kafka.TopicPartition(topic, p), timeout=TIMEOUT
            )[1]
            for p in partitions
        )
    finally:
        consumer.close()


SUB_WORKFLOW = """
workflow s {
  output total = after
  first = function "dist_fns:step" { effect: effectful }
  inner = composite workflow inner {
    input x: int
    output y = twice
    once = function "dist_fns:step" { effect: effectful, args: { x: "${inputs.x}" } }
    twice = function "dist_fns:step" { effect: effectful, args: { y: "${once}" } }
    once -> twice
  } { args: { x: "${first}" } }
  after = function "dist_fns:step" { effect: effectful, args: { y: "${inner.y}" } }
  first -> inner -> after
}
"""


def test_a_sub_workflows_nodes_run_on_workers(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = cluster.dir / "s.aobir"
    ir = lower(load_text(SUB_WORKFLOW, "s.aob"))
    write(path, ir)
    digest = cluster.aobc("deploy", str(path))
    cluster.coordinator("c1")
    cluster.worker()
    run_id = cluster.aobc("start", digest)
    wait_until(lambda: cluster.status(run_id) == "succeeded", "the run to succeed")
    monkeypatch.setenv("AOBC_TEST_EFFECTS", str(cluster.dir / "embedded-effects.txt"))
    with EmbeddedStores.memory() as st:
        engine = Engine(Stores(st.events, st.cas), EngineOptions(search_path=[str(HERE)]))

        async def embedded() -> Any:
            try:
                return await engine.start(ir, {})
            finally:
                await engine.close()

        expected = asyncio.run(embedded())
    assert outputs(cluster, run_id) == expected.outputs == {"total": 4}
    with cluster.log() as events:
        rows = events._conn().execute("SELECT message FROM job_results").fetchall()
    ran = {(m["run"], m["node"]): m["worker"] for m in (json.loads(r) for (r,) in rows)}
    child = f"{run_id}/inner"
    assert set(ran) == {(run_id, "first"), (child, "once"), (child, "twice"), (run_id, "after")}
    assert "c1" not in ran.values()  # no job ran in the coordinator


def test_renamed_topics_carry_the_jobs_and_results(cluster: Cluster, embedded_outputs: Any) -> None:
    (Path(cluster.env["AOBC_TEST_GATE"]) / "release").touch()
    # The environment for every process, as a deployment would set it once.
    cluster.env["AOBC_KAFKA_TOPICS"] = "node.jobs.medium=jobs-m:3,node.results=answers:2"
    digest = deploy(cluster)
    cluster.coordinator()
    cluster.worker()
    run_id = cluster.aobc("start", digest)
    wait_until(lambda: cluster.status(run_id) == "succeeded", "the run to succeed")
    assert outputs(cluster, run_id) == embedded_outputs
    import confluent_kafka

    settings = kafka_settings(cluster.kafka)
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": settings.bootstrap, "group.id": f"n-{uuid.uuid4().hex[:6]}"}
    )
    try:
        found = consumer.list_topics(timeout=TIMEOUT).topics
    finally:
        consumer.close()
    prefix = settings.prefix
    assert len(found[prefix + "jobs-m"].partitions) == 3
    assert len(found[prefix + "answers"].partitions) == 2
    assert prefix + "node.jobs.medium" not in found and prefix + "node.results" not in found
