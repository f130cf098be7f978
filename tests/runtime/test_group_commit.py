"""Group commit: all-inline runs started together are written in one transaction (one fsync
in durable mode), each `start` returning once its own run is durable; a run that cannot be
written fails alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_run_now import CHAIN

from aobc.backend.lower import lower
from aobc.frontend import load_text
from aobc.runtime.engine import Engine, EngineOptions, Stores
from aobc.runtime.stores.base import Conflict, RunRecord
from aobc.runtime.stores.embedded import EmbeddedStores
from aobc.runtime.stores.sqlite import SqliteEventLog


def engine_on(stores: EmbeddedStores) -> Engine:
    from harness import HERE

    return Engine(
        Stores(stores.events, stores.cas, stores.dir), EngineOptions(search_path=[str(HERE)])
    )


def test_runs_started_together_share_one_durable_commit(tmp_path: Path) -> None:
    ir = lower(load_text(CHAIN, "w.aob"))
    with EmbeddedStores.open(tmp_path / "s", durable=True) as stores:
        engine = engine_on(stores)

        async def go() -> list[object]:
            alone = await engine.start(ir, {})
            together = await asyncio.gather(*(engine.start(ir, {}) for _ in range(40)))
            await engine.close()
            return [alone, *together]

        results = asyncio.run(go())
        assert engine.group is not None
        assert engine.group.commits == 2  # the first run alone, then the 40 together
        logs = [stores.events.read(r.run_id) for r in results]  # type: ignore[attr-defined]
    assert all(r.status == "succeeded" for r in results)  # type: ignore[attr-defined]
    first = [(e.type, e.data) for e in logs[0]]
    assert all([(e.type, e.data) for e in log] == first for log in logs)
    with EmbeddedStores.open(tmp_path / "s") as again:  # what a new process reads back
        assert {r.run_id for r in again.events.list_runs(status="succeeded")} == {
            r.run_id
            for r in results  # type: ignore[attr-defined]
        }


def test_a_run_that_cannot_be_written_fails_alone(tmp_path: Path) -> None:
    ir = lower(load_text(CHAIN, "w.aob"))
    with EmbeddedStores.open(tmp_path / "s", durable=True) as stores:
        engine = engine_on(stores)

        async def go() -> list[object]:
            out = await asyncio.gather(
                engine.start(ir, {}, run_id="r-same"),
                engine.start(ir, {}),
                engine.start(ir, {}, run_id="r-same"),
                return_exceptions=True,
            )
            await engine.close()
            return out

        first, other, taken = asyncio.run(go())
        assert isinstance(taken, Conflict)
        assert first.status == other.status == "succeeded"  # type: ignore[union-attr]
        assert stores.events.get_run("r-same") is not None


def test_create_finished_many_keeps_each_run_apart(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "e.db")
    try:
        rec = [RunRecord(f"r{i}", "w", "h", "succeeded", 1.0, 2.0) for i in range(3)]
        out = log.create_finished_many(
            [
                (rec[0], [("run.started", {})]),
                (rec[0], [("run.started", {})]),  # the same id again
                (rec[1], [("run.started", {"bad": {1, 2}})]),  # cannot be encoded
                (rec[2], [("run.started", {}), ("run.succeeded", {"value": 1})]),
            ]
        )
        assert isinstance(out[1], Conflict) and isinstance(out[2], TypeError)
        assert [e.type for e in out[0]] == ["run.started"]  # type: ignore[union-attr]
        assert [e.type for e in out[3]] == ["run.started", "run.succeeded"]  # type: ignore[union-attr]
        assert log.get_run("r1") is None and log.read("r1") == []
        assert log.get_run("r2") is not None
    finally:
        log.close()
