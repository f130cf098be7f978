"""`aobc serve` over the distributed runtime, through real HTTP: a server started with the
cluster's store URLs, one coordinator and one worker as subprocesses, on real Postgres,
Kafka, S3 and Redis. The server drives nothing: what it deploys and starts, the coordinator
runs, and what it decides (tickets, patches, cancels) reaches the coordinator through the
run's event log."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apischema import CHECKS, check_api
from apiserver import Server, sse, start, wait_for
from schemathesis import GenerationMode
from test_distributed import (  # the cluster harness of the distributed-runtime tests
    FAST_GROUPS,
    HERE,
    TIMEOUT,
    WORKFLOW,
    Cluster,
    _with,
    embedded_outputs,  # noqa: F401  (a fixture)
)

from aobc.runtime.stores.postgres import PostgresEventLog

pytestmark = pytest.mark.integration

API = HERE.parent / "api"

GATE = """
workflow gate {
  input who: str = "world"
  output sent = send
  prep = function "apifns:echo" { effect: pure, args: { who: inputs.who } }
  review = approval { approvers: ["support-leads"], timeout: 1h, message: "send to ${inputs.who}?" }
  send = function "apifns:record" { effect: effectful }
  prep -> review -[approved]-> send
}
"""


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    kafka_url: str,
    postgres_url: str,
    s3_url: str,
    redis_url: str,
) -> Iterator[tuple[Server, Cluster]]:
    """One schema and prefix for the module: a coordinator, a worker, and `aobc serve`."""
    tmp = tmp_path_factory.mktemp("apidist")
    name = f"a{uuid.uuid4().hex[:10]}"
    postgres = _with(postgres_url, f"schema={name}")
    kafka = _with(kafka_url, f"prefix={name}.")
    gate = tmp / "gate"
    gate.mkdir()
    (gate / "release").touch()  # dist_fns:gate never holds here
    env = {
        **os.environ,
        "AOBC_POSTGRES_URL": postgres,
        "AOBC_KAFKA_URL": kafka,
        "AOBC_S3_URL": f"{s3_url.rstrip('/')}/{name}",
        "AOBC_REDIS_URL": _with(redis_url, f"prefix={name}:"),
        "AOBC_TEST_EFFECTS": str(tmp / "effects.txt"),
        "AOBC_TEST_GATE": str(gate),
        "APIFNS_OUTBOX": str(tmp / "outbox.jsonl"),
        "PYTHONPATH": os.pathsep.join([str(HERE), str(API), os.environ.get("PYTHONPATH", "")]),
    }
    cluster = Cluster(tmp, env, postgres, kafka)
    server = None
    try:
        cluster.coordinator()
        cluster.spawn(
            "worker", "--concurrency", "4", "--path", str(HERE), "--path", str(API), *FAST_GROUPS
        )
        # The Postgres URL as --store: the distributed backend (S3 from $AOBC_S3_URL).
        server = start(postgres, tmp / "tokens.toml", "--heartbeat", "0.2", env=env)
        yield server, cluster
    finally:
        if server is not None:
            server.stop()
        cluster.stop()
        with PostgresEventLog(postgres) as events:
            events._conn().execute(f'DROP SCHEMA "{name}" CASCADE')


def events_of(c: httpx.Client, run_id: str) -> Iterator[tuple[str, Any, int | None]]:
    """The run's SSE stream, heartbeats left out, until its `end` (or a drop)."""
    deadline = time.monotonic() + TIMEOUT  # a net against a hang: heartbeats keep it open
    with c.stream("GET", f"/runs/{run_id}/events", timeout=TIMEOUT) as r:
        assert r.status_code == 200, r.read()
        for ev in sse(r.iter_lines()):
            assert time.monotonic() < deadline, f"run {run_id}'s stream never got there"
            if ev[0] == "comment":
                continue
            yield ev
            if ev[0] in ("end", "dropped"):
                return


def until(stream: Iterator[tuple[str, Any, int | None]], etype: str) -> list[dict[str, Any]]:
    """Read the stream up to and including the first event of type `etype`."""
    seen = []
    for name, data, _ in stream:
        assert name not in ("end", "dropped"), (name, data, seen)
        seen.append(data)
        if name == etype:
            return seen
    raise AssertionError(f"the stream ended before {etype}: {[d['type'] for d in seen]}")


def deploy(c: httpx.Client, source: str, name: str) -> str:
    r = c.post("/workflows", json={"source": source, "filename": f"{name}.aob", "tags": ["main"]})
    assert r.status_code in (200, 201), r.text
    return str(r.json()["hash"])


def start_run(c: httpx.Client, workflow: str, **body: Any) -> str:
    r = c.post("/runs", json={"workflow": workflow, **body})
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def effects(cluster: Cluster, run_id: str) -> list[str]:
    path = Path(cluster.env["APIFNS_OUTBOX"])
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if run_id in line]


def test_deploy_start_and_stream_a_run_the_cluster_drives(
    stack: tuple[Server, Cluster],
    embedded_outputs: Any,  # noqa: F811  (the fixture imported above)
) -> None:
    server, cluster = stack
    with server.client("admin") as c:
        assert c.get("/readyz").json()["backend"] == "distributed"
        digest = deploy(c, WORKFLOW, "dist")
        assert c.get("/workflows/dist").json()["tags"] == {"main": digest}
        # Deployed like `aobc deploy`: the IR is an artifact the coordinator can load.
        with cluster.log() as log:
            assert log.get_artifact(digest) is not None
        run_id = start_run(c, "dist", idempotency_key="k-dist")
        assert start_run(c, "dist", idempotency_key="k-dist") == run_id  # the same run
        stream = events_of(c, run_id)
        seen = until(stream, "run.succeeded")
        assert seen[0]["type"] == "run.started" and seen[0]["seq"] == 1
        assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))  # no gap, no repeat
        (end,) = list(stream)
        assert end[0] == "end" and end[1]["status"] == "succeeded"
        run = c.get(f"/runs/{run_id}").json()
        assert run["status"] == "succeeded"
        assert run["outputs"] == embedded_outputs
        # The timeline, paged, is the same log the stream sent.
        paged: list[dict[str, Any]] = []
        while True:
            after = paged[-1]["seq"] if paged else 0
            page = c.get(f"/runs/{run_id}/timeline", params={"after": after, "limit": 7})
            got = page.json()["events"]
            if not got:
                break
            assert len(got) <= 7
            paged += got
        assert paged == seen
        assert run_id in {
            r["id"] for r in c.get("/runs", params={"status": "succeeded"}).json()["runs"]
        }
        text = c.get("/metrics").text
    assert re.search(r'aobc_runs\{namespace="default",state="succeeded"\} [1-9]', text)
    # Node latencies come from the log's tail: the server ran none of these nodes.
    assert 'aobc_node_duration_seconds_count{node="c3",workflow="dist"} 1.0' in text


def test_an_approval_decided_through_the_api_resumes_the_run(
    stack: tuple[Server, Cluster],
) -> None:
    server, cluster = stack
    with server.client("operator") as op, server.client("approver") as approver:
        deploy(op, GATE, "gate")
        run_id = start_run(op, "gate", inputs={"who": "ada"})
        stream = events_of(op, run_id)
        opened = until(stream, "ticket.opened")[-1]
        tickets = {t["ticket"]: t for t in approver.get("/approvals").json()["tickets"]}
        assert tickets[opened["ticket"]]["run"] == run_id
        assert effects(cluster, run_id) == []  # held at the approval
        # Held by people only: "waiting", as on the embedded runtime (its coordinator still
        # drives it, for the ticket's deadline).
        wait_for(op, run_id, "waiting")
        r = approver.post(
            f"/approvals/{opened['ticket']}", json={"decision": "approve", "reason": "fine"}
        )
        assert r.status_code == 200, r.text
        rest = until(stream, "run.succeeded")
        decided = next(e for e in rest if e["type"] == "ticket.decided")
        assert (decided["by"], decided["reason"]) == ("alice@support", "fine")
        run = op.get(f"/runs/{run_id}").json()
    assert run["outputs"] == {"sent": {"done": "send"}}
    assert len(effects(cluster, run_id)) == 1


def test_cancel_through_the_api_stops_the_run_its_coordinator_holds(
    stack: tuple[Server, Cluster],
) -> None:
    server, cluster = stack
    with server.client("admin") as c:
        deploy(c, GATE, "gate")
        run_id = start_run(c, "gate")
        stream = events_of(c, run_id)
        until(stream, "ticket.opened")
        r = c.post(f"/runs/{run_id}/cancel", json={"reason": "not today"})
        # The coordinator holds the run's lease: it is asked (202), and it stops the run.
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "cancelling"
        rest = until(stream, "run.cancelled")
        assert rest[0]["type"] == "run.cancel_requested"
        assert (rest[-1]["by"], rest[-1]["reason"]) == ("root@ops", "not today")
        (end,) = list(stream)
        assert end[1]["status"] == "cancelled"
        assert c.get(f"/runs/{run_id}").json()["status"] == "cancelled"
        assert c.post(f"/runs/{run_id}/cancel", json={}).status_code == 409
    assert effects(cluster, run_id) == []


def test_patches_invalid_refused_with_nothing_changed_valid_applied_by_the_coordinator(
    stack: tuple[Server, Cluster],
) -> None:
    server, _ = stack
    with server.client("admin") as c:
        deploy(c, GATE, "gate")
        run_id = start_run(c, "gate")
        stream = events_of(c, run_id)
        until(stream, "ticket.opened")
        before = c.get(f"/runs/{run_id}/timeline").json()["events"]
        version = c.get(f"/runs/{run_id}").json()["version"]
        cases = [
            [{"op": "remove", "path": "/nodes/9"}],  # names nothing
            [{"op": "add", "path": "/edges/-", "value": {"from": "prep", "to": "ghost"}}],
            [{"op": "replace", "path": "/nodes/0/fn", "value": "apifns:record"}],  # prep ran
        ]
        codes = set()
        for patch in cases:
            r = c.post(f"/runs/{run_id}/patches", json=patch)
            assert r.status_code == 422, (patch, r.text)
            assert r.json()["error"]["diagnostics"], patch
            codes.add(r.json()["error"]["code"])
        assert codes == {"patch-index", "undefined-node", "patch-touches-executed"}
        assert c.get(f"/runs/{run_id}/timeline").json()["events"] == before
        assert c.get(f"/runs/{run_id}").json()["version"] == version
        assert c.get(f"/runs/{run_id}/patches").json()["patches"] == []
        # A valid one is recorded, and the coordinator driving the run applies it.
        note = {"id": "note", "type": "function", "effect": "pure", "fn": "apifns:echo"}
        r = c.post(
            f"/runs/{run_id}/patches",
            json=[
                {"op": "add", "path": "/nodes/-", "value": note},
                {"op": "add", "path": "/edges/-", "value": {"from": "prep", "to": "note"}},
            ],
        )
        assert r.status_code == 202, r.text  # accepted: its driver applies it
        applied = until(stream, "patch.applied")[-1]
        assert (applied["patch"]["id"], applied["author"]) == (r.json()["id"], "root@ops")
        done = until(stream, "node.succeeded")[-1]
        assert done["node"] == "note"
        assert c.get(f"/runs/{run_id}").json()["version"] != version
        c.post(f"/runs/{run_id}/cancel", json={"reason": "done"})
        until(stream, "run.cancelled")


@pytest.mark.parametrize("mode", list(CHECKS), ids=lambda m: m.value)
def test_generated_requests_find_no_server_errors_over_the_distributed_runtime(
    stack: tuple[Server, Cluster], mode: GenerationMode
) -> None:
    # The same generated requests as against the embedded backend (tests/api), here with a
    # coordinator driving what they start and decide.
    server, _ = stack
    check_api(server, mode)
