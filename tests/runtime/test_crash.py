"""Crash safety: SIGKILL a run at random points, resume it, and check the promises.

- the run completes;
- no event is lost (the log after the crash is a prefix of the final log, and has no gaps);
- no completed node runs again (no effect after the crash from a node whose completion was
  already in the log);
- an effectful node interrupted mid-flight runs again with the same idempotency key.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from harness import HERE

from aobc.runtime.driver import idempotency_key
from aobc.runtime.stores.embedded import EmbeddedStores

WORKFLOW = """
workflow crash {
  output last = e4
  output fan = fan
  e1 = function "wf_functions:record_slow" { effect: effectful }
  p1 = function "wf_functions:inc" { effect: pure, args: { x: 1 } }
  e2 = function "wf_functions:record_slow" { effect: effectful, args: { item: p1.value } }
  fan = map [1, 2, 3, 4, 5] {
    concurrency: 2
    body: function "wf_functions:record_slow" { effect: effectful, args: { item: "${item}" } }
  }
  e3 = function "wf_functions:record_slow" { effect: effectful }
  e4 = function "wf_functions:record_slow" { effect: effectful, args: { item: e3.key } }
  e1 -> p1 -> e2 -> fan -> e4
  e1 -> e3 -> e4
}
"""
EFFECTS = {"e1": 1, "e2": 1, "e3": 1, "e4": 1, "fan": 5}


def _events(store: Path) -> tuple[str | None, list[Any]]:
    with EmbeddedStores.open(store) as s:
        runs = s.events.list_runs()
        if not runs:
            return None, []
        return runs[0].run_id, s.events.read(runs[0].run_id)


def _run_until(
    args: list[str], store: Path, env: dict[str, str], events_before_kill: int | None
) -> tuple[int, int]:
    """Run `aobc ARGS`; kill it with SIGKILL once the log holds `events_before_kill` events.

    Returns (exit code, pid)."""
    with subprocess.Popen(
        [sys.executable, "-m", "aobc", *args, "--store", str(store)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ) as child:
        if events_before_kill is not None:
            while child.poll() is None:
                _, events = _events(store)
                if len(events) >= events_before_kill:
                    os.kill(child.pid, signal.SIGKILL)
                    break
        child.wait()
        return child.returncode, child.pid


def _effects(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("seed", range(8))
def test_kill_and_resume_keeps_every_promise(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    src = tmp_path / "crash.aob"
    src.write_text(WORKFLOW)
    store = tmp_path / "store"
    effects_file = tmp_path / "effects.jsonl"
    env = {**os.environ, "WF_EFFECTS": str(effects_file)}
    # Crash once or twice, after a random number of logged events.
    _, pid = _run_until(["run", str(src), "--path", str(HERE)], store, env, rng.randint(1, 14))
    run_id, before = _events(store)
    assert run_id is not None
    crashes = [(before, {pid})]
    if rng.random() < 0.5:
        _, pid2 = _run_until(["resume", run_id], store, env, len(before) + rng.randint(1, 6))
        crashes.append((_events(store)[1], {pid, pid2}))
    code, _ = _run_until(["resume", run_id], store, env, None)
    _, final = _events(store)
    assert code == 0
    assert final[-1].type == "run.succeeded"

    # No event lost: every log seen after a crash is a prefix of the final one, without gaps.
    assert [e.seq for e in final] == list(range(1, len(final) + 1))
    for snapshot, _ in crashes:
        assert [(e.seq, e.type, e.data) for e in snapshot] == [
            (e.seq, e.type, e.data) for e in final[: len(snapshot)]
        ]

    records = _effects(effects_file)
    by_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_node[r["node"]].append(r)

    # Every effect happened; repeats only for interrupted nodes, always with the same key.
    for node, count in EFFECTS.items():
        keys = {r["key"] for r in by_node[node]}
        if node == "fan":
            expected = {idempotency_key(run_id, "fan", i) for i in range(count)}
            assert keys == expected
        else:
            assert keys == {idempotency_key(run_id, node)}

    # No completed node ran again: nothing a resumed process did was already done.
    for snapshot, dead in crashes:
        done_nodes = {e.data["node"] for e in snapshot if e.type == "node.succeeded"}
        done_items = {(e.data["node"], e.data["index"]) for e in snapshot if e.type == "map.item"}
        later = [r for r in records if r["pid"] not in dead]
        for r in later:
            assert r["node"] not in done_nodes, (
                f"{r['node']} ran again after its completion was logged"
            )
        done_keys = {idempotency_key(run_id, n, i) for n, i in done_items}
        assert not [r for r in later if r["key"] in done_keys], "a finished map item ran again"

    succeeded = [e.data["node"] for e in final if e.type == "node.succeeded"]
    assert len(succeeded) == len(set(succeeded)), "a completion was logged twice"
