"""`aobc replay RUN --from NODE --mode freeze|fresh`: rerun part of a run, report divergence.

On the embedded store the replay runs here. With the distributed runtime's URLs (flags or
`AOBC_POSTGRES_URL`...; no `--store`), it is planned here the same way (`runtime.replay`),
created in Postgres as a new run whose parent is the original, and driven by the
coordinators like any run; this command waits for it and reports the divergence.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from aobc.cli.common import Reporter
from aobc.cli.session import Progress, add_engine_flags, engine_for, open_stores


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="the run to replay")
    p.add_argument(
        "--from", dest="node", required=True, metavar="NODE", help="re-execute from this node"
    )
    # `--mode` is the replay mode, as the vision spells it; a replay always logs in full.
    p.add_argument(
        "--mode",
        choices=("freeze", "fresh"),
        default="freeze",
        help="freeze: only NODE and what depends on it run again; fresh: everything does",
    )
    add_engine_flags(p, log_mode=False)
    from aobc.cli.cluster import add_cluster_flags

    add_cluster_flags(p)


def _distributed(args: argparse.Namespace) -> bool:
    from aobc.runtime.stores.config import StoreConfig

    return args.store is None and StoreConfig.from_args(args).postgres is not None


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from aobc.runtime.replay import replay

    if _distributed(args):
        return _run_distributed(args)
    mode = args.mode
    args.mode = "full"  # the log mode the engine reads
    stores = open_stores(args)
    as_json = args.output == "json"
    engine = engine_for(args, stores, [], Progress(as_json, sys.stderr if not as_json else None))

    async def go() -> Any:
        try:
            return await replay(engine, args.run, args.node, mode)
        finally:
            await engine.close()

    try:
        result, report = asyncio.run(go())
    finally:
        stores.extra["embedded"].close()
    return _report(args, mode, result, report)


def _run_distributed(args: argparse.Namespace) -> int:
    from aobc.cli.cluster import store_config, store_errors
    from aobc.cli.start import wait_for
    from aobc.runtime.coordinator import notify_new_runs
    from aobc.runtime.engine import Engine, EngineOptions, Stores
    from aobc.runtime.replay import divergence, prepare
    from aobc.runtime.state import RunState
    from aobc.runtime.stores.postgres import PostgresEventLog
    from aobc.runtime.stores.s3 import S3CAS
    from aobc.runtime.stores.tiered import TieredCAS

    config = store_config(args, "postgres", "s3")
    with store_errors():
        events = PostgresEventLog(config.postgres)
        large = S3CAS(config.s3)
        try:
            # Outputs the coordinators recorded live in Postgres (small) or S3 (large).
            engine = Engine(Stores(events, TieredCAS(events, large)), EngineOptions(mode="full"))
            p = prepare(engine, args.run, args.node, args.mode)
            first = engine.create(
                p.ir, p.original.inputs, parent=args.run, frozen=p.frozen, replay=p.meta,
                search_path=p.search_path,
            )  # fmt: skip
            run_id = first[0].run_id
            notify_new_runs(events._conn(), events.schema, [run_id])
            result = wait_for(events, run_id)
            replayed = RunState.fold(run_id, events.read(run_id))
            return _report(args, args.mode, result, divergence(p.original, replayed))
        finally:
            large.close()
            events.close()


def _report(args: argparse.Namespace, mode: str, result: Any, report: list[Any]) -> int:
    as_json = args.output == "json"
    if as_json:
        sys.stdout.write(
            json.dumps({"result": result.to_json(), "divergence": [r.to_json() for r in report]})
            + "\n"
        )
    else:
        changed = [r for r in report if r.status != "same"]
        sys.stdout.write(
            f"replay {result.run_id} of {args.run} from {args.node} ({mode}): {result.status}\n"
        )
        for r in report:
            sys.stdout.write(f"  {r.status:8} {r.node}\n")
        sys.stdout.write(f"{len(changed)} of {len(report)} re-executed outputs diverged\n")
    return 0 if result.status == "succeeded" else 1
