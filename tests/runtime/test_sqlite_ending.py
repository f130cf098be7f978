"""A run's last events and its final status commit together on SQLite (`append_ending`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aobc.backend.lower import lower
from aobc.frontend import load_text
from aobc.runtime.engine import Engine, EngineOptions, Stores
from aobc.runtime.stores.base import Conflict, RunRecord
from aobc.runtime.stores.embedded import EmbeddedStores
from aobc.runtime.stores.sqlite import SqliteEventLog


def _record(run_id: str) -> RunRecord:
    return RunRecord(run_id, "wf", "ir1", "running", 100.0, 100.0)


def test_events_and_status_commit_together(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "events.db")
    log.create_run(_record("r"), [("run.started", {})])
    stored = log.append_ending("r", [("run.succeeded", {"value": 1})], "succeeded", expect_seq=1)
    assert [e.seq for e in stored] == [2]
    record = log.get_run("r")
    assert record is not None and record.status == "succeeded"
    log.close()


def test_a_conflict_changes_neither(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "events.db")
    log.create_run(_record("r"), [("run.started", {})])
    log.append("r", [("ticket.decided", {})])  # another writer got there first
    with pytest.raises(Conflict):
        log.append_ending("r", [("run.succeeded", {})], "succeeded", expect_seq=1)
    record = log.get_run("r")
    assert record is not None and record.status == "running"
    assert [e.type for e in log.read("r")] == ["run.started", "ticket.decided"]
    log.close()


def test_a_finished_run_ends_with_its_status_in_the_last_commit(tmp_path: Path) -> None:
    source = """
    workflow w {
      output o = a
      a = function "wf_functions:inc" { effect: pure, args: { n: 1 } }
    }
    """
    wf = lower(load_text(source, "w.aob"))
    with EmbeddedStores.open(tmp_path / "store") as st:
        engine = Engine(Stores(st.events, st.cas, st.dir), EngineOptions())

        async def go() -> str:
            try:
                return (await engine.start(wf, {})).run_id
            finally:
                await engine.close()

        run_id = asyncio.run(go())
        record = st.events.get_run(run_id)
        assert record is not None and record.status == "succeeded"
        assert st.events.read(run_id)[-1].type == "run.succeeded"
