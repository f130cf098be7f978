"""A test's slice of the real servers (its own Postgres schema and Kafka prefix) and the
distributed runtime's processes in it, for the agent-runner and coordinator-parity tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from aobc.runtime.state import RunState
from aobc.runtime.stores.base import Event
from aobc.runtime.stores.distributed import kafka_settings
from aobc.runtime.stores.kafka import KafkaBus
from aobc.runtime.stores.postgres import PostgresEventLog
from aobc.testing.fakellm import FakeOpenAI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TIMEOUT = 60.0  # a safety net against a hang, never a way to synchronize
FAST_GROUPS = ["--session-timeout-ms", "1000", "--heartbeat-ms", "200"]
API_KEY = "sk-test"


def wait_until(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return found


def _with(url: str, param: str) -> str:
    return url + ("&" if "?" in url else "?") + param


@dataclass
class Cluster:
    """One test's slice of the servers (its own schema and prefixes), and its processes."""

    dir: Path
    env: dict[str, str]
    postgres: str
    kafka: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.dir / f"{args[0]}-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "aobc", *args],
            env={**self.env, **(env or {})},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def coordinator(self, *extra: str) -> subprocess.Popen[bytes]:
        return self.spawn(
            "coordinator", "--name", "c1", "--lease-ttl", "3", "--poll", "0.2",
            "--path", str(HERE), *FAST_GROUPS, *extra,
        )  # fmt: skip

    def worker(self) -> subprocess.Popen[bytes]:
        return self.spawn("worker", "--path", str(HERE), *FAST_GROUPS)

    def runner(self, llm: FakeOpenAI) -> subprocess.Popen[bytes]:
        return self.spawn(
            "agent-runner", "--openai-base-url", llm.url, *FAST_GROUPS,
            env={"OPENAI_API_KEY": API_KEY},
        )  # fmt: skip

    def start(self, source: str, **inputs: str) -> str:
        path = self.dir / f"wf-{uuid.uuid4().hex[:6]}.aob"
        path.write_text(source)
        args = [f"--input={k}={v}" for k, v in inputs.items()]
        done = subprocess.run(
            [sys.executable, "-m", "aobc", "start", str(path), *args],
            env=self.env, cwd=ROOT, capture_output=True, timeout=TIMEOUT, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode().strip()

    def events(self, run_id: str) -> list[Event]:
        with PostgresEventLog(self.postgres) as log:
            return log.read(run_id)

    def state(self, run_id: str) -> RunState:
        return RunState.fold(run_id, self.events(run_id))

    def status(self, run_id: str) -> str | None:
        with PostgresEventLog(self.postgres) as log:
            record = log.get_run(run_id)
        return None if record is None else record.status

    def finished(self, run_id: str) -> RunState:
        """The run's state once it has ended."""
        return wait_until(
            lambda: (st := self.state(run_id)).finished and st, f"run {run_id} to end"
        )

    def bus(self) -> KafkaBus:
        return KafkaBus(
            kafka_settings(self.kafka, session_timeout_ms=1000, heartbeat_interval_ms=200)
        )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def cluster(
    tmp_path: Path, kafka_url: str, postgres_url: str, s3_url: str, redis_url: str
) -> Iterator[Cluster]:
    name = f"a{uuid.uuid4().hex[:10]}"
    postgres = _with(postgres_url, f"schema={name}")
    kafka = _with(kafka_url, f"prefix={name}.")
    env = {
        **os.environ,
        "AOBC_POSTGRES_URL": postgres,
        "AOBC_KAFKA_URL": kafka,
        "AOBC_S3_URL": f"{s3_url.rstrip('/')}/{name}",
        "AOBC_REDIS_URL": _with(redis_url, f"prefix={name}:"),
        "AOBC_TEST_EFFECTS": str(tmp_path / "effects.txt"),
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("OPENAI_API_KEY", None)  # only the runner has the key
    c = Cluster(tmp_path, env, postgres, kafka)
    try:
        yield c
    finally:
        c.stop()
        with PostgresEventLog(postgres) as events:
            events._conn().execute(f'DROP SCHEMA "{name}" CASCADE')


def of_type(events: list[Event], etype: str) -> list[dict[str, Any]]:
    return [e.data for e in events if e.type == etype]
