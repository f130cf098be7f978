"""The server drives runs in-process: runs survive its restart (graceful or killed), runs
waiting for people resume when decided (even from another process), and admission follows
priority when the driver slots are full."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from apiserver import GATE, Server, deploy, start, start_run, wait_for

SLOW = """
workflow slow {
  input seconds: float = 1.0
  output done = after
  nap = function "apifns:nap" { effect: idempotent, args: { seconds: inputs.seconds } }
  after = function "apifns:record" { effect: effectful }
  nap -> after
}
"""


def restart(server: Server, tmp: Path, sig: int, env: dict[str, str]) -> Server:
    server.stop(sig)
    return start(server.store, tmp / "tokens.toml", env=env, tokens=server.tokens)


def test_runs_carry_on_after_the_server_restarts(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.jsonl"
    # On a durable store (every commit fsynced, runs started together committed together),
    # as an operator would run it where a power cut must lose nothing.
    env = {"APIFNS_OUTBOX": str(outbox), "AOBC_DURABLE": "1"}
    server = start(tmp_path / "store", tmp_path / "tokens.toml", env=env)
    try:
        with server.client() as c:
            deploy(c, SLOW, "slow")
            deploy(c, GATE, "gate")
            graceful = start_run(c, "slow", inputs={"seconds": 2.0})["id"]
            waiting = wait_for(c, start_run(c, "gate")["id"], "waiting")
            wait_started(c, graceful, "nap")
        # SIGTERM mid-node: the run must stay resumable, not be logged as cancelled.
        server = restart(server, tmp_path, signal.SIGTERM, env)
        with server.client() as c:
            done = wait_for(c, graceful, "succeeded", timeout=30)
            types = [e["type"] for e in c.get(f"/runs/{graceful}/timeline").json()["events"]]
            assert "run.cancelled" not in types
            assert types.count("node.started") >= 3  # nap ran again after the restart
            killed = start_run(c, "slow", inputs={"seconds": 2.0})["id"]
            wait_started(c, killed, "nap")
        server = restart(server, tmp_path, signal.SIGKILL, env)
        # While no server runs the waiting one, someone decides its ticket with `aobc`.
        server.stop()
        ticket = waiting["tickets"][0]["ticket"]
        subprocess.run(
            [sys.executable, "-m", "aobc", "approve", ticket, "approve", "--reason", "ok",
             "--by", "cli@ops", "--store", str(server.store)],
            check=True, capture_output=True,
        )  # fmt: skip
        server = start(server.store, tmp_path / "tokens.toml", env=env, tokens=server.tokens)
        with server.client() as c:
            assert wait_for(c, killed, "succeeded", timeout=30)["outputs"]["done"]
            assert wait_for(c, waiting["id"], "succeeded", timeout=30)["outputs"]["sent"]
            assert done["outputs"]["done"] == {"done": "after"}
        effects = [json.loads(line) for line in outbox.read_text().splitlines()]
        # Each run's effect ran exactly once across all the restarts.
        assert sorted(e["run"] for e in effects) == sorted([graceful, killed, waiting["id"]])
    finally:
        server.stop()


def wait_started(c: object, run_id: str, node: str) -> None:
    import time

    deadline = time.monotonic() + 30
    while True:
        events = c.get(f"/runs/{run_id}/timeline", params={"node": node}).json()["events"]  # type: ignore[attr-defined]
        if any(e["type"] == "node.started" for e in events):
            return
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_admission_follows_priority_when_slots_are_full(tmp_path: Path) -> None:
    server = start(tmp_path / "store", tmp_path / "tokens.toml", "--max-active", "1")
    try:
        with server.client() as c:
            deploy(c, SLOW, "slow")
            first = start_run(c, "slow", inputs={"seconds": 0.5})["id"]
            low = start_run(c, "slow", inputs={"seconds": 0.01}, priority="low")
            high = start_run(c, "slow", inputs={"seconds": 0.01}, priority="high")
            assert (low["status"], high["status"]) == ("queued", "queued")
            queued = c.get("/runs", params={"status": "queued"}).json()["runs"]
            assert {r["id"] for r in queued} == {low["id"], high["id"]}
            assert 'aobc_run_queue_depth{priority="low"} 1.0' in c.get("/metrics").text
            for rid in (first, low["id"], high["id"]):
                wait_for(c, rid, "succeeded")
            began = {
                rid: c.get(f"/runs/{rid}/timeline").json()["events"][1]["time"]
                for rid in (low["id"], high["id"])
            }
        assert began[high["id"]] < began[low["id"]]
    finally:
        server.stop()


TIMEOUT = """
workflow late {
  output sent = send
  review = approval { approvers: ["ops"], escalate: ["lead"], timeout: 1s, on_timeout: approve }
  send = function "apifns:record" { effect: effectful }
  review -[approved]-> send
}
"""


def test_a_waiting_run_wakes_at_its_deadline_with_nobody_asking(tmp_path: Path) -> None:
    server = start(tmp_path / "store", tmp_path / "tokens.toml")
    try:
        with server.client() as c:
            deploy(c, TIMEOUT, "late")
            run = wait_for(c, start_run(c, "late")["id"], "waiting")
            assert run["tickets"][0]["approvers"] == ["ops"]
            done = wait_for(c, run["id"], "succeeded", timeout=30)  # escalated, then timed out
            (t,) = done["tickets"]
            assert (t["level"], t["approvers"], t["decision"], t["by"], t["timed_out"]) == (
                1, ["lead"], "approved", "timeout", True,
            )  # fmt: skip
    finally:
        server.stop()
