"""`SqliteEventLog` shared by real processes: concurrent writers, and writers killed mid-loop.

The children are `sys.executable -c ...`, coordinated through their pipes (never by
sleeping): each says "ready" once its log is open, and waits for a "go" line on stdin.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from aobc.runtime.stores.base import RunRecord
from aobc.runtime.stores.sqlite import SqliteEventLog

WRITER = """
import sys
from aobc.runtime.stores.sqlite import SqliteEventLog

path, run_id, writer, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
log = SqliteEventLog(path)
print("ready", flush=True)
sys.stdin.readline()
for i in range(count):
    batch = [("w", {"w": writer, "i": i, "part": p}) for p in range(1 + i % 3)]
    log.append(run_id, batch)
log.close()
print("done", flush=True)
"""

# Opens a database that may not exist yet and creates a run with a shared idempotency key.
CREATOR = """
import json, sys
from aobc.runtime.stores.base import RunRecord
from aobc.runtime.stores.sqlite import SqliteEventLog

path, n = sys.argv[1], sys.argv[2]
print("ready", flush=True)
sys.stdin.readline()
log = SqliteEventLog(path)
record = RunRecord(f"r{n}", "wf", "ir", "running", 1.0, 1.0, idempotency_key="shared")
first = log.create_run(record, [("run.started", {"by": n}), ("second", {})])
print(json.dumps([[e.run_id, e.seq, e.type, e.data] for e in first]), flush=True)
log.close()
"""

# Appends batches of three forever, and reports the last seq of every committed batch on
# stdout only after append() returned: whatever it reported must be in the database.
LOOPER = """
import sys
from aobc.runtime.stores.sqlite import SqliteEventLog

path, run_id = sys.argv[1], sys.argv[2]
log = SqliteEventLog(path)
print("ready", flush=True)
sys.stdin.readline()
n = 0
while True:
    stored = log.append(run_id, [("k", {"n": n, "part": p, "pad": "x" * 200}) for p in range(3)])
    print(stored[-1].seq, flush=True)
    n += 1
"""


@contextmanager
def _children(code: str, *arg_lists: tuple[object, ...]) -> Iterator[list[subprocess.Popen[str]]]:
    """One child per argument list; on the way out, killed (if still running) and reaped,
    pipes closed."""
    with ExitStack() as stack:
        children = [
            stack.enter_context(
                subprocess.Popen(
                    [sys.executable, "-c", code, *map(str, args)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
            for args in arg_lists
        ]
        try:
            yield children
        finally:
            for child in children:
                child.kill()


def _go(children: list[subprocess.Popen[str]]) -> None:
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()


def _create(path: Path, run_id: str) -> None:
    with SqliteEventLog(path) as log:
        log.create_run(RunRecord(run_id, "wf", "ir", "running", 1.0, 1.0), [])


def test_concurrent_processes_append_one_gapless_sequence(tmp_path: Path) -> None:
    path = tmp_path / "aobc.db"
    _create(path, "r")
    writers, count = 4, 100
    with _children(WRITER, *[(path, "r", w, count) for w in range(writers)]) as children:
        _go(children)
        for child in children:
            out, _ = child.communicate(timeout=60)
            assert child.returncode == 0 and out.strip() == "done"
    with SqliteEventLog(path) as log:
        events = log.read("r")
    per_writer = sum(1 + i % 3 for i in range(count))
    assert [e.seq for e in events] == list(range(1, writers * per_writer + 1))
    for w in range(writers):
        mine = [(e.data["i"], e.data["part"]) for e in events if e.data["w"] == w]
        # Every event of every writer, its batches whole and contiguous, in its own order.
        assert mine == [(i, p) for i in range(count) for p in range(1 + i % 3)]
        seqs = [e.seq for e in events if e.data["w"] == w]
        starts = [k for k, e in enumerate(events) if e.data["w"] == w and e.data["part"] == 0]
        for k in starts:
            size = 1 + events[k].data["i"] % 3
            assert [e.data["w"] for e in events[k : k + size]] == [w] * size
        assert len(seqs) == per_writer


def test_processes_racing_to_create_one_run_on_a_fresh_database(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    with _children(CREATOR, *[(path, n) for n in range(5)]) as children:
        _go(children)
        answers = []
        for child in children:
            out, _ = child.communicate(timeout=60)
            assert child.returncode == 0
            answers.append(json.loads(out))
    # Every process got the same run's first events; exactly one run exists.
    assert all(answer == answers[0] for answer in answers)
    winner = answers[0][0][0]
    assert [seq for _, seq, _, _ in answers[0]] == [1, 2]
    with SqliteEventLog(path) as log:
        assert [run.run_id for run in log.list_runs()] == [winner]
        assert log.last_seq(winner) == 2


def test_killed_writer_loses_no_committed_event(tmp_path: Path) -> None:
    path = tmp_path / "aobc.db"
    _create(path, "r")
    reported = 0
    for round_ in range(4):
        with _children(LOOPER, (path, "r")) as (child,):
            _go([child])
            assert child.stdout is not None
            # Let it commit a different number of batches each round, then kill it wherever
            # it happens to be: inside a transaction, between two, or printing.
            for _ in range(5 + 7 * round_):
                reported = int(child.stdout.readline())
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            rest = child.stdout.read().split()  # reports still in the pipe
            if rest:
                reported = int(rest[-1])
        assert child.returncode == -signal.SIGKILL
        with SqliteEventLog(path) as log:
            last = log.last_seq("r")
            events = log.read("r")
            integrity = log._conn().execute("PRAGMA integrity_check").fetchone()[0]
        assert integrity == "ok"
        assert last >= reported  # nothing reported as committed is missing
        assert last % 3 == 0  # batches are whole: the killed transaction left nothing
        assert [e.seq for e in events] == list(range(1, last + 1))
        # Batches of earlier rounds restart n at 0; within a batch, parts are 0, 1, 2.
        assert [e.data["part"] for e in events] == [0, 1, 2] * (last // 3)
        assert all(e.data["pad"] == "x" * 200 and e.type == "k" for e in events)
        assert all(json.dumps(e.data) for e in events)
